//! Reading scikit-learn models saved with `pickle` or `joblib`, without executing anything: the
//! restricted interpreter of the [`ferroserve_pickle`] crate, with its errors naming the file.
//!
//! Everything of `ferroserve_pickle` is re-exported here ([`Value`], [`Limits`], [`allowlist`], …),
//! so that the estimator readers write `crate::pickle::Value`. [`load_file`] and [`loads`] are the
//! crate's, with its [`Error`] turned into this crate's
//! [`Error`](crate::Error) by [`Error::pickle`](crate::Error::pickle): a class outside the allowlist
//! is [`Error::UnsupportedClass`](crate::Error::UnsupportedClass), anything else that is wrong with
//! the file [`Error::PickleRead`](crate::Error::PickleRead) (with the offset), and a file that
//! cannot be read [`Error::Io`](crate::Error::Io). `docs/pickle.md` has the full story.
//!
//! ```
//! use std::path::Path;
//! use ferroserve_formats::pickle::{self, Limits, Value};
//!
//! // pickle.dumps({"n": 3}, protocol=4)
//! let bytes = b"\x80\x04\x95\n\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01n\x94K\x03s.";
//! let v = pickle::loads(bytes, Path::new("model.pkl"), &Limits::default())?;
//! assert_eq!(v.get("n"), Some(Value::Int(3)));
//!
//! // pickle.dumps(os.system) names a function that is not on the allowlist.
//! let evil = b"\x80\x04\x95\x14\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94.";
//! let err = pickle::loads(evil, Path::new("model.pkl"), &Limits::default()).unwrap_err();
//! assert_eq!(err.to_string(), "model.pkl: unsupported class posix.system");
//! # Ok::<(), ferroserve_formats::Error>(())
//! ```

use std::path::Path;

pub use ferroserve_pickle::{
    ArrayData, ArrayError, Codec, Dtype, Error, Global, Limit, Limits, NdArray, Object, Offset, Stream, Value,
    allowlist, limits, value,
};

/// Reads a pickle or joblib file into a [`Value`], never executing anything from it
/// ([`ferroserve_pickle::load_reader`] over [`crate::files::open_limited`]: a regular file, of at most
/// `limits.max_file_bytes`, decompressed as it is read).
///
/// # Errors
/// [`crate::files::open_limited`]'s errors; [`Error::pickle`](crate::Error::pickle)'s conversion of the
/// interpreter's error, naming `path`.
pub fn load_file(path: &Path, limits: &Limits) -> crate::Result<Value> {
    let (reader, _) = crate::files::open_limited(path, limits.max_file_bytes, crate::files::MAX_MODEL_BYTES)?;
    ferroserve_pickle::load_reader(reader, limits).map_err(|e| match text_start(path, &e) {
        Some(start) => crate::Error::Unsupported {
            path: path.to_path_buf(),
            reason: format!(
                "not a model file: it starts like text (`{start}`), while Ferroserve reads scikit-learn \
                 pickle/joblib, PyTorch, XGBoost and LightGBM files (as a pickle: {e})"
            ),
        },
        None => crate::Error::pickle(path, e),
    })
}

/// The first line of `path` when its pickle read failed in its first bytes and it starts like text (a CSV
/// or a config file given as the model): printable ASCII up to its first newline. `None` for anything else,
/// including a hostile pickle refused at byte 0 (its error stays the reader's).
fn text_start(path: &Path, error: &Error) -> Option<String> {
    if matches!(error, Error::UnsupportedClass { .. } | Error::RefusedClass { .. }) || error.offset()?.byte > 64 {
        return None;
    }
    let mut head = Vec::with_capacity(64);
    std::io::Read::read_to_end(&mut std::io::Read::take(crate::files::open(path).ok()?.0, 64), &mut head).ok()?;
    let head = head.as_slice();
    let line = head.split(|&b| b == b'\n').next()?;
    let text = head.iter().all(|&b| b == b'\n' || b == b'\r' || b == b'\t' || (0x20..0x7f).contains(&b));
    (text && line.len() >= 4).then(|| String::from_utf8_lossy(line).trim_end().chars().take(40).collect())
}

/// Interprets the bytes of a pickle or joblib file ([`ferroserve_pickle::loads`]);
/// `path_for_errors` names the file in errors.
///
/// # Errors
/// As [`load_file`].
pub fn loads(bytes: &[u8], path_for_errors: &Path, limits: &Limits) -> crate::Result<Value> {
    ferroserve_pickle::loads(bytes, limits).map_err(|e| crate::Error::pickle(path_for_errors, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file() {
        let e = loads(b"cos\nsystem\n.", Path::new("/models/m/model.pkl"), &Limits::default()).unwrap_err();
        assert!(matches!(&e, crate::Error::UnsupportedClass { class, .. } if class == "os.system"), "{e:?}");
        assert_eq!(e.to_string(), "model.pkl: unsupported class os.system");
        // Names are shown escaped.
        let e = loads(b"\x8c\x03a\nb\x8c\x01c\x93.", Path::new("t.pkl"), &Limits::default()).unwrap_err();
        assert_eq!(e.to_string(), "t.pkl: unsupported class a\\nb.c");
        let e = loads(b"\x80\x04K\x01X\x05\x00\x00\x00ab", Path::new("t.pkl"), &Limits::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.pkl: truncated pickle: BINUNICODE needs 5 bytes, 2 remain (at byte 4 of the file)"
        );
        let crate::Error::PickleRead { source, .. } = &e else { panic!("{e:?}") };
        assert_eq!(source.offset().map(|o| o.byte), Some(4));
        let e = loads(b"cjoblib.numpy_pickle\nNDArrayWrapper\n.", Path::new("t.pkl"), &Limits::default()).unwrap_err();
        assert!(e.to_string().starts_with("t.pkl: joblib.numpy_pickle.NDArrayWrapper: old joblib format"), "{e}");
        // A text file given as the model says what it is, not which opcode failed.
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("metrics.csv");
        std::fs::write(&csv, "timestamp,cpu,mem\n2026-01-05T00:00:00Z,1,2\n").unwrap();
        let e = load_file(&csv, &Limits::default()).unwrap_err().to_string();
        assert!(e.contains("metrics.csv: not a model file: it starts like text (`timestamp,cpu,mem`)"), "{e}");
        let e = load_file(Path::new("/nonexistent/model.pkl"), &Limits::default()).unwrap_err();
        assert!(matches!(&e, crate::Error::Io { path, .. } if path == Path::new("/nonexistent/model.pkl")), "{e:?}");
    }
}
