//! What a pickle evaluates to: inert data. Nothing here can run code; a "call" in a pickle
//! (`REDUCE`, `NEWOBJ`, `BUILD`) only records the callable's name and its arguments in an [`Object`].
//!
//! Objects and containers are shared (`Rc`) because pickles share them through the memo, and mutable
//! (`RefCell`) because `BUILD`, `APPENDS` and `SETITEMS` fill them in after they were memoised.
//! numpy arrays are materialised into [`NdArray`] by the interpreter (from `_reconstruct` + `BUILD`,
//! `_frombuffer`, or joblib's `NumpyArrayWrapper`), so estimator readers see typed arrays.

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// A module-qualified name (`sklearn.tree._tree.Tree`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Global {
    /// The module (`sklearn.tree._tree`).
    pub module: String,
    /// The name within it (`Tree`).
    pub name: String,
}

impl fmt::Display for Global {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.module, self.name)
    }
}

/// An instance built by the pickle: its class, the arguments it was constructed with, and the state
/// `BUILD` gave it.
#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    /// The class (or factory function) named by the pickle.
    pub class: Global,
    /// Constructor arguments (`NEWOBJ`'s args, `REDUCE`'s argument tuple).
    pub args: Vec<Value>,
    /// The state set by `BUILD`: usually the instance `__dict__`, sometimes `(dict, slots)` or a tuple.
    pub state: Option<Value>,
    /// Items appended (`APPENDS`) or set (`SETITEMS`) on the object itself (list/dict subclasses).
    pub items: Vec<Value>,
}

/// A numpy dtype, reduced to what reading arrays needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Dtype {
    /// numpy's kind character: `b` bool, `i` signed, `u` unsigned, `f` float, `c` complex, `U` unicode,
    /// `S` bytes, `O` object, `V` void (structured).
    pub kind: char,
    /// Bytes per element.
    pub itemsize: usize,
    /// Whether multi-byte elements are big-endian (`>`); `false` for little-endian and byte-order-less.
    pub big_endian: bool,
    /// The fields of a structured dtype, in order: name, dtype, byte offset.
    pub fields: Vec<(String, Dtype, usize)>,
}

impl Dtype {
    /// A plain little-endian dtype of `kind` and `itemsize`.
    pub fn simple(kind: char, itemsize: usize) -> Dtype {
        Dtype { kind, itemsize, big_endian: false, fields: Vec::new() }
    }

    /// numpy's spelling (`<f8`, `|b1`, `O`), for error messages.
    pub fn descr(&self) -> String {
        if self.kind == 'O' {
            return "O".to_owned();
        }
        if !self.fields.is_empty() {
            let names: Vec<&str> = self.fields.iter().map(|f| f.0.as_str()).collect();
            return format!("structured({})", names.join(","));
        }
        let order = if self.itemsize == 1 || matches!(self.kind, 'S' | 'V') {
            '|'
        } else if self.big_endian {
            '>'
        } else {
            '<'
        };
        let size = if self.kind == 'U' { self.itemsize / 4 } else { self.itemsize };
        format!("{order}{}{size}", self.kind)
    }
}

/// The elements of an array.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// Raw element bytes, `itemsize` per element, in the array's memory order (see [`NdArray::fortran`]).
    Raw(Vec<u8>),
    /// Elements of an object array (`dtype=object`), e.g. string class labels.
    Objects(Vec<Value>),
}

/// A numpy array read from a pickle.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Element type.
    pub dtype: Dtype,
    /// Dimensions.
    pub shape: Vec<usize>,
    /// Whether the elements are stored in column-major (Fortran) order.
    pub fortran: bool,
    /// The elements.
    pub data: ArrayData,
}

/// Why an array cannot be read as requested.
pub type ArrayError = String;

impl NdArray {
    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw bytes of element `i` in memory order.
    fn raw_chunks(&self) -> Result<std::slice::ChunksExact<'_, u8>, ArrayError> {
        match &self.data {
            ArrayData::Raw(bytes) if self.dtype.itemsize > 0 && bytes.len() == self.len() * self.dtype.itemsize => {
                Ok(bytes.chunks_exact(self.dtype.itemsize))
            }
            ArrayData::Raw(bytes) => {
                Err(format!("array of {} elements of {} holds {} bytes", self.len(), self.dtype.descr(), bytes.len()))
            }
            ArrayData::Objects(_) => Err("an object array is not numeric".to_owned()),
        }
    }

    /// Reorders a column-major array's values into row-major order.
    fn row_major<T: Clone>(&self, values: Vec<T>) -> Vec<T> {
        if !self.fortran || self.shape.len() < 2 {
            return values;
        }
        // Fortran order: index = i0 + s0*(i1 + s1*(i2 + …)). Walk row-major indices and gather.
        let n = values.len();
        let mut out = Vec::with_capacity(n);
        let dims = &self.shape;
        let mut idx = vec![0usize; dims.len()];
        for _ in 0..n {
            let mut f = 0usize;
            for d in (0..dims.len()).rev() {
                f = f * dims[d] + idx[d];
            }
            out.push(values[f].clone());
            for d in (0..dims.len()).rev() {
                idx[d] += 1;
                if idx[d] < dims[d] {
                    break;
                }
                idx[d] = 0;
            }
        }
        out
    }

    /// Every element as `f64`, row-major (bool, int, uint and float dtypes).
    ///
    /// # Errors
    /// For other dtypes or inconsistent sizes.
    pub fn to_f64(&self) -> Result<Vec<f64>, ArrayError> {
        let (kind, size, be) = (self.dtype.kind, self.dtype.itemsize, self.dtype.big_endian);
        let values: Vec<f64> = match (kind, size) {
            ('f', 8) => self.raw_chunks()?.map(|c| f64::from_bits(read_u64(c, be))).collect(),
            ('f', 4) => self.raw_chunks()?.map(|c| f64::from(f32::from_bits(read_u64(c, be) as u32))).collect(),
            ('f', 2) => self.raw_chunks()?.map(|c| half::f16::from_bits(read_u64(c, be) as u16).to_f64()).collect(),
            ('i' | 'u' | 'b', _) => {
                #[allow(clippy::cast_precision_loss)]
                let v = self.to_i64()?.into_iter().map(|v| v as f64).collect();
                v
            }
            _ => return Err(format!("cannot read {} as numbers", self.dtype.descr())),
        };
        Ok(self.row_major(values))
    }

    /// Every element as `i64`, row-major (bool, int and uint dtypes; uint64 above `i64::MAX` is an error).
    ///
    /// # Errors
    /// For other dtypes or inconsistent sizes.
    pub fn to_i64(&self) -> Result<Vec<i64>, ArrayError> {
        let (kind, size, be) = (self.dtype.kind, self.dtype.itemsize, self.dtype.big_endian);
        if !matches!((kind, size), ('i' | 'u', 1 | 2 | 4 | 8) | ('b', 1)) {
            return Err(format!("cannot read {} as integers", self.dtype.descr()));
        }
        let mut out = Vec::with_capacity(self.len());
        for c in self.raw_chunks()? {
            let raw = read_u64(c, be);
            let v = match (kind, size) {
                ('i', 1) => i64::from(raw as u8 as i8),
                ('i', 2) => i64::from(raw as u16 as i16),
                ('i', 4) => i64::from(raw as u32 as i32),
                ('i', _) => raw as i64,
                ('u', 8) => i64::try_from(raw).map_err(|_| format!("uint64 value {raw} is too large"))?,
                _ => raw as i64,
            };
            out.push(v);
        }
        Ok(self.row_major(out))
    }

    /// One field of a structured array (such as a tree's `nodes`), as its own array.
    ///
    /// # Errors
    /// When the array is not structured or has no such field.
    pub fn field(&self, name: &str) -> Result<NdArray, ArrayError> {
        let Some((_, dtype, offset)) = self.dtype.fields.iter().find(|f| f.0 == name) else {
            return Err(format!("no field `{name}` in dtype {}", self.dtype.descr()));
        };
        let chunks = self.raw_chunks()?;
        let end = offset + dtype.itemsize;
        let mut bytes = Vec::with_capacity(self.len() * dtype.itemsize);
        for c in chunks {
            bytes.extend_from_slice(c.get(*offset..end).ok_or_else(|| format!("field `{name}` overruns its record"))?);
        }
        Ok(NdArray {
            dtype: dtype.clone(),
            shape: self.shape.clone(),
            fortran: self.fortran,
            data: ArrayData::Raw(bytes),
        })
    }

    /// Whether a structured array has a field.
    pub fn has_field(&self, name: &str) -> bool {
        self.dtype.fields.iter().any(|f| f.0 == name)
    }

    /// The elements of an object array, row-major.
    ///
    /// # Errors
    /// When the array is not an object array.
    pub fn to_values(&self) -> Result<Vec<Value>, ArrayError> {
        match &self.data {
            ArrayData::Objects(v) => Ok(self.row_major(v.clone())),
            ArrayData::Raw(_) => Err(format!("{} is not an object array", self.dtype.descr())),
        }
    }

    /// The elements of a string array: unicode (`U`), bytes (`S`, read as UTF-8) or object arrays of `str`.
    ///
    /// # Errors
    /// For other dtypes, invalid text, or object arrays holding non-strings.
    pub fn to_strings(&self) -> Result<Vec<String>, ArrayError> {
        match self.dtype.kind {
            'O' => self
                .to_values()?
                .iter()
                .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| "an object array holds a non-string".to_owned()))
                .collect(),
            'U' => {
                let be = self.dtype.big_endian;
                let strings = self
                    .raw_chunks()?
                    .map(|c| {
                        c.chunks_exact(4)
                            .map(|b| read_u64(b, be) as u32)
                            .take_while(|&cp| cp != 0)
                            .map(|cp| char::from_u32(cp).ok_or_else(|| format!("invalid code point {cp:#x}")))
                            .collect::<Result<String, _>>()
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(self.row_major(strings))
            }
            'S' => {
                let strings = self
                    .raw_chunks()?
                    .map(|c| {
                        let end = c.iter().position(|&b| b == 0).unwrap_or(c.len());
                        String::from_utf8(c[..end].to_vec()).map_err(|e| e.to_string())
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(self.row_major(strings))
            }
            _ => Err(format!("cannot read {} as strings", self.dtype.descr())),
        }
    }
}

/// Reads up to 8 bytes as an unsigned integer in the given byte order.
fn read_u64(bytes: &[u8], big_endian: bool) -> u64 {
    let mut v = 0u64;
    if big_endian {
        for &b in bytes.iter().take(8) {
            v = (v << 8) | u64::from(b);
        }
    } else {
        for &b in bytes.iter().take(8).rev() {
            v = (v << 8) | u64::from(b);
        }
    }
    v
}

/// A value produced by the pickle interpreter.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits in 64 bits.
    Int(i64),
    /// An int that does not: little-endian two's-complement bytes, as `LONG1`/`LONG4` store it.
    BigInt(Rc<[u8]>),
    /// A float.
    Float(f64),
    /// A `str`.
    Str(Rc<str>),
    /// `bytes` or `bytearray`.
    Bytes(Rc<[u8]>),
    /// A list.
    List(Rc<RefCell<Vec<Value>>>),
    /// A tuple.
    Tuple(Rc<[Value]>),
    /// A dict, in insertion order.
    Dict(Rc<RefCell<Vec<(Value, Value)>>>),
    /// A set or frozenset.
    Set(Rc<RefCell<Vec<Value>>>),
    /// A class or function named by the pickle (`GLOBAL` / `STACK_GLOBAL`), never resolved to code.
    Global(Rc<Global>),
    /// An instance.
    Object(Rc<RefCell<Object>>),
    /// A numpy array.
    Array(Rc<NdArray>),
    /// A numpy dtype.
    Dtype(Rc<Dtype>),
}

impl Value {
    /// A short name of the value's type, for error messages.
    pub fn type_name(&self) -> String {
        match self {
            Value::None => "None".to_owned(),
            Value::Bool(_) => "bool".to_owned(),
            Value::Int(_) | Value::BigInt(_) => "int".to_owned(),
            Value::Float(_) => "float".to_owned(),
            Value::Str(_) => "str".to_owned(),
            Value::Bytes(_) => "bytes".to_owned(),
            Value::List(_) => "list".to_owned(),
            Value::Tuple(_) => "tuple".to_owned(),
            Value::Dict(_) => "dict".to_owned(),
            Value::Set(_) => "set".to_owned(),
            Value::Global(g) => format!("global {g}"),
            Value::Object(o) => o.borrow().class.to_string(),
            Value::Array(a) => format!("ndarray[{}]", a.dtype.descr()),
            Value::Dtype(_) => "dtype".to_owned(),
        }
    }

    /// The integer (also from `bool` and from numpy integer scalars materialised as `Int`).
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Array(a) if a.len() == 1 && a.shape.is_empty() => a.to_i64().ok()?.first().copied(),
            _ => None,
        }
    }

    /// The number as `f64` (floats, ints, bools, 0-d numeric arrays).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Float(f) => Some(*f),
            #[allow(clippy::cast_precision_loss)]
            Value::Int(i) => Some(*i as f64),
            Value::Bool(b) => Some(f64::from(u8::from(*b))),
            Value::Array(a) if a.len() == 1 && a.shape.is_empty() => a.to_f64().ok()?.first().copied(),
            _ => None,
        }
    }

    /// The boolean.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            _ => None,
        }
    }

    /// The string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The elements of a list or tuple (cloned handles; cheap).
    pub fn as_seq(&self) -> Option<Vec<Value>> {
        match self {
            Value::List(l) => Some(l.borrow().clone()),
            Value::Tuple(t) => Some(t.to_vec()),
            _ => None,
        }
    }

    /// The array.
    pub fn as_array(&self) -> Option<Rc<NdArray>> {
        match self {
            Value::Array(a) => Some(Rc::clone(a)),
            _ => None,
        }
    }

    /// The class of an object (`sklearn.ensemble._iforest.IsolationForest`).
    pub fn class(&self) -> Option<Global> {
        match self {
            Value::Object(o) => Some(o.borrow().class.clone()),
            _ => None,
        }
    }

    /// Whether this is an instance of `module.name`.
    pub fn is_instance(&self, module: &str, name: &str) -> bool {
        matches!(self, Value::Object(o) if { let c = &o.borrow().class; c.module == module && c.name == name })
    }

    /// The value stored under string key `key` in a dict.
    pub fn get(&self, key: &str) -> Option<Value> {
        match self {
            Value::Dict(d) => d.borrow().iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v.clone()),
            _ => None,
        }
    }

    /// An attribute of an object: the entry `name` of its `BUILD` state dict (or of the dict in a
    /// `(dict, slots)` state, or of the slots).
    pub fn attr(&self, name: &str) -> Option<Value> {
        let Value::Object(o) = self else { return None };
        let o = o.borrow();
        match o.state.as_ref()? {
            d @ Value::Dict(_) => d.get(name),
            Value::Tuple(t) => t.iter().find_map(|part| part.get(name)),
            _ => None,
        }
    }
}
