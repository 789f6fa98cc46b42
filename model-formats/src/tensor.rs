//! Typed tensors: what a model takes and returns, independent of any wire protocol.
//!
//! The runtime decodes KServe v2 JSON or binary tensors straight into [`TensorData`] (one typed,
//! contiguous buffer per tensor, row-major) and models read it without another copy where the types
//! already match.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{InputError, Result};

/// A tensor element type, named as in the KServe v2 protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
#[allow(missing_docs)]
pub enum DataType {
    Bool,
    Uint8,
    Uint16,
    Uint32,
    Uint64,
    Int8,
    Int16,
    Int32,
    Int64,
    Fp16,
    Fp32,
    Fp64,
    Bytes,
}

impl DataType {
    /// Every datatype, in the order of the v2 specification's table.
    pub const ALL: [DataType; 13] = [
        DataType::Bool,
        DataType::Uint8,
        DataType::Uint16,
        DataType::Uint32,
        DataType::Uint64,
        DataType::Int8,
        DataType::Int16,
        DataType::Int32,
        DataType::Int64,
        DataType::Fp16,
        DataType::Fp32,
        DataType::Fp64,
        DataType::Bytes,
    ];

    /// The protocol's name of the type (`"FP32"`).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::Uint8 => "UINT8",
            DataType::Uint16 => "UINT16",
            DataType::Uint32 => "UINT32",
            DataType::Uint64 => "UINT64",
            DataType::Int8 => "INT8",
            DataType::Int16 => "INT16",
            DataType::Int32 => "INT32",
            DataType::Int64 => "INT64",
            DataType::Fp16 => "FP16",
            DataType::Fp32 => "FP32",
            DataType::Fp64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol name (`"FP32"`); `None` for an unknown name.
    pub fn parse(name: &str) -> Option<DataType> {
        DataType::ALL.into_iter().find(|d| d.as_str() == name)
    }

    /// Bytes per element in the binary tensor encoding; `None` for `BYTES` (length-prefixed).
    pub fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::Uint8 | DataType::Int8 => Some(1),
            DataType::Uint16 | DataType::Int16 | DataType::Fp16 => Some(2),
            DataType::Uint32 | DataType::Int32 | DataType::Fp32 => Some(4),
            DataType::Uint64 | DataType::Int64 | DataType::Fp64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// Whether the type holds numbers (every type but `BYTES`; `BOOL` counts as 0/1).
    pub fn is_numeric(self) -> bool {
        self != DataType::Bytes
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The elements of a tensor, flat and row-major, in the tensor's own type.
///
/// FP16 is kept as [`half::f16`] so that it round-trips bit for bit.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum TensorData {
    Bool(Vec<bool>),
    Uint8(Vec<u8>),
    Uint16(Vec<u16>),
    Uint32(Vec<u32>),
    Uint64(Vec<u64>),
    Int8(Vec<i8>),
    Int16(Vec<i16>),
    Int32(Vec<i32>),
    Int64(Vec<i64>),
    Fp16(Vec<half::f16>),
    Fp32(Vec<f32>),
    Fp64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the vector inside any numeric variant, binding it to `$v`; `$bytes` for BYTES.
macro_rules! numeric_dispatch {
    ($data:expr, $v:ident => $body:expr, $bytes:ident => $bytes_body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::Uint8($v) => $body,
            TensorData::Uint16($v) => $body,
            TensorData::Uint32($v) => $body,
            TensorData::Uint64($v) => $body,
            TensorData::Int8($v) => $body,
            TensorData::Int16($v) => $body,
            TensorData::Int32($v) => $body,
            TensorData::Int64($v) => $body,
            TensorData::Fp16($v) => $body,
            TensorData::Fp32($v) => $body,
            TensorData::Fp64($v) => $body,
            TensorData::Bytes($bytes) => $bytes_body,
        }
    };
}

/// A numeric element that converts to `f32` and `f64` the way numpy's `astype` does (round to nearest).
pub trait Element: Copy {
    /// `numpy.float32(x)`.
    fn to_f32(self) -> f32;
    /// `numpy.float64(x)`.
    fn to_f64(self) -> f64;
}

macro_rules! impl_element {
    ($($t:ty),*) => {$(
        impl Element for $t {
            #[inline]
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f32(self) -> f32 { self as f32 }
            #[inline]
            #[allow(clippy::cast_lossless, clippy::cast_precision_loss)]
            fn to_f64(self) -> f64 { self as f64 }
        }
    )*};
}
impl_element!(u8, u16, u32, u64, i8, i16, i32, i64, f32, f64);

impl Element for bool {
    #[inline]
    fn to_f32(self) -> f32 {
        f32::from(u8::from(self))
    }
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
}

impl Element for half::f16 {
    #[inline]
    fn to_f32(self) -> f32 {
        half::f16::to_f32(self)
    }
    #[inline]
    fn to_f64(self) -> f64 {
        half::f16::to_f64(self)
    }
}

impl TensorData {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::Uint8(_) => DataType::Uint8,
            TensorData::Uint16(_) => DataType::Uint16,
            TensorData::Uint32(_) => DataType::Uint32,
            TensorData::Uint64(_) => DataType::Uint64,
            TensorData::Int8(_) => DataType::Int8,
            TensorData::Int16(_) => DataType::Int16,
            TensorData::Int32(_) => DataType::Int32,
            TensorData::Int64(_) => DataType::Int64,
            TensorData::Fp16(_) => DataType::Fp16,
            TensorData::Fp32(_) => DataType::Fp32,
            TensorData::Fp64(_) => DataType::Fp64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        numeric_dispatch!(self, v => v.len(), b => b.len())
    }

    /// Whether the tensor has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the elements converted to `f32` (numpy `astype(float32)` semantics) to `out`;
    /// `None` for BYTES.
    pub fn extend_f32(&self, out: &mut Vec<f32>) -> Option<()> {
        numeric_dispatch!(self, v => { out.extend(v.iter().map(|x| x.to_f32())); Some(()) }, _b => None)
    }

    /// Appends the elements converted to `f64` to `out`; `None` for BYTES.
    pub fn extend_f64(&self, out: &mut Vec<f64>) -> Option<()> {
        numeric_dispatch!(self, v => { out.extend(v.iter().map(|x| x.to_f64())); Some(()) }, _b => None)
    }

    /// Elements `start..end`, in the same type; `None` when the range is out of bounds.
    pub fn slice(&self, start: usize, end: usize) -> Option<TensorData> {
        macro_rules! take {
            ($($variant:ident),*) => {
                match self {
                    $(TensorData::$variant(v) => v.get(start..end).map(|s| TensorData::$variant(s.to_vec())),)*
                }
            };
        }
        take!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes)
    }

    /// The elements of `parts` one after another; `None` when they are not all of one type (or there
    /// are none).
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        macro_rules! join {
            ($($variant:ident),*) => {
                match parts.first()? {
                    $(TensorData::$variant(_) => {
                        let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                        for p in parts {
                            let TensorData::$variant(v) = p else { return None };
                            out.extend_from_slice(v);
                        }
                        Some(TensorData::$variant(out))
                    })*
                }
            };
        }
        join!(Bool, Uint8, Uint16, Uint32, Uint64, Int8, Int16, Int32, Int64, Fp16, Fp32, Fp64, Bytes)
    }

    /// Element `i` converted to `f32`, for strided (column) access; `None` for BYTES or out of range.
    pub fn get_f32(&self, i: usize) -> Option<f32> {
        numeric_dispatch!(self, v => v.get(i).map(|x| x.to_f32()), _b => None)
    }
}

/// A named tensor: the model-side form of one input or output of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    /// The input or output name.
    pub name: String,
    /// Dimensions, outermost first. Their product equals `data.len()`.
    pub shape: Vec<usize>,
    /// The elements, flat and row-major.
    pub data: TensorData,
}

impl Tensor {
    /// Builds a tensor, checking that the shape's element count matches the data.
    ///
    /// # Errors
    /// [`InputError::Shape`] when the product of `shape` differs from the number of elements (or overflows).
    pub fn new(name: impl Into<String>, shape: Vec<usize>, data: TensorData) -> Result<Self, InputError> {
        let name = name.into();
        let expected = element_count(&shape)
            .ok_or_else(|| InputError::Shape { input: name.clone(), reason: format!("shape {shape:?} overflows") })?;
        if expected != data.len() {
            return Err(InputError::Shape {
                input: name,
                reason: format!("shape {shape:?} holds {expected} elements but {} were given", data.len()),
            });
        }
        Ok(Tensor { name, shape, data })
    }

    /// The element type.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }
}

/// The product of `shape`, `None` on overflow.
pub fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn datatype_names_round_trip() {
        for d in DataType::ALL {
            assert_eq!(DataType::parse(d.as_str()), Some(d));
            let json = serde_json::to_string(&d).unwrap();
            assert_eq!(json, format!("\"{}\"", d.as_str()));
        }
        assert_eq!(DataType::parse("FLOAT32"), None);
    }

    #[test]
    fn slices_and_concatenations_keep_the_type() {
        let a = TensorData::Fp32(vec![1.0, 2.0]);
        let b = TensorData::Fp32(vec![3.0]);
        assert_eq!(TensorData::concat(&[&a, &b]), Some(TensorData::Fp32(vec![1.0, 2.0, 3.0])));
        assert_eq!(TensorData::concat(&[&a, &TensorData::Fp64(vec![3.0])]), None, "types must match");
        assert_eq!(TensorData::concat(&[]), None);
        let bytes = TensorData::Bytes(vec![b"x".to_vec(), b"yz".to_vec()]);
        assert_eq!(bytes.slice(1, 2), Some(TensorData::Bytes(vec![b"yz".to_vec()])));
        assert_eq!(a.slice(1, 3), None);
        assert_eq!(TensorData::Bool(vec![true, false]).slice(0, 1), Some(TensorData::Bool(vec![true])));
    }

    #[test]
    fn tensor_checks_element_count() {
        let err = Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![0.0; 5])).unwrap_err();
        assert!(err.to_string().contains("holds 6 elements but 5"), "{err}");
        assert!(Tensor::new("x", vec![2, 3], TensorData::Fp32(vec![0.0; 6])).is_ok());
        let overflow = Tensor::new("x", vec![usize::MAX, 2], TensorData::Fp32(vec![])).unwrap_err();
        assert!(overflow.to_string().contains("overflows"));
    }

    #[test]
    fn conversions_follow_numpy_rounding() {
        let mut out = Vec::new();
        TensorData::Int64(vec![16_777_217, -3]).extend_f32(&mut out).unwrap();
        // numpy.float32(16777217) == 16777216.0 (round half to even).
        assert_eq!(out, vec![16_777_216.0, -3.0]);
        out.clear();
        TensorData::Bool(vec![true, false]).extend_f32(&mut out).unwrap();
        assert_eq!(out, vec![1.0, 0.0]);
        assert!(TensorData::Bytes(vec![b"a".to_vec()]).extend_f32(&mut out).is_none());
    }
}
