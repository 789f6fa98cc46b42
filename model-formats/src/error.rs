//! The error type of `ferroserve-formats`.

use std::path::PathBuf;

use crate::tensor::DataType;

/// Everything that can go wrong while reading or writing a model (a load error). What can go wrong while
/// running one is an [`InferError`].
///
/// Variants name the file and what was wrong with it, so that an operator reading a log line (or a
/// client reading a 400) knows what to fix without a debugger.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A JSON file (`model.json`, `metadata.json`, `serving.json`) is not valid JSON of the expected shape.
    #[error("{}: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// What serde_json found.
        source: serde_json::Error,
    },
    /// A safetensors file could not be parsed.
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// The safetensors crate's message.
        message: String,
    },
    /// A tensor the artifact needs is absent.
    #[error("{}: missing tensor `{name}`", path.display())]
    MissingTensor {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
    },
    /// A tensor has the wrong dtype or shape.
    #[error("{}: tensor `{name}`: expected {expected}, found {found}", path.display())]
    BadTensor {
        /// The safetensors file.
        path: PathBuf,
        /// The tensor's name.
        name: String,
        /// What the format requires.
        expected: String,
        /// What the file holds.
        found: String,
    },
    /// A model file is not a regular file (a FIFO, a device, a socket, a folder), after following
    /// symlinks: it is refused without being read.
    #[error("{}: is {kind}, not a regular file; model files must be regular files", path.display())]
    NotRegularFile {
        /// The path as named (before following symlinks).
        path: PathBuf,
        /// What it is instead (`a FIFO (named pipe)`, `a character device`, …).
        kind: &'static str,
    },
    /// A file is larger than the limit that applies to it; nothing past the limit was read.
    #[error("{}: {}, over the limit {limit_name} = {limit} bytes", path.display(), size.map_or_else(|| "the file grew while it was read".to_owned(), |s| format!("the file is {s} bytes")))]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size as announced, when known before reading.
        size: Option<u64>,
        /// The limit.
        limit: u64,
        /// The limit's name (`max_model_bytes`, the server's flag `--max_model_bytes`).
        limit_name: &'static str,
    },
    /// The artifact's content is inconsistent (a child index out of range, a cycle, a wrong count).
    #[error("{}: invalid model: {reason}", path.display())]
    InvalidModel {
        /// The file that holds the inconsistency.
        path: PathBuf,
        /// What is inconsistent.
        reason: String,
    },
    /// A well-formed model file of another library that uses what this build does not serve (an
    /// XGBoost objective, booster or tree kind, or a legacy encoding); the reason says what to do instead.
    #[error("{}: {reason}", path.display())]
    Unsupported {
        /// The file.
        path: PathBuf,
        /// What is not served, and why.
        reason: String,
    },
    /// `model.json` names a format, version or kind this build cannot read.
    #[error("{}: unsupported {what} `{found}`", path.display())]
    UnsupportedFormat {
        /// The file.
        path: PathBuf,
        /// What is unsupported (format, format_version, kind).
        what: &'static str,
        /// The value found.
        found: String,
    },
    /// A pickle names a class or function that is not on the allowlist; nothing was executed.
    #[error("{}: unsupported class {class}", path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned()))]
    UnsupportedClass {
        /// The pickle file.
        path: PathBuf,
        /// The module-qualified name (`os.system`).
        class: String,
    },
    /// A pickle (or joblib container) that the interpreter could not read: malformed, truncated, over
    /// a limit, or using a feature Ferroserve does not read. `source` says which kind of failure, and
    /// where ([`ferroserve_pickle::Error::offset`]).
    #[error("{}: {source}", path.display())]
    PickleRead {
        /// The pickle file.
        path: PathBuf,
        /// The interpreter's error (never [`ferroserve_pickle::Error::Io`] nor
        /// [`ferroserve_pickle::Error::UnsupportedClass`], which are [`Error::Io`] and
        /// [`Error::UnsupportedClass`]).
        source: ferroserve_pickle::Error,
    },
    /// A pickle read fine but is not a scikit-learn model Ferroserve can serve (or is inconsistent).
    #[error("{}: {reason}", path.display())]
    Pickle {
        /// The pickle file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A folder holds no artifact Ferroserve recognises.
    #[error("{}: no model found (expected model.json + model.safetensors, config.json + model.safetensors (PyTorch), model.pt or model.pth (PyTorch state_dict), model.joblib, model.pkl or model.pickle, an XGBoost model.json, model.ubj or model.bst, a LightGBM model.txt or model.bst, or version folders v1/, v2/ …)", path.display())]
    NoModel {
        /// The folder.
        path: PathBuf,
    },
    /// A folder is ambiguous: two version folders have the same number, or a folder holds two artifacts.
    #[error("{}: {reason}", path.display())]
    Ambiguous {
        /// The folder.
        path: PathBuf,
        /// What collides.
        reason: String,
    },
    /// A path leaves the model root (a `..` component or a symlink pointing outside).
    #[error("{}: path escapes the model root", path.display())]
    PathEscape {
        /// The offending path.
        path: PathBuf,
    },
    /// The tensor library failed while building a network.
    #[error("tensor computation failed: {0}")]
    Candle(#[from] candle_core::Error),
}

impl Error {
    /// The pickle interpreter's error about the file `path`: [`Error::Io`] if it could not be read,
    /// [`Error::UnsupportedClass`] for a class outside the allowlist (`model.pkl: unsupported class
    /// os.system`), [`Error::PickleRead`] for everything else.
    pub fn pickle(path: impl Into<PathBuf>, error: ferroserve_pickle::Error) -> Self {
        let path = path.into();
        match error {
            ferroserve_pickle::Error::Io(source) => Error::Io { path, source },
            e @ ferroserve_pickle::Error::UnsupportedClass { .. } => {
                Error::UnsupportedClass { path, class: e.class_name().unwrap_or_default() }
            }
            source => Error::PickleRead { path, source },
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn invalid(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::InvalidModel { path: path.into(), reason: reason.into() }
    }
}

/// Inputs a model cannot take: always the caller's fault (a server answers 400 / INVALID_ARGUMENT).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// Input whose shape does not fit the model.
    #[error("input `{input}`: {reason}")]
    Shape {
        /// The input tensor's name.
        input: String,
        /// What is wrong, with the expected and actual shapes.
        reason: String,
    },
    /// Input of a datatype the model cannot take.
    #[error("input `{input}`: datatype {got} is not accepted (expected {expected})")]
    DataType {
        /// The input tensor's name.
        input: String,
        /// What the model takes.
        expected: String,
        /// What was sent.
        got: DataType,
    },
    /// Input values the model cannot take (NaN, infinity).
    #[error("input `{input}`: {reason}")]
    Value {
        /// The input tensor's name.
        input: String,
        /// What is wrong.
        reason: String,
    },
    /// The request names the wrong number of inputs, or an input by a name the model lacks.
    #[error("{0}")]
    Inputs(String),
    /// An output the model does not produce was requested.
    #[error("unknown output `{name}`; this model produces: {}", available.join(", "))]
    UnknownOutput {
        /// The requested name.
        name: String,
        /// What the model can produce.
        available: Vec<String>,
    },
}

/// Why an inference failed: the caller's inputs ([`InferError::Input`]), or the model itself
/// ([`InferError::Compute`], a server error whose cause is for the log, not the caller).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// The inputs do not fit the model.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The computation failed on inputs the model accepted.
    #[error("tensor computation failed: {0}")]
    Compute(String),
}

impl InferError {
    /// Whether the error is the caller's fault (bad input), as opposed to the model's.
    pub fn is_client_error(&self) -> bool {
        matches!(self, InferError::Input(_))
    }

    /// A failure of the model's computation.
    pub fn compute(cause: impl std::fmt::Display) -> Self {
        InferError::Compute(cause.to_string())
    }
}

impl From<candle_core::Error> for InferError {
    fn from(e: candle_core::Error) -> Self {
        InferError::Compute(e.to_string())
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
