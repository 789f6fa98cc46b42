//! The document both XGBoost encodings decode to: a JSON-like tree whose numeric arrays stay packed.
//!
//! XGBoost keeps every model field either as a scalar, a string, an object, or an array of numbers (child
//! indices, thresholds, flags). UBJSON stores those arrays typed (`[$l#L…`), and the JSON reader packs
//! arrays of plain numbers the same way as it reads them, so a tree of a million nodes costs its numbers'
//! bytes, not a million boxed values.

/// Bounds on decoding one model document. Every length is also checked against the bytes left before
/// anything is allocated, so the memory a document can claim is bounded by its own size and these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Size of the document (a file, or the `handle` bytes of a pickled `Booster`). Default 1 GiB.
    pub max_bytes: u64,
    /// Nesting of objects and arrays. XGBoost's models nest 7 deep; default 64.
    pub max_depth: usize,
    /// Values held outside packed numeric arrays (objects, strings, scalars, members of mixed arrays).
    /// Default 4 Mi (a 10 000-tree model holds about 300 000): some 250 MB of decoded values at most.
    pub max_values: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_bytes: 1 << 30, max_depth: 64, max_values: 1 << 22 }
    }
}

/// A decoded value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i64),
    /// XGBoost reads every number with a fraction or exponent as a float32.
    Float(f32),
    Str(String),
    /// An array of values that are not all numbers (or empty).
    Array(Vec<Node>),
    /// Members in document order; lookups take the first of a repeated key.
    Object(Vec<(String, Node)>),
    /// Packed arrays: UBJSON typed arrays (`U`; `i`, `I`, `l` widened to i32; `L`; `d`, `D` as float32, as
    /// XGBoost reads them) and JSON arrays of numbers (integers as i64, any float makes it float32).
    U8s(Vec<u8>),
    I32s(Vec<i32>),
    I64s(Vec<i64>),
    F32s(Vec<f32>),
}

impl Node {
    /// What the value is, for error messages.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool(_) => "a boolean",
            Node::Int(_) => "an integer",
            Node::Float(_) => "a number",
            Node::Str(_) => "a string",
            Node::Object(_) => "an object",
            Node::Array(_) | Node::U8s(_) | Node::I32s(_) | Node::I64s(_) | Node::F32s(_) => "an array",
        }
    }

    /// Member `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The members of an untyped array (an empty packed array is an empty list).
    pub(crate) fn as_list(&self) -> Option<&[Node]> {
        match self {
            Node::Array(v) => Some(v),
            Node::U8s(v) if v.is_empty() => Some(&[]),
            Node::I32s(v) if v.is_empty() => Some(&[]),
            Node::I64s(v) if v.is_empty() => Some(&[]),
            Node::F32s(v) if v.is_empty() => Some(&[]),
            _ => None,
        }
    }

    /// The number of elements of any array.
    pub(crate) fn array_len(&self) -> Option<usize> {
        Some(match self {
            Node::Array(v) => v.len(),
            Node::U8s(v) => v.len(),
            Node::I32s(v) => v.len(),
            Node::I64s(v) => v.len(),
            Node::F32s(v) => v.len(),
            _ => return None,
        })
    }

    /// An array of integers (booleans count as 0/1, as XGBoost's JSON reader takes `default_left`), widened.
    pub(crate) fn ints(&self) -> Option<Vec<i64>> {
        match self {
            Node::U8s(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            Node::I32s(v) => Some(v.iter().map(|&x| i64::from(x)).collect()),
            Node::I64s(v) => Some(v.clone()),
            Node::Array(v) => v
                .iter()
                .map(|x| match x {
                    Node::Int(i) => Some(*i),
                    Node::Bool(b) => Some(i64::from(*b)),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    /// An array of numbers as float32 (integers converted, as XGBoost's `GetElem<Number>` does).
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn floats(&self) -> Option<Vec<f32>> {
        match self {
            Node::F32s(v) => Some(v.clone()),
            Node::U8s(v) => Some(v.iter().map(|&x| f32::from(x)).collect()),
            Node::I32s(v) => Some(v.iter().map(|&x| x as f32).collect()),
            Node::I64s(v) => Some(v.iter().map(|&x| x as f32).collect()),
            Node::Array(v) => v
                .iter()
                .map(|x| match x {
                    Node::Int(i) => Some(*i as f32),
                    Node::Float(f) => Some(*f),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }
}

/// Counts the values a decoder creates against [`Limits::max_values`] and tracks nesting.
#[derive(Debug)]
pub(crate) struct Budget {
    values: usize,
    depth: usize,
    max_values: usize,
    max_depth: usize,
}

impl Budget {
    pub(crate) fn new(limits: &Limits) -> Self {
        Budget { values: 0, depth: 0, max_values: limits.max_values, max_depth: limits.max_depth }
    }

    /// One more value (or `n` more, for a counted array about to be read).
    pub(crate) fn take(&mut self, n: usize) -> Result<(), String> {
        self.values = self.values.saturating_add(n);
        if self.values > self.max_values {
            return Err(format!("more than {} values (the limit max_values)", self.max_values));
        }
        Ok(())
    }

    pub(crate) fn enter(&mut self) -> Result<(), String> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(format!("objects and arrays nested deeper than {} (the limit max_depth)", self.max_depth));
        }
        Ok(())
    }

    pub(crate) fn leave(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }
}

/// Builds an array from values as they are read, packing numbers: integers into an `I64s`, floats (or a
/// mix of integers and floats) into an `F32s`; anything else makes it a plain `Array`.
#[derive(Debug, Default)]
pub(crate) enum ArrayBuilder {
    #[default]
    Empty,
    Ints(Vec<i64>),
    Floats(Vec<f32>),
    Values(Vec<Node>),
}

impl ArrayBuilder {
    /// Adds `v`; returns whether it was packed (a value that is not costs one of the budget's values).
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn push(&mut self, v: Node) -> bool {
        match (std::mem::take(self), v) {
            (ArrayBuilder::Empty, Node::Int(i)) => *self = ArrayBuilder::Ints(vec![i]),
            (ArrayBuilder::Empty, Node::Float(f)) => *self = ArrayBuilder::Floats(vec![f]),
            (ArrayBuilder::Ints(mut a), Node::Int(i)) => {
                a.push(i);
                *self = ArrayBuilder::Ints(a);
            }
            (ArrayBuilder::Ints(a), Node::Float(f)) => {
                let mut a: Vec<f32> = a.into_iter().map(|i| i as f32).collect();
                a.push(f);
                *self = ArrayBuilder::Floats(a);
            }
            (ArrayBuilder::Floats(mut a), Node::Int(i)) => {
                a.push(i as f32);
                *self = ArrayBuilder::Floats(a);
            }
            (ArrayBuilder::Floats(mut a), Node::Float(f)) => {
                a.push(f);
                *self = ArrayBuilder::Floats(a);
            }
            (ArrayBuilder::Values(mut a), v) => {
                a.push(v);
                *self = ArrayBuilder::Values(a);
                return false;
            }
            (packed, v) => {
                let mut a = match packed {
                    ArrayBuilder::Empty | ArrayBuilder::Values(_) => Vec::new(),
                    ArrayBuilder::Ints(a) => a.into_iter().map(Node::Int).collect(),
                    ArrayBuilder::Floats(a) => a.into_iter().map(Node::Float).collect(),
                };
                a.push(v);
                *self = ArrayBuilder::Values(a);
                return false;
            }
        }
        true
    }

    /// The packed values now unpacked (when a non-number arrives), for the budget.
    pub(crate) fn len(&self) -> usize {
        match self {
            ArrayBuilder::Empty => 0,
            ArrayBuilder::Ints(a) => a.len(),
            ArrayBuilder::Floats(a) => a.len(),
            ArrayBuilder::Values(a) => a.len(),
        }
    }

    pub(crate) fn is_packed(&self) -> bool {
        matches!(self, ArrayBuilder::Ints(_) | ArrayBuilder::Floats(_))
    }

    pub(crate) fn finish(self) -> Node {
        match self {
            ArrayBuilder::Empty => Node::Array(Vec::new()),
            ArrayBuilder::Ints(a) => Node::I64s(a),
            ArrayBuilder::Floats(a) => Node::F32s(a),
            ArrayBuilder::Values(a) => Node::Array(a),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_pack_numbers_and_unpack_on_other_values() {
        let mut b = ArrayBuilder::default();
        assert!(b.push(Node::Int(1)));
        assert!(b.push(Node::Float(0.5)));
        assert_eq!(b.finish(), Node::F32s(vec![1.0, 0.5]));
        let mut b = ArrayBuilder::default();
        assert!(b.push(Node::Int(3)));
        assert!(!b.push(Node::Str("x".into())));
        assert_eq!(b.finish(), Node::Array(vec![Node::Int(3), Node::Str("x".into())]));
        let mut b = ArrayBuilder::default();
        assert!(!b.push(Node::Bool(true)));
        assert!(!b.push(Node::Int(0)));
        assert_eq!(b.finish().ints(), Some(vec![1, 0]));
    }
}
