//! UBJSON as XGBoost writes it (`src/common/json.cc`, `UBJWriter` / `UBJReader`): big-endian; objects
//! `{` (key, value)… `}` with keys `L` + int64 length + bytes; strings `S` + length + bytes; arrays either
//! typed `[$<type>#L<count>` + raw elements, counted `[#L<count>` + values, or `[` values… `]`; scalars
//! `i U I l L d D T F Z C`. Lengths may use any integer marker here (XGBoost writes `L`).
//!
//! Every count and length is checked against the bytes left before anything is allocated (a typed
//! array of 2⁶² elements is an error, not an allocation), nesting is bounded, and every error carries the
//! byte offset.

use super::document::{Budget, Limits, Node};

/// Decodes one UBJSON document (nothing may follow it).
pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Node, String> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(format!("{} bytes, over the limit max_bytes = {}", bytes.len(), limits.max_bytes));
    }
    let mut r = Reader { b: bytes, pos: 0, budget: Budget::new(limits) };
    let v = r.value()?;
    if r.pos != bytes.len() {
        return Err(format!("UBJSON: {} bytes follow the document at byte {}", bytes.len() - r.pos, r.pos));
    }
    Ok(v)
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
    budget: Budget,
}

impl Reader<'_> {
    fn err(&self, at: usize, what: impl std::fmt::Display) -> String {
        format!("UBJSON at byte {at}: {what}")
    }

    fn left(&self) -> usize {
        self.b.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, String> {
        let Some(&c) = self.b.get(self.pos) else {
            return Err(self.err(self.pos, "the document ends early (truncated)"));
        };
        self.pos += 1;
        Ok(c)
    }

    fn peek(&self) -> Result<u8, String> {
        self.b.get(self.pos).copied().ok_or_else(|| self.err(self.pos, "the document ends early (truncated)"))
    }

    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        if n > self.left() {
            return Err(self.err(self.pos, format!("{n} bytes needed, {} left (truncated)", self.left())));
        }
        let s = &self.b[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    /// An integer scalar after its marker, or `None` for a marker that is not an integer's.
    fn int_after(&mut self, marker: u8) -> Result<Option<i64>, String> {
        Ok(Some(match marker {
            b'i' => i64::from(i8::from_be_bytes(self.array()?)),
            b'U' => i64::from(u8::from_be_bytes(self.array()?)),
            b'I' => i64::from(i16::from_be_bytes(self.array()?)),
            b'l' => i64::from(i32::from_be_bytes(self.array()?)),
            b'L' => i64::from_be_bytes(self.array()?),
            _ => return Ok(None),
        }))
    }

    /// A length or count: an integer marker and a non-negative value.
    fn length(&mut self) -> Result<usize, String> {
        let at = self.pos;
        let marker = self.byte()?;
        let Some(n) = self.int_after(marker)? else {
            return Err(self.err(at, format!("expected a length (an integer marker), found {}", shown(marker))));
        };
        usize::try_from(n).map_err(|_| self.err(at, format!("negative length {n}")))
    }

    /// A string's bytes after its marker (a key has none).
    fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        let n = self.length()?;
        if n > self.left() {
            return Err(self.err(at, format!("a string of {n} bytes, {} left (truncated or corrupt)", self.left())));
        }
        let s = self.take(n)?;
        Ok(String::from_utf8_lossy(s).into_owned())
    }

    fn value(&mut self) -> Result<Node, String> {
        let at = self.pos;
        let marker = self.byte()?;
        self.budget.take(1).map_err(|e| self.err(at, e))?;
        if let Some(i) = self.int_after(marker)? {
            return Ok(Node::Int(i));
        }
        Ok(match marker {
            b'Z' => Node::Null,
            b'T' => Node::Bool(true),
            b'F' => Node::Bool(false),
            b'd' => Node::Float(f32::from_be_bytes(self.array()?)),
            #[allow(clippy::cast_possible_truncation)]
            b'D' => Node::Float(f64::from_be_bytes(self.array()?) as f32),
            b'C' => Node::Int(i64::from(i8::from_be_bytes(self.array()?))),
            b'S' => Node::Str(self.string()?),
            b'{' => {
                self.budget.enter().map_err(|e| self.err(at, e))?;
                let v = self.object()?;
                self.budget.leave();
                v
            }
            b'[' => {
                self.budget.enter().map_err(|e| self.err(at, e))?;
                let v = self.list()?;
                self.budget.leave();
                v
            }
            b'H' => return Err(self.err(at, "high-precision numbers (`H`) are not supported, as in XGBoost")),
            other => return Err(self.err(at, format!("unknown marker {}", shown(other)))),
        })
    }

    fn object(&mut self) -> Result<Node, String> {
        if matches!(self.peek()?, b'$' | b'#') {
            return Err(self.err(self.pos, "counted or typed objects are not part of XGBoost's UBJSON"));
        }
        let mut members = Vec::new();
        while self.peek()? != b'}' {
            let key = self.string()?;
            let value = self.value()?;
            members.push((key, value));
        }
        self.pos += 1;
        Ok(Node::Object(members))
    }

    fn list(&mut self) -> Result<Node, String> {
        match self.peek()? {
            b'$' => {
                self.pos += 1;
                let at = self.pos;
                let ty = self.byte()?;
                let size = match ty {
                    b'i' | b'U' => 1,
                    b'I' => 2,
                    b'l' | b'd' => 4,
                    b'L' | b'D' => 8,
                    other => return Err(self.err(at, format!("typed arrays of {} are not supported", shown(other)))),
                };
                if self.byte()? != b'#' {
                    return Err(self.err(self.pos - 1, "a typed array without a count (`#`)"));
                }
                let count_at = self.pos;
                let n = self.length()?;
                let bytes = n.checked_mul(size).filter(|&b| b <= self.left()).ok_or_else(|| {
                    self.err(
                        count_at,
                        format!(
                            "a typed array of {n} elements of {size} bytes, but {} bytes are left (truncated or corrupt)",
                            self.left()
                        ),
                    )
                })?;
                let raw = self.take(bytes)?;
                Ok(typed(ty, raw))
            }
            b'#' => {
                self.pos += 1;
                let count_at = self.pos;
                let n = self.length()?;
                // Every value takes at least one byte.
                if n > self.left() {
                    return Err(self.err(
                        count_at,
                        format!("an array of {n} values, but {} bytes are left (truncated or corrupt)", self.left()),
                    ));
                }
                let mut items = Vec::with_capacity(n.min(1 << 16));
                for _ in 0..n {
                    items.push(self.value()?);
                }
                Ok(Node::Array(items))
            }
            _ => {
                let mut items = Vec::new();
                while self.peek()? != b']' {
                    items.push(self.value()?);
                }
                self.pos += 1;
                Ok(Node::Array(items))
            }
        }
    }
}

/// Elements of a typed array, decoded from big-endian bytes (`raw.len()` is a multiple of the size).
fn typed(ty: u8, raw: &[u8]) -> Node {
    fn be<const N: usize>(raw: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        raw.chunks_exact(N).map(|c| {
            let mut a = [0u8; N];
            a.copy_from_slice(c);
            a
        })
    }
    match ty {
        b'U' => Node::U8s(raw.to_vec()),
        b'i' => Node::I32s(raw.iter().map(|&b| i32::from(b.cast_signed())).collect()),
        b'I' => Node::I32s(be::<2>(raw).map(|a| i32::from(i16::from_be_bytes(a))).collect()),
        b'l' => Node::I32s(be::<4>(raw).map(i32::from_be_bytes).collect()),
        b'L' => Node::I64s(be::<8>(raw).map(i64::from_be_bytes).collect()),
        b'd' => Node::F32s(be::<4>(raw).map(f32::from_be_bytes).collect()),
        #[allow(clippy::cast_possible_truncation)]
        _ => Node::F32s(be::<8>(raw).map(|a| f64::from_be_bytes(a) as f32).collect()),
    }
}

/// A marker byte for messages: the character when printable.
fn shown(b: u8) -> String {
    if b.is_ascii_graphic() { format!("`{}`", b as char) } else { format!("0x{b:02x}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> Vec<u8> {
        let mut v = vec![b'L'];
        v.extend((k.len() as i64).to_be_bytes());
        v.extend(k.as_bytes());
        v
    }

    #[test]
    fn decodes_what_xgboost_writes() {
        let mut b = vec![b'{'];
        b.extend(key("a"));
        b.extend([b'[', b'$', b'l', b'#', b'L']);
        b.extend(2i64.to_be_bytes());
        b.extend(7i32.to_be_bytes());
        b.extend((-1i32).to_be_bytes());
        b.extend(key("s"));
        b.push(b'S');
        b.extend(key("hi"));
        b.extend(key("n"));
        b.extend([b'[', b'#', b'L']);
        b.extend(2i64.to_be_bytes());
        b.extend([b'I', 0, 200, b'd']);
        b.extend(0.5f32.to_be_bytes());
        b.extend(key("u"));
        b.extend([b'[', b'T', b'Z', b']']);
        b.push(b'}');
        let v = parse(&b, &Limits::default()).unwrap();
        assert_eq!(v.get("a"), Some(&Node::I32s(vec![7, -1])));
        assert_eq!(v.get("s").and_then(Node::as_str), Some("hi"));
        assert_eq!(v.get("n"), Some(&Node::Array(vec![Node::Int(200), Node::Float(0.5)])));
        assert_eq!(v.get("u"), Some(&Node::Array(vec![Node::Bool(true), Node::Null])));
    }

    #[test]
    fn huge_lengths_and_truncation_are_errors() {
        let mut b = vec![b'[', b'$', b'd', b'#', b'L'];
        b.extend((1i64 << 62).to_be_bytes());
        let e = parse(&b, &Limits::default()).unwrap_err();
        assert!(e.contains("4611686018427387904 elements"), "{e}");
        let mut b = vec![b'[', b'#', b'L'];
        b.extend(i64::MAX.to_be_bytes());
        assert!(parse(&b, &Limits::default()).unwrap_err().contains("bytes are left"));
        let mut b = vec![b'S', b'L'];
        b.extend((-5i64).to_be_bytes());
        assert!(parse(&b, &Limits::default()).unwrap_err().contains("negative length"));
        assert!(parse(b"{", &Limits::default()).unwrap_err().contains("truncated"));
        assert!(parse(b"[$q#L", &Limits::default()).unwrap_err().contains("not supported"));
        assert!(parse(b"Zx", &Limits::default()).unwrap_err().contains("follow the document"));
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = vec![b'['; 100_000];
        let e = parse(&deep, &Limits::default()).unwrap_err();
        assert!(e.contains("nested deeper than 64"), "{e}");
    }
}
