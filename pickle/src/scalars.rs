//! The opcodes that push numbers, strings and bytes.

use std::rc::Rc;

use super::limits::Limit;
use super::machine::Machine;
use super::text;
use super::value::Value;
use crate::error::Result;

impl Machine<'_, '_> {
    pub(crate) fn int_text(&mut self) -> Result<()> {
        let max = self.ctx.limits.max_long_bytes;
        let line = self.read_line("INT")?;
        let v = match line {
            b"00" => Ok(Value::Bool(false)),
            b"01" => Ok(Value::Bool(true)),
            digits => text::int_from_decimal(digits, max),
        };
        let v = v.map_err(|e| self.fail(e))?;
        self.push(v)
    }

    pub(crate) fn long_text(&mut self) -> Result<()> {
        let max = self.ctx.limits.max_long_bytes;
        let line = self.read_line("LONG")?;
        let v = text::int_from_decimal(line, max).map_err(|e| self.fail(e))?;
        self.push(v)
    }

    pub(crate) fn long_bytes(&mut self, n: usize, what: &str) -> Result<()> {
        let max = self.ctx.limits.max_long_bytes;
        if n > max {
            return Err(
                self.over(Limit::LongBytes, format!("{what} of {n} bytes is over the limit max_long_bytes = {max}"))
            );
        }
        let bytes = self.read_counted(n, what)?;
        let v = text::int_from_le(bytes);
        self.allocate(n as u64)?;
        self.push(v)
    }

    pub(crate) fn string_text(&mut self) -> Result<()> {
        let line = self.read_line("STRING")?;
        let body = match line {
            [q @ (b'\'' | b'"'), body @ .., last] if last == q => body,
            _ => return Err(self.fail("the STRING argument is not quoted")),
        };
        let bytes = text::escape_decode(body).map_err(|e| self.fail(e))?;
        self.push_py2_str(&bytes)
    }

    /// A Python 2 `str` (`STRING`, `BINSTRING`): text when it is UTF-8 (ASCII, for what scikit-learn
    /// writes), bytes otherwise.
    pub(crate) fn push_py2_str(&mut self, bytes: &[u8]) -> Result<()> {
        let v = match std::str::from_utf8(bytes) {
            Ok(s) => Value::Str(Rc::from(s)),
            Err(_) => Value::Bytes(Rc::from(bytes)),
        };
        self.allocate(bytes.len() as u64)?;
        self.push(v)
    }

    pub(crate) fn length(&self, n: u64, what: &str) -> Result<usize> {
        usize::try_from(n).ok().filter(|&n| n <= self.ctx.reader.remaining()).ok_or_else(|| self.truncated(what, n))
    }

    pub(crate) fn unicode(&mut self, n: u64, what: &str) -> Result<()> {
        let n = self.length(n, what)?;
        self.allocate(n as u64)?;
        let bytes = self.read_counted(n, what)?;
        let s = std::str::from_utf8(bytes).map(Rc::from);
        let s = s.map_err(|e| self.fail(format!("{what} is not valid UTF-8: {e}")))?;
        self.push(Value::Str(s))
    }

    pub(crate) fn bytes(&mut self, n: u64, what: &str) -> Result<()> {
        let n = self.length(n, what)?;
        self.allocate(n as u64)?;
        let bytes = Rc::from(self.read_counted(n, what)?);
        self.push(Value::Bytes(bytes))
    }
}
