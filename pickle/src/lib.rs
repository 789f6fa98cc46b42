//! A restricted pickle interpreter: reading scikit-learn models saved with `pickle` or `joblib`,
//! without executing anything.
//!
//! Python's unpickler runs code: a pickle names callables and their arguments, and `REDUCE` calls
//! them. This crate is an interpreter of the pickle opcodes that builds inert [`Value`]s instead:
//! a "call" only records the callable's name and arguments, and the callable must be on an allowlist
//! of scikit-learn and numpy names (anything else is [`Error::UnsupportedClass`], naming it). numpy
//! arrays are decoded from their bytes, and joblib's container (arrays written raw after a
//! `NumpyArrayWrapper`, whole-file zlib or gzip compression) is read as joblib writes it. Every
//! size, count and depth is bounded by [`Limits`]; a malformed file is an [`Error`] saying what kind
//! of failure it is and at which byte, never a panic. `docs/pickle.md` has the full story.
//!
//! The crate depends on nothing of Ferroserve's (only on `flate2`, `half` and `thiserror`), so
//! that it can be fuzzed and reviewed on its own; `ferroserve-formats` builds scikit-learn models
//! from its [`Value`]s and names the file in its errors.
//!
//! ```
//! use ferroserve_pickle::{self as pickle, Error, Limits, Value};
//!
//! // pickle.dumps({"n": 3}, protocol=4)
//! let bytes = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01n\x94K\x03s.";
//! let v = pickle::loads(bytes, &Limits::default())?;
//! assert_eq!(v.get("n"), Some(Value::Int(3)));
//!
//! // pickle.dumps(os.system) names a function that is not on the allowlist.
//! let evil = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.";
//! let err = pickle::loads(evil, &Limits::default()).unwrap_err();
//! assert!(matches!(&err, Error::UnsupportedClass { module, name, .. } if module == "posix" && name == "system"));
//! assert_eq!(err.to_string(), "unsupported class posix.system (at byte 28 of the file)");
//! # Ok::<(), ferroserve_pickle::Error>(())
//! ```
//!
//! # Layout
//! - [`value`]: what a pickle evaluates to ([`Value`], [`Object`], numpy [`NdArray`] and [`Dtype`]).
//! - [`allowlist`]: the reviewed table of names a pickle may mention, and what each does.
//! - [`limits`]: [`Limits`], the bounds on one load, and [`Limit`], naming one of them.
//! - [`error`]: [`Error`], the kind of failure and its [`Offset`].
//! - `compression`: joblib's zlib/gzip container and its magic numbers.
//! - `machine`: the stack, the memo and the opcodes; `containers`: filling lists, dicts and sets;
//!   `scalars`: numbers, strings and bytes; `calls`: `REDUCE`/`BUILD` without calling;
//!   `numpy`: dtypes and arrays from their pickled forms; `text`: protocol 0 text arguments;
//!   `reader`: the bounds-checked cursor over the bytes.
//! - `graph`: depth and cycle checks, and tearing values down without recursion.
#![warn(missing_docs)]

pub mod allowlist;
mod calls;
mod compression;
mod containers;
pub mod error;
mod graph;
pub mod limits;
mod machine;
mod numpy;
mod reader;
mod scalars;
mod text;
pub mod value;

use std::io::Read;

pub use error::{Codec, Error, Offset, Result, Stream};
pub use limits::{Limit, Limits};
pub use value::{ArrayData, ArrayError, Dtype, Global, NdArray, Object, Value};

use compression::{Container, DecompressError};

/// Reads a pickle or joblib file from `reader` into a [`Value`], never executing anything from it.
///
/// The file may be a plain pickle (protocols 0–5), a joblib file, or a joblib file compressed with
/// zlib or gzip. At most [`Limits::max_file_bytes`] are read from `reader`; a compressed file is
/// decompressed as it is read, and decompression stops at [`Limits::max_decompressed_bytes`] (a
/// "zip bomb" never allocates past it). The caller opens the file (and decides which files may be
/// opened): this crate does no I/O of its own.
///
/// # Errors
/// [`Error::Io`] if reading fails; otherwise as [`loads`]. Errors do not name the file: the caller
/// does.
pub fn load_reader(reader: impl Read, limits: &Limits) -> Result<Value> {
    let mut raw = reader.take(limits.max_file_bytes.saturating_add(1));
    // The longest magic number is 5 bytes (xz).
    let mut head = Vec::with_capacity(8);
    (&mut raw).take(8).read_to_end(&mut head)?;
    let container = Container::detect(&head);
    match container {
        Container::Compressed(codec) => {
            let stream = compression::decompress(codec, head.as_slice().chain(&mut raw), limits.max_decompressed_bytes);
            // A file cut at the file limit reads as a truncated stream: say why it was cut.
            if raw.limit() == 0 {
                return Err(over_file_limit(None, limits));
            }
            interpret(&stream.map_err(|e| decompress_error(codec, e, limits))?, container.stream(), limits)
        }
        Container::Plain => {
            let mut bytes = head;
            raw.read_to_end(&mut bytes)?;
            if bytes.len() as u64 > limits.max_file_bytes {
                return Err(over_file_limit(None, limits));
            }
            interpret(&bytes, Stream::File, limits)
        }
        Container::Unsupported(_) | Container::OldJoblib => loads(&head, limits),
    }
}

/// Interprets the bytes of a pickle or joblib file (see [`load_reader`]).
///
/// # Errors
/// - [`Error::UnsupportedClass`] when the pickle names a class or function outside the
///   [`allowlist`] (`unsupported class os.system (at byte 0 of the file)`), and
///   [`Error::RefusedClass`] for the few names refused with advice (joblib < 0.10's side files).
/// - [`Error::Truncated`], [`Error::UnknownOpcode`] and [`Error::Malformed`] when the file is
///   truncated or malformed, with the byte offset.
/// - [`Error::Unsupported`] when it uses a feature Ferroserve does not read (compression other
///   than zlib/gzip, out-of-band buffers, persistent IDs, extension codes, protocols above 5).
/// - [`Error::LimitExceeded`] when it goes over one of the [`Limits`] (named in the message).
/// - [`Error::Compression`] when its zlib or gzip data is corrupt.
pub fn loads(bytes: &[u8], limits: &Limits) -> Result<Value> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(over_file_limit(Some(bytes.len() as u64), limits));
    }
    let container = Container::detect(bytes);
    match container {
        Container::Plain => interpret(bytes, Stream::File, limits),
        Container::Compressed(codec) => {
            let stream = compression::decompress(codec, bytes, limits.max_decompressed_bytes)
                .map_err(|e| decompress_error(codec, e, limits))?;
            interpret(&stream, container.stream(), limits)
        }
        Container::Unsupported(name) => Err(Error::Unsupported {
            feature: format!(
                "a joblib file compressed with {name}, which Ferroserve does not read; re-save it uncompressed \
                 or with zlib or gzip, e.g. joblib.dump(model, path, compress=('zlib', 3))"
            ),
            at: None,
        }),
        Container::OldJoblib => Err(Error::Unsupported {
            feature: "a joblib < 0.9.3 file (`ZF` format), which Ferroserve does not read; load and re-save it \
                      with a current joblib"
                .to_owned(),
            at: None,
        }),
    }
}

/// Runs the interpreter over a pickle stream.
fn interpret(stream: &[u8], kind: Stream, limits: &Limits) -> Result<Value> {
    let mut ctx = machine::Ctx::new(limits, kind, stream);
    machine::run(&mut ctx, false)
}

fn decompress_error(codec: Codec, e: DecompressError, limits: &Limits) -> Error {
    match e {
        DecompressError::TooLarge => Error::LimitExceeded {
            what: Limit::DecompressedBytes,
            limit: limits.max_decompressed_bytes,
            reason: format!(
                "decompresses to more than the limit max_decompressed_bytes = {}",
                limits.max_decompressed_bytes
            ),
            at: None,
        },
        DecompressError::Corrupt(source) => Error::Compression { codec, source },
    }
}

/// A caller's resolver of persistent IDs: given the ID a pickle's `PERSID`/`BINPERSID` names (a
/// string, or a tuple such as PyTorch's `('storage', torch.FloatStorage, '0', 'cpu', 128)`), the inert
/// value that stands for it, or why it cannot be resolved. It only looks the ID up in data the caller
/// already holds (a zip member, a byte range); nothing is executed.
pub type PersistentLoad<'r> = dyn FnMut(&Value) -> std::result::Result<Value, String> + 'r;

/// How one load may go beyond plain [`loads`].
#[derive(Default)]
#[allow(missing_debug_implementations)]
pub struct Options<'r> {
    /// Resolves persistent IDs; without it they are [`Error::Unsupported`].
    pub persistent_load: Option<&'r mut PersistentLoad<'r>>,
    /// Builds objects of classes outside the allowlist as inert records (class name + state), for
    /// `NEWOBJ`/`NEWOBJ_EX` with inert arguments and `BUILD` only; a `REDUCE` of such a class (how an
    /// exploit calls a function) is still [`Error::UnsupportedClass`]. Off by default.
    pub records: bool,
}

/// Reads one pickle stream from the start of `bytes` (no joblib container, no decompression) with
/// `options`, and returns its value and the number of bytes it took, up to and including `STOP`:
/// for formats that chain pickles and raw data (PyTorch's legacy `torch.save`).
///
/// # Errors
/// As [`loads`]; a persistent ID the resolver refuses is [`Error::Malformed`] with its reason.
pub fn load_prefix<'r>(bytes: &'r [u8], limits: &'r Limits, options: Options<'r>) -> Result<(Value, usize)> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(over_file_limit(Some(bytes.len() as u64), limits));
    }
    let mut ctx = machine::Ctx::new(limits, Stream::File, bytes);
    ctx.persistent = options.persistent_load;
    ctx.records = options.records;
    let v = machine::run(&mut ctx, false)?;
    Ok((v, ctx.reader.pos()))
}

/// Reads a whole pickle stream (plain or joblib, as [`loads`]) with `options`.
///
/// # Errors
/// As [`loads`] and [`load_prefix`].
pub fn loads_with<'r>(bytes: &'r [u8], limits: &'r Limits, options: Options<'r>) -> Result<Value> {
    if !matches!(Container::detect(bytes), Container::Plain) {
        if options.persistent_load.is_none() && !options.records {
            return loads(bytes, limits);
        }
        return Err(Error::Unsupported {
            feature: "a compressed joblib file with persistent IDs or records".to_owned(),
            at: None,
        });
    }
    load_prefix(bytes, limits, options).map(|(v, _)| v)
}

fn over_file_limit(size: Option<u64>, limits: &Limits) -> Error {
    let what = size.map_or_else(|| "the file is".to_owned(), |s| format!("the file is {s} bytes,"));
    Error::LimitExceeded {
        what: Limit::FileBytes,
        limit: limits.max_file_bytes,
        reason: format!("{what} over the limit max_file_bytes = {}", limits.max_file_bytes),
        at: None,
    }
}

#[cfg(test)]
mod tests;
