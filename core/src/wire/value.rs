//! Column types and values in the binary protocol (prepared-statement parameters, binary result
//! rows, query attributes).
//!
//! Follows "Binary Protocol Value" (`dev.mysql.com/doc/dev/mysql-server/latest/
//! page_protocol_binary_resultset.html`) and `enum_field_types` (`field_types.h`). A value's
//! encoding is chosen by its column type and, for integers, the UNSIGNED flag; the type travels
//! beside the value (in column definitions or parameter type lists), never inside it.

use bytes::BufMut;

use crate::wire::{put_lenenc_bytes, ParseBuf};
use crate::DecodeError;

/// A MySQL column type code (`enum_field_types`), as sent in column definitions and parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)] // each variant is the `MYSQL_TYPE_*` of the same name
pub enum ColumnType {
    Decimal,
    Tiny,
    Short,
    Long,
    Float,
    Double,
    Null,
    Timestamp,
    LongLong,
    Int24,
    Date,
    Time,
    DateTime,
    Year,
    NewDate,
    VarChar,
    Bit,
    Timestamp2,
    DateTime2,
    Time2,
    TypedArray,
    Vector,
    Invalid,
    Bool,
    Json,
    NewDecimal,
    Enum,
    Set,
    TinyBlob,
    MediumBlob,
    LongBlob,
    Blob,
    VarString,
    String,
    Geometry,
    /// A code this crate does not know. Never holds a known code: build values with
    /// [`ColumnType::from_u8`].
    Unknown(u8),
}

/// Every known type with its code, the single table both conversions read.
const TYPE_CODES: [(ColumnType, u8); 35] = [
    (ColumnType::Decimal, 0x00),
    (ColumnType::Tiny, 0x01),
    (ColumnType::Short, 0x02),
    (ColumnType::Long, 0x03),
    (ColumnType::Float, 0x04),
    (ColumnType::Double, 0x05),
    (ColumnType::Null, 0x06),
    (ColumnType::Timestamp, 0x07),
    (ColumnType::LongLong, 0x08),
    (ColumnType::Int24, 0x09),
    (ColumnType::Date, 0x0A),
    (ColumnType::Time, 0x0B),
    (ColumnType::DateTime, 0x0C),
    (ColumnType::Year, 0x0D),
    (ColumnType::NewDate, 0x0E),
    (ColumnType::VarChar, 0x0F),
    (ColumnType::Bit, 0x10),
    (ColumnType::Timestamp2, 0x11),
    (ColumnType::DateTime2, 0x12),
    (ColumnType::Time2, 0x13),
    (ColumnType::TypedArray, 0x14),
    (ColumnType::Vector, 0xF2),
    (ColumnType::Invalid, 0xF3),
    (ColumnType::Bool, 0xF4),
    (ColumnType::Json, 0xF5),
    (ColumnType::NewDecimal, 0xF6),
    (ColumnType::Enum, 0xF7),
    (ColumnType::Set, 0xF8),
    (ColumnType::TinyBlob, 0xF9),
    (ColumnType::MediumBlob, 0xFA),
    (ColumnType::LongBlob, 0xFB),
    (ColumnType::Blob, 0xFC),
    (ColumnType::VarString, 0xFD),
    (ColumnType::String, 0xFE),
    (ColumnType::Geometry, 0xFF),
];

impl ColumnType {
    /// The type for a wire code; unknown codes become [`ColumnType::Unknown`].
    pub fn from_u8(code: u8) -> Self {
        TYPE_CODES
            .iter()
            .find(|(_, c)| *c == code)
            .map_or(ColumnType::Unknown(code), |(t, _)| *t)
    }

    /// The wire code.
    pub fn to_u8(self) -> u8 {
        if let ColumnType::Unknown(code) = self {
            return code;
        }
        TYPE_CODES
            .iter()
            .find(|(t, _)| *t == self)
            .map_or(0, |(_, c)| *c) // every known variant is in the table
    }
}

/// How a binary value is encoded: its column type and, for integers, the UNSIGNED flag.
///
/// As a parameter type it is two bytes on the wire: the type code, then `0x80` when unsigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ValueType {
    /// The column type.
    pub column_type: ColumnType,
    /// Whether integers of this type are unsigned.
    pub unsigned: bool,
}

impl ValueType {
    /// The parameter-type flag byte bit for UNSIGNED.
    pub const UNSIGNED_FLAG: u8 = 0x80;

    /// A value type.
    pub fn new(column_type: ColumnType, unsigned: bool) -> Self {
        Self {
            column_type,
            unsigned,
        }
    }

    /// Reads a two-byte parameter type (type code, flags).
    pub fn parse_param(buf: &mut ParseBuf<'_>) -> Result<Self, DecodeError> {
        let [code, flags] = buf.array::<2>("parameter type")?;
        Ok(Self::new(
            ColumnType::from_u8(code),
            flags & Self::UNSIGNED_FLAG != 0,
        ))
    }

    /// Writes the two-byte parameter type.
    pub fn encode_param(self, out: &mut impl BufMut) {
        out.put_u8(self.column_type.to_u8());
        out.put_u8(if self.unsigned {
            Self::UNSIGNED_FLAG
        } else {
            0
        });
    }
}

/// A DATE, DATETIME or TIMESTAMP value. Not validated: MySQL allows zero dates and parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DateTime {
    /// Year.
    pub year: u16,
    /// Month, 1..=12 (0 in zero dates).
    pub month: u8,
    /// Day, 1..=31 (0 in zero dates).
    pub day: u8,
    /// Hour.
    pub hour: u8,
    /// Minute.
    pub minute: u8,
    /// Second.
    pub second: u8,
    /// Microseconds.
    pub micros: u32,
}

/// A TIME value: a signed duration of days, hours, minutes, seconds, microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Time {
    /// True for a negative duration.
    pub negative: bool,
    /// Days.
    pub days: u32,
    /// Hours, 0..=23.
    pub hours: u8,
    /// Minutes.
    pub minutes: u8,
    /// Seconds.
    pub seconds: u8,
    /// Microseconds.
    pub micros: u32,
}

/// One value in the binary protocol, borrowing string-ish bytes from the payload.
///
/// Integers keep their wire width so that encoding needs no type; INT24 arrives as 4 bytes and
/// YEAR as 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// NULL (in rows and parameters it is a bit in the null bitmap and has no bytes).
    Null,
    /// TINYINT.
    I8(i8),
    /// TINYINT UNSIGNED.
    U8(u8),
    /// SMALLINT, YEAR.
    I16(i16),
    /// SMALLINT UNSIGNED, YEAR.
    U16(u16),
    /// INT, MEDIUMINT.
    I32(i32),
    /// INT UNSIGNED, MEDIUMINT UNSIGNED.
    U32(u32),
    /// BIGINT.
    I64(i64),
    /// BIGINT UNSIGNED.
    U64(u64),
    /// FLOAT.
    Float(f32),
    /// DOUBLE.
    Double(f64),
    /// DATE, DATETIME, TIMESTAMP.
    DateTime(DateTime),
    /// TIME.
    Time(Time),
    /// Every length-encoded type: strings, blobs, DECIMAL text, JSON, BIT, ENUM, SET, GEOMETRY...
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    /// Reads one value of type `ty`. `Null`-typed values have no bytes and read as [`Value::Null`].
    pub fn parse(buf: &mut ParseBuf<'a>, ty: ValueType) -> Result<Self, DecodeError> {
        use ColumnType as T;
        let u = ty.unsigned;
        Ok(match ty.column_type {
            T::Null => Value::Null,
            T::Tiny if u => Value::U8(buf.u8("TINYINT value")?),
            T::Tiny => Value::I8(i8::from_le_bytes(buf.array("TINYINT value")?)),
            T::Short | T::Year if u => Value::U16(buf.u16("SMALLINT value")?),
            T::Short | T::Year => Value::I16(i16::from_le_bytes(buf.array("SMALLINT value")?)),
            T::Long | T::Int24 if u => Value::U32(buf.u32("INT value")?),
            T::Long | T::Int24 => Value::I32(i32::from_le_bytes(buf.array("INT value")?)),
            T::LongLong if u => Value::U64(buf.u64("BIGINT value")?),
            T::LongLong => Value::I64(i64::from_le_bytes(buf.array("BIGINT value")?)),
            T::Float => Value::Float(f32::from_le_bytes(buf.array("FLOAT value")?)),
            T::Double => Value::Double(f64::from_le_bytes(buf.array("DOUBLE value")?)),
            T::Date | T::NewDate | T::DateTime | T::Timestamp | T::DateTime2 | T::Timestamp2 => {
                Value::DateTime(parse_datetime(buf)?)
            }
            T::Time | T::Time2 => Value::Time(parse_time(buf)?),
            T::Decimal
            | T::NewDecimal
            | T::VarChar
            | T::Bit
            | T::Vector
            | T::Json
            | T::Enum
            | T::Set
            | T::TinyBlob
            | T::MediumBlob
            | T::LongBlob
            | T::Blob
            | T::VarString
            | T::String
            | T::Geometry => Value::Bytes(buf.lenenc_bytes("string value")?),
            // No documented wire form: we cannot know where the value ends.
            T::TypedArray | T::Invalid | T::Bool | T::Unknown(_) => {
                return Err(DecodeError::Malformed {
                    what: "value of a type with no binary encoding",
                })
            }
        })
    }

    /// Writes the value's bytes (nothing for `Null`). Temporal values take their shortest form.
    pub fn encode(&self, out: &mut impl BufMut) {
        match *self {
            Value::Null => {}
            Value::I8(v) => out.put_i8(v),
            Value::U8(v) => out.put_u8(v),
            Value::I16(v) => out.put_i16_le(v),
            Value::U16(v) => out.put_u16_le(v),
            Value::I32(v) => out.put_i32_le(v),
            Value::U32(v) => out.put_u32_le(v),
            Value::I64(v) => out.put_i64_le(v),
            Value::U64(v) => out.put_u64_le(v),
            Value::Float(v) => out.put_f32_le(v),
            Value::Double(v) => out.put_f64_le(v),
            Value::DateTime(d) => encode_datetime(&d, out),
            Value::Time(t) => encode_time(&t, out),
            Value::Bytes(b) => put_lenenc_bytes(out, b),
        }
    }

    /// The type under which this value encodes as it is, for binding parameters: integers by
    /// width and sign, temporal values as DATETIME/TIME, bytes as VAR_STRING.
    pub fn natural_type(&self) -> ValueType {
        use ColumnType as T;
        let (t, u) = match self {
            Value::Null => (T::Null, false),
            Value::I8(_) => (T::Tiny, false),
            Value::U8(_) => (T::Tiny, true),
            Value::I16(_) => (T::Short, false),
            Value::U16(_) => (T::Short, true),
            Value::I32(_) => (T::Long, false),
            Value::U32(_) => (T::Long, true),
            Value::I64(_) => (T::LongLong, false),
            Value::U64(_) => (T::LongLong, true),
            Value::Float(_) => (T::Float, false),
            Value::Double(_) => (T::Double, false),
            Value::DateTime(_) => (T::DateTime, false),
            Value::Time(_) => (T::Time, false),
            Value::Bytes(_) => (T::VarString, false),
        };
        ValueType::new(t, u)
    }

    /// True for [`Value::Null`].
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

fn parse_datetime(buf: &mut ParseBuf<'_>) -> Result<DateTime, DecodeError> {
    const WHAT: &str = "DATETIME value";
    let len = buf.u8(WHAT)?;
    let mut d = DateTime::default();
    if !matches!(len, 0 | 4 | 7 | 11) {
        return Err(DecodeError::Malformed { what: WHAT });
    }
    if len >= 4 {
        d.year = buf.u16(WHAT)?;
        d.month = buf.u8(WHAT)?;
        d.day = buf.u8(WHAT)?;
    }
    if len >= 7 {
        d.hour = buf.u8(WHAT)?;
        d.minute = buf.u8(WHAT)?;
        d.second = buf.u8(WHAT)?;
    }
    if len == 11 {
        d.micros = buf.u32(WHAT)?;
    }
    Ok(d)
}

fn encode_datetime(d: &DateTime, out: &mut impl BufMut) {
    let len = if d.micros != 0 {
        11
    } else if d.hour != 0 || d.minute != 0 || d.second != 0 {
        7
    } else if d.year != 0 || d.month != 0 || d.day != 0 {
        4
    } else {
        0
    };
    out.put_u8(len);
    if len >= 4 {
        out.put_u16_le(d.year);
        out.put_u8(d.month);
        out.put_u8(d.day);
    }
    if len >= 7 {
        out.put_u8(d.hour);
        out.put_u8(d.minute);
        out.put_u8(d.second);
    }
    if len == 11 {
        out.put_u32_le(d.micros);
    }
}

fn parse_time(buf: &mut ParseBuf<'_>) -> Result<Time, DecodeError> {
    const WHAT: &str = "TIME value";
    let len = buf.u8(WHAT)?;
    let mut t = Time::default();
    if !matches!(len, 0 | 8 | 12) {
        return Err(DecodeError::Malformed { what: WHAT });
    }
    if len >= 8 {
        t.negative = match buf.u8(WHAT)? {
            0 => false,
            1 => true,
            _ => return Err(DecodeError::Malformed { what: WHAT }),
        };
        t.days = buf.u32(WHAT)?;
        t.hours = buf.u8(WHAT)?;
        t.minutes = buf.u8(WHAT)?;
        t.seconds = buf.u8(WHAT)?;
    }
    if len == 12 {
        t.micros = buf.u32(WHAT)?;
    }
    Ok(t)
}

fn encode_time(t: &Time, out: &mut impl BufMut) {
    let len = if t.micros != 0 {
        12
    } else if t.negative || t.days != 0 || t.hours != 0 || t.minutes != 0 || t.seconds != 0 {
        8
    } else {
        0
    };
    out.put_u8(len);
    if len >= 8 {
        out.put_u8(u8::from(t.negative));
        out.put_u32_le(t.days);
        out.put_u8(t.hours);
        out.put_u8(t.minutes);
        out.put_u8(t.seconds);
    }
    if len == 12 {
        out.put_u32_le(t.micros);
    }
}

/// Reads a null bitmap for `count` items whose first item sits at bit `offset` (0 for parameters,
/// 2 for binary rows), returning the bitmap bytes.
pub(crate) fn take_null_bitmap<'a>(
    buf: &mut ParseBuf<'a>,
    count: usize,
    offset: usize,
) -> Result<&'a [u8], DecodeError> {
    const WHAT: &str = "null bitmap";
    let bits = count
        .checked_add(offset + 7)
        .ok_or(DecodeError::UnexpectedEnd { what: WHAT })?;
    buf.take(bits / 8, WHAT)
}

/// Whether item `i` is NULL in a bitmap read by [`take_null_bitmap`] with the same offset.
pub(crate) fn bitmap_is_null(bitmap: &[u8], i: usize, offset: usize) -> bool {
    let bit = i + offset;
    bitmap
        .get(bit / 8)
        .is_some_and(|byte| byte & (1 << (bit % 8)) != 0)
}

/// Writes the null bitmap of `values` with the first at bit `offset`.
pub(crate) fn put_null_bitmap(out: &mut impl BufMut, values: &[Value<'_>], offset: usize) {
    let mut bitmap = vec![0u8; (values.len() + offset).div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if v.is_null() {
            let bit = i + offset;
            bitmap[bit / 8] |= 1 << (bit % 8);
        }
    }
    out.put_slice(&bitmap);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(v: Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        let mut p = ParseBuf::new(&out);
        let back = Value::parse(&mut p, v.natural_type()).unwrap();
        assert!(p.is_empty());
        let mut again = Vec::new();
        back.encode(&mut again);
        assert_eq!(out, again);
        if !matches!(v, Value::Float(f) if f.is_nan())
            && !matches!(v, Value::Double(f) if f.is_nan())
        {
            assert_eq!(back, v);
        }
        out
    }

    #[test]
    fn every_type_code_round_trips() {
        for code in 0..=255u8 {
            assert_eq!(ColumnType::from_u8(code).to_u8(), code);
        }
        assert_eq!(ColumnType::from_u8(0xF6), ColumnType::NewDecimal);
        assert_eq!(ColumnType::from_u8(0xF5), ColumnType::Json);
        assert_eq!(ColumnType::from_u8(0x0F), ColumnType::VarChar);
        assert_eq!(ColumnType::from_u8(0x20), ColumnType::Unknown(0x20));
    }

    #[test]
    fn datetime_forms_from_the_docs() {
        // 2010-10-17 19:27:30.000001 (docs example, 11-byte form)
        let d = DateTime {
            year: 2010,
            month: 10,
            day: 17,
            hour: 19,
            minute: 27,
            second: 30,
            micros: 1,
        };
        assert_eq!(
            roundtrip(Value::DateTime(d)),
            [0x0b, 0xda, 0x07, 0x0a, 0x11, 0x13, 0x1b, 0x1e, 0x01, 0x00, 0x00, 0x00]
        );
        let date = DateTime {
            year: 2010,
            month: 10,
            day: 17,
            ..DateTime::default()
        };
        assert_eq!(
            roundtrip(Value::DateTime(date)),
            [0x04, 0xda, 0x07, 0x0a, 0x11]
        );
        assert_eq!(roundtrip(Value::DateTime(DateTime::default())), [0x00]);
        let dt = DateTime { micros: 0, ..d };
        assert_eq!(roundtrip(Value::DateTime(dt)).len(), 8);
    }

    #[test]
    fn time_forms_from_the_docs() {
        // -120d 19:27:30.000001
        let t = Time {
            negative: true,
            days: 120,
            hours: 19,
            minutes: 27,
            seconds: 30,
            micros: 1,
        };
        assert_eq!(
            roundtrip(Value::Time(t)),
            [0x0c, 0x01, 0x78, 0x00, 0x00, 0x00, 0x13, 0x1b, 0x1e, 0x01, 0x00, 0x00, 0x00]
        );
        let t8 = Time { micros: 0, ..t };
        assert_eq!(
            roundtrip(Value::Time(t8)),
            [0x08, 0x01, 0x78, 0x00, 0x00, 0x00, 0x13, 0x1b, 0x1e]
        );
        assert_eq!(roundtrip(Value::Time(Time::default())), [0x00]);
        // Negative zero keeps its sign, so it cannot take the empty form.
        let neg_zero = Time {
            negative: true,
            ..Time::default()
        };
        assert_eq!(roundtrip(Value::Time(neg_zero))[0], 8);
    }

    #[test]
    fn integers_follow_type_and_unsigned_flag() {
        let mut p = ParseBuf::new(&[0xFF]);
        let tiny_u = ValueType::new(ColumnType::Tiny, true);
        assert_eq!(Value::parse(&mut p, tiny_u).unwrap(), Value::U8(255));
        let mut p = ParseBuf::new(&[0xFF]);
        let tiny = ValueType::new(ColumnType::Tiny, false);
        assert_eq!(Value::parse(&mut p, tiny).unwrap(), Value::I8(-1));
        // INT24 is sent in four bytes.
        let mut p = ParseBuf::new(&[1, 0, 0, 0]);
        let int24 = ValueType::new(ColumnType::Int24, false);
        assert_eq!(Value::parse(&mut p, int24).unwrap(), Value::I32(1));
        let mut p = ParseBuf::new(&[0xDA, 0x07]);
        let year = ValueType::new(ColumnType::Year, true);
        assert_eq!(Value::parse(&mut p, year).unwrap(), Value::U16(2010));
        let mut p = ParseBuf::new(&[3, b'1', b'.', b'5']);
        let dec = ValueType::new(ColumnType::NewDecimal, false);
        assert_eq!(Value::parse(&mut p, dec).unwrap(), Value::Bytes(b"1.5"));
    }

    #[test]
    fn malformed_values_are_errors() {
        let dt = ValueType::new(ColumnType::DateTime, false);
        let time = ValueType::new(ColumnType::Time, false);
        for (bytes, ty) in [
            (&[5u8, 0, 0, 0, 0, 0][..], dt),          // length 5 is no form
            (&[7, 0xda, 0x07][..], dt),               // truncated
            (&[8, 2, 0, 0, 0, 0, 0, 0, 0][..], time), // sign byte 2
            (&[12, 0][..], time),                     // truncated
            (&[1, 2, 3][..], ValueType::new(ColumnType::LongLong, false)),
            (&[5, b'a'][..], ValueType::new(ColumnType::Blob, false)),
            (&[0][..], ValueType::new(ColumnType::Unknown(0x42), false)),
        ] {
            assert!(
                Value::parse(&mut ParseBuf::new(bytes), ty).is_err(),
                "{bytes:?}"
            );
        }
    }

    #[test]
    fn null_bitmap_with_offset() {
        let values = [Value::Null, Value::I8(1), Value::Null];
        let mut out = Vec::new();
        put_null_bitmap(&mut out, &values, 2);
        assert_eq!(out, [0b0001_0100]);
        let mut p = ParseBuf::new(&out);
        let bm = take_null_bitmap(&mut p, 3, 2).unwrap();
        assert!(bitmap_is_null(bm, 0, 2) && !bitmap_is_null(bm, 1, 2) && bitmap_is_null(bm, 2, 2));
        assert!(take_null_bitmap(&mut ParseBuf::new(&[]), 7, 2).is_err());
        assert!(take_null_bitmap(&mut ParseBuf::new(&[]), usize::MAX, 2).is_err());
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value<'static>> {
        let bytes: &'static [&'static [u8]] = &[b"", b"abc", b"\xfb\x00", &[7u8; 300]];
        prop_oneof![
            Just(Value::Null),
            any::<i8>().prop_map(Value::I8),
            any::<u8>().prop_map(Value::U8),
            any::<i16>().prop_map(Value::I16),
            any::<u16>().prop_map(Value::U16),
            any::<i32>().prop_map(Value::I32),
            any::<u32>().prop_map(Value::U32),
            any::<i64>().prop_map(Value::I64),
            any::<u64>().prop_map(Value::U64),
            any::<f32>().prop_map(Value::Float),
            any::<f64>().prop_map(Value::Double),
            (
                any::<u16>(),
                any::<u8>(),
                any::<u8>(),
                prop_oneof![Just((0u8, 0u8, 0u8)), any::<(u8, u8, u8)>()],
                prop_oneof![Just(0u32), any::<u32>()]
            )
                .prop_map(|(year, month, day, (hour, minute, second), micros)| {
                    Value::DateTime(DateTime {
                        year,
                        month,
                        day,
                        hour,
                        minute,
                        second,
                        micros,
                    })
                }),
            (
                any::<bool>(),
                prop_oneof![Just(0u32), any::<u32>()],
                any::<(u8, u8, u8)>(),
                prop_oneof![Just(0u32), any::<u32>()]
            )
                .prop_map(|(negative, days, (hours, minutes, seconds), micros)| {
                    Value::Time(Time {
                        negative,
                        days,
                        hours,
                        minutes,
                        seconds,
                        micros,
                    })
                }),
            prop::sample::select(bytes).prop_map(Value::Bytes),
        ]
    }

    proptest! {
        #[test]
        fn value_round_trips(v in arb_value()) {
            roundtrip(v);
        }

        #[test]
        fn parse_never_panics(code in any::<u8>(), unsigned in any::<bool>(),
                              bytes in prop::collection::vec(any::<u8>(), 0..16)) {
            let ty = ValueType::new(ColumnType::from_u8(code), unsigned);
            let _ = Value::parse(&mut ParseBuf::new(&bytes), ty);
        }
    }
}
