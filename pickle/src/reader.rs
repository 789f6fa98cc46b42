//! A cursor over the pickle stream whose every read is bounds-checked.

/// A position in a byte slice. Reads return `None` instead of reading past the end.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    /// The offset of the next byte.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    /// Bytes left to read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn byte(&mut self) -> Option<u8> {
        let b = *self.data.get(self.pos)?;
        self.pos += 1;
        Some(b)
    }

    /// The next `n` bytes, or `None` (reading nothing) if fewer remain.
    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let end = self.pos.checked_add(n)?;
        let bytes = self.data.get(self.pos..end)?;
        self.pos = end;
        Some(bytes)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    /// The bytes up to a `\n` (excluded; the `\n` is consumed), or `None` if there is no `\n`.
    pub(crate) fn line(&mut self) -> Option<&'a [u8]> {
        let rest = self.data.get(self.pos..)?;
        let len = rest.iter().position(|&b| b == b'\n')?;
        self.pos += len + 1;
        rest.get(..len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stop_at_the_end() {
        let mut r = Reader::new(b"ab\ncd");
        assert_eq!(r.line(), Some(&b"ab"[..]));
        assert_eq!(r.pos(), 3);
        assert_eq!(r.line(), None);
        assert_eq!(r.take(3), None);
        assert_eq!(r.pos(), 3, "a failed read consumes nothing");
        assert_eq!(r.take(usize::MAX), None);
        assert_eq!(r.array::<2>(), Some(*b"cd"));
        assert_eq!(r.byte(), None);
        assert_eq!(r.remaining(), 0);
    }
}
