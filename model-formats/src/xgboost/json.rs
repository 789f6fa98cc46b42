//! JSON text as XGBoost writes it (`save_model("model.json")`), read the way XGBoost's own reader does
//! (`src/common/json.cc` `JsonReader`): a number with a fraction or an exponent is a float32, parsed from
//! its text directly (`1.1874787E0` is the float32 nearest to it, never a float64 rounded again), any other
//! number an integer; `NaN`, `Infinity` and `-Infinity` (which XGBoost writes for non-finite floats) are
//! accepted. Nesting is bounded and every error carries the byte offset.

use super::document::{ArrayBuilder, Budget, Limits, Node};

/// Decodes one JSON document (only whitespace may follow it).
pub(crate) fn parse(bytes: &[u8], limits: &Limits) -> Result<Node, String> {
    if bytes.len() as u64 > limits.max_bytes {
        return Err(format!("{} bytes, over the limit max_bytes = {}", bytes.len(), limits.max_bytes));
    }
    let start = if bytes.starts_with(b"\xEF\xBB\xBF") { 3 } else { 0 };
    let mut r = Reader { b: bytes, pos: start, budget: Budget::new(limits) };
    let v = r.value()?;
    r.space();
    if r.pos != bytes.len() {
        return Err(r.err(r.pos, "text follows the document"));
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
        format!("JSON at byte {at}: {what}")
    }

    fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.b.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Result<u8, String> {
        self.b.get(self.pos).copied().ok_or_else(|| self.err(self.pos, "the document ends early (truncated)"))
    }

    fn expect(&mut self, word: &[u8]) -> Result<(), String> {
        if self.b.get(self.pos..self.pos + word.len()) == Some(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err(self.pos, format!("expected `{}`", String::from_utf8_lossy(word))))
        }
    }

    fn value(&mut self) -> Result<Node, String> {
        self.space();
        let at = self.pos;
        self.budget.take(1).map_err(|e| self.err(at, e))?;
        self.scalar_or_container(at)
    }

    fn scalar_or_container(&mut self, at: usize) -> Result<Node, String> {
        Ok(match self.peek()? {
            b'{' => {
                self.budget.enter().map_err(|e| self.err(at, e))?;
                let v = self.object()?;
                self.budget.leave();
                v
            }
            b'[' => {
                self.budget.enter().map_err(|e| self.err(at, e))?;
                let v = self.array()?;
                self.budget.leave();
                v
            }
            b'"' => Node::Str(self.string()?),
            b't' => {
                self.expect(b"true")?;
                Node::Bool(true)
            }
            b'f' => {
                self.expect(b"false")?;
                Node::Bool(false)
            }
            b'n' => {
                self.expect(b"null")?;
                Node::Null
            }
            b'N' => {
                self.expect(b"NaN")?;
                Node::Float(f32::NAN)
            }
            b'I' => {
                self.expect(b"Infinity")?;
                Node::Float(f32::INFINITY)
            }
            b'-' if self.b.get(self.pos + 1) == Some(&b'I') => {
                self.pos += 1;
                self.expect(b"Infinity")?;
                Node::Float(f32::NEG_INFINITY)
            }
            b'-' | b'+' | b'0'..=b'9' => self.number()?,
            other => return Err(self.err(at, format!("unexpected {}", shown(other)))),
        })
    }

    fn number(&mut self) -> Result<Node, String> {
        let at = self.pos;
        if matches!(self.b.get(self.pos), Some(b'-' | b'+')) {
            self.pos += 1;
        }
        let digits = |r: &mut Self| {
            let s = r.pos;
            while let Some(b'0'..=b'9') = r.b.get(r.pos) {
                r.pos += 1;
            }
            r.pos - s
        };
        let mut float = false;
        let int_digits = digits(self);
        let mut frac_digits = 0;
        if self.b.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            float = true;
            frac_digits = digits(self);
        }
        if int_digits + frac_digits == 0 {
            return Err(self.err(at, "a number without digits"));
        }
        if let Some(b'e' | b'E') = self.b.get(self.pos) {
            self.pos += 1;
            float = true;
            if let Some(b'-' | b'+') = self.b.get(self.pos) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return Err(self.err(at, "a number without exponent digits"));
            }
        }
        // ASCII digits and signs only: valid UTF-8.
        let text = std::str::from_utf8(&self.b[at..self.pos]).map_err(|e| self.err(at, e))?;
        let text = text.strip_prefix('+').unwrap_or(text);
        if float {
            text.parse::<f32>().map(Node::Float).map_err(|e| self.err(at, format!("number `{text}`: {e}")))
        } else {
            text.parse::<i64>().map(Node::Int).map_err(|e| self.err(at, format!("integer `{text}`: {e}")))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        let at = self.pos;
        self.pos += 1; // the opening quote
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.b.get(self.pos) else {
                return Err(self.err(at, "a string without its closing quote (truncated)"));
            };
            self.pos += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    let e = self.peek()?;
                    self.pos += 1;
                    let ch = match e {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => self.unicode_escape()?,
                        other => return Err(self.err(self.pos - 2, format!("unknown escape \\{}", other as char))),
                    };
                    let mut buf = [0u8; 4];
                    out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                }
                c if c < 0x20 => return Err(self.err(self.pos - 1, "a control character inside a string")),
                c => out.push(c),
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let at = self.pos;
        let s = self.b.get(self.pos..self.pos + 4).ok_or_else(|| self.err(at, "a truncated \\u escape"))?;
        let s = std::str::from_utf8(s).map_err(|_| self.err(at, "a bad \\u escape"))?;
        let v = u32::from_str_radix(s, 16).map_err(|_| self.err(at, "a bad \\u escape"))?;
        self.pos += 4;
        Ok(v)
    }

    fn unicode_escape(&mut self) -> Result<char, String> {
        let hi = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&hi) && self.b.get(self.pos..self.pos + 2) == Some(b"\\u") {
            let save = self.pos;
            self.pos += 2;
            let lo = self.hex4()?;
            if (0xDC00..0xE000).contains(&lo) {
                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
            } else {
                self.pos = save;
                hi
            }
        } else {
            hi
        };
        Ok(char::from_u32(code).unwrap_or('\u{FFFD}'))
    }

    fn object(&mut self) -> Result<Node, String> {
        self.pos += 1; // {
        let mut members = Vec::new();
        self.space();
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(Node::Object(members));
        }
        loop {
            self.space();
            if self.peek()? != b'"' {
                return Err(self.err(self.pos, "expected a member name"));
            }
            let key = self.string()?;
            self.space();
            self.expect(b":")?;
            let value = self.value()?;
            members.push((key, value));
            self.space();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(Node::Object(members));
                }
                other => return Err(self.err(self.pos, format!("expected `,` or `}}`, found {}", shown(other)))),
            }
        }
    }

    fn array(&mut self) -> Result<Node, String> {
        self.pos += 1; // [
        let mut items = ArrayBuilder::default();
        self.space();
        if self.peek()? == b']' {
            self.pos += 1;
            return Ok(items.finish());
        }
        loop {
            self.space();
            let at = self.pos;
            // Numbers go into a packed array without costing a value; anything else does.
            let v = self.scalar_or_container(at)?;
            let (was_packed, before) = (items.is_packed(), items.len());
            if !items.push(v) {
                let cost = if was_packed { before + 1 } else { 1 };
                self.budget.take(cost).map_err(|e| self.err(at, e))?;
            }
            self.space();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Ok(items.finish());
                }
                other => return Err(self.err(self.pos, format!("expected `,` or `]`, found {}", shown(other)))),
            }
        }
    }
}

fn shown(b: u8) -> String {
    if b.is_ascii_graphic() { format!("`{}`", b as char) } else { format!("byte 0x{b:02x}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_xgboost_numbers_as_float32_from_their_text() {
        let v = parse(
            br#"{"a": [1, -2, 3], "b": [1.1874787E0, 2], "c": "x\u00e9\"", "d": [NaN, -Infinity], "e": [true, 0]}"#,
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(v.get("a"), Some(&Node::I64s(vec![1, -2, 3])));
        assert_eq!(v.get("b"), Some(&Node::F32s(vec![1.187_478_7, 2.0])));
        assert_eq!(v.get("c").and_then(Node::as_str), Some("xé\""));
        let d = v.get("d").and_then(Node::floats).unwrap();
        assert!(d[0].is_nan() && d[1] == f32::NEG_INFINITY);
        assert_eq!(v.get("e").and_then(Node::ints), Some(vec![1, 0]));
        // Straight to float32: 1 + half an ulp of float32 + a little, which a float64 detour would round down
        // onto the tie and then to even (1.0).
        let v = parse(b"[1.00000005960464477539062500001E0]", &Limits::default()).unwrap();
        assert_eq!(v, Node::F32s(vec![1.000_000_1]));
    }

    #[test]
    fn malformed_text_is_an_error_with_its_offset() {
        for (text, want) in [
            (&b"{\"a\": "[..], "truncated"),
            (b"{\"a\" 1}", "expected `:`"),
            (b"[1, 2", "truncated"),
            (b"[1 2]", "expected `,`"),
            (b"\"abc", "closing quote"),
            (b"99999999999999999999", "integer"),
            (b"{} x", "follows"),
            (b"-", "without digits"),
        ] {
            let e = parse(text, &Limits::default()).unwrap_err();
            assert!(e.contains(want) && e.contains("at byte"), "{}: {e}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn deep_nesting_is_refused_without_recursion_trouble() {
        let deep = "[".repeat(1_000_000);
        let e = parse(deep.as_bytes(), &Limits::default()).unwrap_err();
        assert!(e.contains("nested deeper than 64"), "{e}");
        let ok = format!("{}{}", "[".repeat(60), "]".repeat(60));
        assert!(parse(ok.as_bytes(), &Limits::default()).is_ok());
    }

    #[test]
    fn values_are_bounded() {
        let limits = Limits { max_values: 10, ..Limits::default() };
        let many = format!("[{}]", vec!["\"x\""; 20].join(","));
        assert!(parse(many.as_bytes(), &limits).unwrap_err().contains("max_values"));
        // Packed numbers cost no values.
        let numbers = format!("[{}]", vec!["1"; 200].join(","));
        assert!(parse(numbers.as_bytes(), &limits).is_ok());
    }
}
