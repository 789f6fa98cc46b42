//! The error type of `ferroserve-train`.

use std::fmt;
use std::path::PathBuf;

/// Everything that can go wrong while generating data, reading it, fitting a model or writing a version.
///
/// Data errors name the file, the row (1-based, not counting the header), the line of the file and the
/// column, so that a user can open the file at the right place.
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
    /// The CSV is malformed (a row with a different number of fields, invalid UTF-8).
    #[error("{}: {source}", path.display())]
    Csv {
        /// The data file.
        path: PathBuf,
        /// The csv crate's error, which names the line.
        source: csv::Error,
    },
    /// A value of a column the trainer reads is not usable.
    #[error("{}: row {row} (line {line}), column `{column}`: {fault} (found `{value}`)", path.display())]
    BadValue {
        /// The data file.
        path: PathBuf,
        /// The data row, 1-based, not counting the header.
        row: u64,
        /// The line of the file the row starts on (the header is line 1).
        line: u64,
        /// The column's name.
        column: String,
        /// The value as written.
        value: String,
        /// What is wrong with it.
        fault: ValueFault,
    },
    /// A column named on the command line (a feature or the label) is not in the file.
    #[error("{}: no column `{column}` (the {role} column); the file has: {}", path.display(), available.join(", "))]
    UnknownColumn {
        /// The data file.
        path: PathBuf,
        /// The missing column.
        column: String,
        /// What the column was asked for as (`feature`, `label`).
        role: &'static str,
        /// The file's columns.
        available: Vec<String>,
    },
    /// Two columns of the file have the same name, or a column is asked for twice.
    #[error("{}: column `{column}` appears twice", path.display())]
    DuplicateColumn {
        /// The data file.
        path: PathBuf,
        /// The repeated name.
        column: String,
    },
    /// The label column is also named as a feature.
    #[error("{}: column `{column}` is the label; it cannot also be a feature", path.display())]
    LabelAsFeature {
        /// The data file.
        path: PathBuf,
        /// The label column.
        column: String,
    },
    /// The file has a header but no data rows.
    #[error("{}: no data rows", path.display())]
    NoRows {
        /// The data file.
        path: PathBuf,
    },
    /// No column of the file can be a feature.
    #[error("{}: no numeric feature columns (columns: {}); name them with --features", path.display(), columns.join(", "))]
    NoFeatures {
        /// The data file.
        path: PathBuf,
        /// The file's columns.
        columns: Vec<String>,
    },
    /// A value given to fit or generate (a matrix cell, not a file) is not usable.
    #[error("input row {row}, column {column}: {fault}")]
    BadInput {
        /// The row, 0-based.
        row: usize,
        /// The column, 0-based.
        column: usize,
        /// What is wrong with it.
        fault: ValueFault,
    },
    /// The training matrix has no rows or no columns.
    #[error("cannot fit on an empty matrix ({rows} rows × {cols} columns)")]
    EmptyInput {
        /// Its rows.
        rows: usize,
        /// Its columns.
        cols: usize,
    },
    /// A hyper-parameter or option is out of its range.
    #[error("{name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter (`max_samples`, `anomaly_rate`, `SOURCE_DATE_EPOCH`).
        name: &'static str,
        /// The value given.
        value: String,
        /// The valid range or what is wrong.
        reason: String,
    },
    /// A gate file is not a JSON object of known limits with valid values.
    #[error("gate file {}: {reason}", path.display())]
    GateFile {
        /// The gate file.
        path: PathBuf,
        /// serde_json's message, or the limit out of range.
        reason: String,
    },
    /// The gate checks quality but the data it measures on has no labels.
    #[error(
        "the gate checks {} but {} has no label column: give labelled hold-out data (--holdout) or name its label \
         column (--label-column)",
        checks.join(", "),
        path.display()
    )]
    HoldoutUnlabelled {
        /// The data the gate would measure on.
        path: PathBuf,
        /// The quality checks asked for.
        checks: Vec<&'static str>,
    },
    /// The hold-out data does not have the training data's features.
    #[error("{}: hold-out features [{}] differ from the training features [{}]", path.display(), got.join(", "), expected.join(", "))]
    HoldoutFeatures {
        /// The hold-out data.
        path: PathBuf,
        /// The training features.
        expected: Vec<String>,
        /// The hold-out's.
        got: Vec<String>,
    },
    /// The gate could not measure the written version (no label output, a prediction failed).
    #[error("pre-deploy gate: {reason}")]
    Gate {
        /// What went wrong.
        reason: String,
    },
    /// Prometheus could not be queried, or its answer is not a usable series.
    #[error("Prometheus at {url}: {reason}")]
    Prometheus {
        /// The server's URL.
        url: String,
        /// What went wrong (the HTTP client's or Prometheus's message).
        reason: String,
    },
    /// Building, saving or committing the artifact failed.
    #[error(transparent)]
    Format(#[from] ferroserve_formats::Error),
    /// Tensor arithmetic failed while training a network.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// What is wrong with one value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ValueFault {
    /// The cell is empty.
    Empty,
    /// The cell does not parse as a number.
    NotANumber,
    /// The cell is NaN.
    NaN,
    /// The cell is infinite.
    Infinite,
    /// The cell is finite but beyond float32's range, which scikit-learn's trees compute in.
    TooLargeForF32,
    /// A label that is none of 0, 1, true, false.
    NotALabel,
}

impl fmt::Display for ValueFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ValueFault::Empty => "empty value",
            ValueFault::NotANumber => "not a number",
            ValueFault::NaN => "NaN is not allowed",
            ValueFault::Infinite => "infinity is not allowed",
            ValueFault::TooLargeForF32 => "too large for float32",
            ValueFault::NotALabel => "a label must be 0, 1, true or false",
        })
    }
}

impl ValueFault {
    /// Why `v` cannot enter a float32 model, or `None` when it can.
    pub fn of_value(v: f64) -> Option<ValueFault> {
        if v.is_nan() {
            Some(ValueFault::NaN)
        } else if v.is_infinite() {
            Some(ValueFault::Infinite)
        } else if v.abs() > f64::from(f32::MAX) {
            Some(ValueFault::TooLargeForF32)
        } else {
            None
        }
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn parameter(name: &'static str, value: impl fmt::Display, reason: impl Into<String>) -> Self {
        Error::InvalidParameter { name, value: value.to_string(), reason: reason.into() }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
