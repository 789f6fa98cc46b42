//! Training data: a CSV file with a header, read into feature columns, optional labels and the
//! facts `metadata.json` records about it (row count, time range, content hash).
//!
//! Which columns are features:
//! - with [`DatasetOptions::features`], exactly those, in that order;
//! - otherwise every numeric column except the label and timestamp columns. A column is numeric when
//!   its first non-empty value parses as a number; a later value that does not is an error naming the
//!   row and column (a typo must not silently drop a feature).
//!
//! Feature values must be finite and within float32's range, as scikit-learn's trees require
//! (`check_array(dtype=float32)`); labels are `0`/`1`/`true`/`false` with 1 = anomaly.

use std::path::{Path, PathBuf};

use csv::{ReaderBuilder, StringRecord, Trim};
use ferroserve_formats::Matrix;
use ferroserve_formats::metadata::{FeatureReference, ReferenceDistribution, TrainingData};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result, ValueFault};

/// The label column used when present and none is named.
pub const DEFAULT_LABEL_COLUMN: &str = "label";
/// The timestamp column used when present and none is named.
pub const DEFAULT_TIMESTAMP_COLUMN: &str = "timestamp";

/// Which column holds the labels.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LabelColumn {
    /// [`DEFAULT_LABEL_COLUMN`] when the file has it, else none.
    #[default]
    Auto,
    /// This column, which must exist.
    Named(String),
    /// No labels, even if a `label` column exists (it is then not a feature either).
    Absent,
}

/// How to read a data file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetOptions {
    /// The feature columns, in order; `None` = every numeric column but the label and timestamp.
    pub features: Option<Vec<String>>,
    /// The label column.
    pub label_column: LabelColumn,
    /// The column whose first and last values give the data's time range.
    pub timestamp_column: String,
}

impl Default for DatasetOptions {
    fn default() -> Self {
        DatasetOptions {
            features: None,
            label_column: LabelColumn::Auto,
            timestamp_column: DEFAULT_TIMESTAMP_COLUMN.to_owned(),
        }
    }
}

/// A parsed data set.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The file it came from, as given (or a placeholder for in-memory data).
    pub path: PathBuf,
    /// `sha256:<hex>` of the file's bytes.
    pub hash: String,
    /// The number of data rows.
    pub rows: usize,
    /// The feature names, in column order of [`Dataset::matrix`].
    pub feature_names: Vec<String>,
    /// The feature values as written (float64), one vector per feature.
    pub columns: Vec<Vec<f64>>,
    /// The label column's name, when the data has labels.
    pub label_column: Option<String>,
    /// Per row, whether it is labelled an anomaly.
    pub labels: Option<Vec<bool>>,
    /// The first and last value of the timestamp column, when there is one.
    pub time_range: Option<(String, String)>,
    /// Where the data came from, when a provenance file beside it describes it (`data.csv.provenance.json`,
    /// written by `ferroserve-train dataset`, whose `csv_sha256` is this file's hash).
    pub source: Option<Value>,
}

impl Dataset {
    /// Reads a CSV file.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read; the errors of [`Dataset::from_csv_bytes`].
    pub fn read_csv(path: &Path, options: &DatasetOptions) -> Result<Dataset> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let mut data = Dataset::from_csv_bytes(&bytes, path, options)?;
        // A provenance file of another version of the CSV (the hash differs) describes other data: ignored.
        data.source = std::fs::read(crate::features::provenance_path(path))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .filter(|p| p["csv_sha256"].as_str() == Some(data.hash.as_str()));
        Ok(data)
    }

    /// Parses CSV bytes; `path` names them in errors and in `metadata.json`.
    ///
    /// # Errors
    /// [`Error::Csv`] for malformed CSV; [`Error::BadValue`] naming row, line and column for an
    /// unparsable, empty, NaN, infinite or too large feature value or an invalid label;
    /// [`Error::UnknownColumn`], [`Error::DuplicateColumn`], [`Error::LabelAsFeature`];
    /// [`Error::NoRows`] and [`Error::NoFeatures`].
    pub fn from_csv_bytes(bytes: &[u8], path: &Path, options: &DatasetOptions) -> Result<Dataset> {
        let csv_error = |source| Error::Csv { path: path.to_path_buf(), source };
        let mut reader = ReaderBuilder::new().trim(Trim::All).from_reader(bytes);
        let header: Vec<String> = reader.headers().map_err(csv_error)?.iter().map(str::to_owned).collect();
        for (i, name) in header.iter().enumerate() {
            if header[..i].contains(name) {
                return Err(Error::DuplicateColumn { path: path.to_path_buf(), column: name.clone() });
            }
        }
        let records = reader.records().collect::<Result<Vec<StringRecord>, _>>().map_err(csv_error)?;
        if records.is_empty() {
            return Err(Error::NoRows { path: path.to_path_buf() });
        }
        let table = Table { path, header: &header, records: &records };

        let label = match &options.label_column {
            LabelColumn::Auto => table.position(DEFAULT_LABEL_COLUMN),
            LabelColumn::Named(name) => Some(table.require(name, "label")?),
            LabelColumn::Absent => None,
        };
        // Never guess that a label column is a feature, even when labels are not wanted.
        let not_a_feature = match label {
            Some(i) => Some(header[i].as_str()),
            None => Some(DEFAULT_LABEL_COLUMN).filter(|_| options.label_column == LabelColumn::Absent),
        };
        let timestamp = table.position(&options.timestamp_column);

        let features: Vec<usize> = match &options.features {
            Some(names) => {
                let mut cols = Vec::with_capacity(names.len());
                for name in names {
                    let i = table.require(name, "feature")?;
                    if label == Some(i) {
                        return Err(Error::LabelAsFeature { path: path.to_path_buf(), column: name.clone() });
                    }
                    if cols.contains(&i) {
                        return Err(Error::DuplicateColumn { path: path.to_path_buf(), column: name.clone() });
                    }
                    cols.push(i);
                }
                cols
            }
            None => (0..header.len())
                .filter(|&i| Some(header[i].as_str()) != not_a_feature && Some(i) != timestamp)
                .filter(|&i| table.looks_numeric(i))
                .collect(),
        };
        if features.is_empty() {
            return Err(Error::NoFeatures { path: path.to_path_buf(), columns: header.clone() });
        }

        let columns = features.iter().map(|&i| table.numbers(i)).collect::<Result<Vec<_>>>()?;
        let labels = label.map(|i| table.labels(i)).transpose()?;
        let time_range = timestamp.and_then(|i| {
            let first = records.iter().map(|r| r.get(i).unwrap_or("")).find(|v| !v.is_empty())?;
            let last = records.iter().rev().map(|r| r.get(i).unwrap_or("")).find(|v| !v.is_empty())?;
            Some((first.to_owned(), last.to_owned()))
        });
        Ok(Dataset {
            path: path.to_path_buf(),
            hash: format!("sha256:{:x}", Sha256::digest(bytes)),
            rows: records.len(),
            feature_names: features.iter().map(|&i| header[i].clone()).collect(),
            columns,
            label_column: label.map(|i| header[i].clone()),
            labels,
            time_range,
            source: None,
        })
    }

    /// The features as a row-major float32 matrix, cast as scikit-learn casts its training input.
    pub fn matrix(&self) -> Matrix<f32> {
        let cols = self.columns.len();
        let mut data = Vec::with_capacity(self.rows * cols);
        for r in 0..self.rows {
            #[allow(clippy::cast_possible_truncation)]
            data.extend(self.columns.iter().map(|c| c[r] as f32));
        }
        Matrix { data, rows: self.rows, cols }
    }

    /// Per-feature distributions for drift tests, from the values as written.
    pub fn reference_distribution(&self) -> ReferenceDistribution {
        ReferenceDistribution {
            features: self
                .feature_names
                .iter()
                .zip(&self.columns)
                .map(|(name, values)| FeatureReference::from_values(name.clone(), values))
                .collect(),
        }
    }

    /// `training_data` of `metadata.json`: time range, rows, hash, and (extra fields) the path as
    /// given, the features, the label column and the data's provenance (`source`) when known.
    pub fn training_data(&self) -> TrainingData {
        let mut extra = serde_json::Map::new();
        extra.insert("path".to_owned(), Value::from(self.path.to_string_lossy().into_owned()));
        extra.insert("features".to_owned(), Value::from(self.feature_names.clone()));
        if let Some(label) = &self.label_column {
            extra.insert("label_column".to_owned(), Value::from(label.clone()));
        }
        if let Some(source) = &self.source {
            extra.insert("source".to_owned(), source.clone());
        }
        TrainingData {
            start_date: self.time_range.as_ref().map(|(a, _)| a.clone()),
            end_date: self.time_range.as_ref().map(|(_, b)| b.clone()),
            rows: Some(self.rows as u64),
            hash: Some(self.hash.clone()),
            extra,
        }
    }
}

/// The raw cells, for column lookups with errors that name the place.
struct Table<'a> {
    path: &'a Path,
    header: &'a [String],
    records: &'a [StringRecord],
}

impl Table<'_> {
    fn position(&self, name: &str) -> Option<usize> {
        self.header.iter().position(|h| h == name)
    }

    fn require(&self, name: &str, role: &'static str) -> Result<usize> {
        self.position(name).ok_or_else(|| Error::UnknownColumn {
            path: self.path.to_path_buf(),
            column: name.to_owned(),
            role,
            available: self.header.to_vec(),
        })
    }

    fn cells(&self, col: usize) -> impl Iterator<Item = (usize, &StringRecord, &str)> {
        self.records.iter().enumerate().map(move |(r, rec)| (r, rec, rec.get(col).unwrap_or("")))
    }

    /// Whether the column's first non-empty value is a number.
    fn looks_numeric(&self, col: usize) -> bool {
        self.cells(col).map(|(_, _, v)| v).find(|v| !v.is_empty()).is_some_and(|v| v.parse::<f64>().is_ok())
    }

    fn bad(&self, row: usize, record: &StringRecord, col: usize, value: &str, fault: ValueFault) -> Error {
        Error::BadValue {
            path: self.path.to_path_buf(),
            row: row as u64 + 1,
            line: record.position().map_or(row as u64 + 2, csv::Position::line),
            column: self.header[col].clone(),
            value: value.to_owned(),
            fault,
        }
    }

    fn numbers(&self, col: usize) -> Result<Vec<f64>> {
        self.cells(col)
            .map(|(r, rec, v)| {
                if v.is_empty() {
                    return Err(self.bad(r, rec, col, v, ValueFault::Empty));
                }
                let x: f64 = v.parse().map_err(|_| self.bad(r, rec, col, v, ValueFault::NotANumber))?;
                match ValueFault::of_value(x) {
                    Some(fault) => Err(self.bad(r, rec, col, v, fault)),
                    None => Ok(x),
                }
            })
            .collect()
    }

    fn labels(&self, col: usize) -> Result<Vec<bool>> {
        self.cells(col)
            .map(|(r, rec, v)| match v.to_ascii_lowercase().as_str() {
                "1" | "1.0" | "true" => Ok(true),
                "0" | "0.0" | "false" => Ok(false),
                "" => Err(self.bad(r, rec, col, v, ValueFault::Empty)),
                _ => Err(self.bad(r, rec, col, v, ValueFault::NotALabel)),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Dataset> {
        Dataset::from_csv_bytes(text.as_bytes(), Path::new("data.csv"), &DatasetOptions::default())
    }

    fn parse_with(text: &str, options: DatasetOptions) -> Result<Dataset> {
        Dataset::from_csv_bytes(text.as_bytes(), Path::new("data.csv"), &options)
    }

    const GOOD: &str = "timestamp,cpu,host,mem,label,kind\n\
        2026-01-05T00:00:00Z,1.5,a,10,0,none\n\
        2026-01-05T00:01:00Z,2.5,b,20,1,spike\n\
        2026-01-05T00:02:00Z,3.5,c,30,false,none\n";

    #[test]
    fn picks_numeric_columns_labels_and_time_range() {
        let d = parse(GOOD).unwrap();
        assert_eq!(d.feature_names, ["cpu", "mem"]);
        assert_eq!(d.columns, [vec![1.5, 2.5, 3.5], vec![10.0, 20.0, 30.0]]);
        assert_eq!(d.labels, Some(vec![false, true, false]));
        assert_eq!(d.label_column.as_deref(), Some("label"));
        assert_eq!(d.time_range, Some(("2026-01-05T00:00:00Z".to_owned(), "2026-01-05T00:02:00Z".to_owned())));
        assert_eq!(d.rows, 3);
        assert!(d.hash.starts_with("sha256:") && d.hash.len() == 7 + 64);
        let m = d.matrix();
        assert_eq!((m.rows, m.cols), (3, 2));
        assert_eq!(m.row(1), [2.5f32, 20.0]);
        let td = d.training_data();
        assert_eq!(td.rows, Some(3));
        assert_eq!(td.extra["path"], "data.csv");
        assert_eq!(d.reference_distribution().features[1].mean, 20.0);
    }

    #[test]
    fn explicit_features_and_label_options() {
        let opts = DatasetOptions { features: Some(vec!["mem".into(), "cpu".into()]), ..DatasetOptions::default() };
        let d = parse_with(GOOD, opts).unwrap();
        assert_eq!(d.feature_names, ["mem", "cpu"]);
        let d = parse_with(GOOD, DatasetOptions { label_column: LabelColumn::Absent, ..DatasetOptions::default() })
            .unwrap();
        assert_eq!((d.labels, d.feature_names.len()), (None, 2), "an ignored label is no feature either");
        let no_label = "a,b\n1,2\n3,4\n";
        let d = parse(no_label).unwrap();
        assert_eq!((d.labels, d.time_range, d.feature_names.len()), (None, None, 2));
    }

    #[test]
    fn bad_values_name_row_line_and_column() {
        let err = parse("a,b\n1,2\n3,x\n").unwrap_err();
        assert_eq!(err.to_string(), "data.csv: row 2 (line 3), column `b`: not a number (found `x`)");
        let err = parse("a,b\n1,2\n3,NaN\n").unwrap_err();
        assert!(matches!(err, Error::BadValue { fault: ValueFault::NaN, row: 2, .. }), "{err}");
        let err = parse("a,b\n1,\n3,4\n").unwrap_err();
        assert!(matches!(err, Error::BadValue { fault: ValueFault::Empty, row: 1, line: 2, .. }), "{err}");
        let err = parse("a,b\n1,inf\n").unwrap_err();
        assert!(matches!(err, Error::BadValue { fault: ValueFault::Infinite, .. }), "{err}");
        let err = parse("a,b\n1,1e39\n").unwrap_err();
        assert!(matches!(err, Error::BadValue { fault: ValueFault::TooLargeForF32, .. }), "{err}");
        let err = parse("a,label\n1,2\n").unwrap_err();
        assert!(matches!(err, Error::BadValue { fault: ValueFault::NotALabel, .. }), "{err}");
        // A quoted multi-line field moves the line count ahead of the row count.
        let err = parse("t,a\n\"x\ny\",1\nz,q\n").unwrap_err();
        assert!(matches!(err, Error::BadValue { row: 2, line: 4, .. }), "{err}");
    }

    #[test]
    fn provenance_beside_the_csv_is_kept_only_when_it_describes_it() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("d.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        let sidecar = crate::features::provenance_path(&csv);
        let hash = format!("sha256:{:x}", Sha256::digest(b"a,b\n1,2\n"));
        std::fs::write(&sidecar, format!(r#"{{"source": "prometheus", "csv_sha256": "{hash}"}}"#)).unwrap();
        let d = Dataset::read_csv(&csv, &DatasetOptions::default()).unwrap();
        assert_eq!(d.training_data().extra["source"]["source"], "prometheus");
        // The CSV edited after the query: its provenance no longer describes it.
        std::fs::write(&csv, "a,b\n1,3\n").unwrap();
        let d = Dataset::read_csv(&csv, &DatasetOptions::default()).unwrap();
        assert!(d.source.is_none() && !d.training_data().extra.contains_key("source"));
    }

    #[test]
    fn structural_errors() {
        assert!(matches!(parse("a,b\n"), Err(Error::NoRows { .. })));
        assert!(matches!(parse(""), Err(Error::NoRows { .. })));
        assert!(matches!(parse("t,k\nx,y\n"), Err(Error::NoFeatures { .. })));
        assert!(matches!(parse("a,a\n1,2\n"), Err(Error::DuplicateColumn { .. })));
        let err = parse("a,b\n1,2\n3\n").unwrap_err();
        assert!(matches!(err, Error::Csv { .. }), "{err}");
        assert!(err.to_string().starts_with("data.csv: "), "{err}");
        let opts = DatasetOptions { features: Some(vec!["cpu".into(), "gpu".into()]), ..DatasetOptions::default() };
        let err = parse_with(GOOD, opts).unwrap_err();
        assert!(err.to_string().contains("no column `gpu` (the feature column)"), "{err}");
        assert!(err.to_string().contains("timestamp, cpu, host"), "{err}");
        let opts = DatasetOptions { label_column: LabelColumn::Named("y".into()), ..DatasetOptions::default() };
        assert!(matches!(parse_with(GOOD, opts), Err(Error::UnknownColumn { role: "label", .. })));
        let opts = DatasetOptions { features: Some(vec!["label".into()]), ..DatasetOptions::default() };
        assert!(matches!(parse_with(GOOD, opts), Err(Error::LabelAsFeature { .. })));
        let opts = DatasetOptions { features: Some(vec!["host".into()]), ..DatasetOptions::default() };
        assert!(matches!(parse_with(GOOD, opts), Err(Error::BadValue { fault: ValueFault::NotANumber, .. })));
        let missing = Dataset::read_csv(Path::new("/nonexistent/data.csv"), &DatasetOptions::default());
        assert!(matches!(missing, Err(Error::Io { .. })));
    }
}
