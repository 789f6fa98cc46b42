//! The crate's [`Error`]: what kind of failure, and where in the input it happened.
//!
//! The messages say what is wrong with the file in words an operator can act on, and end with the
//! byte offset when there is one (`truncated pickle: BINUNICODE needs 5 bytes, 2 remain (at byte 4 of
//! the file)`). The file's name is not part of them: the caller knows it and adds it (see
//! `ferroserve_formats::Error::pickle`).

use std::fmt;

use crate::limits::Limit;

/// A whole-file compression of joblib's that the interpreter undoes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// `joblib.dump(…, compress=('zlib', n))`, or `compress=n`.
    Zlib,
    /// `joblib.dump(…, compress=('gzip', n))`.
    Gzip,
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Codec::Zlib => "zlib",
            Codec::Gzip => "gzip",
        })
    }
}

/// The bytes an [`Offset`] counts: the file itself, or the stream decompressed from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// The file as stored (a plain pickle, or an uncompressed joblib file).
    File,
    /// The pickle stream decompressed from a compressed joblib file.
    Decompressed(Codec),
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stream::File => f.write_str("file"),
            Stream::Decompressed(codec) => write!(f, "{codec}-decompressed stream"),
        }
    }
}

/// Where an error was found: the offset of the opcode (or of the read) that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Offset {
    /// Bytes from the start of [`Offset::stream`].
    pub byte: usize,
    /// Which bytes are counted.
    pub stream: Stream,
}

impl fmt::Display for Offset {
    /// `byte 4 of the file`, `byte 12 of the zlib-decompressed stream`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {} of the {}", self.byte, self.stream)
    }
}

/// Why a pickle could not be read. Nothing of the file was executed, whatever the error.
///
/// Every variant but [`Error::Io`] and [`Error::Compression`] says where it happened when that is
/// known ([`Error::offset`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The input ends before the pickle does: a file cut short, or a declared length running past
    /// the end.
    #[error("truncated pickle: {detail} (at {at})")]
    Truncated {
        /// What was being read and how much was missing (`BINUNICODE needs 5 bytes, 2 remain`).
        detail: String,
        /// The opcode being read.
        at: Offset,
    },
    /// A byte where an opcode should be that is no pickle opcode.
    #[error("invalid opcode {opcode:#04x} (at {at})")]
    UnknownOpcode {
        /// The byte.
        opcode: u8,
        /// Where it is.
        at: Offset,
    },
    /// The pickle names a class or function that is not on the [allowlist](crate::allowlist).
    /// It was refused at the opcode that named it, before any argument was read.
    #[error("unsupported class {} (at {at})", printable_class(module, name))]
    UnsupportedClass {
        /// The module, as the pickle spells it (`posix`, `__builtin__`).
        module: String,
        /// The name in the module (`system`).
        name: String,
        /// The opcode that named it (`GLOBAL`, `STACK_GLOBAL`, `INST`).
        at: Offset,
    },
    /// The pickle names a class that is known and deliberately refused, with what to do instead
    /// (joblib < 0.10's `NDArrayWrapper`, whose arrays are in side files).
    #[error("{}: {advice} (at {at})", printable_class(module, name))]
    RefusedClass {
        /// The module.
        module: String,
        /// The name in the module.
        name: String,
        /// Why it is refused and how to re-save the model.
        advice: &'static str,
        /// The opcode that named it.
        at: Offset,
    },
    /// A feature of pickle or joblib that is not read: pickle protocols above 5, persistent IDs,
    /// extension codes, out-of-band buffers, bz2/xz/lzma/lz4 compression, joblib < 0.9.3 files.
    #[error("{feature}{}", located(at))]
    Unsupported {
        /// What the file uses, why it is not read, and what to do instead.
        feature: String,
        /// The opcode that uses it (`None` for the container: compression, old joblib).
        at: Option<Offset>,
    },
    /// The file would make the interpreter go over one of the [`Limits`](crate::Limits).
    #[error("{reason}{}", located(at))]
    LimitExceeded {
        /// Which limit.
        what: Limit,
        /// Its value in this load.
        limit: u64,
        /// What went over it, naming the limit (`over the limit max_memo = 8388608 …`).
        reason: String,
        /// The opcode at which it happened (`None` for the file's size and the decompressed size).
        at: Option<Offset>,
    },
    /// zlib or gzip data that cannot be decompressed.
    #[error("corrupt or truncated compressed data ({codec}): {source}")]
    Compression {
        /// The compression.
        codec: Codec,
        /// The decompressor's error.
        source: std::io::Error,
    },
    /// Bytes that are not a pickle of plain data: opcodes applied to the wrong values (stack
    /// underflow, `APPEND` to an int), invalid arguments, inconsistent numpy or joblib states,
    /// reference cycles.
    #[error("{reason} (at {at})")]
    Malformed {
        /// What is wrong.
        reason: String,
        /// The opcode that found it.
        at: Offset,
    },
}

impl Error {
    /// Where in the input the error happened, when that is known.
    pub fn offset(&self) -> Option<Offset> {
        match self {
            Error::Truncated { at, .. }
            | Error::UnknownOpcode { at, .. }
            | Error::UnsupportedClass { at, .. }
            | Error::RefusedClass { at, .. }
            | Error::Malformed { at, .. } => Some(*at),
            Error::Unsupported { at, .. } | Error::LimitExceeded { at, .. } => *at,
            Error::Io(_) | Error::Compression { .. } => None,
        }
    }

    /// For [`Error::UnsupportedClass`] and [`Error::RefusedClass`], the module-qualified name
    /// (`posix.system`) as it may be shown in a log line: control characters escaped, at most 200
    /// characters.
    pub fn class_name(&self) -> Option<String> {
        match self {
            Error::UnsupportedClass { module, name, .. } | Error::RefusedClass { module, name, .. } => {
                Some(printable_class(module, name))
            }
            _ => None,
        }
    }
}

/// `module.name`, shown safely (see [`printable`]).
fn printable_class(module: &str, name: &str) -> String {
    printable(&format!("{module}.{name}"))
}

/// `" (at byte N of the file)"`, or nothing.
fn located(at: &Option<Offset>) -> String {
    at.map(|at| format!(" (at {at})")).unwrap_or_default()
}

/// A name as it may be shown in a log line: control characters escaped, at most 200 characters.
pub(crate) fn printable(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(200)
        .flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    if s.chars().nth(200).is_some() {
        out.push('…');
    }
    out
}

/// Why a step of the interpreter failed, before it knows where: the interpreter turns it into an
/// [`Error`] at the current opcode. The numpy and text decoders return this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Becomes [`Error::Malformed`].
    Malformed(String),
    /// Becomes [`Error::LimitExceeded`].
    Limit {
        /// Which limit.
        what: Limit,
        /// Its value.
        limit: u64,
        /// What went over it, naming the limit.
        reason: String,
    },
}

impl Fault {
    /// Over `what`, whose value is `limit`; `reason` names the limit.
    pub(crate) fn limit(what: Limit, limit: impl TryInto<u64>, reason: String) -> Self {
        Fault::Limit { what, limit: limit.try_into().unwrap_or(u64::MAX), reason }
    }

    /// The error, at `at`.
    pub(crate) fn at(self, at: Offset) -> Error {
        match self {
            Fault::Malformed(reason) => Error::Malformed { reason, at },
            Fault::Limit { what, limit, reason } => Error::LimitExceeded { what, limit, reason, at: Some(at) },
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Malformed(reason) | Fault::Limit { reason, .. } => f.write_str(reason),
        }
    }
}

impl From<String> for Fault {
    fn from(reason: String) -> Self {
        Fault::Malformed(reason)
    }
}

impl From<&str> for Fault {
    fn from(reason: &str) -> Self {
        Fault::Malformed(reason.to_owned())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_end_with_the_offset() {
        let at = Offset { byte: 12, stream: Stream::Decompressed(Codec::Zlib) };
        let e = Error::Truncated { detail: "FRAME needs 9 bytes, 2 remain".to_owned(), at };
        assert_eq!(
            e.to_string(),
            "truncated pickle: FRAME needs 9 bytes, 2 remain (at byte 12 of the zlib-decompressed stream)"
        );
        assert_eq!(e.offset(), Some(at));
        let e = Error::UnsupportedClass { module: "a\nb".to_owned(), name: "c".to_owned(), at };
        assert_eq!(e.class_name().as_deref(), Some("a\\nb.c"));
        let e = Error::LimitExceeded {
            what: Limit::FileBytes,
            limit: 100,
            reason: "the file is 200 bytes, over the limit max_file_bytes = 100".to_owned(),
            at: None,
        };
        assert_eq!(e.to_string(), "the file is 200 bytes, over the limit max_file_bytes = 100");
        assert_eq!(e.offset(), None);
    }

    #[test]
    fn printable_escapes_and_shortens() {
        assert_eq!(printable("a\u{1b}[31m"), "a\\u{1b}[31m");
        let long = "x".repeat(300);
        assert_eq!(printable(&long).chars().count(), 201);
    }
}
