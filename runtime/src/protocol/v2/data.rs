//! A tensor's `data` array: decoded straight into the typed buffer of its datatype, and encoded
//! from one, without an intermediate `serde_json::Value` tree.
//!
//! Decoding is a [`DeserializeSeed`] that knows the datatype. It walks flat or nested arrays
//! depth-first, which is row-major order, so nested data flattens by simply appending; it checks on
//! the way that nested arrays are rectangular (the element count is checked against the shape by
//! the caller).

use std::fmt;

use ferroserve_formats::{DataType, TensorData};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};
use serde::ser::{Error as _, Serialize, SerializeSeq, Serializer};

/// Elements reserved up front from declared shapes when the body's size is not known. Bounded because
/// the shape is only the client's claim: memory grows with the data that actually arrives, never with a
/// shape of `[1e12]`.
pub(super) const MAX_PREALLOCATED: usize = 1 << 16;

/// Elements the rest of a request may still reserve up front from declared shapes. Decoding a body
/// of `n` JSON bytes starts with `n / 2 + 1` (a value takes at least one digit and a separator): an honest
/// shape is then reserved exactly (no growth by doubling, so decoding peaks at the data's own size),
/// while the shapes of a dishonest request together never reserve more than its data could hold.
///
/// It also bounds what the decoded values may take in all, [`DECODED_PER_JSON_BYTE`] × the JSON's size: numbers
/// never come near it (FP64 of one digit each take 4×), but a BYTES value takes 24 bytes beside its text, so
/// `["", "", …]` would otherwise decode to 8× its size.
#[derive(Debug)]
pub(super) struct Reservation {
    values: std::cell::Cell<usize>,
    bytes: std::cell::Cell<usize>,
    limit: usize,
}

/// The most a request's decoded values may take, per byte of its JSON (plus 64 KiB).
pub(super) const DECODED_PER_JSON_BYTE: usize = 4;

impl Reservation {
    /// A reservation for a JSON text of `json_len` bytes.
    pub(super) fn for_json(json_len: usize) -> Self {
        let limit = json_len.saturating_mul(DECODED_PER_JSON_BYTE).saturating_add(64 << 10);
        Reservation { values: std::cell::Cell::new(json_len / 2 + 1), bytes: std::cell::Cell::new(limit), limit }
    }

    /// A reservation for a request whose size is unknown.
    pub(super) fn unknown() -> Self {
        Reservation {
            values: std::cell::Cell::new(MAX_PREALLOCATED),
            bytes: std::cell::Cell::new(usize::MAX),
            limit: usize::MAX,
        }
    }

    /// Bytes the request's decoded values may still take.
    fn left(&self) -> usize {
        self.bytes.get()
    }

    /// Counts `bytes` of decoded values; `false` once the request's values take more than its limit.
    fn spend(&self, bytes: usize) -> bool {
        match self.bytes.get().checked_sub(bytes) {
            Some(left) => {
                self.bytes.set(left);
                true
            }
            None => false,
        }
    }

    /// How many elements to reserve for data of the declared `shape`, taken from what is left.
    pub(super) fn take(&self, shape: Option<&[i64]>) -> usize {
        let n = shape
            .and_then(|s| s.iter().try_fold(1usize, |acc, &d| usize::try_from(d).ok().and_then(|d| acc.checked_mul(d))))
            .map_or(0, |n| n.min(self.values.get()));
        self.values.set(self.values.get() - n);
        n
    }
}

/// Decodes the `data` of input `input` as `datatype`.
pub(super) struct DataSeed<'a> {
    /// What the request may still reserve and decode.
    pub reserve: &'a Reservation,
    /// The declared datatype.
    pub datatype: DataType,
    /// The input's name, for error messages.
    pub input: &'a str,
    /// Elements to reserve.
    pub capacity: usize,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = TensorData;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<TensorData, D::Error> {
        let DataSeed { reserve, datatype, input, capacity } = self;
        Ok(match datatype {
            DataType::Bool => TensorData::Bool(decode(d, reserve, input, capacity)?),
            DataType::Uint8 => TensorData::Uint8(decode(d, reserve, input, capacity)?),
            DataType::Uint16 => TensorData::Uint16(decode(d, reserve, input, capacity)?),
            DataType::Uint32 => TensorData::Uint32(decode(d, reserve, input, capacity)?),
            DataType::Uint64 => TensorData::Uint64(decode(d, reserve, input, capacity)?),
            DataType::Int8 => TensorData::Int8(decode(d, reserve, input, capacity)?),
            DataType::Int16 => TensorData::Int16(decode(d, reserve, input, capacity)?),
            DataType::Int32 => TensorData::Int32(decode(d, reserve, input, capacity)?),
            DataType::Int64 => TensorData::Int64(decode(d, reserve, input, capacity)?),
            DataType::Fp16 => TensorData::Fp16(decode(d, reserve, input, capacity)?),
            DataType::Fp32 => TensorData::Fp32(decode(d, reserve, input, capacity)?),
            DataType::Fp64 => TensorData::Fp64(decode(d, reserve, input, capacity)?),
            DataType::Bytes => TensorData::Bytes(decode(d, reserve, input, capacity)?),
        })
    }
}

fn decode<'de, T: Element, D: Deserializer<'de>>(
    d: D,
    reserve: &Reservation,
    input: &str,
    capacity: usize,
) -> Result<Vec<T>, D::Error> {
    // Buffers count at their capacity: what is allocated, not what is filled.
    let capacity = capacity.min(reserve.left() / std::mem::size_of::<T>().max(1));
    let _ = reserve.spend(capacity * std::mem::size_of::<T>());
    let mut out = Vec::with_capacity(capacity);
    let mut nesting = Nesting::default();
    d.deserialize_any(Node { out: &mut out, nesting: &mut nesting, depth: 0, input, reserve })?;
    Ok(out)
}

/// One JSON scalar, as the deserializer hands it over.
#[derive(Debug, Clone, Copy)]
enum Scalar<'a> {
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(&'a str),
}

impl fmt::Display for Scalar<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// Long strings are cut in messages: a message is read by a person.
        const SHOWN: usize = 40;
        match self {
            Scalar::Bool(v) => write!(f, "{v}"),
            Scalar::U64(v) => write!(f, "{v}"),
            Scalar::I64(v) => write!(f, "{v}"),
            // Debug prints 1e300 as `1e300`, Display as 301 digits.
            Scalar::F64(v) => write!(f, "{v:?}"),
            Scalar::Str(s) if s.chars().count() > SHOWN => {
                write!(f, "{:?}…", s.chars().take(SHOWN).collect::<String>())
            }
            Scalar::Str(s) => write!(f, "{s:?}"),
        }
    }
}

/// A tensor element type and the JSON values it accepts.
trait Element: Sized {
    const DATATYPE: DataType;

    /// Heap bytes one value holds beyond its own size (a BYTES value's text).
    fn heap_bytes(&self) -> usize {
        0
    }

    /// Converts one value, or says why it does not fit, as a phrase completing "`300` at data index 3 …".
    fn from_scalar(v: Scalar<'_>) -> Result<Self, String>;
}

fn wrong_kind(datatype: DataType, expected: &str) -> String {
    format!("is not a valid {datatype} value (expected {expected})")
}

macro_rules! integer_element {
    ($($t:ty => $dt:ident),* $(,)?) => {$(
        impl Element for $t {
            const DATATYPE: DataType = DataType::$dt;

            fn from_scalar(v: Scalar<'_>) -> Result<Self, String> {
                let out_of_range =
                    || format!("is out of range for {} ({}..={})", DataType::$dt, <$t>::MIN, <$t>::MAX);
                match v {
                    Scalar::U64(n) => <$t>::try_from(n).map_err(|_| out_of_range()),
                    Scalar::I64(n) => <$t>::try_from(n).map_err(|_| out_of_range()),
                    // `2.0` is accepted (pandas writes integer columns that way after a NaN ever touched
                    // them); a fraction is refused rather than silently truncated. Beyond ±2^127 the cast
                    // saturates and `try_from` refuses the result as out of range.
                    #[allow(clippy::cast_possible_truncation)]
                    Scalar::F64(f) if f.fract() == 0.0 => <$t>::try_from(f as i128).map_err(|_| out_of_range()),
                    Scalar::F64(_) => Err(format!("is not an integer, which {} requires", DataType::$dt)),
                    Scalar::Bool(_) | Scalar::Str(_) => Err(wrong_kind(DataType::$dt, "an integer")),
                }
            }
        }
    )*};
}

integer_element!(u8 => Uint8, u16 => Uint16, u32 => Uint32, u64 => Uint64, i8 => Int8, i16 => Int16, i32 => Int32, i64 => Int64);

/// Any JSON number as `f64`; integers round to nearest, as `numpy.float64(x)` does.
#[allow(clippy::cast_precision_loss)]
fn number(v: Scalar<'_>, datatype: DataType) -> Result<f64, String> {
    match v {
        Scalar::U64(n) => Ok(n as f64),
        Scalar::I64(n) => Ok(n as f64),
        Scalar::F64(f) => Ok(f),
        Scalar::Bool(_) | Scalar::Str(_) => Err(wrong_kind(datatype, "a number")),
    }
}

impl Element for f64 {
    const DATATYPE: DataType = DataType::Fp64;

    fn from_scalar(v: Scalar<'_>) -> Result<Self, String> {
        number(v, Self::DATATYPE)
    }
}

impl Element for f32 {
    const DATATYPE: DataType = DataType::Fp32;

    fn from_scalar(v: Scalar<'_>) -> Result<Self, String> {
        // Integers go straight to f32 so that they round once, as `numpy.float32(16777217)` does.
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        match v {
            Scalar::U64(n) => Ok(n as f32),
            Scalar::I64(n) => Ok(n as f32),
            other => number(other, Self::DATATYPE).map(|f| f as f32),
        }
    }
}

impl Element for half::f16 {
    const DATATYPE: DataType = DataType::Fp16;

    fn from_scalar(v: Scalar<'_>) -> Result<Self, String> {
        number(v, Self::DATATYPE).map(half::f16::from_f64)
    }
}

impl Element for bool {
    const DATATYPE: DataType = DataType::Bool;

    fn from_scalar(v: Scalar<'_>) -> Result<Self, String> {
        match v {
            Scalar::Bool(b) => Ok(b),
            _ => Err(wrong_kind(Self::DATATYPE, "true or false")),
        }
    }
}

impl Element for Vec<u8> {
    const DATATYPE: DataType = DataType::Bytes;

    fn from_scalar(v: Scalar<'_>) -> Result<Self, String> {
        match v {
            Scalar::Str(s) => Ok(s.as_bytes().to_vec()),
            _ => Err(wrong_kind(Self::DATATYPE, "a string")),
        }
    }

    fn heap_bytes(&self) -> usize {
        self.len()
    }
}

/// The shape of nested data seen so far: every array at one depth must have the same length, and
/// values must all sit at the same depth.
#[derive(Debug, Default)]
struct Nesting {
    lengths: Vec<Option<usize>>,
    leaf_depth: Option<usize>,
}

impl Nesting {
    fn array(&mut self, depth: usize, len: usize) -> Result<(), String> {
        if self.lengths.len() <= depth {
            self.lengths.resize(depth + 1, None);
        }
        match self.lengths.get_mut(depth) {
            Some(slot @ None) => {
                *slot = Some(len);
                Ok(())
            }
            Some(Some(seen)) if *seen != len => Err(format!(
                "nested data is ragged: arrays at nesting level {} hold {seen} and {len} elements",
                depth + 1
            )),
            _ => Ok(()),
        }
    }

    fn leaf(&mut self, depth: usize) -> Result<(), String> {
        match self.leaf_depth {
            None => {
                self.leaf_depth = Some(depth);
                Ok(())
            }
            Some(d) if d == depth => Ok(()),
            Some(_) => Err("nested data mixes values and arrays at the same level".to_owned()),
        }
    }
}

/// One node of the data: an array (depth-first) or a value appended to `out`.
struct Node<'a, T> {
    out: &'a mut Vec<T>,
    nesting: &'a mut Nesting,
    depth: usize,
    input: &'a str,
    reserve: &'a Reservation,
}

impl<T: Element> Node<'_, T> {
    fn push<E: de::Error>(self, v: Scalar<'_>) -> Result<(), E> {
        let input = self.input;
        if self.depth == 0 {
            return Err(E::custom(format!("input `{input}`: `data` must be an array, not {v}")));
        }
        self.nesting.leaf(self.depth).map_err(|reason| E::custom(format!("input `{input}`: {reason}")))?;
        let index = self.out.len();
        let value = T::from_scalar(v)
            .map_err(|reason| E::custom(format!("input `{input}`: {v} at data index {index} {reason}")))?;
        let size = std::mem::size_of::<T>().max(1);
        let mut fits = self.reserve.spend(value.heap_bytes());
        if fits && self.out.len() == self.out.capacity() {
            // Grow by doubling, as `Vec` would, but never past what the request may still take.
            let grow = self.out.capacity().max(16).min(self.reserve.left() / size);
            fits = grow > 0 && self.reserve.spend(grow * size);
            if fits {
                self.out.reserve_exact(grow);
            }
        }
        if !fits {
            return Err(E::custom(format!(
                "input `{input}`: the request's data decodes to more than {DECODED_PER_JSON_BYTE}× its JSON ({} bytes); \
                 BYTES values take 24 bytes each beside their text: send fewer values per request",
                self.reserve.limit
            )));
        }
        self.out.push(value);
        Ok(())
    }
}

impl<'de, T: Element> DeserializeSeed<'de> for Node<'_, T> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, T: Element> Visitor<'de> for Node<'_, T> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.depth == 0 {
            write!(f, "a flat or nested array of {} values for input `{}`", T::DATATYPE, self.input)
        } else {
            write!(f, "a {} value or a nested array for input `{}`", T::DATATYPE, self.input)
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.push(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.push(Scalar::I64(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.push(Scalar::U64(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.push(Scalar::F64(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.push(Scalar::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Node { out, nesting, depth, input, reserve } = self;
        let mut len = 0usize;
        while seq
            .next_element_seed(Node { out: &mut *out, nesting: &mut *nesting, depth: depth + 1, input, reserve })?
            .is_some()
        {
            len += 1;
        }
        if depth > 0 {
            nesting.array(depth, len).map_err(|reason| de::Error::custom(format!("input `{input}`: {reason}")))?;
        }
        Ok(())
    }
}

/// Encodes `data` as a flat JSON array; BYTES as strings, or as base64 strings when `base64`.
pub(super) struct WireData<'a> {
    /// The elements.
    pub data: &'a TensorData,
    /// Whether BYTES elements are written as base64.
    pub base64: bool,
}

impl Serialize for WireData<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.data {
            TensorData::Bool(v) => s.collect_seq(v),
            TensorData::Uint8(v) => s.collect_seq(v),
            TensorData::Uint16(v) => s.collect_seq(v),
            TensorData::Uint32(v) => s.collect_seq(v),
            TensorData::Uint64(v) => s.collect_seq(v),
            TensorData::Int8(v) => s.collect_seq(v),
            TensorData::Int16(v) => s.collect_seq(v),
            TensorData::Int32(v) => s.collect_seq(v),
            TensorData::Int64(v) => s.collect_seq(v),
            // Every f16 is exactly an f32, and f32's shortest form reads back to the same f16.
            TensorData::Fp16(v) => s.collect_seq(v.iter().map(|x| x.to_f32())),
            TensorData::Fp32(v) => s.collect_seq(v),
            TensorData::Fp64(v) => s.collect_seq(v),
            TensorData::Bytes(v) if self.base64 => s.collect_seq(v.iter().map(|b| base64_encode(b))),
            TensorData::Bytes(v) => {
                let mut seq = s.serialize_seq(Some(v.len()))?;
                for b in v {
                    let text = std::str::from_utf8(b)
                        .map_err(|_| S::Error::custom("a BYTES element is not UTF-8; encode it as base64"))?;
                    seq.serialize_element(text)?;
                }
                seq.end()
            }
        }
    }
}

/// Whether BYTES data holds an element that is not UTF-8, and so cannot be a JSON string as is.
pub(super) fn needs_base64(data: &TensorData) -> bool {
    matches!(data, TensorData::Bytes(v) if v.iter().any(|b| std::str::from_utf8(b).is_err()))
}

const BASE64_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding (RFC 4648 §4).
pub(super) fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let byte = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (byte(0) << 16) | (byte(1) << 8) | byte(2);
        for i in 0..4 {
            if i <= chunk.len() {
                let sextet = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(BASE64_ALPHABET[sextet as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64, padded or not; `None` when `text` is not base64.
pub(super) fn base64_decode(text: &[u8]) -> Option<Vec<u8>> {
    let body = text.strip_suffix(b"==").or_else(|| text.strip_suffix(b"=")).unwrap_or(text);
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &c in body {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            #[allow(clippy::cast_possible_truncation)]
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_every_length() {
        let data: Vec<u8> = (0..=255).collect();
        for n in 0..10 {
            let enc = base64_encode(&data[..n]);
            assert_eq!(base64_decode(enc.as_bytes()).as_deref(), Some(&data[..n]), "{enc}");
            assert_eq!(base64_decode(enc.trim_end_matches('=').as_bytes()).as_deref(), Some(&data[..n]));
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_encode(&[0xff, 0xfe]), "//4=");
        assert_eq!(base64_decode(b"Zm9v!"), None);
        assert_eq!(base64_decode(b"Z"), None);
    }

    #[test]
    fn capacity_follows_the_shape_within_a_bound() {
        let r = Reservation::unknown();
        assert_eq!(r.take(Some(&[2, 3])), 6);
        assert_eq!(r.take(Some(&[i64::MAX, i64::MAX])), 0);
        assert_eq!(r.take(Some(&[-1, 3])), 0);
        assert_eq!(r.take(None), 0);
        assert_eq!(r.take(Some(&[1_000_000_000, 1_000_000_000])), MAX_PREALLOCATED - 6);
        assert_eq!(r.take(Some(&[2])), 0, "used up");
        // A body of 1,001 bytes holds at most 501 values, whatever the shapes say, across all inputs.
        let r = Reservation::for_json(1001);
        assert_eq!(r.take(Some(&[100, 3])), 300);
        assert_eq!(r.take(Some(&[1_000_000])), 201);
        assert_eq!(r.take(Some(&[5])), 0);
    }

    #[test]
    fn scalars_display_briefly() {
        assert_eq!(Scalar::F64(1e300).to_string(), "1e300");
        assert_eq!(Scalar::F64(1.5).to_string(), "1.5");
        let long = "x".repeat(100);
        assert_eq!(Scalar::Str(&long).to_string().chars().count(), 43);
    }
}
