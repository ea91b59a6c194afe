//! Opaque keyset cursors: the sort key of the last row of a page, base64url-encoded. Pages stay
//! stable under concurrent inserts because the next page starts strictly after that key.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};

/// Position after a row sorted by `(at DESC, id DESC)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: String,
}

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}", self.at.timestamp_micros(), self.id))
    }

    pub fn decode(raw: &str) -> Option<Cursor> {
        let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let (micros, id) = text.split_once('|')?;
        Some(Cursor { at: DateTime::from_timestamp_micros(micros.parse().ok()?)?, id: id.to_owned() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let cursor = Cursor { at: "2025-09-27T10:00:00.123456Z".parse().unwrap(), id: "evt|with|bars".into() };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        for bad in ["", "!!!", "bm9waXBl", &URL_SAFE_NO_PAD.encode("x|y")] {
            assert_eq!(Cursor::decode(bad), None, "{bad}");
        }
    }
}
