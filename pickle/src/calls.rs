//! What the interpreter does instead of calling: `REDUCE`, `NEWOBJ`, `NEWOBJ_EX`, `INST`, `OBJ`
//! and `BUILD`, by the [`Kind`] the allowlist gives the callable.
//!
//! Nothing here runs Python. A [`Kind::Class`] "call" records an inert [`Object`]; the other kinds
//! are small pure functions (bytes, sets, dicts, numpy dtypes and arrays) over checked inputs.

use std::cell::RefCell;
use std::rc::Rc;

use super::allowlist::{self, Kind};
use super::graph;
use super::machine::{self, CONTAINER_BYTES, Machine, SLOT_BYTES};
use super::numpy::{self, WrapperHeader};
use super::value::{Global, NdArray, Object, Value};
use crate::error::{Error, Fault, Result, printable};

/// Bytes a copy of `v`'s data would take (what numpy constructors copy).
fn data_size(v: &Value) -> u64 {
    match v {
        Value::Bytes(b) => b.len() as u64,
        Value::Str(s) => s.len() as u64,
        Value::List(l) | Value::Set(l) => l.borrow().len() as u64 * SLOT_BYTES,
        Value::Tuple(t) => t.len() as u64 * SLOT_BYTES,
        _ => 0,
    }
}

impl Machine<'_, '_> {
    /// The global `depth` below the top, which an opcode is about to call.
    fn callable(&self, depth: usize, op: &str) -> Result<Rc<Global>> {
        match self.peek(depth)? {
            Value::Global(g) => Ok(Rc::clone(g)),
            other => Err(self.fail(format!(
                "{op} of a {}: only allowlisted classes and functions can be called",
                other.type_name()
            ))),
        }
    }

    /// The argument tuple `depth` below the top.
    fn arguments(&self, depth: usize, op: &str) -> Result<Rc<[Value]>> {
        match self.peek(depth)? {
            Value::Tuple(t) => Ok(Rc::clone(t)),
            other => Err(self.fail(format!("{op} arguments are a {}, not a tuple", other.type_name()))),
        }
    }

    /// `REDUCE`: `callable(*args)`.
    pub(crate) fn reduce(&mut self) -> Result<()> {
        let g = self.callable(1, "REDUCE")?;
        let args = self.arguments(0, "REDUCE")?;
        let v = self.call(&g, &args)?;
        self.drop_n(2)?;
        self.push(v)
    }

    /// `NEWOBJ`: `cls.__new__(cls, *args)`.
    pub(crate) fn newobj(&mut self) -> Result<()> {
        let g = self.callable(1, "NEWOBJ")?;
        let args = self.arguments(0, "NEWOBJ")?;
        let v = self.new_instance(&g, &args)?;
        self.drop_n(2)?;
        self.push(v)
    }

    /// `NEWOBJ_EX`: `cls.__new__(cls, *args, **kwargs)`; non-empty kwargs become a last dict argument.
    pub(crate) fn newobj_ex(&mut self) -> Result<()> {
        let g = self.callable(2, "NEWOBJ_EX")?;
        let args = self.arguments(1, "NEWOBJ_EX")?;
        let mut args = args.to_vec();
        match self.peek(0)? {
            Value::Dict(d) if d.borrow().is_empty() => {}
            kwargs @ Value::Dict(_) => args.push(kwargs.clone()),
            other => return Err(self.fail(format!("NEWOBJ_EX keyword arguments are a {}", other.type_name()))),
        }
        let v = self.new_instance(&g, &args)?;
        self.drop_n(3)?;
        self.push(v)
    }

    /// `INST module name`: `cls(*values above the mark)`.
    pub(crate) fn inst(&mut self) -> Result<()> {
        let module = self.read_counted_line("INST")?;
        let name = self.read_counted_line("INST")?;
        let Value::Global(g) = self.resolve(&module, &name)? else {
            return Err(self.fail("INST of a non-class"));
        };
        let base = self.mark_base()?;
        let args = self.stack.get(base..).unwrap_or_default().to_vec();
        let v = self.call(&g, &args)?;
        machine::release_all(self.pop_mark()?);
        self.push(v)
    }

    /// `OBJ`: the first value above the mark is the class, the rest its arguments.
    pub(crate) fn obj(&mut self) -> Result<()> {
        let base = self.mark_base()?;
        let g = match self.stack.get(base) {
            Some(Value::Global(g)) => Rc::clone(g),
            Some(other) => return Err(self.fail(format!("OBJ of a {}", other.type_name()))),
            None => return Err(self.fail("OBJ without a class")),
        };
        let args = self.stack.get(base + 1..).unwrap_or_default().to_vec();
        let v = self.call(&g, &args)?;
        machine::release_all(self.pop_mark()?);
        self.push(v)
    }

    fn read_counted_line(&mut self, what: &str) -> Result<String> {
        let Some(line) = self.ctx.reader.line() else {
            return Err(self.cut_short(format!("{what} argument has no end of line")));
        };
        let s = std::str::from_utf8(line).map_err(|_| self.fail(format!("{what} names are not valid UTF-8")))?;
        Ok(s.trim_end_matches('\r').to_owned())
    }

    fn object(&mut self, class: Global, args: Vec<Value>) -> Result<Value> {
        self.allocate(CONTAINER_BYTES + args.len() as u64 * SLOT_BYTES)?;
        let object = Value::Object(Rc::new(RefCell::new(Object { class, args, state: None, items: Vec::new() })));
        self.track(&object);
        Ok(object)
    }

    fn array(&mut self, a: std::result::Result<NdArray, impl Into<Fault>>) -> Result<Value> {
        a.map(|a| Value::Array(Rc::new(a))).map_err(|e| self.fail(e))
    }

    /// `NEWOBJ`/`NEWOBJ_EX`: an allowlisted class as [`Machine::call`]; with structural records
    /// enabled, a class outside the allowlist becomes an inert record of its name, its (inert)
    /// arguments and later its `BUILD` state. Nothing of the class exists or runs here: `NEWOBJ`
    /// is `cls.__new__(cls)`, which for a plain Python class only allocates an empty instance.
    fn new_instance(&mut self, g: &Global, args: &[Value]) -> Result<Value> {
        if allowlist::lookup(&g.module, &g.name).is_some() || !self.ctx.records {
            return self.call(g, args);
        }
        let inert = |v: &Value| {
            matches!(
                v,
                Value::None
                    | Value::Bool(_)
                    | Value::Int(_)
                    | Value::BigInt(_)
                    | Value::Float(_)
                    | Value::Str(_)
                    | Value::Bytes(_)
            )
        };
        if !args.iter().all(inert) {
            return Err(self.fail(format!(
                "NEWOBJ of {g}, a class outside the allowlist, with arguments other than plain numbers and strings"
            )));
        }
        self.spend(args.len() as u64)?;
        self.object(g.clone(), args.to_vec())
    }

    /// Evaluates an allowlisted callable on `args`, without running anything.
    fn call(&mut self, g: &Global, args: &[Value]) -> Result<Value> {
        let Some(kind) = allowlist::lookup(&g.module, &g.name) else {
            // Only a structural load lets a name outside the allowlist this far; calling it
            // (`REDUCE`, `INST`, `OBJ`) is how an exploit runs a function: refused.
            return Err(Error::UnsupportedClass { module: g.module.clone(), name: g.name.clone(), at: self.here() });
        };
        self.spend(args.len() as u64)?;
        match kind {
            Kind::Class | Kind::Reconstruct | Kind::NumpyArrayWrapper => self.object(g.clone(), args.to_vec()),
            Kind::Label => Err(self.fail(format!("{g} is only a label and cannot be called"))),
            Kind::TorchRebuild => {
                if !(6..=7).contains(&args.len()) {
                    return Err(self.fail(format!("{g}() takes 6 or 7 arguments, not {}", args.len())));
                }
                self.object(g.clone(), args.to_vec())
            }
            Kind::TorchLoadFromBytes => match args {
                [Value::Bytes(_)] => self.object(g.clone(), args.to_vec()),
                _ => Err(self.fail(format!("{g}() takes one bytes argument"))),
            },
            Kind::Dtype => {
                let d = numpy::dtype_from_args(args).map_err(|e| self.fail(e))?;
                self.allocate(CONTAINER_BYTES)?;
                Ok(Value::Dtype(Rc::new(d)))
            }
            Kind::FromBuffer => {
                self.allocate(args.first().map_or(0, data_size))?;
                self.array(numpy::frombuffer(args))
            }
            Kind::Scalar => {
                self.allocate(args.get(1).map_or(0, data_size))?;
                self.array(numpy::scalar(args))
            }
            Kind::CodecsEncode => self.encode(args),
            Kind::Bytes => self.bytes_from(args),
            Kind::Set => {
                let set = Value::Set(Rc::default());
                self.allocate(CONTAINER_BYTES)?;
                self.track(&set);
                match args {
                    [] => {}
                    [Value::List(l) | Value::Set(l)] => self.insert_all(&set, &l.borrow().clone())?,
                    [Value::Tuple(t)] => self.insert_all(&set, t)?,
                    _ => return Err(self.fail(format!("{g}() of something other than a list, tuple or set"))),
                }
                Ok(set)
            }
            Kind::OrderedDict => self.ordered_dict(args),
            Kind::DefaultDict => match args {
                [] => self.ordered_dict(&[]),
                [Value::Global(_) | Value::None, rest @ ..] => self.ordered_dict(rest),
                _ => Err(self.fail("defaultdict() whose factory is not a class or None")),
            },
            Kind::CopyregReconstructor => match args {
                [Value::Global(cls), Value::Global(_), state] => {
                    let args = if matches!(state, Value::None) { Vec::new() } else { vec![state.clone()] };
                    self.object((**cls).clone(), args)
                }
                _ => Err(self.fail("copyreg._reconstructor() takes (class, base class, state)")),
            },
        }
    }

    fn insert_all(&mut self, set: &Value, items: &[Value]) -> Result<()> {
        for item in items {
            self.insert(set, item.clone(), Value::None)?;
        }
        Ok(())
    }

    /// `_codecs.encode(text, encoding)`.
    fn encode(&mut self, args: &[Value]) -> Result<Value> {
        let (text, encoding) = match args {
            [Value::Str(s)] => (s, "utf-8".to_owned()),
            [Value::Str(s), Value::Str(e)] => (s, e.to_ascii_lowercase().replace('_', "-")),
            _ => return Err(self.fail("_codecs.encode() takes (str, encoding)")),
        };
        self.allocate(text.len() as u64)?;
        let bytes = match encoding.as_str() {
            "latin1" | "latin-1" | "iso-8859-1" | "iso8859-1" | "l1" => {
                numpy::latin1(text).map_err(|e| self.fail(e))?
            }
            "utf-8" | "utf8" => text.as_bytes().to_vec(),
            other => return Err(self.fail(format!("_codecs.encode() with encoding {:?}", printable(other)))),
        };
        Ok(Value::Bytes(Rc::from(bytes)))
    }

    /// `bytes(…)` / `bytearray(…)`.
    fn bytes_from(&mut self, args: &[Value]) -> Result<Value> {
        match args {
            [] => Ok(Value::Bytes(Rc::from(Vec::new()))),
            [Value::Bytes(b)] => {
                self.allocate(b.len() as u64)?;
                Ok(Value::Bytes(Rc::clone(b)))
            }
            [Value::Str(_), ..] => self.encode(args),
            [Value::Int(n)] => {
                let n = usize::try_from(*n).map_err(|_| self.fail("bytes() of a negative size"))?;
                self.allocate(n as u64)?;
                Ok(Value::Bytes(Rc::from(vec![0u8; n])))
            }
            [items @ (Value::List(_) | Value::Tuple(_))] => {
                let items = items.as_seq().unwrap_or_default();
                self.allocate(items.len() as u64)?;
                self.spend(items.len() as u64)?;
                let bytes: Option<Vec<u8>> =
                    items.iter().map(|v| v.as_int().and_then(|i| u8::try_from(i).ok())).collect();
                let bytes = bytes.ok_or_else(|| self.fail("bytes() of a list holding something other than 0..=255"))?;
                Ok(Value::Bytes(Rc::from(bytes)))
            }
            _ => Err(self.fail("bytes() of an unsupported argument")),
        }
    }

    /// `collections.OrderedDict(…)`: a plain dict (insertion order is kept by every dict here).
    fn ordered_dict(&mut self, args: &[Value]) -> Result<Value> {
        let dict = Value::Dict(Rc::default());
        self.allocate(CONTAINER_BYTES)?;
        self.track(&dict);
        let pairs: Vec<(Value, Value)> = match args {
            [] => Vec::new(),
            [Value::Dict(d)] => d.borrow().clone(),
            [items @ (Value::List(_) | Value::Tuple(_))] => {
                let items = items.as_seq().unwrap_or_default();
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    match item.as_seq().as_deref() {
                        Some([k, v]) => pairs.push((k.clone(), v.clone())),
                        _ => return Err(self.fail("OrderedDict() of something other than (key, value) pairs")),
                    }
                }
                pairs
            }
            _ => return Err(self.fail("OrderedDict() of an unsupported argument")),
        };
        for (k, v) in pairs {
            self.insert(&dict, k, v)?;
        }
        Ok(dict)
    }

    /// `BUILD`: sets the state of the value under the top to the top.
    pub(crate) fn build(&mut self) -> Result<()> {
        let state = self.peek(0)?.clone();
        let target = self.peek(1)?.clone();
        match &target {
            Value::Object(o) => {
                let kind = {
                    let o = o.borrow();
                    allowlist::lookup(&o.class.module, &o.class.name)
                };
                match kind {
                    Some(Kind::Reconstruct) => {
                        let max_len = self.ctx.limits.max_collection_len;
                        self.allocate(state.as_seq().and_then(|t| t.last().map(data_size)).unwrap_or(0))?;
                        let a = numpy::array_from_state(&state, max_len);
                        let a = self.array(a)?;
                        self.replace_built(a)
                    }
                    Some(Kind::NumpyArrayWrapper) => {
                        let a = self.read_wrapped(&state)?;
                        self.replace_built(Value::Array(a))
                    }
                    _ => {
                        let old = o.borrow_mut().state.replace(state);
                        if let Some(old) = old {
                            graph::release(old);
                        }
                        self.drop_n(1)
                    }
                }
            }
            Value::Dtype(d) => {
                let d = numpy::apply_dtype_state(d, &state, self.ctx.limits.max_depth).map_err(|e| self.fail(e))?;
                let (_, count) = numpy::dtype_size(&d);
                self.spend(count as u64)?;
                self.allocate(count as u64 * CONTAINER_BYTES)?;
                self.replace_built(Value::Dtype(Rc::new(d)))
            }
            // A dict subclass (OrderedDict) without instance attributes.
            // A PyTorch state_dict (an OrderedDict) gets its `_metadata` attribute (per-module versions),
            // which nothing here needs.
            Value::Dict(_)
                if matches!(&state, Value::None)
                    || matches!(&state, Value::Dict(d) if d.borrow().iter().all(|(k, _)| k.as_str() == Some("_metadata"))) =>
            {
                self.drop_n(1)
            }
            other => Err(self.fail(format!("BUILD on a {}", other.type_name()))),
        }
    }

    /// The array that follows a joblib `NumpyArrayWrapper` in the stream: raw bytes (after the
    /// alignment padding joblib ≥ 1.2 writes), or for object arrays a complete nested pickle.
    fn read_wrapped(&mut self, state: &Value) -> Result<Rc<NdArray>> {
        if self.nested {
            return Err(self.fail("a joblib NumpyArrayWrapper inside the nested pickle of an object array"));
        }
        let header = WrapperHeader::from_state(state, self.ctx.limits.max_collection_len).map_err(|e| self.fail(e))?;
        if header.dtype.kind == 'O' {
            // joblib pickles object arrays with a fresh pickler into the same stream.
            let nested = machine::run(self.ctx, true)?;
            return header.check_objects(nested).map_err(|e| self.fail(e));
        }
        if header.padded {
            let n = self.read_array::<1>("the joblib array's padding length")?[0];
            self.read_counted(usize::from(n), "the joblib array's padding")?;
        }
        let len = header.byte_len().map_err(|e| self.fail(e))?;
        let bytes = self.read_counted(len, "the joblib array's data")?;
        self.allocate(len as u64)?;
        let a = header.into_array(bytes).map_err(|e| self.fail(e))?;
        Ok(Rc::new(a))
    }
}
