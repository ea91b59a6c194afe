//! A JSON document that borrows its strings from the request body, for the parse of every event.
//!
//! `serde_json::Value` allocates every key and every string and builds a `BTreeMap` per object;
//! on the edge's single-event path that build and its drop were most of the parse. [`Json`] keeps
//! `serde_json`'s meaning exactly, so validation cannot tell the two apart:
//! - numbers are `serde_json::Number` (same integer/float split, same `Display`), read by the same
//!   deserializer (same recursion limit, same errors);
//! - a key given twice keeps its last value, as `serde_json::Map` does;
//! - objects compare without regard to key order, as `serde_json::Map` does;
//! - [`Json::to_value`] gives back the `serde_json::Value` (for text such as `Display`).
//!
//! One difference, on purpose: with `serde_json`'s `raw_value` feature (the edge's batches use it)
//! a `Value` reads an object whose first key is `$serde_json::private::RawValue` as the JSON text
//! it holds; `Json` reads it as the one-key object it is (and the parse refuses it).
//!
//! `serde_json_borrow` was considered: its own `Number` type would change how numbers print, and
//! ids and amounts keep a number's decimal text.

use std::{borrow::Cow, fmt};

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

/// A JSON value whose strings borrow from the text it was read from (escaped ones are owned).
#[derive(Debug, Clone, PartialEq)]
pub enum Json<'a> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'a, str>),
    Array(Vec<Json<'a>>),
    Object(Object<'a>),
}

/// An object's members in document order, each key once.
#[derive(Debug, Clone, Default)]
pub struct Object<'a> {
    members: Vec<(Cow<'a, str>, Json<'a>)>,
}

impl<'a> Json<'a> {
    /// Reads a document; the errors are `serde_json`'s, as for `serde_json::from_slice::<Value>`.
    pub fn from_slice(text: &'a [u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(text)
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Json::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&Object<'a>> {
        match self {
            Json::Object(o) => Some(o),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    /// The member `key` of an object; `None` for a missing key or a value that is not an object.
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.as_object()?.get(key)
    }

    /// The same value as a `serde_json::Value` (what `serde_json` would have read).
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => Value::Number(n.clone()),
            Json::String(s) => Value::String(s.as_ref().to_owned()),
            Json::Array(items) => Value::Array(items.iter().map(Json::to_value).collect()),
            Json::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.to_owned(), v.to_value())).collect()),
        }
    }
}

/// JSON text, as `serde_json` writes the same value (objects with sorted keys).
impl fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_value(), f)
    }
}

impl<'a> From<&'a Value> for Json<'a> {
    fn from(value: &'a Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Number(n) => Json::Number(n.clone()),
            Value::String(s) => Json::String(Cow::Borrowed(s)),
            Value::Array(items) => Json::Array(items.iter().map(Json::from).collect()),
            Value::Object(map) => Json::Object(Object {
                members: map.iter().map(|(k, v)| (Cow::Borrowed(k.as_str()), Json::from(v))).collect(),
            }),
        }
    }
}

impl<'a> Object<'a> {
    pub fn get(&self, key: &str) -> Option<&Json<'a>> {
        self.get_key_value(key).map(|(_, v)| v)
    }

    /// The key as stored (borrowed from the document) and its value.
    pub fn get_key_value(&self, key: &str) -> Option<(&str, &Json<'a>)> {
        self.members.iter().find(|(k, _)| k == key).map(|(k, v)| (k.as_ref(), v))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Json<'a>)> {
        self.members.iter().map(|(k, v)| (k.as_ref(), v))
    }

    /// The members in key order, as a `serde_json::Map` iterates them: where the first of several
    /// faults is named, it is the same one.
    pub fn sorted(&self) -> Vec<(&str, &Json<'a>)> {
        let mut members: Vec<(&str, &Json<'a>)> = self.iter().collect();
        members.sort_unstable_by_key(|(k, _)| *k);
        members
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.members.iter().map(|(k, _)| k.as_ref())
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Keeps each key once, with its last value (at its first place), as `serde_json::Map` does.
    /// Objects with a handful of members are checked pair by pair; larger ones through a sort, so
    /// a body of many keys costs n log n.
    fn with_unique_keys(mut members: Vec<(Cow<'a, str>, Json<'a>)>) -> Self {
        const PAIRWISE_UP_TO: usize = 16;
        let repeated = if members.len() <= PAIRWISE_UP_TO {
            members.iter().enumerate().any(|(i, (k, _))| members[..i].iter().any(|(earlier, _)| earlier == k))
        } else {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_ref()).collect();
            keys.sort_unstable();
            keys.windows(2).any(|pair| pair[0] == pair[1])
        };
        if repeated {
            let mut kept: Vec<(Cow<'a, str>, Json<'a>)> = Vec::with_capacity(members.len());
            let mut index: std::collections::HashMap<Cow<'a, str>, usize> = std::collections::HashMap::new();
            for (key, value) in members.drain(..) {
                match index.get(&key) {
                    Some(&at) => kept[at].1 = value,
                    None => {
                        index.insert(key.clone(), kept.len());
                        kept.push((key, value));
                    }
                }
            }
            members = kept;
        }
        Object { members }
    }
}

/// Key order does not matter, as for `serde_json::Map`. Keys are unique, so equal lengths and
/// equal members in key order is equality: members in the same order compare in one pass, others
/// are sorted first (n log n, however many keys a hostile body sends under both spellings).
impl PartialEq for Object<'_> {
    fn eq(&self, other: &Self) -> bool {
        if self.len() != other.len() {
            return false;
        }
        if self.members.iter().zip(&other.members).all(|((a, _), (b, _))| a == b) {
            return self.members.iter().zip(&other.members).all(|((_, a), (_, b))| a == b);
        }
        self.sorted() == other.sorted()
    }
}

/// A string that borrows from the document when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }

            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(s)))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }

            fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

impl<'de> Deserialize<'de> for Json<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonVisitor)
    }
}

/// What `serde_json::Value`'s visitor does, with borrowed strings and members in a list.
struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Json::Bool(b))
    }

    fn visit_i64<E>(self, n: i64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_u64<E>(self, n: u64) -> Result<Self::Value, E> {
        Ok(Json::Number(n.into()))
    }

    fn visit_f64<E>(self, n: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(n).map_or(Json::Null, Json::Number))
    }

    fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Borrowed(s)))
    }

    fn visit_str<E>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E>(self, s: String) -> Result<Self::Value, E> {
        Ok(Json::String(Cow::Owned(s)))
    }

    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Json::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        Deserialize::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Json::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // No reservation ahead (serde_json gives no size hint): an empty object allocates nothing,
        // so a body of many small objects costs no more than the members it has.
        let mut members = Vec::new();
        while let Some(Text(key)) = map.next_key()? {
            members.push((key, map.next_value()?));
        }
        Ok(Json::Object(Object::with_unique_keys(members)))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The documents the edge sees, odd ones included: each reads to what `serde_json` reads.
    #[test]
    fn a_document_means_what_serde_json_reads() {
        let documents = [
            r#"{"eventId":"e1","ts":"2025-09-27T10:00:00Z","payload":{"total":1234.56,"n":-3,"big":18446744073709551615}}"#,
            r#"{"a":"esc\"aped\u00e9","b":[1,2.5e3,null,true,{"x":{}}],"c":-1.5e-7}"#,
            r#"{"c":1e400}"#,
            r#"{"k":1,"k":2,"j":{"z":1,"z":null}}"#,
            r#"[{"k":"v"},"s",0.1,-0]"#,
            r#""just a string""#,
            "12345678901234567890123",
        ];
        for text in documents {
            let ours = Json::from_slice(text.as_bytes()).map(|j| j.to_value());
            let theirs = serde_json::from_str::<Value>(text);
            match (ours, theirs) {
                (Ok(ours), Ok(theirs)) => {
                    assert_eq!(ours, theirs, "{text}");
                    assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
                }
                (ours, theirs) => assert_eq!(ours.is_err(), theirs.is_err(), "{text}"),
            }
        }
    }

    #[test]
    fn errors_are_serde_jsons() {
        for text in ["{", r#"{"a":}"#, "[1,]", r#"{"a":1} x"#, "\"\\ud800\"", ""] {
            let ours = Json::from_slice(text.as_bytes()).unwrap_err();
            let theirs = serde_json::from_str::<Value>(text).unwrap_err();
            assert_eq!(ours.to_string(), theirs.to_string(), "{text}");
        }
    }

    #[test]
    fn the_last_of_a_repeated_key_wins_at_any_size() {
        let small = Json::from_slice(r#"{"source":"ci","type":"t","source":"finance"}"#.as_bytes()).unwrap();
        assert_eq!(small.get("source").and_then(Json::as_str), Some("finance"));
        assert_eq!(small.as_object().map(Object::len), Some(2));

        let mut many: Vec<String> = (0..40).map(|i| format!("\"k{i}\":{i}")).collect();
        many.push("\"k7\":\"last\"".to_owned());
        let text = format!("{{{}}}", many.join(","));
        let large = Json::from_slice(text.as_bytes()).unwrap();
        assert_eq!(large.get("k7").and_then(Json::as_str), Some("last"));
        assert_eq!(large.as_object().map(Object::len), Some(40));
    }

    #[test]
    fn unescaped_strings_borrow_and_objects_ignore_key_order() {
        let text = r#"{"plain":"abc","escaped":"a\nb"}"#;
        let json = Json::from_slice(text.as_bytes()).unwrap();
        assert!(matches!(json.get("plain"), Some(Json::String(Cow::Borrowed("abc")))));
        assert!(matches!(json.get("escaped"), Some(Json::String(Cow::Owned(s))) if s == "a\nb"));
        assert_eq!(
            Json::from_slice(r#"{"a":1,"b":[2]}"#.as_bytes()).unwrap(),
            Json::from_slice(r#"{"b":[2],"a":1}"#.as_bytes()).unwrap()
        );
        assert_ne!(Json::from_slice(b"[1,2]").unwrap(), Json::from_slice(b"[2,1]").unwrap());
        assert_ne!(Json::from_slice(br#"{"a":1,"b":2}"#).unwrap(), Json::from_slice(br#"{"b":1,"a":2}"#).unwrap());
        assert_ne!(Json::from_slice(br#"{"a":1,"b":2}"#).unwrap(), Json::from_slice(br#"{"a":1,"c":2}"#).unwrap());
        // Many keys under both spellings, in opposite orders: still equal, in n log n.
        let keys: Vec<String> = (0..20_000).map(|i| format!("\"k{i}\":{i}")).collect();
        let forward = format!("{{{}}}", keys.join(","));
        let backward = format!("{{{}}}", keys.iter().rev().cloned().collect::<Vec<_>>().join(","));
        assert_eq!(Json::from_slice(forward.as_bytes()).unwrap(), Json::from_slice(backward.as_bytes()).unwrap());
        assert_ne!(Json::from_slice(b"1").unwrap(), Json::from_slice(b"1.0").unwrap());
        let value = json!({"x": [1, "y"], "z": null});
        assert_eq!(Json::from(&value).to_value(), value);
    }
}
