//! The opcodes that fill containers: `APPEND(S)`, `SETITEM(S)`, `ADDITEMS`, and dict/set insertion
//! with Python's replacement of equal keys.

use std::rc::Rc;

use super::graph;
use super::machine::{CONTAINER_BYTES, Machine, SLOT_BYTES, release_all};
use super::value::Value;
use crate::error::Result;

/// Dicts and sets up to this many entries replace equal keys, as Python does.
const DEDUP_LEN: usize = 256;

impl Machine<'_, '_> {
    /// Adds `key → value` to a dict, or `key` to a set (`value` ignored). Like Python, an equal
    /// key already present is replaced; equality is checked for scalar keys of containers up to
    /// [`DEDUP_LEN`] entries, which covers every real dict and set in a model (larger ones are
    /// appended to, which only differs from Python for duplicate keys, which pickle never writes).
    /// On error, `key` and `value` are released.
    pub(crate) fn insert(&mut self, target: &Value, key: Value, value: Value) -> Result<()> {
        let slot = match self.insert_slot(target, &key) {
            Ok(slot) => slot,
            Err(e) => {
                graph::release(key);
                graph::release(value);
                return Err(e);
            }
        };
        match (target, slot) {
            (Value::Dict(d), Some(i)) => {
                let old = d.borrow_mut().get_mut(i).map(|slot| std::mem::replace(&mut slot.1, value));
                old.into_iter().chain([key]).for_each(graph::release);
            }
            (Value::Dict(d), None) => d.borrow_mut().push((key, value)),
            (Value::Set(s), None) => {
                s.borrow_mut().push(key);
                graph::release(value);
            }
            _ => {
                graph::release(key);
                graph::release(value);
            }
        }
        Ok(())
    }

    /// Where `key` goes in `target`: the index of an equal key, or `None` for a new entry (whose
    /// cost has then been checked and charged).
    fn insert_slot(&mut self, target: &Value, key: &Value) -> Result<Option<usize>> {
        self.spend(1)?;
        let (len, what) = match target {
            Value::Dict(d) => (d.borrow().len(), "dict"),
            Value::Set(s) => (s.borrow().len(), "set"),
            _ => return Err(self.fail(format!("cannot add items to a {}", target.type_name()))),
        };
        if len <= DEDUP_LEN && is_scalar(key) {
            self.spend(len as u64)?;
            let found = match target {
                Value::Dict(d) => d.borrow().iter().position(|(k, _)| same_key(k, key)),
                Value::Set(s) => s.borrow().iter().position(|k| same_key(k, key)),
                _ => None,
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        self.check_len(len + 1, what)?;
        self.allocate(2 * SLOT_BYTES)?;
        Ok(None)
    }

    /// Inserts the items (key, value pairs when `pairs`) into a dict or set; on error the items not
    /// yet inserted are released.
    pub(crate) fn fill(&mut self, target: &Value, items: Vec<Value>, pairs: bool) -> Result<()> {
        let mut items = items.into_iter();
        while let Some(k) = items.next() {
            let v = if pairs { items.next().unwrap_or(Value::None) } else { Value::None };
            if let Err(e) = self.insert(target, k, v) {
                release_all(items.collect());
                return Err(e);
            }
        }
        Ok(())
    }

    pub(crate) fn append(&mut self) -> Result<()> {
        let target = self.peek(1)?.clone();
        match &target {
            Value::List(l) => {
                let len = l.borrow().len();
                self.check_len(len + 1, "list")?;
                self.allocate(SLOT_BYTES)?;
                let v = self.pop()?;
                l.borrow_mut().push(v);
            }
            Value::Object(o) => {
                let len = o.borrow().items.len();
                self.check_len(len + 1, "list of object items")?;
                self.allocate(SLOT_BYTES)?;
                let v = self.pop()?;
                o.borrow_mut().items.push(v);
            }
            other => return Err(self.fail(format!("APPEND to a {}", other.type_name()))),
        }
        Ok(())
    }

    /// `APPENDS`, `SETITEMS`, `ADDITEMS`: the values above the mark go into the value below it.
    pub(crate) fn extend(&mut self, op: u8) -> Result<()> {
        let base = self.mark_base()?;
        if base <= self.outer_base() {
            return Err(self.underflow());
        }
        let target = self.stack[base - 1].clone();
        let n = self.stack.len() - base;
        match (op, &target) {
            (b'e', Value::List(l)) => {
                let len = l.borrow().len();
                self.check_len(len + n, "list")?;
                self.allocate(n as u64 * SLOT_BYTES)?;
                self.spend(n as u64)?;
                let items = self.pop_mark()?;
                l.borrow_mut().extend(items);
            }
            (b'u', Value::Dict(_)) | (0x90, Value::Set(_)) => {
                if op == b'u' && !n.is_multiple_of(2) {
                    return Err(self.fail("SETITEMS with an odd number of values"));
                }
                let items = self.pop_mark()?;
                self.fill(&target, items, op == b'u')?;
            }
            (_, Value::Object(o)) => {
                let len = o.borrow().items.len();
                if op == b'u' && !n.is_multiple_of(2) {
                    return Err(self.fail("SETITEMS with an odd number of values"));
                }
                self.check_len(len + n, "list of object items")?;
                self.allocate(n as u64 * SLOT_BYTES)?;
                self.spend(n as u64)?;
                let items = self.pop_mark()?;
                let mut o = o.borrow_mut();
                if op == b'u' {
                    let mut items = items.into_iter();
                    while let (Some(k), Some(v)) = (items.next(), items.next()) {
                        o.items.push(Value::Tuple(Rc::from(vec![k, v])));
                    }
                } else {
                    o.items.extend(items);
                }
            }
            (_, other) => {
                let name = match op {
                    b'e' => "APPENDS",
                    b'u' => "SETITEMS",
                    _ => "ADDITEMS",
                };
                return Err(self.fail(format!("{name} to a {}", other.type_name())));
            }
        }
        Ok(())
    }

    pub(crate) fn setitem(&mut self) -> Result<()> {
        let target = self.peek(2)?.clone();
        match &target {
            Value::Dict(_) => {
                let v = self.pop()?;
                let k = self.pop()?;
                self.insert(&target, k, v)
            }
            Value::Object(o) => {
                let len = o.borrow().items.len();
                self.check_len(len + 1, "list of object items")?;
                self.allocate(CONTAINER_BYTES)?;
                let v = self.pop()?;
                let k = self.pop()?;
                o.borrow_mut().items.push(Value::Tuple(Rc::from(vec![k, v])));
                Ok(())
            }
            other => Err(self.fail(format!("SETITEM on a {}", other.type_name()))),
        }
    }
}

fn is_scalar(v: &Value) -> bool {
    matches!(v, Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) | Value::Str(_) | Value::Bytes(_))
}

/// Python's equality of scalar keys (`1 == 1.0 == True`).
fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::None, Value::None) => true,
        (Value::Str(a), Value::Str(b)) => a == b,
        (Value::Bytes(a), Value::Bytes(b)) => a == b,
        (Value::Int(_) | Value::Bool(_), Value::Int(_) | Value::Bool(_)) => a.as_int() == b.as_int(),
        (Value::Float(x), Value::Float(y)) => x == y,
        #[allow(clippy::cast_precision_loss)]
        (Value::Float(f), i @ (Value::Int(_) | Value::Bool(_)))
        | (i @ (Value::Int(_) | Value::Bool(_)), Value::Float(f)) => {
            i.as_int().is_some_and(|i| i as f64 == *f && (*f as i64) == i)
        }
        _ => false,
    }
}
