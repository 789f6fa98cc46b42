//! numpy's pickle forms, decoded into [`Dtype`] and [`NdArray`] without numpy.
//!
//! - `numpy.dtype(typestr, align, copy)` then `BUILD` with the dtype state
//!   `(version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])`
//!   (numpy's `arraydescr_setstate`).
//! - `_reconstruct(ndarray, (0,), b'b')` then `BUILD` with `(version, shape, dtype, is_fortran, data)`,
//!   `data` being the raw bytes (memory order) or, for object arrays, a list in C order
//!   (numpy's `array_setstate`).
//! - `_frombuffer(buffer, dtype, shape, order)` (protocol 5).
//! - `scalar(dtype, bytes)`: numpy scalars, as 0-d arrays.
//! - joblib's `NumpyArrayWrapper` state: `{subclass, shape, order, dtype, allow_mmap[,
//!   numpy_array_alignment_bytes]}`; the array's bytes follow the wrapper in the stream
//!   (`joblib/numpy_pickle.py`, `NumpyArrayWrapper.read_array`).
//!
//! Every function here checks sizes against the data actually present, so a declared shape or
//! itemsize cannot make it allocate more than the pickle holds.

use std::rc::Rc;

use super::limits::Limit;
use super::value::{ArrayData, Dtype, NdArray, Value};
use crate::error::Fault;

/// numpy's maximum number of dimensions (`NPY_MAXDIMS` in numpy 2; numpy 1 allows 32).
const MAX_NDIM: usize = 64;

/// Why a numpy form could not be decoded (the functions that check a limit return a [`Fault`]).
pub(crate) type Reason = String;

/// The tuple's items, or an error naming `what`.
fn tuple_items<'v>(v: &'v Value, what: &str) -> Result<&'v [Value], Reason> {
    match v {
        Value::Tuple(t) => Ok(t),
        other => Err(format!("{what} is a {}, expected a tuple", other.type_name())),
    }
}

/// A dtype from `numpy.dtype`'s arguments `(typestr, align, copy)`.
pub(crate) fn dtype_from_args(args: &[Value]) -> Result<Dtype, Reason> {
    let Some(Value::Str(s)) = args.first() else {
        return Err("numpy.dtype() takes a type string such as 'f8'".to_owned());
    };
    parse_typestr(s)
}

/// Parses a numpy type string (`f8`, `<i4`, `U5`, `V64`, `O8`, `b1`, `?`).
pub(crate) fn parse_typestr(s: &str) -> Result<Dtype, Reason> {
    let bad = || format!("unsupported numpy type string {s:?}");
    let (big_endian, rest) = match s.as_bytes().first() {
        Some(b'>') => (true, &s[1..]),
        Some(b'<' | b'|' | b'=') => (false, &s[1..]),
        _ => (false, s),
    };
    let mut chars = rest.chars();
    let kind = match chars.next().ok_or_else(bad)? {
        '?' => 'b',
        k @ ('b' | 'i' | 'u' | 'f' | 'c' | 'U' | 'S' | 'V' | 'O' | 'M' | 'm') => k,
        _ => return Err(bad()),
    };
    let digits = chars.as_str();
    // Datetimes carry a unit (`M8[ns]`); the unit does not change the item size.
    let digits = digits.split('[').next().unwrap_or_default();
    let n: Option<usize> = if digits.is_empty() {
        None
    } else {
        Some(digits.parse().ok().filter(|&n| n <= u32::MAX as usize).ok_or_else(bad)?)
    };
    let itemsize = match (kind, n) {
        ('b', None | Some(1)) => 1,
        ('O', None | Some(8)) => 8,
        ('i' | 'u', Some(n @ (1 | 2 | 4 | 8))) | ('f', Some(n @ (2 | 4 | 8 | 16))) | ('c', Some(n @ (8 | 16 | 32))) => {
            n
        }
        ('M' | 'm', Some(8)) => 8,
        ('U', Some(n)) => n.checked_mul(4).ok_or_else(bad)?,
        ('U' | 'S' | 'V', None) => 0,
        ('S' | 'V', Some(n)) => n,
        _ => return Err(bad()),
    };
    Ok(Dtype { kind, itemsize, big_endian: big_endian && itemsize > 1, fields: Vec::new() })
}

/// How deeply structured dtypes nest, and how many dtypes they hold in all.
pub(crate) fn dtype_size(d: &Dtype) -> (usize, usize) {
    d.fields.iter().fold((1, 1), |(depth, count), (_, f, _)| {
        let (fd, fc) = dtype_size(f);
        (depth.max(fd + 1), count + fc)
    })
}

/// `dtype` with numpy's pickled dtype state applied. `max_depth` bounds the nesting of structured
/// dtypes (their fields are dtypes).
pub(crate) fn apply_dtype_state(dtype: &Dtype, state: &Value, max_depth: usize) -> Result<Dtype, Fault> {
    let t = tuple_items(state, "the dtype state")?;
    let version = t.first().and_then(Value::as_int);
    if !matches!((version, t.len()), (Some(3), 8) | (Some(4), 9)) {
        return Err(format!("unsupported numpy dtype state (version {version:?}, {} items)", t.len()).into());
    }
    let mut out = dtype.clone();
    match t[1].as_str() {
        Some(">") => out.big_endian = true,
        Some("<" | "=" | "|") => out.big_endian = false,
        _ => return Err(format!("invalid dtype byte order {}", t[1].type_name()).into()),
    }
    let elsize = t[5].as_int().ok_or("the dtype item size is not an integer")?;
    if matches!(out.kind, 'V' | 'S' | 'U') && elsize >= 0 {
        out.itemsize = usize::try_from(elsize).map_err(|_| "dtype item size out of range")?;
        if out.kind == 'U' && !out.itemsize.is_multiple_of(4) {
            return Err(format!("a unicode dtype of {elsize} bytes").into());
        }
    }
    out.fields.clear();
    match (&t[3], &t[4]) {
        (Value::None, Value::None) => {}
        (Value::Tuple(names), fields @ Value::Dict(_)) => {
            for name in names.iter() {
                let name = name.as_str().ok_or("a structured dtype field name is not a string")?;
                let spec = fields.get(name).ok_or_else(|| format!("dtype field `{name}` is not described"))?;
                let spec = tuple_items(&spec, "a dtype field")?;
                let (Some(Value::Dtype(fd)), Some(offset)) = (spec.first(), spec.get(1).and_then(Value::as_int)) else {
                    return Err(format!("dtype field `{name}` is not (dtype, offset)").into());
                };
                let offset =
                    usize::try_from(offset).map_err(|_| format!("dtype field `{name}` has a negative offset"))?;
                let end = offset.checked_add(fd.itemsize);
                if end.is_none_or(|end| end > out.itemsize) {
                    return Err(format!(
                        "dtype field `{name}` ({} bytes at offset {offset}) overruns the {}-byte record",
                        fd.itemsize, out.itemsize
                    )
                    .into());
                }
                out.fields.push((name.to_owned(), (**fd).clone(), offset));
            }
        }
        _ => return Err("a structured dtype without both field names and fields".into()),
    }
    if out.big_endian && out.itemsize <= 1 {
        out.big_endian = false;
    }
    if dtype_size(&out).0 > max_depth {
        let reason = format!("structured dtype nested deeper than the limit max_depth = {max_depth}");
        return Err(Fault::limit(Limit::Depth, max_depth, reason));
    }
    Ok(out)
}

/// A shape tuple: non-negative dimensions whose product fits in `usize`. Returns the shape and the
/// element count.
pub(crate) fn shape(v: &Value) -> Result<(Vec<usize>, usize), Reason> {
    let dims = match v {
        Value::Tuple(t) => t.to_vec(),
        Value::List(l) => l.borrow().clone(),
        // numpy accepts a bare int for a 1-d shape.
        Value::Int(_) => vec![v.clone()],
        other => return Err(format!("an array shape is a {}", other.type_name())),
    };
    if dims.len() > MAX_NDIM {
        return Err(format!("an array of {} dimensions (numpy allows {MAX_NDIM})", dims.len()));
    }
    let mut shape = Vec::with_capacity(dims.len());
    let mut count: usize = 1;
    for d in &dims {
        let Some(d) = d.as_int().and_then(|d| usize::try_from(d).ok()) else {
            return Err(format!("invalid array dimension {}", d.type_name()));
        };
        count = count.checked_mul(d).ok_or("the array's element count overflows")?;
        shape.push(d);
    }
    Ok((shape, count))
}

/// Checks that an array of `count` elements with no bytes per element (object arrays, zero-size
/// dtypes) stays within the collection limit; arrays of sized elements are bounded by their bytes.
fn check_count(dtype: &Dtype, count: usize, max_len: usize) -> Result<(), Fault> {
    if (dtype.kind == 'O' || dtype.itemsize == 0) && count > max_len {
        let reason = format!("an array of {count} elements is over the limit max_collection_len = {max_len}");
        return Err(Fault::limit(Limit::CollectionLen, max_len, reason));
    }
    Ok(())
}

/// The raw bytes of an array of `count` elements: `data` must hold exactly `count × itemsize`.
fn raw(dtype: &Dtype, count: usize, data: &[u8]) -> Result<Vec<u8>, Reason> {
    let expected = count.checked_mul(dtype.itemsize).ok_or("the array's byte size overflows")?;
    if data.len() != expected {
        return Err(format!(
            "an array of {count} elements of {} needs {expected} bytes but has {}",
            dtype.descr(),
            data.len()
        ));
    }
    Ok(data.to_vec())
}

/// Latin-1 text as bytes (Python 2 pickles of numpy arrays, read with `encoding='latin1'`).
pub(crate) fn latin1(s: &str) -> Result<Vec<u8>, Reason> {
    s.chars().map(|c| u8::try_from(u32::from(c)).map_err(|_| format!("character {c:?} is not latin-1"))).collect()
}

/// The array from `_reconstruct`'s `BUILD` state.
pub(crate) fn array_from_state(state: &Value, max_len: usize) -> Result<NdArray, Fault> {
    let t = tuple_items(state, "the ndarray state")?;
    let t = match t.len() {
        5 => &t[1..],
        4 => t,
        n => return Err(format!("an ndarray state of {n} items (expected 4 or 5)").into()),
    };
    let (shape, count) = shape(&t[0])?;
    let Value::Dtype(dtype) = &t[1] else {
        return Err(format!("the ndarray state's dtype is a {}", t[1].type_name()).into());
    };
    let fortran = t[2].as_bool().ok_or("the ndarray state's is_fortran is not a bool")?;
    check_count(dtype, count, max_len)?;
    let (data, fortran) = match (&t[3], dtype.kind) {
        // Object arrays are pickled as a list in C (logical) order, whatever their memory order.
        (Value::List(items), 'O') => {
            let items = items.borrow();
            if items.len() != count {
                return Err(format!("an object array of {count} elements holds {}", items.len()).into());
            }
            (ArrayData::Objects(items.clone()), false)
        }
        (Value::Bytes(b), k) if k != 'O' => (ArrayData::Raw(raw(dtype, count, b)?), fortran),
        (Value::Str(s), k) if k != 'O' => (ArrayData::Raw(raw(dtype, count, &latin1(s)?)?), fortran),
        (other, _) => {
            return Err(format!("an ndarray of {} with {} data", dtype.descr(), other.type_name()).into());
        }
    };
    Ok(NdArray { dtype: (**dtype).clone(), shape, fortran, data })
}

/// The array from `_frombuffer(buffer, dtype, shape, order)`.
pub(crate) fn frombuffer(args: &[Value]) -> Result<NdArray, Reason> {
    let [Value::Bytes(buf), Value::Dtype(dtype), shape_v, order] = args else {
        return Err("_frombuffer() takes (bytes, dtype, shape, order)".to_owned());
    };
    if dtype.kind == 'O' {
        return Err("_frombuffer() of an object dtype".to_owned());
    }
    let (shape, count) = shape(shape_v)?;
    let fortran = match order.as_str() {
        Some("F") => true,
        Some("C" | "A" | "K") => false,
        _ => return Err(format!("_frombuffer() order {}", order.type_name())),
    };
    Ok(NdArray { dtype: (**dtype).clone(), shape, fortran, data: ArrayData::Raw(raw(dtype, count, buf)?) })
}

/// The 0-d array from `scalar(dtype, bytes)` (or `scalar(dtype, object)` for object scalars).
pub(crate) fn scalar(args: &[Value]) -> Result<NdArray, Reason> {
    let Some(Value::Dtype(dtype)) = args.first() else {
        return Err("scalar() takes (dtype, bytes)".to_owned());
    };
    let data = match (dtype.kind, args.get(1)) {
        ('O', Some(obj)) => ArrayData::Objects(vec![obj.clone()]),
        (_, Some(Value::Bytes(b))) => ArrayData::Raw(raw(dtype, 1, b)?),
        (_, Some(Value::Str(s))) => ArrayData::Raw(raw(dtype, 1, &latin1(s)?)?),
        _ => return Err(format!("scalar() of {} without its bytes", dtype.descr())),
    };
    Ok(NdArray { dtype: (**dtype).clone(), shape: Vec::new(), fortran: false, data })
}

/// What joblib's `NumpyArrayWrapper` state says about the array that follows it.
#[derive(Debug)]
pub(crate) struct WrapperHeader {
    pub(crate) dtype: Dtype,
    pub(crate) shape: Vec<usize>,
    pub(crate) count: usize,
    pub(crate) fortran: bool,
    /// joblib ≥ 1.2 writes a padding-length byte and padding before the bytes.
    pub(crate) padded: bool,
}

impl WrapperHeader {
    /// Reads the wrapper's `BUILD` state (its `__dict__`).
    pub(crate) fn from_state(state: &Value, max_len: usize) -> Result<Self, Fault> {
        let dict = match state {
            d @ Value::Dict(_) => d.clone(),
            // (dict, slotstate), as `object.__reduce_ex__` may write.
            Value::Tuple(t) if matches!(t.first(), Some(Value::Dict(_))) => t[0].clone(),
            other => return Err(format!("NumpyArrayWrapper state is a {}", other.type_name()).into()),
        };
        let field = |k: &str| dict.get(k).ok_or_else(|| format!("NumpyArrayWrapper state has no `{k}`"));
        let (shape, count) = shape(&field("shape")?)?;
        let Value::Dtype(dtype) = field("dtype")? else {
            return Err("NumpyArrayWrapper dtype is not a numpy dtype".into());
        };
        let fortran = match field("order")?.as_str() {
            Some("F") => true,
            Some("C") => false,
            _ => return Err("NumpyArrayWrapper order is neither 'C' nor 'F'".into()),
        };
        let padded = match dict.get("numpy_array_alignment_bytes") {
            None | Some(Value::None) => false,
            Some(Value::Int(_)) => true,
            Some(other) => return Err(format!("NumpyArrayWrapper alignment is a {}", other.type_name()).into()),
        };
        check_count(&dtype, count, max_len)?;
        Ok(WrapperHeader { dtype: (*dtype).clone(), shape, count, fortran, padded })
    }

    /// The number of bytes of array data that follow.
    pub(crate) fn byte_len(&self) -> Result<usize, Reason> {
        self.count.checked_mul(self.dtype.itemsize).ok_or_else(|| "the array's byte size overflows".to_owned())
    }

    /// The array, from the bytes that followed the wrapper. joblib writes 'F' arrays in column-major
    /// order, which is what [`NdArray::fortran`] means.
    pub(crate) fn into_array(self, bytes: &[u8]) -> Result<NdArray, Reason> {
        let data = ArrayData::Raw(raw(&self.dtype, self.count, bytes)?);
        Ok(NdArray { dtype: self.dtype, shape: self.shape, fortran: self.fortran, data })
    }

    /// The object array that a nested pickle produced, checked against the wrapper.
    pub(crate) fn check_objects(&self, nested: Value) -> Result<Rc<NdArray>, Reason> {
        match nested {
            Value::Array(a) if a.dtype.kind == 'O' && a.shape == self.shape => Ok(a),
            Value::Array(a) => Err(format!(
                "the nested pickle of an object array of shape {:?} holds an array of {} and shape {:?}",
                self.shape,
                a.dtype.descr(),
                a.shape
            )),
            other => Err(format!("the nested pickle of an object array holds a {}", other.type_name())),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn s(x: &str) -> Value {
        Value::Str(Rc::from(x))
    }

    fn tuple(items: Vec<Value>) -> Value {
        Value::Tuple(Rc::from(items))
    }

    fn dtype_state(order: &str, names: Value, fields: Value, elsize: i64) -> Value {
        tuple(vec![
            Value::Int(3),
            s(order),
            Value::None,
            names,
            fields,
            Value::Int(elsize),
            Value::Int(-1),
            Value::Int(0),
        ])
    }

    #[test]
    fn typestrs() {
        assert_eq!(parse_typestr("f8"), Ok(Dtype::simple('f', 8)));
        assert_eq!(parse_typestr("<i4"), Ok(Dtype::simple('i', 4)));
        assert_eq!(parse_typestr(">i4").map(|d| d.big_endian), Ok(true));
        assert_eq!(parse_typestr(">u1").map(|d| d.big_endian), Ok(false), "one byte has no order");
        assert_eq!(parse_typestr("U5").map(|d| d.itemsize), Ok(20));
        assert_eq!(parse_typestr("b1"), Ok(Dtype::simple('b', 1)));
        assert_eq!(parse_typestr("O8"), Ok(Dtype::simple('O', 8)));
        assert_eq!(parse_typestr("V64").map(|d| d.itemsize), Ok(64));
        assert_eq!(parse_typestr("M8[ns]").map(|d| d.itemsize), Ok(8));
        for bad in ["", "x8", "i3", "f", "U99999999999999999999", "i8x"] {
            assert!(parse_typestr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn big_endian_state() {
        let d = apply_dtype_state(&Dtype::simple('i', 4), &dtype_state(">", Value::None, Value::None, -1), 4);
        assert_eq!(d.map(|d| d.big_endian), Ok(true));
    }

    #[test]
    fn structured_dtype() {
        let i8 = Value::Dtype(Rc::new(Dtype::simple('i', 8)));
        let f8 = Value::Dtype(Rc::new(Dtype::simple('f', 8)));
        let names = tuple(vec![s("left"), s("threshold")]);
        let fields = Value::Dict(Rc::new(RefCell::new(vec![
            (s("threshold"), tuple(vec![f8, Value::Int(8)])),
            (s("left"), tuple(vec![i8, Value::Int(0)])),
        ])));
        let base = parse_typestr("V16").unwrap_or_else(|e| panic!("{e}"));
        let d = apply_dtype_state(&base, &dtype_state("|", names.clone(), fields.clone(), 16), 4)
            .unwrap_or_else(|e| panic!("{e}"));
        let names_found: Vec<_> = d.fields.iter().map(|f| (f.0.as_str(), f.1.kind, f.2)).collect();
        assert_eq!(names_found, [("left", 'i', 0), ("threshold", 'f', 8)]);
        let err = apply_dtype_state(&base, &dtype_state("|", names, fields, 12), 4);
        assert!(err.is_err_and(|e| e.to_string().contains("overruns")));
    }

    #[test]
    fn shapes_are_checked() {
        assert_eq!(shape(&tuple(vec![Value::Int(2), Value::Int(3)])), Ok((vec![2, 3], 6)));
        assert_eq!(shape(&tuple(vec![])), Ok((vec![], 1)));
        assert!(shape(&tuple(vec![Value::Int(-1)])).is_err());
        assert!(shape(&tuple(vec![Value::Int(i64::MAX), Value::Int(i64::MAX), Value::Int(4)])).is_err());
        assert!(shape(&tuple(vec![Value::Int(1); 65])).is_err());
    }

    #[test]
    fn reconstruct_state_checks_sizes() {
        let f8 = Value::Dtype(Rc::new(Dtype::simple('f', 8)));
        let state = |n: i64, data: Vec<u8>| {
            tuple(vec![
                Value::Int(1),
                tuple(vec![Value::Int(n)]),
                f8.clone(),
                Value::Bool(false),
                Value::Bytes(Rc::from(data)),
            ])
        };
        let a = array_from_state(&state(2, [1.5f64.to_le_bytes(), 2.5f64.to_le_bytes()].concat()), 10);
        assert_eq!(a.map_err(|e| e.to_string()).and_then(|a| a.to_f64()), Ok(vec![1.5, 2.5]));
        assert!(array_from_state(&state(3, vec![0; 16]), 10).is_err());
        assert!(array_from_state(&state(1 << 60, vec![0; 16]), 10).is_err());
    }

    #[test]
    fn zero_size_elements_are_bounded() {
        let v0 = Value::Dtype(Rc::new(Dtype::simple('V', 0)));
        let state = tuple(vec![
            Value::Int(1),
            tuple(vec![Value::Int(1 << 40)]),
            v0,
            Value::Bool(false),
            Value::Bytes(Rc::from(vec![])),
        ]);
        let e = array_from_state(&state, 1000);
        assert!(matches!(&e, Err(Fault::Limit { what: Limit::CollectionLen, limit: 1000, .. })), "{e:?}");
        assert!(e.is_err_and(|e| e.to_string().contains("max_collection_len")));
    }
}
