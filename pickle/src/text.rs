//! Decoding the textual arguments of protocol 0–1 opcodes, and pickle's integer encodings.

use std::rc::Rc;

use super::limits::Limit;
use super::value::Value;
use crate::error::Fault;

/// An integer from little-endian two's-complement bytes (`LONG1`, `LONG4`): `Int` when it fits in
/// 64 bits, `BigInt` (the bytes, trimmed of redundant sign bytes) otherwise.
pub(crate) fn int_from_le(bytes: &[u8]) -> Value {
    let negative = bytes.last().is_some_and(|&b| b & 0x80 != 0);
    let fill = if negative { 0xff } else { 0 };
    // Drop high bytes that only repeat the sign.
    let mut len = bytes.len();
    while len > 1 && bytes[len - 1] == fill && (bytes[len - 2] & 0x80 != 0) == negative {
        len -= 1;
    }
    let bytes = &bytes[..len];
    if bytes.len() <= 8 {
        let mut buf = [fill; 8];
        buf[..bytes.len()].copy_from_slice(bytes);
        Value::Int(i64::from_le_bytes(buf))
    } else {
        Value::BigInt(Rc::from(bytes))
    }
}

/// A decimal integer as `INT` and `LONG` write it (`-12`, `123L`, `01` for `True` is handled by
/// the caller). At most `max_bytes` bytes of result.
pub(crate) fn int_from_decimal(text: &[u8], max_bytes: usize) -> Result<Value, Fault> {
    let text = text.trim_ascii();
    let text = text.strip_suffix(b"L").unwrap_or(text);
    let shown = || String::from_utf8_lossy(&text[..text.len().min(40)]).into_owned();
    let (negative, digits) = match text.first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("invalid integer {:?}", shown()).into());
    }
    // Each decimal digit is log2(10)/8 ≈ 0.415 bytes; refuse before doing quadratic work.
    if digits.len() > max_bytes.saturating_mul(12) / 5 + 1 {
        let reason = format!("an integer of {} digits is over the limit max_long_bytes = {max_bytes}", digits.len());
        return Err(Fault::limit(Limit::LongBytes, max_bytes, reason));
    }
    if let Some(v) = std::str::from_utf8(text).ok().and_then(|s| s.trim_start_matches('+').parse::<i64>().ok()) {
        return Ok(Value::Int(v));
    }
    // Magnitude in little-endian base 256.
    let mut mag: Vec<u8> = vec![0];
    for d in digits {
        let mut carry = u32::from(d - b'0');
        for byte in &mut mag {
            let x = u32::from(*byte) * 10 + carry;
            *byte = (x & 0xff) as u8;
            carry = x >> 8;
        }
        if carry > 0 {
            mag.push(carry as u8);
        }
    }
    // Room for the sign bit.
    mag.push(0);
    if negative {
        let mut carry = true;
        for byte in &mut mag {
            let (x, c) = (!*byte).overflowing_add(u8::from(carry));
            *byte = x;
            carry = c;
        }
    }
    if mag.len() > max_bytes + 1 {
        let reason = format!("an integer of {} bytes is over the limit max_long_bytes = {max_bytes}", mag.len());
        return Err(Fault::limit(Limit::LongBytes, max_bytes, reason));
    }
    Ok(int_from_le(&mag))
}

/// Python's `codecs.escape_decode`: the body of a `STRING` argument.
pub(crate) fn escape_decode(s: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        i += 1;
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let Some(&c) = s.get(i) else { return Err("a STRING ends with a lone backslash".to_owned()) };
        i += 1;
        match c {
            b'\n' => {}
            b'\\' | b'\'' | b'"' => out.push(c),
            b'a' => out.push(7),
            b'b' => out.push(8),
            b'f' => out.push(12),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b't' => out.push(b'\t'),
            b'v' => out.push(11),
            b'0'..=b'7' => {
                let mut v = u32::from(c - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = v * 8 + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let hex = s.get(i..i + 2).and_then(|h| std::str::from_utf8(h).ok());
                let v = hex.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("invalid \\x escape in a STRING")?;
                out.push(v);
                i += 2;
            }
            other => {
                out.push(b'\\');
                out.push(other);
            }
        }
    }
    Ok(out)
}

/// Python's `raw_unicode_escape` decoding: the argument of `UNICODE`. Bytes are Latin-1 characters,
/// except `\uXXXX` and `\UXXXXXXXX` after an odd number of backslashes.
pub(crate) fn raw_unicode_escape(s: &[u8]) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    let mut backslashes = 0usize;
    while let Some(&b) = s.get(i) {
        i += 1;
        if b == b'\\' {
            backslashes += 1;
            out.push('\\');
            continue;
        }
        let odd = backslashes % 2 == 1;
        backslashes = 0;
        let width = match b {
            b'u' if odd => 4,
            b'U' if odd => 8,
            _ => {
                out.push(char::from(b));
                continue;
            }
        };
        out.pop();
        let hex = s.get(i..i + width).and_then(|h| std::str::from_utf8(h).ok());
        let cp = hex.and_then(|h| u32::from_str_radix(h, 16).ok()).ok_or("invalid \\u escape in a UNICODE")?;
        out.push(char::from_u32(cp).ok_or_else(|| format!("code point {cp:#x} cannot be represented"))?);
        i += width;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn little_endian_ints() {
        assert_eq!(int_from_le(&[]), Value::Int(0));
        assert_eq!(int_from_le(&[0xff]), Value::Int(-1));
        assert_eq!(int_from_le(&[0x80, 0x00]), Value::Int(128));
        assert_eq!(int_from_le(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0x00]), Value::Int(i64::MAX));
        assert_eq!(int_from_le(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff, 0xff]), Value::Int(i64::MIN));
        let big = int_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert_eq!(big, Value::BigInt(Rc::from(&[0, 0, 0, 0, 0, 0, 0, 0, 1][..])));
    }

    #[test]
    fn decimal_ints() {
        assert_eq!(int_from_decimal(b"42", 16), Ok(Value::Int(42)));
        assert_eq!(int_from_decimal(b"-42L", 16), Ok(Value::Int(-42)));
        assert_eq!(int_from_decimal(b"-9223372036854775808", 16), Ok(Value::Int(i64::MIN)));
        // 2**64 and -(2**64), as LONG1 would store them.
        assert_eq!(int_from_decimal(b"18446744073709551616L", 16), Ok(int_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 1])));
        assert_eq!(int_from_decimal(b"-18446744073709551616", 16), Ok(int_from_le(&[0, 0, 0, 0, 0, 0, 0, 0, 0xff])));
        assert!(int_from_decimal(b"12x", 16).is_err());
        assert!(int_from_decimal(b"", 16).is_err());
        let e = int_from_decimal(&[b'9'; 100], 16);
        assert!(matches!(&e, Err(Fault::Limit { what: Limit::LongBytes, limit: 16, .. })), "{e:?}");
        assert!(e.is_err_and(|e| e.to_string().contains("max_long_bytes")));
    }

    #[test]
    fn string_escapes() {
        assert_eq!(escape_decode(br"a\n\x41\101\\\'q\z"), Ok(b"a\nAA\\'q\\z".to_vec()));
        assert!(escape_decode(br"\x4").is_err());
        assert!(escape_decode(b"\\").is_err());
    }

    #[test]
    fn raw_unicode() {
        assert_eq!(raw_unicode_escape(br"caf\u00e9 \U0001F600 \\u0041"), Ok("café 😀 \\\\u0041".to_owned()));
        assert_eq!(raw_unicode_escape(b"\xe9"), Ok("é".to_owned()));
        assert!(raw_unicode_escape(br"\ud800").is_err());
        assert!(raw_unicode_escape(br"\u12").is_err());
    }
}
