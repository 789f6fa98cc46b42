//! The binary's subcommands and options that have grown their own files (`main.rs` holds the rest):
//! part of the `ferroserve-train` binary, not of the library.
//!
//! # Layout
//! - [`gate`]: the pre-deploy gate's flags, and the summary and exit code of a gated run.
//! - [`dataset`]: `ferroserve-train dataset`, training data from Prometheus.

use std::time::SystemTime;

pub mod dataset;
pub mod gate;

/// An RFC 3339 time (`2026-01-05T00:00:00Z`), for clap.
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(s).map_err(|e| format!("`{s}` is not an RFC 3339 time: {e}"))
}

/// Creates the folder an output file goes into (`--out data/week.csv`), as a user expects of an output path.
///
/// # Errors
/// When the folder cannot be made; the message names it.
pub fn create_parent(path: &std::path::Path) -> anyhow::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("{}: cannot make the folder of --out: {e}", dir.display())),
        _ => Ok(()),
    }
}

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done (a trained version is published).
    Done,
    /// The gate refused the trained version.
    Rejected,
}

/// A mistake in the command line that clap cannot see (exit code 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
