//! Avro binary encoding straight from serde, without walking the schema: for types whose serde
//! shape mirrors their schema, as the event record's does (build.rs generates the payload types
//! from `schemas-avro/`, in the schema's field, symbol and branch order).
//!
//! The mapping, positional like Avro binary itself: a struct is its fields in order; `Option` is a
//! `["null", T]` union (branch 0 or 1); a unit variant is an enum symbol by its index; a newtype
//! variant is a union branch by its index (the payload union); integers are zig-zag varints
//! (`int` and `long` alike), `f32`/`f64` little-endian, strings and bytes length-prefixed, and
//! sequences and maps one block followed by the empty block.
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

impl Writer<'_> {
    fn bytes(&mut self, bytes: &[u8]) {
        write_len(bytes.len(), self.out);
        self.out.extend_from_slice(bytes);
    }

    /// One block of `len` items (none when empty); the items follow, then the empty block.
    fn block(&mut self, len: Option<usize>) -> Result<(), BinaryError> {
        match len.ok_or(BinaryError::UnknownLength)? {
            0 => Ok(()),
            len => {
                write_len(len, self.out);
                Ok(())
            }
        }
    }
}

impl ser::Serializer for &mut Writer<'_> {
    type Ok = ();
    type Error = BinaryError;
    type SerializeSeq = Self;
    type SerializeTuple = ser::Impossible<(), BinaryError>;
    type SerializeTupleStruct = ser::Impossible<(), BinaryError>;
    type SerializeTupleVariant = ser::Impossible<(), BinaryError>;
    type SerializeMap = Self;
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

    fn serialize_seq(self, len: Option<usize>) -> Result<Self, BinaryError> {
        self.block(len)?;
        Ok(self)
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

    fn serialize_map(self, len: Option<usize>) -> Result<Self, BinaryError> {
        self.block(len)?;
        Ok(self)
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

impl ser::SerializeSeq for &mut Writer<'_> {
    type Ok = ();
    type Error = BinaryError;

    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), BinaryError> {
        self.out.push(0);
        Ok(())
    }
}

impl ser::SerializeMap for &mut Writer<'_> {
    type Ok = ();
    type Error = BinaryError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), BinaryError> {
        key.serialize(&mut **self)
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
    }

    fn end(self) -> Result<(), BinaryError> {
        self.out.push(0);
        Ok(())
    }
}

impl ser::SerializeStruct for &mut Writer<'_> {
    type Ok = ();
    type Error = BinaryError;

    fn serialize_field<T: Serialize + ?Sized>(&mut self, _key: &'static str, value: &T) -> Result<(), BinaryError> {
        value.serialize(&mut **self)
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
        assert!(matches!(write(&(1, 2), &mut Vec::new()), Err(BinaryError::Unsupported(_))));
        assert!(matches!(write(&u64::MAX, &mut Vec::new()), Err(BinaryError::OutOfRange(_))));
    }
}
