//! The pickle virtual machine: the stack, the memo and one function per opcode.
//!
//! It follows CPython's `Lib/pickle.py` (`_Unpickler`) opcode by opcode, with three differences:
//! globals resolve through the [allowlist](super::allowlist) to labels instead of Python objects;
//! calls build inert values (see [`calls`](super::calls)); and every size, count and depth is
//! checked against [`Limits`] before the work is done.
//!
//! Three disciplines keep hostile input from crashing the process or leaking memory:
//! - an opcode computes its result from references to the stack and only then changes the stack,
//!   so an error leaves every value where the final teardown finds it;
//! - no value is dropped by Rust's recursive drop glue while it might be deep: discarded values go
//!   through [`graph::release`], and the stack, the memo and every mutable container created
//!   through [`graph::dismantle`];
//! - that registry of created containers lets the teardown break reference cycles the pickle built
//!   and dropped, which reference counting alone would leak.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::rc::Rc;

use super::allowlist::{self, Kind};
use super::graph::{self, ShapeError};
use super::limits::{Limit, Limits};
use super::reader::Reader;
use super::text;
use super::value::{Global, Value};
use crate::PersistentLoad;
use crate::error::{Error, Fault, Offset, Result, Stream};

/// Estimated bytes of a new container, for the allocation budget.
pub(crate) const CONTAINER_BYTES: u64 = 64;
/// Estimated bytes of one slot in a container.
pub(crate) const SLOT_BYTES: u64 = 32;

/// What one load shares across the top-level pickle and the nested pickles of joblib object
/// arrays: the input, the limits and the budgets spent so far.
pub(crate) struct Ctx<'a> {
    pub(crate) limits: &'a Limits,
    /// The file, or the stream decompressed from it: what error offsets count.
    pub(crate) stream: Stream,
    pub(crate) reader: Reader<'a>,
    ops: u64,
    alloc: u64,
    /// The caller's resolver of persistent IDs (`PERSID`/`BINPERSID`); without one they are refused.
    pub(crate) persistent: Option<&'a mut PersistentLoad<'a>>,
    /// Whether objects of classes outside the allowlist may be built as inert records.
    pub(crate) records: bool,
}

impl std::fmt::Debug for Ctx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("stream", &self.stream).field("at", &self.reader.pos()).finish_non_exhaustive()
    }
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(limits: &'a Limits, stream: Stream, data: &'a [u8]) -> Self {
        Ctx { limits, stream, reader: Reader::new(data), ops: 0, alloc: 0, persistent: None, records: false }
    }

    /// `byte` of the stream being read.
    pub(crate) fn offset(&self, byte: usize) -> Offset {
        Offset { byte, stream: self.stream }
    }

    /// A [`Fault`] (or a malformation's description) found at `byte`.
    pub(crate) fn error_at(&self, byte: usize, fault: impl Into<Fault>) -> Error {
        fault.into().at(self.offset(byte))
    }

    /// Going over `what` at `byte`; `reason` names the limit.
    pub(crate) fn over_at(&self, byte: usize, what: Limit, reason: String) -> Error {
        Fault::limit(what, what.value(self.limits), reason).at(self.offset(byte))
    }
}

/// The interpreter state of one pickle stream.
pub(crate) struct Machine<'c, 'a> {
    pub(crate) ctx: &'c mut Ctx<'a>,
    pub(crate) stack: Vec<Value>,
    /// Stack heights at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    /// Memo slots holding values that `BUILD` replaces (dtypes, numpy array placeholders, joblib
    /// wrappers), by the value's identity: Python mutates those objects in place, we swap in a new
    /// value and must update the memo too.
    placeholders: HashMap<usize, Vec<u64>>,
    /// Every mutable container (list, dict, set, object) this stream created. Only a mutable
    /// container can close a reference cycle, and a cycle dropped from the stack or memo is never
    /// freed by reference counting; the final teardown empties all of these that the result does
    /// not reach, so a load leaks nothing.
    created: Vec<Value>,
    /// Inside the nested pickle of a joblib object array, where joblib wrappers cannot appear.
    pub(crate) nested: bool,
    /// Offset of the opcode being executed.
    at: usize,
}

/// Runs one pickle stream from the reader's position to its `STOP`, and tears down everything
/// but the result. The result is acyclic and nests at most `max_depth` deep.
pub(crate) fn run(ctx: &mut Ctx<'_>, nested: bool) -> Result<Value> {
    let mut m = Machine {
        ctx,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        placeholders: HashMap::new(),
        created: Vec::new(),
        nested,
        at: 0,
    };
    let outcome = m.execute();
    let mut leftovers = std::mem::take(&mut m.stack);
    leftovers.extend(std::mem::take(&mut m.memo).into_values());
    leftovers.append(&mut m.created);
    let value = match outcome {
        Ok(value) => value,
        Err(e) => {
            graph::dismantle(leftovers, &HashSet::new());
            return Err(e);
        }
    };
    let max_depth = m.ctx.limits.max_depth;
    let max_ops = m.ctx.limits.max_ops;
    let max_expanded = m.ctx.limits.max_collection_len as u64;
    let ops = &mut m.ctx.ops;
    let shape = graph::inspect(&value, max_depth, max_expanded, || {
        *ops += 1;
        *ops <= max_ops
    });
    match shape {
        Ok(keep) => {
            graph::dismantle(leftovers, &keep);
            Ok(value)
        }
        Err(e) => {
            let fault = match e {
                ShapeError::Cycle => {
                    Fault::from("the pickle builds a reference cycle, which no scikit-learn model has")
                }
                ShapeError::TooDeep => Fault::limit(
                    Limit::Depth,
                    max_depth,
                    format!("the data nests deeper than the limit max_depth = {max_depth}"),
                ),
                ShapeError::Budget => Fault::limit(
                    Limit::Ops,
                    max_ops,
                    format!("over the limit max_ops = {max_ops} (opcodes and elements)"),
                ),
                ShapeError::TooShared => Fault::limit(
                    Limit::CollectionLen,
                    max_expanded,
                    format!(
                        "the data shares containers so much that it expands to more than max_collection_len = \
                         {max_expanded} containers"
                    ),
                ),
            };
            leftovers.push(value);
            graph::dismantle(leftovers, &HashSet::new());
            Err(m.ctx.error_at(m.ctx.reader.pos(), fault))
        }
    }
}

impl<'a> Machine<'_, 'a> {
    /// An error about the current opcode: a [`Fault`], or a description of what is malformed.
    pub(crate) fn fail(&self, fault: impl Into<Fault>) -> Error {
        self.ctx.error_at(self.at, fault)
    }

    /// The current opcode goes over `what`; `reason` names the limit.
    pub(crate) fn over(&self, what: Limit, reason: String) -> Error {
        self.ctx.over_at(self.at, what, reason)
    }

    /// The offset of the current opcode.
    pub(crate) fn here(&self) -> Offset {
        self.ctx.offset(self.at)
    }

    /// The current opcode uses a feature that is not read.
    fn unsupported(&self, feature: impl Into<String>) -> Error {
        Error::Unsupported { feature: feature.into(), at: Some(self.ctx.offset(self.at)) }
    }

    /// The stream ends inside the current opcode.
    pub(crate) fn cut_short(&self, detail: String) -> Error {
        Error::Truncated { detail, at: self.ctx.offset(self.at) }
    }

    /// Spends `n` units of the time budget.
    pub(crate) fn spend(&mut self, n: u64) -> Result<()> {
        self.ctx.ops = self.ctx.ops.saturating_add(n);
        if self.ctx.ops > self.ctx.limits.max_ops {
            let max = self.ctx.limits.max_ops;
            return Err(self.over(Limit::Ops, format!("over the limit max_ops = {max} (opcodes and elements)")));
        }
        Ok(())
    }

    /// Spends `bytes` of the allocation budget, before allocating them.
    pub(crate) fn allocate(&mut self, bytes: u64) -> Result<()> {
        self.ctx.alloc = self.ctx.alloc.saturating_add(bytes);
        if self.ctx.alloc > self.ctx.limits.max_alloc_bytes {
            let max = self.ctx.limits.max_alloc_bytes;
            return Err(self.over(
                Limit::AllocBytes,
                format!("over the limit max_alloc_bytes = {max} (bytes the pickle makes the reader allocate)"),
            ));
        }
        Ok(())
    }

    /// Checks a container's length against `max_collection_len` and charges its slots.
    pub(crate) fn check_len(&mut self, len: usize, what: &str) -> Result<()> {
        let max = self.ctx.limits.max_collection_len;
        if len > max {
            return Err(self.over(
                Limit::CollectionLen,
                format!("a {what} of {len} elements is over the limit max_collection_len = {max}"),
            ));
        }
        Ok(())
    }

    fn execute(&mut self) -> Result<Value> {
        loop {
            self.at = self.ctx.reader.pos();
            let Some(op) = self.ctx.reader.byte() else {
                return Err(self.cut_short("the stream ends before STOP".to_owned()));
            };
            self.spend(1)?;
            match op {
                b'.' => return self.pop(),
                b'(' => self.mark()?,
                b'0' => self.pop_op()?,
                b'1' => {
                    let items = self.pop_mark()?;
                    release_all(items);
                }
                b'2' => {
                    let top = self.top()?.clone();
                    self.push(top)?;
                }
                // Numbers.
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'I' => self.int_text()?,
                b'L' => self.long_text()?,
                b'J' => {
                    let v = i32::from_le_bytes(self.read_array("BININT")?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'K' => {
                    let v = self.read_array::<1>("BININT1")?[0];
                    self.push(Value::Int(i64::from(v)))?;
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.read_array("BININT2")?);
                    self.push(Value::Int(i64::from(v)))?;
                }
                0x8a => {
                    let n = self.read_array::<1>("LONG1")?[0];
                    self.long_bytes(usize::from(n), "LONG1")?;
                }
                0x8b => {
                    let n = i32::from_le_bytes(self.read_array("LONG4")?);
                    let n = usize::try_from(n).map_err(|_| self.fail("LONG4 with a negative length"))?;
                    self.long_bytes(n, "LONG4")?;
                }
                b'F' => {
                    let line = self.read_line("FLOAT")?;
                    let v = std::str::from_utf8(line).ok().and_then(|s| s.trim().parse::<f64>().ok());
                    let v = v.ok_or_else(|| self.fail("FLOAT argument is not a number"))?;
                    self.push(Value::Float(v))?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.read_array("BINFLOAT")?);
                    self.push(Value::Float(v))?;
                }
                // Strings and bytes.
                b'S' => self.string_text()?,
                b'T' => {
                    let n = i32::from_le_bytes(self.read_array("BINSTRING")?);
                    let n = usize::try_from(n).map_err(|_| self.fail("BINSTRING with a negative length"))?;
                    let bytes = self.read_counted(n, "BINSTRING")?;
                    self.push_py2_str(bytes)?;
                }
                b'U' => {
                    let n = self.read_array::<1>("SHORT_BINSTRING")?[0];
                    let bytes = self.read_counted(usize::from(n), "SHORT_BINSTRING")?;
                    self.push_py2_str(bytes)?;
                }
                b'V' => {
                    let line = self.read_line("UNICODE")?;
                    let s = text::raw_unicode_escape(line).map_err(|e| self.fail(e))?;
                    self.allocate(s.len() as u64)?;
                    self.push(Value::Str(Rc::from(s)))?;
                }
                b'X' => {
                    let n = u32::from_le_bytes(self.read_array("BINUNICODE")?);
                    self.unicode(u64::from(n), "BINUNICODE")?;
                }
                0x8c => {
                    let n = self.read_array::<1>("SHORT_BINUNICODE")?[0];
                    self.unicode(u64::from(n), "SHORT_BINUNICODE")?;
                }
                0x8d => {
                    let n = u64::from_le_bytes(self.read_array("BINUNICODE8")?);
                    self.unicode(n, "BINUNICODE8")?;
                }
                b'B' => {
                    let n = u32::from_le_bytes(self.read_array("BINBYTES")?);
                    self.bytes(u64::from(n), "BINBYTES")?;
                }
                b'C' => {
                    let n = self.read_array::<1>("SHORT_BINBYTES")?[0];
                    self.bytes(u64::from(n), "SHORT_BINBYTES")?;
                }
                0x8e => {
                    let n = u64::from_le_bytes(self.read_array("BINBYTES8")?);
                    self.bytes(n, "BINBYTES8")?;
                }
                0x96 => {
                    let n = u64::from_le_bytes(self.read_array("BYTEARRAY8")?);
                    self.bytes(n, "BYTEARRAY8")?;
                }
                // Containers.
                b']' => self.push_new(Value::List(Rc::default()))?,
                b')' => self.push_new(Value::Tuple(Rc::from(Vec::new())))?,
                b'}' => self.push_new(Value::Dict(Rc::default()))?,
                0x8f => self.push_new(Value::Set(Rc::default()))?,
                b'l' => {
                    let base = self.mark_base()?;
                    self.collect_check(base, 1, "list")?;
                    let items = self.pop_mark()?;
                    let list = Value::List(Rc::new(items.into()));
                    self.track(&list);
                    self.push(list)?;
                }
                b't' => {
                    let base = self.mark_base()?;
                    self.collect_check(base, 1, "tuple")?;
                    let items = self.pop_mark()?;
                    self.push(Value::Tuple(Rc::from(items)))?;
                }
                0x85..=0x87 => self.tuple_n(usize::from(op - 0x84))?,
                b'd' => {
                    let base = self.mark_base()?;
                    self.collect_check(base, 2, "dict")?;
                    let items = self.pop_mark()?;
                    let dict = Value::Dict(Rc::default());
                    self.track(&dict);
                    if let Err(e) = self.fill(&dict, items, true) {
                        graph::release(dict);
                        return Err(e);
                    }
                    self.push(dict)?;
                }
                0x91 => {
                    let base = self.mark_base()?;
                    self.collect_check(base, 1, "frozenset")?;
                    let items = self.pop_mark()?;
                    let set = Value::Set(Rc::default());
                    self.track(&set);
                    if let Err(e) = self.fill(&set, items, false) {
                        graph::release(set);
                        return Err(e);
                    }
                    self.push(set)?;
                }
                b'a' => self.append()?,
                b'e' | b'u' | 0x90 => self.extend(op)?,
                b's' => self.setitem()?,
                // The memo.
                b'g' => {
                    let i = self.read_decimal("GET")?;
                    self.get(i)?;
                }
                b'h' => {
                    let i = self.read_array::<1>("BINGET")?[0];
                    self.get(u64::from(i))?;
                }
                b'j' => {
                    let i = u32::from_le_bytes(self.read_array("LONG_BINGET")?);
                    self.get(u64::from(i))?;
                }
                b'p' => {
                    let i = self.read_decimal("PUT")?;
                    self.put(i)?;
                }
                b'q' => {
                    let i = self.read_array::<1>("BINPUT")?[0];
                    self.put(u64::from(i))?;
                }
                b'r' => {
                    let i = u32::from_le_bytes(self.read_array("LONG_BINPUT")?);
                    self.put(u64::from(i))?;
                }
                0x94 => {
                    let i = self.memo.len() as u64;
                    self.put(i)?;
                }
                // Classes and calls.
                b'c' => {
                    let module = self.read_line("GLOBAL")?;
                    let name = self.read_line("GLOBAL")?;
                    let global = self.resolve_bytes(module, name)?;
                    self.push(global)?;
                }
                0x93 => {
                    let (module, name) = match (self.peek(1)?, self.peek(0)?) {
                        (Value::Str(m), Value::Str(n)) => (Rc::clone(m), Rc::clone(n)),
                        _ => return Err(self.fail("STACK_GLOBAL needs a module and a name string")),
                    };
                    let global = self.resolve(&module, &name)?;
                    self.drop_n(2)?;
                    self.push(global)?;
                }
                b'R' => self.reduce()?,
                0x81 => self.newobj()?,
                0x92 => self.newobj_ex()?,
                b'i' => self.inst()?,
                b'o' => self.obj()?,
                b'b' => self.build()?,
                // Framing and protocol.
                0x80 => {
                    let v = self.read_array::<1>("PROTO")?[0];
                    if v > 5 {
                        return Err(self.unsupported(format!("unsupported pickle protocol {v} (0 to 5 are)")));
                    }
                }
                0x95 => {
                    let n = u64::from_le_bytes(self.read_array("FRAME")?);
                    if n > self.ctx.reader.remaining() as u64 {
                        let remaining = self.ctx.reader.remaining();
                        return Err(self.cut_short(format!("a FRAME of {n} bytes with {remaining} remaining")));
                    }
                }
                // Persistent IDs: resolved by the caller's resolver, refused without one.
                b'P' => {
                    let line = self.read_line("PERSID")?;
                    let pid = String::from_utf8_lossy(line).trim_end_matches('\r').to_owned();
                    self.allocate(pid.len() as u64)?;
                    self.push(Value::Str(Rc::from(pid)))?;
                    self.persistent_load()?;
                }
                b'Q' => self.persistent_load()?,
                0x82..=0x84 => {
                    return Err(self.unsupported(
                        "extension codes (EXT1/EXT2/EXT4) are not supported: they name classes through \
                         Python's copyreg registry",
                    ));
                }
                0x97 | 0x98 => {
                    return Err(self.unsupported(
                        "out-of-band buffers (NEXT_BUFFER/READONLY_BUFFER) are not supported: save the model \
                         without a buffer_callback",
                    ));
                }
                opcode => return Err(Error::UnknownOpcode { opcode, at: self.ctx.offset(self.at) }),
            }
        }
    }

    /// `BINPERSID` (and `PERSID` after pushing its string): replaces the persistent ID on top of the
    /// stack by what the caller's resolver makes of it.
    fn persistent_load(&mut self) -> Result<()> {
        let pid = self.peek(0)?.clone();
        let Some(resolve) = self.ctx.persistent.as_mut() else {
            graph::release(pid);
            return Err(self.unsupported(
                "persistent IDs (PERSID/BINPERSID) are not supported: the pickle refers to objects stored outside it",
            ));
        };
        let resolved = resolve(&pid);
        graph::release(pid);
        let v = resolved.map_err(|reason| self.fail(format!("persistent ID: {reason}")))?;
        let old = self.replace(0, v)?;
        graph::release(old);
        Ok(())
    }

    // --- Reading arguments.

    pub(crate) fn truncated(&self, what: &str, need: impl Display) -> Error {
        self.cut_short(format!("{what} needs {need} bytes, {} remain", self.ctx.reader.remaining()))
    }

    pub(crate) fn read_array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        self.ctx.reader.array::<N>().ok_or_else(|| self.truncated(what, N))
    }

    /// `n` bytes, after checking that they are present (so a declared length is never allocated).
    pub(crate) fn read_counted(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if n > self.ctx.reader.remaining() {
            return Err(self.truncated(what, n));
        }
        let remaining = self.ctx.reader.remaining();
        self.ctx.reader.take(n).ok_or_else(|| self.cut_short(format!("{what} needs {n} bytes, {remaining} remain")))
    }

    pub(crate) fn read_line(&mut self, what: &str) -> Result<&'a [u8]> {
        match self.ctx.reader.line() {
            Some(line) => Ok(line),
            None => Err(self.cut_short(format!("{what} argument has no end of line"))),
        }
    }

    fn read_decimal(&mut self, what: &str) -> Result<u64> {
        let line = self.read_line(what)?;
        let v = std::str::from_utf8(line).ok().and_then(|s| s.trim().parse::<u64>().ok());
        v.ok_or_else(|| self.fail(format!("{what} argument is not a memo index")))
    }

    // --- The stack.

    /// The stack height of the innermost open `MARK` (0 without one): values below it are not
    /// reachable until the mark is popped, as in Python's metastack.
    pub(crate) fn frame_base(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    /// The base of the frame below the innermost `MARK`, for opcodes that pop a mark then use the
    /// value under it (`APPENDS`, `SETITEMS`, `ADDITEMS`).
    pub(crate) fn outer_base(&self) -> usize {
        self.marks.len().checked_sub(2).and_then(|i| self.marks.get(i)).copied().unwrap_or(0)
    }

    pub(crate) fn push(&mut self, v: Value) -> Result<()> {
        if self.stack.len() >= self.ctx.limits.max_stack {
            graph::release(v);
            let max = self.ctx.limits.max_stack;
            return Err(self.over(Limit::Stack, format!("over the limit max_stack = {max} (values on the stack)")));
        }
        self.stack.push(v);
        Ok(())
    }

    /// Pushes a new empty container, charging it.
    fn push_new(&mut self, v: Value) -> Result<()> {
        self.allocate(CONTAINER_BYTES)?;
        self.track(&v);
        self.push(v)
    }

    /// Registers a new container for the final teardown (see [`Machine::created`]).
    pub(crate) fn track(&mut self, v: &Value) {
        if matches!(v, Value::List(_) | Value::Dict(_) | Value::Set(_) | Value::Object(_)) {
            #[cfg(test)]
            leak_check::record(v);
            self.created.push(v.clone());
        }
    }

    pub(crate) fn underflow(&self) -> Error {
        self.fail("stack underflow: the opcode needs more values than the pickle pushed")
    }

    /// The value `depth` below the top (0 = top), within the current frame.
    pub(crate) fn peek(&self, depth: usize) -> Result<&Value> {
        let len = self.stack.len();
        if len < self.frame_base() + depth + 1 {
            return Err(self.underflow());
        }
        Ok(&self.stack[len - 1 - depth])
    }

    fn top(&self) -> Result<&Value> {
        self.peek(0)
    }

    pub(crate) fn pop(&mut self) -> Result<Value> {
        if self.stack.len() <= self.frame_base() {
            return Err(self.underflow());
        }
        self.stack.pop().ok_or_else(|| self.underflow())
    }

    /// Pops and releases the top `n` values.
    pub(crate) fn drop_n(&mut self, n: usize) -> Result<()> {
        for _ in 0..n {
            let v = self.pop()?;
            graph::release(v);
        }
        Ok(())
    }

    /// Replaces the value `depth` below the top, releasing the old one.
    pub(crate) fn replace(&mut self, depth: usize, v: Value) -> Result<Value> {
        self.peek(depth)?;
        let i = self.stack.len() - 1 - depth;
        Ok(std::mem::replace(&mut self.stack[i], v))
    }

    fn mark(&mut self) -> Result<()> {
        if self.marks.len() >= self.ctx.limits.max_depth {
            let max = self.ctx.limits.max_depth;
            return Err(self.over(Limit::Depth, format!("MARKs nest deeper than the limit max_depth = {max}")));
        }
        self.marks.push(self.stack.len());
        Ok(())
    }

    /// The stack height at the innermost `MARK`.
    pub(crate) fn mark_base(&self) -> Result<usize> {
        self.marks.last().copied().ok_or_else(|| self.fail("the opcode needs a MARK and there is none"))
    }

    /// Pops the innermost `MARK` and the values above it.
    pub(crate) fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let base = self.mark_base()?;
        self.marks.pop();
        Ok(self.stack.split_off(base.min(self.stack.len())))
    }

    /// `POP`: the top value, or an empty frame's `MARK` (as Python does).
    fn pop_op(&mut self) -> Result<()> {
        if self.stack.len() > self.frame_base() {
            return self.drop_n(1);
        }
        self.pop_mark().map(release_all)
    }

    /// Checks the values above the mark at `base` before collecting them into a container.
    fn collect_check(&mut self, base: usize, per_element: usize, what: &str) -> Result<()> {
        let n = self.stack.len() - base;
        if per_element == 2 && !n.is_multiple_of(2) {
            return Err(self.fail(format!("a {what} from an odd number of values")));
        }
        self.check_len(n / per_element, what)?;
        self.allocate(CONTAINER_BYTES + (n as u64) * SLOT_BYTES)
    }

    fn tuple_n(&mut self, n: usize) -> Result<()> {
        self.peek(n - 1)?;
        self.allocate(CONTAINER_BYTES + (n as u64) * SLOT_BYTES)?;
        let items = self.stack.split_off(self.stack.len() - n);
        self.push(Value::Tuple(Rc::from(items)))
    }

    // --- The memo.

    fn get(&mut self, i: u64) -> Result<()> {
        let v = self.memo.get(&i).cloned().ok_or_else(|| self.fail(format!("the memo has no entry {i}")))?;
        self.push(v)
    }

    fn put(&mut self, i: u64) -> Result<()> {
        let max = self.ctx.limits.max_memo;
        if i >= max as u64 || (self.memo.len() >= max && !self.memo.contains_key(&i)) {
            return Err(self.over(Limit::Memo, format!("memo index {i} is over the limit max_memo = {max}")));
        }
        let v = self.top()?.clone();
        self.allocate(SLOT_BYTES)?;
        if self.is_placeholder(&v)
            && let Some(id) = identity(&v)
        {
            self.placeholders.entry(id).or_default().push(i);
        }
        if let Some(old) = self.memo.insert(i, v) {
            graph::release(old);
        }
        Ok(())
    }

    /// Whether `BUILD` will replace this value with another (so memo slots holding it must follow).
    fn is_placeholder(&self, v: &Value) -> bool {
        match v {
            Value::Dtype(_) => true,
            Value::Object(o) => {
                let o = o.borrow();
                matches!(
                    allowlist::lookup(&o.class.module, &o.class.name),
                    Some(Kind::Reconstruct | Kind::NumpyArrayWrapper)
                )
            }
            _ => false,
        }
    }

    /// Puts `new` where `BUILD`'s target was (one below the top), in the stack and in every memo
    /// slot that held the target, then pops the state.
    pub(crate) fn replace_built(&mut self, new: Value) -> Result<()> {
        let old = self.replace(1, new.clone())?;
        if let Some(slots) = identity(&old).and_then(|id| self.placeholders.remove(&id)) {
            for i in slots {
                if let Some(slot) = self.memo.get_mut(&i)
                    && identity(slot) == identity(&old)
                {
                    let previous = std::mem::replace(slot, new.clone());
                    graph::release(previous);
                }
            }
        }
        graph::release(old);
        self.drop_n(1)
    }

    // --- Globals.

    fn resolve_bytes(&mut self, module: &[u8], name: &[u8]) -> Result<Value> {
        let (Ok(module), Ok(name)) = (std::str::from_utf8(module), std::str::from_utf8(name)) else {
            return Err(self.fail("GLOBAL names are not valid UTF-8"));
        };
        let (module, name) = (module.trim_end_matches('\r').to_owned(), name.trim_end_matches('\r').to_owned());
        self.resolve(&module, &name)
    }

    /// A global, if the allowlist has it.
    pub(crate) fn resolve(&mut self, module: &str, name: &str) -> Result<Value> {
        let canonical = allowlist::canonical_module(module);
        let at = self.ctx.offset(self.at);
        if let Some(advice) = allowlist::refusal(canonical, name) {
            return Err(Error::RefusedClass { module: module.to_owned(), name: name.to_owned(), advice, at });
        }
        if allowlist::lookup(canonical, name).is_none() && !self.ctx.records {
            return Err(Error::UnsupportedClass { module: module.to_owned(), name: name.to_owned(), at });
        }
        self.allocate(CONTAINER_BYTES + (canonical.len() + name.len()) as u64)?;
        Ok(Value::Global(Rc::new(Global { module: canonical.to_owned(), name: name.to_owned() })))
    }
}

/// Releases values one by one (see [`graph::release`]).
pub(crate) fn release_all(values: Vec<Value>) {
    for v in values {
        graph::release(v);
    }
}

/// The identity of a value that `BUILD` may replace.
fn identity(v: &Value) -> Option<usize> {
    match v {
        Value::Dtype(d) => Some(Rc::as_ptr(d) as usize),
        Value::Object(o) => Some(Rc::as_ptr(o).cast::<()>() as usize),
        _ => None,
    }
}

/// Tests' view of the containers the interpreter created on this thread, to check that a load
/// frees everything it does not return.
#[cfg(test)]
pub(crate) mod leak_check {
    use std::cell::RefCell;
    use std::rc::{Rc, Weak};

    use super::Value;
    use crate::Object;

    enum Tracked {
        Items(Weak<RefCell<Vec<Value>>>),
        Pairs(Weak<RefCell<Vec<(Value, Value)>>>),
        Object(Weak<RefCell<Object>>),
    }

    thread_local! {
        static TRACKED: RefCell<Vec<Tracked>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(v: &Value) {
        let t = match v {
            Value::List(l) | Value::Set(l) => Tracked::Items(Rc::downgrade(l)),
            Value::Dict(d) => Tracked::Pairs(Rc::downgrade(d)),
            Value::Object(o) => Tracked::Object(Rc::downgrade(o)),
            _ => return,
        };
        TRACKED.with(|tracked| tracked.borrow_mut().push(t));
    }

    /// How many containers created since the last call are still alive; forgets them.
    pub(crate) fn alive() -> usize {
        TRACKED.with(|tracked| {
            tracked
                .borrow_mut()
                .drain(..)
                .filter(|t| match t {
                    Tracked::Items(w) => w.strong_count() > 0,
                    Tracked::Pairs(w) => w.strong_count() > 0,
                    Tracked::Object(w) => w.strong_count() > 0,
                })
                .count()
        })
    }
}
