//! The server's startup error, [`Error`]: what stops it from starting or serving. What a request gets
//! when it cannot be answered is an [`crate::ApiError`].

use std::path::PathBuf;

/// What can stop the server from starting or serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag has a value the server cannot use.
    #[error("{flag}: {reason}")]
    InvalidArg {
        /// The flag, as written on the command line.
        flag: &'static str,
        /// Why the value is refused.
        reason: String,
    },
    /// The model folder (or repository) named by a flag cannot be used.
    #[error("{flag} {}: {reason}", path.display())]
    ModelRoot {
        /// `--model_dir` or `--model_repository`.
        flag: &'static str,
        /// The folder.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The listener failed while serving.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
    /// `--watch events` was asked for and filesystem events cannot be set up.
    #[error("--watch events: {0}")]
    Watch(String),
}

/// The message of a caught panic, for the log.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_owned())
}
