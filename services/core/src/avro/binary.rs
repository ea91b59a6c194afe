//! Avro binary encoding straight from serde, without walking the schema: for types whose serde
//! shape mirrors their schema, as the event record's does (build.rs generates the payload types
//! from `schemas-avro/`, in the schema's field, symbol and branch order).
//!
//! The mapping, positional like Avro binary itself: a struct is its fields in order; `Option` is a
//! `["null", T]` union (branch 0 or 1); a unit variant is an enum symbol by its index; a newtype
//! variant is a union branch by its index (the payload union); integers are zig-zag varints
//! (`int` and `long` alike), `f32`/`f64` little-endian, strings and bytes length-prefixed, and
//! sequences and maps in blocks of at most 1,025 items followed by the empty block: the blocks
//! apache-avro 0.21's writer makes, so an event's bytes, and its content digest, do not depend on
//! which of the two wrote it.
//!
//! Nothing here checks the schema: `avro::tests` encodes every event type both ways (this and
//! apache-avro's schema-aware writer) and requires the same bytes.

use serde::ser::{self, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum BinaryError {
    #[error("{0} has no Avro binary form without a schema")]
    Unsupported(&'static str),
    #[error("a sequence or map must know its length")]
    UnknownLength,
    #[error("{0} does not fit an Avro long")]
    OutOfRange(u64),
    #[error("{0}")]
    Custom(String),
}

impl ser::Error for BinaryError {
    fn custom<T: std::fmt::Display>(message: T) -> Self {
        Self::Custom(message.to_string())
    }
}

/// Appends the Avro binary datum of `value` to `out`.
pub fn write<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) -> Result<(), BinaryError> {
    value.serialize(&mut Writer { out })
}

/// Zig-zag varint: Avro's `int` and `long`.
pub fn write_long(value: i64, out: &mut Vec<u8>) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.push((zigzag as u8 & 0x7f) | 0x80);
        zigzag >>= 7;
    }
    out.push(zigzag as u8);
}

fn write_len(len: usize, out: &mut Vec<u8>) {
    write_long(i64::try_from(len).unwrap_or(i64::MAX), out);
}

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

/// Items per block: apache-avro writes a block once it holds more than 1,024.
const BLOCK_ITEMS: usize = 1025;

/// A sequence or map being written: the items not yet written and those left in the current block.
struct Blocks<'w, 'a> {
    writer: &'w mut Writer<'a>,
    remaining: usize,
    left_in_block: usize,
}

impl Blocks<'_, '_> {
    /// Starts a block before its first item.
    fn item(&mut self) -> Result<(), BinaryError> {
        if self.remaining == 0 {
            return Err(BinaryError::Custom("more items than the declared length".into()));
        }
        if self.left_in_block == 0 {
            self.left_in_block = self.remaining.min(BLOCK_ITEMS);
            write_len(self.left_in_block, self.writer.out);
        }
        self.left_in_block -= 1;
        self.remaining -= 1;
        Ok(())
    }

    fn end(self) -> Result<(), BinaryError> {
        if self.remaining != 0 {
            return Err(BinaryError::Custom("fewer items than the declared length".into()));
        }
        self.writer.out.push(0);
        Ok(())
    }
}

impl<'a> Writer<'a> {
    fn bytes(&mut self, bytes: &[u8]) {
        write_len(bytes.len(), self.out);
        self.out.extend_from_slice(bytes);
    }

    fn blocks<'w>(&'w mut self, len: Option<usize>) -> Result<Blocks<'w, 'a>, BinaryError> {
        Ok(Blocks { writer: self, remaining: len.ok_or(BinaryError::UnknownLength)?, left_in_block: 0 })
    }
}

impl<'w, 'a> ser::Serializer for &'w mut Writer<'a> {
    type Ok = ();
    type Error = BinaryError;
    type SerializeSeq = Blocks<'w, 'a>;
    type SerializeTuple = ser::Impossible<(), BinaryError>;
    type SerializeTupleStruct = ser::Impossible<(), BinaryError>;
    type SerializeTupleVariant = ser::Impossible<(), BinaryError>;
    type SerializeMap = Blocks<'w, 'a>;
    type SerializeStruct = Self;
    type SerializeStructVariant = ser::Impossible<(), BinaryError>;

    fn serialize_bool(self, v: bool) -> Result<(), BinaryError> {
        self.out.push(u8::from(v));
        Ok(())
    }

    fn serialize_i8(self, v: i8) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i16(self, v: i16) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i32(self, v: i32) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_i64(self, v: i64) -> Result<(), BinaryError> {
        write_long(v, self.out);
        Ok(())
    }

    fn serialize_u8(self, v: u8) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_u16(self, v: u16) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_u32(self, v: u32) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(v))
    }

    fn serialize_u64(self, v: u64) -> Result<(), BinaryError> {
        self.serialize_i64(i64::try_from(v).map_err(|_| BinaryError::OutOfRange(v))?)
    }

    fn serialize_f32(self, v: f32) -> Result<(), BinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_f64(self, v: f64) -> Result<(), BinaryError> {
        self.out.extend_from_slice(&v.to_le_bytes());
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), BinaryError> {
        self.serialize_str(v.encode_utf8(&mut [0; 4]))
    }

    fn serialize_str(self, v: &str) -> Result<(), BinaryError> {
        self.bytes(v.as_bytes());
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), BinaryError> {
        self.bytes(v);
        Ok(())
    }

    fn serialize_none(self) -> Result<(), BinaryError> {
        self.out.push(0);
        Ok(())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), BinaryError> {
        // Branch 1 of `["null", T]`: zig-zag 1 is the byte 2.
        self.out.push(2);
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), BinaryError> {
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), BinaryError> {
        Ok(())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), BinaryError> {
        self.serialize_i64(i64::from(index))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), BinaryError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), BinaryError> {
        write_long(i64::from(index), self.out);
        value.serialize(self)
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, BinaryError> {
        self.blocks(len)
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, BinaryError> {
        Err(BinaryError::Unsupported("a tuple"))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, BinaryError> {
        Err(BinaryError::Unsupported("a tuple struct"))
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, BinaryError> {
        Err(BinaryError::Unsupported("a tuple variant"))
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, BinaryError> {
        self.blocks(len)
    }

    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, BinaryError> {
        Ok(self)
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, BinaryError> {
        Err(BinaryError::Unsupported("a struct variant"))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeSeq for Blocks<'_, '_> {
    type Ok = ();
    type Error = BinaryError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BinaryError> {
        self.item()?;
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), BinaryError> {
        Blocks::end(self)
    }
}

impl ser::SerializeMap for Blocks<'_, '_> {
    type Ok = ();
    type Error = BinaryError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), BinaryError> {
        self.item()?;
        key.serialize(&mut *self.writer)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut *self.writer)
    }

    fn end(self) -> Result<(), BinaryError> {
        Blocks::end(self)
    }
}

impl ser::SerializeStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = BinaryError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, _key: &'static str, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
    }

    /// A skipped field (`skip_serializing_if`) would shift every field after it.
    fn skip_field(&mut self, key: &'static str) -> Result<(), BinaryError> {
        Err(BinaryError::Custom(format!("field `{key}` is skipped; Avro records have every field")))
    }

    fn end(self) -> Result<(), BinaryError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes<T: Serialize>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        write(value, &mut out).unwrap();
        out
    }

    #[test]
    fn longs_are_zig_zag_varints() {
        // The Avro specification's examples.
        for (value, expected) in [(0, &[0x00][..]), (-1, &[0x01]), (1, &[0x02]), (-2, &[0x03]), (2, &[0x04])] {
            assert_eq!(bytes(&value), expected, "{value}");
        }
        assert_eq!(bytes(&-64i64), [0x7f]);
        assert_eq!(bytes(&64i64), [0x80, 0x01]);
        assert_eq!(bytes(&i64::MIN), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
    }

    #[test]
    fn strings_options_and_blocks() {
        assert_eq!(bytes(&"foo"), [0x06, b'f', b'o', b'o']);
        assert_eq!(bytes(&None::<i64>), [0x00]);
        assert_eq!(bytes(&Some(1i64)), [0x02, 0x02]);
        assert_eq!(bytes(&vec![3i64, 27]), [0x04, 0x06, 0x36, 0x00]);
        assert_eq!(bytes(&Vec::<i64>::new()), [0x00]);
        let map: std::collections::BTreeMap<&str, i64> = [("a", 1)].into();
        assert_eq!(bytes(&map), [0x02, 0x02, b'a', 0x02, 0x00]);
        let big: std::collections::BTreeMap<String, i64> = (0..1030).map(|i| (format!("{i:04}"), 1)).collect();
        let encoded = bytes(&big);
        assert_eq!(&encoded[..2], [0x82, 0x10], "a first block of 1,025 items");
        assert_eq!(&encoded[encoded.len() - 7..], [0x08, b'1', b'0', b'2', b'9', 0x02, 0x00]);
        // Two block headers (1,025 then 5 items), 1,030 items of 6 bytes, the empty block.
        assert_eq!(encoded.len(), 2 + 1 + 1030 * 6 + 1);
        assert_eq!(encoded[2 + 1025 * 6], 0x0a, "a second block of 5 items");
        assert!(matches!(write(&(1, 2), &mut Vec::new()), Err(BinaryError::Unsupported(_))));
        assert!(matches!(write(&u64::MAX, &mut Vec::new()), Err(BinaryError::OutOfRange(_))));
    }
}
