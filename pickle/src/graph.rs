//! Walking and tearing down the value graph a pickle built, without recursion.
//!
//! A pickle can build a list nested a million deep in a few megabytes (through the memo), or a
//! list that contains itself. Rust's drop glue, `Debug` and `PartialEq` recurse, so such a value
//! would overflow the thread's stack (an abort, not a panic) the moment it is dropped or printed.
//! So the interpreter checks the result's depth and acyclicity iteratively here, and takes apart
//! everything it does not return (the memo, the stack, a rejected result) iteratively too.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::value::{ArrayData, Value};

/// The identity of a shared value (the address of its allocation), or `None` for values that hold
/// no other values.
fn identity(v: &Value) -> Option<usize> {
    match v {
        Value::List(l) | Value::Set(l) => Some(Rc::as_ptr(l).cast::<()>() as usize),
        Value::Tuple(t) => Some(Rc::as_ptr(t).cast::<()>() as usize),
        Value::Dict(d) => Some(Rc::as_ptr(d).cast::<()>() as usize),
        Value::Object(o) => Some(Rc::as_ptr(o).cast::<()>() as usize),
        Value::Array(a) => Some(Rc::as_ptr(a).cast::<()>() as usize),
        _ => None,
    }
}

/// The values `v` holds directly (cheap handle clones).
fn children(v: &Value) -> Vec<Value> {
    match v {
        Value::List(l) | Value::Set(l) => l.try_borrow().map(|l| l.clone()).unwrap_or_default(),
        Value::Tuple(t) => t.to_vec(),
        Value::Dict(d) => {
            d.try_borrow().map(|d| d.iter().flat_map(|(k, v)| [k.clone(), v.clone()]).collect()).unwrap_or_default()
        }
        Value::Object(o) => o
            .try_borrow()
            .map(|o| o.args.iter().chain(o.state.iter()).chain(o.items.iter()).cloned().collect())
            .unwrap_or_default(),
        Value::Array(a) => match &a.data {
            ArrayData::Objects(items) => items.clone(),
            ArrayData::Raw(_) => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// What is wrong with a value graph's shape.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ShapeError {
    /// A container (directly or indirectly) contains itself.
    Cycle,
    /// Containers nest deeper than the limit.
    TooDeep,
    /// Shared containers, counted once per reference, add up to more than the limit ("billion
    /// laughs": a small graph that is astronomically large as a tree).
    TooShared,
    /// The walk used up the work budget (`visit` returned `false`).
    Budget,
}

/// Checks that `root` is acyclic, nests at most `max_depth` containers deep and holds at most
/// `max_expanded` containers when each shared one is counted once per reference (what a walk of
/// the value as a tree visits), and returns the identities of every container reachable from it.
/// `visit` is called once per container visited (for the interpreter's work budget) and stops the
/// walk with [`ShapeError::Budget`] by returning `false`.
pub(crate) fn inspect(
    root: &Value,
    max_depth: usize,
    max_expanded: u64,
    mut visit: impl FnMut() -> bool,
) -> Result<HashSet<usize>, ShapeError> {
    struct Frame {
        id: usize,
        children: Vec<Value>,
        next: usize,
        depth: usize,
        expanded: u64,
    }
    // Depth and expanded size of every finished container; containers on the current path are in
    // `on_path`.
    let mut done: HashMap<usize, (usize, u64)> = HashMap::new();
    let mut on_path: HashSet<usize> = HashSet::new();
    let mut frames: Vec<Frame> = Vec::new();

    let Some(root_id) = identity(root) else { return Ok(HashSet::new()) };
    if !visit() {
        return Err(ShapeError::Budget);
    }
    on_path.insert(root_id);
    frames.push(Frame { id: root_id, children: children(root), next: 0, depth: 0, expanded: 1 });
    loop {
        let depth_now = frames.len();
        let Some(frame) = frames.last_mut() else { break };
        if let Some(child) = frame.children.get(frame.next).cloned() {
            frame.next += 1;
            let Some(id) = identity(&child) else { continue };
            if let Some(&(d, e)) = done.get(&id) {
                frame.depth = frame.depth.max(d + 1);
                frame.expanded = frame.expanded.saturating_add(e);
                if frame.expanded > max_expanded {
                    return Err(ShapeError::TooShared);
                }
                continue;
            }
            if on_path.contains(&id) {
                return Err(ShapeError::Cycle);
            }
            if depth_now >= max_depth {
                return Err(ShapeError::TooDeep);
            }
            if !visit() {
                return Err(ShapeError::Budget);
            }
            on_path.insert(id);
            frames.push(Frame { id, children: children(&child), next: 0, depth: 0, expanded: 1 });
        } else {
            let Some(f) = frames.pop() else { break };
            on_path.remove(&f.id);
            done.insert(f.id, (f.depth, f.expanded));
            if let Some(parent) = frames.last_mut() {
                parent.depth = parent.depth.max(f.depth + 1);
                parent.expanded = parent.expanded.saturating_add(f.expanded);
                if parent.expanded > max_expanded {
                    return Err(ShapeError::TooShared);
                }
            }
        }
    }
    Ok(done.into_keys().collect())
}

/// Drops a value the interpreter no longer needs, without recursion: a container this was the
/// last handle to is emptied first, and its contents released the same way. Containers still
/// shared elsewhere are left alone (only their handle count drops), so this is safe on live data.
pub(crate) fn release(v: Value) {
    if identity(&v).is_none() {
        return;
    }
    let mut work = vec![v];
    while let Some(mut v) = work.pop() {
        match &mut v {
            Value::List(l) | Value::Set(l) => {
                if let Some(items) = Rc::get_mut(l) {
                    work.append(items.get_mut());
                }
            }
            Value::Dict(d) => {
                if let Some(d) = Rc::get_mut(d) {
                    for (k, v) in d.get_mut().drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            Value::Object(o) => {
                if let Some(o) = Rc::get_mut(o) {
                    let o = o.get_mut();
                    work.append(&mut o.args);
                    work.append(&mut o.items);
                    work.extend(o.state.take());
                }
            }
            Value::Tuple(t) => {
                if let Some(items) = Rc::get_mut(t) {
                    work.extend(items.iter_mut().map(|x| std::mem::replace(x, Value::None)));
                }
            }
            Value::Array(a) => {
                if let Some(ArrayData::Objects(items)) = Rc::get_mut(a).map(|a| &mut a.data) {
                    work.append(items);
                }
            }
            _ => {}
        }
    }
}

/// Drops `values` without recursion. Containers whose identity is in `keep` are left intact (the
/// handles here are just released); every other container is emptied first, so that nothing
/// dropped afterwards holds more than a leaf. Emptying a mutable container regardless of other
/// handles also breaks reference cycles, which would otherwise leak.
///
/// `keep` must be closed under containment (everything reachable from a kept container is kept),
/// as [`inspect`]'s result is.
pub(crate) fn dismantle(values: Vec<Value>, keep: &HashSet<usize>) {
    let mut work = values;
    while let Some(mut v) = work.pop() {
        if identity(&v).is_some_and(|id| keep.contains(&id)) {
            continue;
        }
        match &mut v {
            Value::List(l) | Value::Set(l) => {
                if let Ok(mut l) = l.try_borrow_mut() {
                    work.append(&mut l);
                }
            }
            Value::Dict(d) => {
                if let Ok(mut d) = d.try_borrow_mut() {
                    for (k, v) in d.drain(..) {
                        work.push(k);
                        work.push(v);
                    }
                }
            }
            Value::Object(o) => {
                if let Ok(mut o) = o.try_borrow_mut() {
                    work.append(&mut o.args);
                    work.append(&mut o.items);
                    work.extend(o.state.take());
                }
            }
            // Immutable containers can only be emptied through their last handle; the others are
            // in `work` (or in emptied containers whose contents went to `work`), so the last one
            // processed empties it.
            Value::Tuple(t) => {
                if let Some(items) = Rc::get_mut(t) {
                    work.extend(items.iter_mut().map(|x| std::mem::replace(x, Value::None)));
                }
            }
            Value::Array(a) => {
                if let Some(ArrayData::Objects(items)) = Rc::get_mut(a).map(|a| &mut a.data) {
                    work.append(items);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    fn list(items: Vec<Value>) -> Value {
        Value::List(Rc::new(RefCell::new(items)))
    }

    fn nested(depth: usize) -> Value {
        let mut v = list(vec![]);
        for _ in 0..depth {
            v = list(vec![v]);
        }
        v
    }

    #[test]
    fn depth_is_bounded() {
        assert!(inspect(&nested(10), 11, 100, || true).is_ok());
        assert_eq!(inspect(&nested(10), 10, 100, || true), Err(ShapeError::TooDeep));
        assert_eq!(inspect(&Value::Int(1), 0, 100, || true), Ok(HashSet::new()));
    }

    #[test]
    fn shared_values_are_not_cycles() {
        let shared = list(vec![Value::Int(1)]);
        let root = Value::Tuple(Rc::from(vec![shared.clone(), shared.clone(), list(vec![shared])]));
        let keep = inspect(&root, 8, 100, || true).map_err(|_| ()).unwrap_or_default();
        assert_eq!(keep.len(), 3);
    }

    #[test]
    fn sharing_is_bounded() {
        // Each level holds the level below twice: 31 containers, 2^31 - 1 as a tree.
        let mut v = list(vec![]);
        for _ in 0..30 {
            v = list(vec![v.clone(), v]);
        }
        assert_eq!(inspect(&v, 64, 1 << 20, || true), Err(ShapeError::TooShared));
        assert_eq!(inspect(&v, 64, 1 << 31, || true).map(|k| k.len()), Ok(31));
    }

    #[test]
    fn cycles_are_found_and_broken() {
        let l = Rc::new(RefCell::new(Vec::new()));
        l.borrow_mut().push(Value::List(Rc::clone(&l)));
        let root = Value::Tuple(Rc::from(vec![Value::List(Rc::clone(&l))]));
        assert_eq!(inspect(&root, 8, 100, || true), Err(ShapeError::Cycle));
        let weak = Rc::downgrade(&l);
        drop(l);
        dismantle(vec![root], &HashSet::new());
        assert!(weak.upgrade().is_none(), "the cycle was freed");
    }

    #[test]
    fn a_deep_value_is_dropped_without_recursion() {
        // Deep enough to overflow the stack if dropped recursively.
        dismantle(vec![nested(1_000_000)], &HashSet::new());
    }

    #[test]
    fn release_leaves_shared_values_alone() {
        let shared = list(vec![Value::Int(7)]);
        release(list(vec![shared.clone(), nested(1_000_000)]));
        assert_eq!(shared.as_seq(), Some(vec![Value::Int(7)]));
    }

    #[test]
    fn kept_values_survive() {
        let kept = list(vec![Value::Int(7)]);
        let keep = inspect(&kept, 8, 100, || true).map_err(|_| ()).unwrap_or_default();
        dismantle(vec![list(vec![kept.clone()]), kept.clone()], &keep);
        assert_eq!(kept.as_seq(), Some(vec![Value::Int(7)]));
    }
}
