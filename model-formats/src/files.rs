//! Opening model files: regular files only, opened without blocking, never read past a size limit.
//!
//! Every file a loader reads goes through here, so that what sits in a model folder cannot hang or
//! exhaust the server: a FIFO in place of `model.pkl` would block a plain `open` until a writer comes
//! (forever); a symlink to `/dev/zero` or `/dev/urandom` never ends; a sparse 100 GB file would be read
//! whole. [`open`] opens with `O_NONBLOCK` (so a FIFO's open returns at once) and then refuses anything
//! that is not a regular file; [`read`] reads at most a limit, checked against the size the file
//! announces before any byte is read and again while reading (a file may grow meanwhile).
//!
//! Two limits apply: [`LoadOptions::max_model_bytes`](crate::LoadOptions::max_model_bytes) for model
//! files (and for what a compressed file inflates to), [`MAX_SIDE_FILE_BYTES`] for the small JSON files
//! beside them (`model.json`, `config.json`, `metadata.json`, `serving.json`).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// The default limit on a model file and on what a compressed model file decompresses to: 256 MiB.
///
/// Chosen so that the worst a hostile file can make one load allocate (the stream, plus at most twice
/// as much built from it, [`crate::LoadOptions::pickle_limits`]) stays well under 1 GiB, while models
/// ten times the size the platform's own rule allows (100 MB) still load.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 256 << 20;

/// The name of the model-file limit in messages: the server's flag `--max_model_bytes` sets it.
pub const MAX_MODEL_BYTES: &str = "max_model_bytes";

/// The limit on the JSON files beside a model: 64 MiB (a `metadata.json` with a reference
/// distribution of 45 features × 10,000 samples is about 10 MB).
pub const MAX_SIDE_FILE_BYTES: u64 = 64 << 20;

/// What a non-regular file is, for the message that refuses it.
fn kind(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a folder"
    } else if t.is_fifo() {
        "a FIFO (named pipe)"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "an unusual file"
    }
}

/// Opens `path` (following symlinks) for reading if it is a regular file, without ever blocking;
/// returns the file and its size.
///
/// # Errors
/// [`Error::Io`] when it cannot be opened; [`Error::NotRegularFile`] for a FIFO, device, socket or
/// folder.
pub fn open(path: &Path) -> Result<(File, u64)> {
    // O_NONBLOCK: opening a FIFO for reading otherwise waits for a writer. It changes nothing for
    // regular files, whose reads never block in that sense.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.file_type().is_file() {
        return Err(Error::NotRegularFile { path: path.to_path_buf(), kind: kind(meta.file_type()) });
    }
    Ok((file, meta.len()))
}

/// Opens `path` as [`open`] does, refusing a file larger than `limit` (named `limit_name` in the
/// message) before reading it; the returned reader ends one byte past the limit, so that a file that
/// grows while it is read is caught by [`check_read`].
///
/// # Errors
/// As [`open`]; [`Error::TooLarge`] when the file is larger than `limit`.
pub fn open_limited(path: &Path, limit: u64, limit_name: &'static str) -> Result<(std::io::Take<File>, u64)> {
    let (file, size) = open(path)?;
    if size > limit {
        return Err(Error::TooLarge { path: path.to_path_buf(), size: Some(size), limit, limit_name });
    }
    Ok((file.take(limit.saturating_add(1)), size))
}

/// Fails when `read` bytes (what a reader from [`open_limited`] gave) went past `limit`.
///
/// # Errors
/// [`Error::TooLarge`].
pub fn check_read(path: &Path, read: u64, limit: u64, limit_name: &'static str) -> Result<()> {
    if read > limit {
        return Err(Error::TooLarge { path: path.to_path_buf(), size: None, limit, limit_name });
    }
    Ok(())
}

/// Reads the whole of regular file `path`, at most `limit` bytes ([`open_limited`]).
///
/// # Errors
/// As [`open_limited`]; [`Error::Io`] when reading fails.
pub fn read(path: &Path, limit: u64, limit_name: &'static str) -> Result<Vec<u8>> {
    let (mut reader, size) = open_limited(path, limit, limit_name)?;
    // The announced size is only a hint (a file may shrink or grow): never reserve past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(size.min(limit)).unwrap_or(0));
    reader.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    check_read(path, bytes.len() as u64, limit, limit_name)?;
    Ok(bytes)
}

/// Reads a JSON file beside a model (at most [`MAX_SIDE_FILE_BYTES`]).
///
/// # Errors
/// As [`read`].
pub fn read_side_file(path: &Path) -> Result<Vec<u8>> {
    read(path, MAX_SIDE_FILE_BYTES, "max_side_file_bytes")
}

/// The first `n` bytes of regular file `path` (fewer when it is shorter); used to recognise formats.
///
/// # Errors
/// As [`open`]; [`Error::Io`] when reading fails.
pub fn read_prefix(path: &Path, n: usize) -> Result<Vec<u8>> {
    let (file, _) = open(path)?;
    let mut head = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_within_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("model.pkl");
        std::fs::write(&p, b"0123456789").unwrap();
        assert_eq!(read(&p, 10, "max_model_bytes").unwrap(), b"0123456789");
        assert_eq!(read_prefix(&p, 4).unwrap(), b"0123");
        assert_eq!(read_prefix(&p, 100).unwrap(), b"0123456789");
        let e = read(&p, 9, "max_model_bytes").unwrap_err();
        assert!(matches!(e, Error::TooLarge { size: Some(10), limit: 9, .. }), "{e:?}");
        assert_eq!(
            e.to_string(),
            format!("{}: the file is 10 bytes, over the limit max_model_bytes = 9 bytes", p.display())
        );
    }

    #[test]
    fn fifos_devices_and_folders_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("model.pkl");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Without O_NONBLOCK this open would wait for a writer forever.
            let e = read(&fifo, 1 << 20, "max_model_bytes").unwrap_err();
            assert!(
                e.to_string()
                    .ends_with("is a FIFO (named pipe), not a regular file; model files must be regular files"),
                "{e}"
            );
        } else {
            eprintln!("SKIPPED: mkfifo is not available here; the FIFO case was not checked");
        }
        let link = dir.path().join("zero.pkl");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        let e = read(&link, 1 << 20, "max_model_bytes").unwrap_err();
        assert!(matches!(e, Error::NotRegularFile { kind: "a character device", .. }), "{e:?}");
        let e = read_prefix(dir.path(), 4).unwrap_err();
        assert!(matches!(e, Error::NotRegularFile { kind: "a folder", .. }), "{e:?}");
    }
}
