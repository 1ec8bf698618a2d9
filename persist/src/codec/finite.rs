//! The refusal of floats JSON cannot hold. serde_json writes NaN and the infinities as `null`,
//! which the same field cannot read back: a save would replace a good file with one its own
//! program cannot load.
//!
//! The check costs nothing on the common path. A save serializes with [`NullWatch`], a
//! formatter that notes whether any `null` was written; a non-finite float can only have come
//! out as one of those. Only then does [`check_floats`] walk the value again with
//! [`FloatScan`], a serializer that writes nothing and looks at floats alone, before the file is
//! put in place. (A serializer wrapper that checks every float on the way was measured first:
//! it cost 8-14 % more instructions on every save, map-heavy values most, floats or not.)

use std::cell::Cell;
use std::fmt::Display;
use std::io;

use serde::ser::{
    self, Serialize, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant, Serializer,
};

/// serde_json's output, compact or indented (`L`: [`Compact`] or [`Indented`]), noting in
/// `wrote_null` whether it wrote a `null`.
pub(crate) struct NullWatch<'a, L> {
    pub(crate) wrote_null: &'a Cell<bool>,
    pub(crate) layout: L,
}

/// No whitespace at all: what serde_json writes by default.
pub(crate) struct Compact;

/// Two spaces per level, as serde_json's `PrettyFormatter`, but starting at any level (the data
/// of a checksummed envelope is written on its own, one level in).
pub(crate) struct Indented {
    level: usize,
    has_value: bool,
}

impl Indented {
    pub(crate) fn at(level: usize) -> Indented {
        Indented {
            level,
            has_value: false,
        }
    }

    fn indent<W: ?Sized + io::Write>(&self, writer: &mut W) -> io::Result<()> {
        for _ in 0..self.level {
            writer.write_all(b"  ")?;
        }
        Ok(())
    }

    /// `[` or `{`: one level in.
    fn open<W: ?Sized + io::Write>(&mut self, writer: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.level += 1;
        self.has_value = false;
        writer.write_all(bracket)
    }

    /// `]` or `}`, on a line of its own when the array or object had members.
    fn close<W: ?Sized + io::Write>(&mut self, writer: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.level -= 1;
        if self.has_value {
            writer.write_all(b"\n")?;
            self.indent(writer)?;
        }
        writer.write_all(bracket)
    }

    /// Before an element or a key: a new line, after a comma unless it is the first.
    fn member<W: ?Sized + io::Write>(&self, writer: &mut W, first: bool) -> io::Result<()> {
        writer.write_all(if first { b"\n" } else { b",\n" })?;
        self.indent(writer)
    }
}

impl serde_json::ser::Formatter for NullWatch<'_, Compact> {
    #[inline]
    fn write_null<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.wrote_null.set(true);
        writer.write_all(b"null")
    }
}

impl serde_json::ser::Formatter for NullWatch<'_, Indented> {
    #[inline]
    fn write_null<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.wrote_null.set(true);
        writer.write_all(b"null")
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.layout.open(writer, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.layout.close(writer, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.layout.member(writer, first)
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.layout.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.layout.open(writer, b"{")
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        self.layout.close(writer, b"}")
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.layout.member(writer, first)
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _writer: &mut W) -> io::Result<()> {
        self.layout.has_value = true;
        Ok(())
    }
}

/// Walks `value` and fails at its first NaN or infinite `f32`/`f64`.
pub(crate) fn check_floats<T: Serialize + ?Sized>(value: &T) -> Result<(), serde_json::Error> {
    value.serialize(FloatScan)
}

fn non_finite<E: ser::Error>(value: f64, ty: &str) -> E {
    let shown = if value.is_nan() {
        "NaN"
    } else if value > 0.0 {
        "infinity"
    } else {
        "-infinity"
    };
    E::custom(format_args!(
        "{ty} {shown} cannot be stored: JSON has no such number, and serde_json would write null, \
         which does not load back; store non-finite values with \
         `#[serde(with = \"persist::non_finite\")]`"
    ))
}

/// A serializer that writes nothing and refuses non-finite floats.
#[derive(Clone, Copy)]
pub(crate) struct FloatScan;

type Scanned = Result<(), serde_json::Error>;

macro_rules! ignore {
    ($($method:ident($($ty:ty),*)),* $(,)?) => {
        $(#[inline]
        fn $method(self, $(_: $ty),*) -> Scanned {
            Ok(())
        })*
    };
}

impl Serializer for FloatScan {
    type Ok = ();
    type Error = serde_json::Error;
    type SerializeSeq = FloatScan;
    type SerializeTuple = FloatScan;
    type SerializeTupleStruct = FloatScan;
    type SerializeTupleVariant = FloatScan;
    type SerializeMap = FloatScan;
    type SerializeStruct = FloatScan;
    type SerializeStructVariant = FloatScan;

    ignore!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    #[inline]
    fn serialize_f32(self, v: f32) -> Scanned {
        if v.is_finite() {
            Ok(())
        } else {
            Err(non_finite(f64::from(v), "f32"))
        }
    }

    #[inline]
    fn serialize_f64(self, v: f64) -> Scanned {
        if v.is_finite() {
            Ok(())
        } else {
            Err(non_finite(v, "f64"))
        }
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Scanned {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Scanned {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Scanned {
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, _: Option<usize>) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple(self, _: usize) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn serialize_map(self, _: Option<usize>) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<FloatScan, serde_json::Error> {
        Ok(self)
    }

    #[inline]
    fn collect_str<T: Display + ?Sized>(self, _: &T) -> Scanned {
        Ok(())
    }

    fn is_human_readable(&self) -> bool {
        true
    }
}

macro_rules! elements {
    ($($trait:ident :: $method:ident),* $(,)?) => {
        $(impl $trait for FloatScan {
            type Ok = ();
            type Error = serde_json::Error;

            #[inline]
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Scanned {
                value.serialize(FloatScan)
            }

            #[inline]
            fn end(self) -> Scanned {
                Ok(())
            }
        })*
    };
}

elements!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field,
);

impl SerializeMap for FloatScan {
    type Ok = ();
    type Error = serde_json::Error;

    // Walked although serde_json refuses non-finite float keys itself: serde_path_to_error
    // learns the key's name from this walk when it names the field of a refused value.
    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Scanned {
        key.serialize(FloatScan)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Scanned {
        value.serialize(FloatScan)
    }

    #[inline]
    fn end(self) -> Scanned {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),*) => {
        $(impl $trait for FloatScan {
            type Ok = ();
            type Error = serde_json::Error;

            #[inline]
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                _: &'static str,
                value: &T,
            ) -> Scanned {
                value.serialize(FloatScan)
            }

            #[inline]
            fn end(self) -> Scanned {
                Ok(())
            }
        })*
    };
}

fields!(SerializeStruct, SerializeStructVariant);
