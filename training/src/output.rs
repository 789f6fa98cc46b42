//! Writing a trained model as the next version of a model folder, and the provenance that goes into
//! its `metadata.json` (creation time, command line, source revision).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferroserve_formats::layout::{METADATA_JSON, VersionWriter};
use ferroserve_formats::{ModelMetadata, NativeModel};

use crate::error::{Error, Result};
use crate::gate::{REJECTED_DIR, Validation};

/// Writes `model` and `metadata` as a new version of `model_dir` (created if needed): version
/// `version`, or the one after the highest existing. The folder appears complete or not at all:
/// files go into a hidden `.vN.tmp/` renamed to `vN/` at the end, and an error on the way removes it.
/// `metadata.version` is set to the folder's name. Returns the version folder.
///
/// # Errors
/// [`Error::Format`] wrapping the formats crate's errors: the version exists, or a file cannot be
/// written.
pub fn write_version(
    model_dir: &Path,
    version: Option<u64>,
    model: &NativeModel,
    metadata: &ModelMetadata,
) -> Result<PathBuf> {
    write_version_with(model_dir, version, metadata, |dir| Ok(model.save(dir)?))
}

/// [`write_version`] for a model that is not a [`NativeModel`]: `save` writes the model's files
/// (through `ferroserve-formats`) into the unfinished version folder; the folder appears complete,
/// with `metadata.json`, or not at all.
///
/// # Errors
/// As [`write_version`], plus whatever `save` returns.
pub fn write_version_with(
    model_dir: &Path,
    version: Option<u64>,
    metadata: &ModelMetadata,
    save: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    Ok(write_version_validated(model_dir, version, metadata, save, |_| Ok(None))?.path)
}

/// A version written by [`write_version_validated`].
#[derive(Debug, Clone)]
pub struct Written {
    /// `MODEL_DIR/vN` when published; the folder it was set aside in when the gate refused it.
    pub path: PathBuf,
    /// The metadata written, with `version`, and the gate's `validation_status` and `validation` record.
    pub metadata: ModelMetadata,
    /// The gate's result; `None` when nothing was gated.
    pub validation: Option<Validation>,
}

impl Written {
    /// Whether the version was published as `vN/` (nothing gated, or every check passed).
    pub fn published(&self) -> bool {
        self.validation.as_ref().is_none_or(Validation::passed)
    }
}

/// [`write_version_with`], with a gate: once `save` has written the files into the hidden folder,
/// `validate` measures them (it gets the folder) and returns the gate's result, or `None` when nothing is
/// gated. The result goes into `metadata.json` (`validation_status` and `validation`); a version that
/// passes (or is not gated) is renamed to `vN/`; one that fails is renamed to
/// `MODEL_DIR/_rejected/vN-<created_at>/` instead (the server never reads `_` names), so it can be
/// inspected and is never served.
///
/// # Errors
/// As [`write_version_with`], plus whatever `validate` returns (then nothing is left behind).
pub fn write_version_validated(
    model_dir: &Path,
    version: Option<u64>,
    metadata: &ModelMetadata,
    save: impl FnOnce(&Path) -> Result<()>,
    validate: impl FnOnce(&Path) -> Result<Option<Validation>>,
) -> Result<Written> {
    let writer = VersionWriter::begin(model_dir, version)?;
    save(writer.dir())?;
    let validation = validate(writer.dir())?;
    let mut metadata = ModelMetadata { version: Some(writer.name().to_owned()), ..metadata.clone() };
    if let Some(v) = &validation {
        metadata.validation_status = Some(v.status().to_owned());
        metadata.extra.insert("validation".to_owned(), v.to_json());
    }
    let path = writer.dir().join(METADATA_JSON);
    std::fs::write(&path, metadata.to_bytes()).map_err(|e| Error::io(&path, e))?;
    let path = match &validation {
        Some(v) if !v.passed() => set_aside(writer, model_dir, metadata.created_at.as_deref())?,
        _ => writer.commit()?,
    };
    Ok(Written { path, metadata, validation })
}

/// Moves an unpublished version to `MODEL_DIR/_rejected/vN-<time>/` (`-2`, `-3`… when taken).
fn set_aside(writer: VersionWriter, model_dir: &Path, created_at: Option<&str>) -> Result<PathBuf> {
    let rejected = model_dir.join(REJECTED_DIR);
    std::fs::create_dir_all(&rejected).map_err(|e| Error::io(&rejected, e))?;
    let stamp: String = created_at.unwrap_or("undated").chars().filter(|c| !matches!(c, '-' | ':')).collect();
    let base = format!("{}-{stamp}", writer.name());
    let mut target = rejected.join(&base);
    let mut n = 1;
    while target.exists() {
        n += 1;
        target = rejected.join(format!("{base}-{n}"));
    }
    std::fs::rename(writer.dir(), &target).map_err(|e| Error::io(&target, e))?;
    // The writer's own clean-up finds its hidden folder gone (renamed), and leaves the rest alone.
    drop(writer);
    Ok(target)
}

/// The model name a folder implies: its last component (`…/anomaly-detector` → `anomaly-detector`),
/// resolving `.` and `..` through the filesystem.
pub fn model_name_of(model_dir: &Path) -> Option<String> {
    let named = |p: &Path| p.file_name().and_then(OsStr::to_str).map(str::to_owned);
    named(model_dir).or_else(|| model_dir.canonicalize().ok().as_deref().and_then(named))
}

/// An RFC 3339 UTC timestamp to the second (`2026-01-12T00:00:00Z`).
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// The creation time to record: `SOURCE_DATE_EPOCH` (seconds since the epoch, the
/// reproducible-builds convention) when given, else now.
///
/// # Errors
/// [`Error::InvalidParameter`] when `source_date_epoch` is not a non-negative integer.
pub fn creation_time(source_date_epoch: Option<&str>) -> Result<SystemTime> {
    match source_date_epoch {
        None => Ok(SystemTime::now()),
        Some(s) => s
            .trim()
            .parse::<u64>()
            .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
            .map_err(|_| Error::parameter("SOURCE_DATE_EPOCH", s, "must be whole seconds since 1970-01-01")),
    }
}

/// `git rev-parse HEAD` in `dir`, or `None` outside a repository (or without git).
pub fn git_head(dir: &Path) -> Option<String> {
    let out = Command::new("git").args(["rev-parse", "HEAD"]).current_dir(dir).output().ok()?;
    let sha = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !sha.is_empty() && sha.bytes().all(|b| b.is_ascii_hexdigit())).then_some(sha)
}

/// A command line as a POSIX shell would need it typed: arguments of safe characters as they are,
/// others in single quotes.
pub fn shell_command<I, S>(args: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    args.into_iter()
        .map(|a| {
            let a = a.as_ref().to_string_lossy();
            let safe = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
            if !a.is_empty() && a.chars().all(safe) {
                a.into_owned()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use ferroserve_formats::layout::{self, MODEL_JSON};
    use ferroserve_formats::tree::{DecisionTree, IsolationForest, IsolationForestParams};

    use super::*;

    fn model() -> NativeModel {
        let stump = DecisionTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![0.5, -2.0, -2.0],
            n_node_samples: vec![4, 3, 1],
        };
        let params = IsolationForestParams::with_max_samples(4);
        NativeModel::IsolationForest(IsolationForest::new(params, 1, None, vec![stump], vec![vec![0]]).unwrap())
    }

    #[test]
    fn versions_follow_and_never_overwrite() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("m");
        let meta = ModelMetadata { model_name: Some("m".into()), ..ModelMetadata::default() };
        let v1 = write_version(&dir, None, &model(), &meta).unwrap();
        assert!(v1.ends_with("v1") && v1.join(MODEL_JSON).is_file());
        assert_eq!(ModelMetadata::read(&v1.join(METADATA_JSON)).unwrap().version.as_deref(), Some("v1"));
        let v2 = write_version(&dir, None, &model(), &meta).unwrap();
        assert!(v2.ends_with("v2"));
        let err = write_version(&dir, Some(1), &model(), &meta).unwrap_err();
        assert!(err.to_string().contains("exists already"), "{err}");
        let names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names.len(), 2, "no leftovers: {names:?}");
        assert_eq!(layout::version_dirs(&dir).unwrap().len(), 2);
        assert!(write_version(&dir, Some(7), &model(), &meta).unwrap().ends_with("v7"));
    }

    #[test]
    fn provenance_helpers() {
        assert_eq!(rfc3339(creation_time(Some("1768176000")).unwrap()), "2026-01-12T00:00:00Z");
        assert!(creation_time(Some("yesterday")).is_err());
        assert!(creation_time(None).unwrap() > UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        assert_eq!(
            shell_command(["ferroserve-train", "--data", "a b.csv", "--features", "x,y", "it's", ""]),
            r#"ferroserve-train --data 'a b.csv' --features x,y 'it'\''s' ''"#
        );
        assert_eq!(model_name_of(Path::new("examples/models/anomaly-detector")).as_deref(), Some("anomaly-detector"));
        assert!(model_name_of(Path::new(".")).is_some());
        assert_eq!(git_head(Path::new("/")), None);
    }
}
