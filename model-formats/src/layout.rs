//! The model repository on disk: the three forms a model folder takes, and the atomic writer of new
//! versions.
//!
//! 1. A **bare model**: the folder holds an artifact (`model.json` + `model.safetensors`, one
//!    scikit-learn `*.joblib` / `*.pkl` / `*.pickle`, PyTorch's `config.json` + `model.safetensors`, or a
//!    LightGBM text model `model.txt` / `model.bst`).
//! 2. A **versioned model**: the folder holds version folders `v1/`, `v2/` (or `1/`, `2/`), each a bare
//!    model, ordered by number.
//! 3. A **repository**: a folder whose sub-folders are models in form 1 or 2.
//!
//! Names starting with `.` or `_` are never read: writers build `.v3.tmp/` and rename it to `v3/`
//! in one step ([`VersionWriter`]), so a version folder is complete when it appears.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The native artifact's manifest.
pub const MODEL_JSON: &str = "model.json";
/// The native artifact's tensors.
pub const MODEL_SAFETENSORS: &str = "model.safetensors";
/// The MLOps record.
pub const METADATA_JSON: &str = "metadata.json";
/// Extensions of scikit-learn pickles, in KServe's order of precedence.
pub const PICKLE_EXTENSIONS: [&str; 3] = ["joblib", "pkl", "pickle"];
/// XGBoost's binary model files (UBJSON; `model.json` is one too when its content says so).
pub const XGBOOST_FILES: [&str; 2] = ["model.ubj", "model.bst"];
/// Extensions of PyTorch `torch.save` files.
pub const TORCH_EXTENSIONS: [&str; 2] = ["pt", "pth"];

/// What a bare model folder holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactFiles {
    /// `model.json` + `model.safetensors`.
    Native {
        /// The folder.
        dir: PathBuf,
    },
    /// A scikit-learn estimator saved by joblib or pickle.
    Pickle {
        /// The file.
        file: PathBuf,
    },
    /// The PyTorch import form: `config.json` + `model.safetensors` without `model.json` (see
    /// [`crate::lstm::import`]).
    PyTorch {
        /// The folder.
        dir: PathBuf,
    },
    /// An XGBoost model file: `model.json` whose content is XGBoost's (a top-level `learner` object),
    /// `model.ubj` or `model.bst` (see [`crate::xgboost`]).
    XGBoost {
        /// The file.
        file: PathBuf,
    },
    /// A LightGBM text model: `model.txt` or `model.bst` whose content is one (see [`crate::lightgbm`]).
    LightGbm {
        /// The file.
        file: PathBuf,
    },
    /// A `torch.save`d `state_dict` (`model.pt` / `model.pth`), with an optional `scaler.pkl`,
    /// `config.json` and `metadata.json` beside it (see [`crate::lstm::torch_file`]).
    Torch {
        /// The torch file.
        file: PathBuf,
    },
}

impl ArtifactFiles {
    /// The folder holding the artifact.
    pub fn dir(&self) -> &Path {
        match self {
            ArtifactFiles::Native { dir } | ArtifactFiles::PyTorch { dir } => dir,
            ArtifactFiles::Pickle { file }
            | ArtifactFiles::XGBoost { file }
            | ArtifactFiles::LightGbm { file }
            | ArtifactFiles::Torch { file } => file.parent().unwrap_or(Path::new(".")),
        }
    }
}

/// One version folder of a versioned model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionDir {
    /// The folder's name, which is the version's name in URLs (`v2`, `2`).
    pub name: String,
    /// The version number, for ordering.
    pub number: u64,
    /// The folder.
    pub path: PathBuf,
}

/// The form of a model folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelLayout {
    /// The folder is itself a model.
    Bare(ArtifactFiles),
    /// The folder holds version folders, ascending by number (possibly none yet).
    Versioned(Vec<VersionDir>),
}

/// Whether a name is hidden from the runtime (being written, or a tool's scratch).
pub fn is_hidden(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_')
}

/// Parses a version folder name: `v12` or `12` → 12.
pub fn parse_version(name: &str) -> Option<u64> {
    let digits = name.strip_prefix('v').unwrap_or(name);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn read_dir_names(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_hidden(&name) {
            continue;
        }
        out.push((name, entry.path()));
    }
    out.sort();
    Ok(out)
}

/// Whether `path` exists (after following symlinks) and is not a folder. Artifact files are picked by
/// name with this, not by "is a regular file", so that a FIFO or a device under a model file's name
/// fails to load with [`Error::NotRegularFile`] saying so, instead of being passed over in silence.
fn not_dir(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| !m.is_dir())
}

/// Checks that every visible entry of folder `dir` (or `dir` itself, when it is a file) resolves inside
/// `root` after following symlinks. A dangling symlink is left for the loader (it cannot be read).
///
/// # Errors
/// [`Error::PathEscape`] naming the first entry that leaves `root`; [`Error::Io`] when `root` or `dir`
/// cannot be read.
pub fn ensure_contents_within(root: &Path, dir: &Path) -> Result<()> {
    let real_root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let inside = |path: &Path| path.canonicalize().map_or(true, |real| real.starts_with(&real_root));
    if !inside(dir) {
        return Err(Error::PathEscape { path: dir.to_path_buf() });
    }
    if !dir.is_dir() {
        return Ok(());
    }
    match read_dir_names(dir)?.into_iter().find(|(_, path)| !inside(path)) {
        Some((_, path)) => Err(Error::PathEscape { path }),
        None => Ok(()),
    }
}

/// Checks that `path` (after following symlinks) stays inside `root`.
///
/// # Errors
/// [`Error::PathEscape`] when it leaves `root`; [`Error::Io`] when either cannot be resolved.
pub fn ensure_within(root: &Path, path: &Path) -> Result<PathBuf> {
    let root = root.canonicalize().map_err(|e| Error::io(root, e))?;
    let real = path.canonicalize().map_err(|e| Error::io(path, e))?;
    if real.starts_with(&root) { Ok(real) } else { Err(Error::PathEscape { path: path.to_path_buf() }) }
}

/// Finds the artifact of a bare model folder, or `None` when it holds none.
///
/// `model.json` is Ferroserve's manifest, or an XGBoost model when its content is XGBoost's (a top-level
/// `learner` object; [`crate::xgboost::is_model_json`]); `model.ubj` is an XGBoost model; `model.bst` is a
/// LightGBM model when its content is a LightGBM text model (its first line is `tree`), else XGBoost's;
/// `model.txt` is a LightGBM model when its content is one (otherwise it is not an artifact: a `model.txt`
/// of notes beside a pickle is ignored).
///
/// # Errors
/// [`Error::Ambiguous`] when the folder holds two artifacts (a native artifact and a pickle, more than
/// one pickle — KServe's sklearn server refuses that too —, an XGBoost or LightGBM file beside another
/// model); [`Error::Io`].
pub fn find_artifact(dir: &Path) -> Result<Option<ArtifactFiles>> {
    let names = read_dir_names(dir)?;
    let file = |name: &str| names.iter().find(|(n, p)| n == name && not_dir(p)).map(|(_, p)| p);
    let json = file(MODEL_JSON);
    let xgboost_json = match json {
        Some(p) => crate::xgboost::is_model_json(p)?,
        None => false,
    };
    let native = json.is_some() && !xgboost_json;
    let mut xgboost: Vec<&PathBuf> = XGBOOST_FILES.iter().filter_map(|n| file(n)).collect();
    if xgboost_json && let Some(p) = json {
        xgboost.insert(0, p);
    }
    // The PyTorch import form: a `state_dict` in safetensors described by config.json. A model.json beside
    // them makes the folder native.
    let pytorch = !native && file(crate::lstm::CONFIG_JSON).is_some() && file(MODEL_SAFETENSORS).is_some();
    let pickles: Vec<&PathBuf> = names
        .iter()
        .filter(|(n, p)| {
            not_dir(p)
                && Path::new(n).extension().and_then(|e| e.to_str()).is_some_and(|e| PICKLE_EXTENSIONS.contains(&e))
        })
        .map(|(_, p)| p)
        .collect();
    let torch: Vec<&PathBuf> = names
        .iter()
        .filter(|(n, p)| {
            not_dir(p)
                && Path::new(n).extension().and_then(|e| e.to_str()).is_some_and(|e| TORCH_EXTENSIONS.contains(&e))
        })
        .map(|(_, p)| p)
        .collect();
    if !torch.is_empty() {
        let other = native || file(MODEL_SAFETENSORS).is_some() || !xgboost.is_empty();
        return find_torch(dir, &torch, &pickles, other);
    }
    let lightgbm: Vec<&PathBuf> = names
        .iter()
        .filter(|(n, p)| {
            crate::lightgbm::FILE_NAMES.contains(&n.as_str()) && not_dir(p) && crate::lightgbm::is_text_model_file(p)
        })
        .map(|(_, p)| p)
        .collect();
    // A `model.bst` is LightGBM's when its content says so, XGBoost's otherwise.
    xgboost.retain(|p| !lightgbm.contains(p));
    match (lightgbm.as_slice(), native || pytorch || !xgboost.is_empty(), pickles.is_empty()) {
        ([], ..) => {}
        ([one], false, true) => return Ok(Some(ArtifactFiles::LightGbm { file: (*one).clone() })),
        ([_], ..) => {
            return Err(Error::Ambiguous {
                path: dir.to_path_buf(),
                reason: "holds both a LightGBM model and another model artifact; keep one".to_owned(),
            });
        }
        (many, ..) => {
            return Err(Error::Ambiguous {
                path: dir.to_path_buf(),
                reason: format!(
                    "holds {} LightGBM model files ({}); only one is allowed",
                    many.len(),
                    many.iter().filter_map(|p| p.file_name()?.to_str()).collect::<Vec<_>>().join(", ")
                ),
            });
        }
    }
    let listed =
        |files: &[&PathBuf]| files.iter().filter_map(|p| p.file_name()?.to_str()).collect::<Vec<_>>().join(", ");
    if let Some(first) = xgboost.first() {
        let other = if pytorch {
            Some("config.json + model.safetensors".to_owned())
        } else if native {
            Some("model.json + model.safetensors".to_owned())
        } else if !pickles.is_empty() {
            Some(listed(&pickles))
        } else {
            None
        };
        return match (other, xgboost.as_slice()) {
            (None, [_]) => Ok(Some(ArtifactFiles::XGBoost { file: (*first).clone() })),
            (None, many) => Err(Error::Ambiguous {
                path: dir.to_path_buf(),
                reason: format!("holds {} XGBoost model files ({}); only one is allowed", many.len(), listed(many)),
            }),
            (Some(other), _) => Err(Error::Ambiguous {
                path: dir.to_path_buf(),
                reason: format!("holds both {} and {other}; keep one", listed(&xgboost)),
            }),
        };
    }
    match (native || pytorch, pickles.as_slice()) {
        (false, []) => Ok(None),
        (true, []) if pytorch => Ok(Some(ArtifactFiles::PyTorch { dir: dir.to_path_buf() })),
        (true, []) => Ok(Some(ArtifactFiles::Native { dir: dir.to_path_buf() })),
        (false, [one]) => Ok(Some(ArtifactFiles::Pickle { file: (*one).clone() })),
        (true, _) => Err(Error::Ambiguous {
            path: dir.to_path_buf(),
            reason: format!(
                "holds both {} and a scikit-learn pickle; keep one",
                if pytorch { "config.json + model.safetensors" } else { "model.json" }
            ),
        }),
        (false, many) => Err(Error::Ambiguous {
            path: dir.to_path_buf(),
            reason: format!("holds {} model files ({}); only one is allowed", many.len(), listed(many)),
        }),
    }
}

/// A folder with a torch file: exactly one `*.pt`/`*.pth`, beside which the only pickle may be the
/// input scaling `scaler.pkl`, and no other artifact.
fn find_torch(dir: &Path, torch: &[&PathBuf], pickles: &[&PathBuf], other: bool) -> Result<Option<ArtifactFiles>> {
    let names = |files: &[&PathBuf]| -> String {
        files.iter().filter_map(|p| p.file_name()?.to_str()).collect::<Vec<_>>().join(", ")
    };
    if torch.len() > 1 {
        return Err(Error::Ambiguous {
            path: dir.to_path_buf(),
            reason: format!("holds {} PyTorch files ({}); only one is allowed", torch.len(), names(torch)),
        });
    }
    let strays: Vec<&PathBuf> = pickles
        .iter()
        .copied()
        .filter(|p| p.file_name().and_then(|n| n.to_str()) != Some(crate::lstm::torch_file::SCALER_PKL))
        .collect();
    if !strays.is_empty() || other {
        let what = if other { "model.json or model.safetensors".to_owned() } else { names(&strays) };
        return Err(Error::Ambiguous {
            path: dir.to_path_buf(),
            reason: format!(
                "holds the PyTorch file {} and {what}; a torch model folder may only add scaler.pkl, config.json and                  metadata.json",
                names(torch)
            ),
        });
    }
    Ok(Some(ArtifactFiles::Torch { file: torch[0].clone() }))
}

/// Tells the form of a model folder, or of a single model file: a `--model_dir` (or a repository entry)
/// that is a file is a bare model of that one file, as KServe mounts a `storageUri` naming a file
/// (`pvc://…/anomaly-detector.pkl`, mounted at `/mnt/models` under that name or under the mount's own).
/// Such a file is read as an XGBoost model (`*.ubj`, a `*.bst` that is not LightGBM text, or a `*.json`
/// whose content is XGBoost's), as a LightGBM text model when its content is one, else as a scikit-learn
/// pickle or joblib file whatever its name; a file that is none of these fails to load with the pickle
/// reader's reason.
///
/// # Errors
/// [`Error::NoModel`] when it holds neither an artifact nor version folders; [`Error::Ambiguous`] for an
/// artifact beside version folders or two folders of one version number (`v2/` and `2/`);
/// [`Error::PathEscape`] for a version folder that is a symlink out of `dir`; [`Error::Io`].
pub fn inspect(dir: &Path) -> Result<ModelLayout> {
    if single_file(dir) {
        let file = dir.to_path_buf();
        let lightgbm = crate::lightgbm::is_text_model_file(dir);
        let xgboost = !lightgbm
            && match dir.extension().and_then(|e| e.to_str()) {
                Some("ubj" | "bst") => true,
                Some("json") => crate::xgboost::is_model_json(dir)?,
                _ => false,
            };
        return Ok(ModelLayout::Bare(if lightgbm {
            ArtifactFiles::LightGbm { file }
        } else if xgboost {
            ArtifactFiles::XGBoost { file }
        } else {
            ArtifactFiles::Pickle { file }
        }));
    }
    let versions = version_dirs(dir)?;
    let artifact = find_artifact(dir)?;
    match (artifact, versions.is_empty()) {
        (Some(a), true) => Ok(ModelLayout::Bare(a)),
        (None, false) => Ok(ModelLayout::Versioned(versions)),
        (Some(_), false) => Err(Error::Ambiguous {
            path: dir.to_path_buf(),
            reason: "holds both a model artifact and version folders; move the artifact into a version folder"
                .to_owned(),
        }),
        (None, true) => Err(Error::NoModel { path: dir.to_path_buf() }),
    }
}

/// Whether `path` is one model file (a regular file, after following symlinks) rather than a folder.
pub fn single_file(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file())
}

/// The model name of a repository entry that is a single model file: its name without a pickle or
/// PyTorch extension (`anomaly-detector.pkl` → `anomaly-detector`, `lstm.pt` → `lstm`); `None` for
/// other files. (A single file is loaded by its content: a `torch.save` file as PyTorch, anything else
/// as a pickle.)
pub fn single_file_model_name(name: &str) -> Option<&str> {
    let (stem, ext) = name.rsplit_once('.')?;
    ((PICKLE_EXTENSIONS.contains(&ext) || TORCH_EXTENSIONS.contains(&ext)) && !stem.is_empty()).then_some(stem)
}

/// The version folders of `dir`, ascending by number.
///
/// # Errors
/// As [`inspect`].
pub fn version_dirs(dir: &Path) -> Result<Vec<VersionDir>> {
    let mut versions = Vec::new();
    for (name, path) in read_dir_names(dir)? {
        let Some(number) = parse_version(&name) else {
            continue;
        };
        if !path.is_dir() {
            continue;
        }
        ensure_within(dir, &path)?;
        versions.push(VersionDir { name, number, path });
    }
    versions.sort_by_key(|v| v.number);
    if let Some(w) = versions.windows(2).find(|w| w[0].number == w[1].number) {
        return Err(Error::Ambiguous {
            path: dir.to_path_buf(),
            reason: format!("version folders `{}` and `{}` have the same number", w[0].name, w[1].name),
        });
    }
    Ok(versions)
}

/// The models of a repository: each visible sub-folder, by name, and each single model file
/// (`name.pkl`, `name.joblib`, `name.pickle`, `name.pt`, `name.pth`) by its name without the extension, staying inside `root`.
/// A folder wins over a file of the same model name.
///
/// # Errors
/// [`Error::Io`] when `root` cannot be read.
pub fn scan_repository(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut models: Vec<(String, PathBuf)> = Vec::new();
    let entries = read_dir_names(root)?;
    for (name, path) in &entries {
        if path.is_dir() && ensure_within(root, path).is_ok() {
            models.push((name.clone(), path.clone()));
        }
    }
    for (name, path) in &entries {
        if let Some(model) = single_file_model_name(name)
            && path.is_file()
            && ensure_within(root, path).is_ok()
            && !models.iter().any(|(m, _)| m == model)
        {
            models.push((model.to_owned(), path.clone()));
        }
    }
    models.sort();
    Ok(models)
}

/// Writes a new version folder atomically: files go into a hidden `.vN.tmp/` that
/// [`VersionWriter::commit`] renames to `vN/`, so readers never see a half-written version.
#[derive(Debug)]
pub struct VersionWriter {
    model_dir: PathBuf,
    name: String,
    tmp: PathBuf,
    committed: bool,
}

impl VersionWriter {
    /// Starts version `number`, or the next one after the highest existing version when `None`.
    /// Names follow the folder's existing style (`3/` beside `1/ 2/`), `vN/` by default.
    ///
    /// # Errors
    /// [`Error::Ambiguous`] when that version exists; [`Error::Io`].
    pub fn begin(model_dir: &Path, number: Option<u64>) -> Result<VersionWriter> {
        fs::create_dir_all(model_dir).map_err(|e| Error::io(model_dir, e))?;
        let existing = version_dirs(model_dir)?;
        let number = number.unwrap_or_else(|| existing.last().map_or(1, |v| v.number + 1));
        if let Some(v) = existing.iter().find(|v| v.number == number) {
            return Err(Error::Ambiguous { path: v.path.clone(), reason: "this version exists already".to_owned() });
        }
        let bare_numbers = !existing.is_empty() && existing.iter().all(|v| !v.name.starts_with('v'));
        let name = if bare_numbers { number.to_string() } else { format!("v{number}") };
        let tmp = model_dir.join(format!(".{name}.tmp"));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        Ok(VersionWriter { model_dir: model_dir.to_path_buf(), name, tmp, committed: false })
    }

    /// The version's folder name (`v3`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The hidden folder to write the files into.
    pub fn dir(&self) -> &Path {
        &self.tmp
    }

    /// Flushes every file to disk and renames the folder to its final name.
    ///
    /// # Errors
    /// [`Error::Ambiguous`] when another writer committed the same version meanwhile; [`Error::Io`].
    pub fn commit(mut self) -> Result<PathBuf> {
        for (_, path) in read_dir_names(&self.tmp)? {
            let f = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
            f.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        let target = self.model_dir.join(&self.name);
        if target.exists() {
            return Err(Error::Ambiguous {
                path: target,
                reason: "this version appeared while it was written".to_owned(),
            });
        }
        fs::rename(&self.tmp, &target).map_err(|e| Error::io(&target, e))?;
        if let Ok(d) = fs::File::open(&self.model_dir) {
            // Make the rename itself durable; not every filesystem supports syncing a directory.
            let _ = d.sync_all();
        }
        self.committed = true;
        Ok(target)
    }
}

impl Drop for VersionWriter {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn single_file_model_names() {
        assert_eq!(super::single_file_model_name("anomaly-detector.pkl"), Some("anomaly-detector"));
        assert_eq!(super::single_file_model_name("lstm.pt"), Some("lstm"));
        assert_eq!(super::single_file_model_name("lstm.v2.pth"), Some("lstm.v2"));
        assert_eq!(super::single_file_model_name("README.md"), None);
        assert_eq!(super::single_file_model_name(".pt"), None);
    }

    use super::*;

    fn touch(p: &Path) {
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, b"{}").unwrap();
    }

    #[test]
    fn version_names_parse() {
        assert_eq!(parse_version("v12"), Some(12));
        assert_eq!(parse_version("3"), Some(3));
        for bad in ["v", "", "v1a", "latest", "v-1", "1.0"] {
            assert_eq!(parse_version(bad), None, "{bad}");
        }
    }

    #[test]
    fn detects_the_three_forms() {
        let root = tempfile::tempdir().unwrap();
        let bare = root.path().join("bare");
        touch(&bare.join(MODEL_JSON));
        assert!(matches!(inspect(&bare).unwrap(), ModelLayout::Bare(ArtifactFiles::Native { .. })));

        let versioned = root.path().join("versioned");
        touch(&versioned.join("v10").join(MODEL_JSON));
        touch(&versioned.join("v2").join(MODEL_JSON));
        touch(&versioned.join(".v11.tmp").join(MODEL_JSON));
        touch(&versioned.join("_v12").join(MODEL_JSON));
        touch(&versioned.join("notes").join("x"));
        let ModelLayout::Versioned(v) = inspect(&versioned).unwrap() else { panic!() };
        assert_eq!(v.iter().map(|v| v.name.as_str()).collect::<Vec<_>>(), ["v2", "v10"]);

        let pytorch = root.path().join("pytorch");
        touch(&pytorch.join(crate::lstm::CONFIG_JSON));
        touch(&pytorch.join(MODEL_SAFETENSORS));
        assert!(matches!(inspect(&pytorch).unwrap(), ModelLayout::Bare(ArtifactFiles::PyTorch { .. })));
        touch(&pytorch.join(MODEL_JSON));
        assert!(matches!(inspect(&pytorch).unwrap(), ModelLayout::Bare(ArtifactFiles::Native { .. })));

        let pickled = root.path().join("pickled");
        touch(&pickled.join("model.joblib"));
        assert!(matches!(inspect(&pickled).unwrap(), ModelLayout::Bare(ArtifactFiles::Pickle { .. })));

        let lgbm = root.path().join("lgbm");
        fs::create_dir_all(&lgbm).unwrap();
        fs::write(lgbm.join("model.bst"), b"tree\nversion=v4\n").unwrap();
        assert!(matches!(inspect(&lgbm).unwrap(), ModelLayout::Bare(ArtifactFiles::LightGbm { .. })));
        // A model.txt that is not a LightGBM model is not an artifact.
        touch(&pickled.join("model.txt"));
        assert!(matches!(inspect(&pickled).unwrap(), ModelLayout::Bare(ArtifactFiles::Pickle { .. })));

        let names: Vec<String> = scan_repository(root.path()).unwrap().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["bare", "lgbm", "pickled", "pytorch", "versioned"]);
    }

    #[test]
    fn ambiguous_and_empty_folders_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let dup = root.path().join("dup");
        touch(&dup.join("v2").join(MODEL_JSON));
        touch(&dup.join("2").join(MODEL_JSON));
        assert!(inspect(&dup).unwrap_err().to_string().contains("same number"));
        let two = root.path().join("two");
        touch(&two.join("model.pkl"));
        touch(&two.join("other.joblib"));
        assert!(inspect(&two).unwrap_err().to_string().contains("only one is allowed"));
        let mixed = root.path().join("mixed");
        touch(&mixed.join("model.pkl"));
        fs::write(mixed.join("model.txt"), b"tree\r\nversion=v4\r\n").unwrap();
        assert!(inspect(&mixed).unwrap_err().to_string().contains("LightGBM model and another"));
        fs::remove_file(mixed.join("model.pkl")).unwrap();
        fs::write(mixed.join("model.bst"), b"tree\n").unwrap();
        assert!(inspect(&mixed).unwrap_err().to_string().contains("2 LightGBM model files"));
        let empty = root.path().join("empty");
        fs::create_dir(&empty).unwrap();
        assert!(matches!(inspect(&empty), Err(Error::NoModel { .. })));
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_out_of_the_root_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        touch(&outside.path().join(MODEL_JSON));
        let model = root.path().join("m");
        fs::create_dir(&model).unwrap();
        std::os::unix::fs::symlink(outside.path(), model.join("v1")).unwrap();
        assert!(matches!(inspect(&model), Err(Error::PathEscape { .. })));
        std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
        assert!(scan_repository(root.path()).unwrap().iter().all(|(n, _)| n != "escape"));
    }

    #[test]
    fn version_writer_is_atomic_and_numbers_follow() {
        let root = tempfile::tempdir().unwrap();
        let w = VersionWriter::begin(root.path(), None).unwrap();
        assert_eq!(w.name(), "v1");
        fs::write(w.dir().join(MODEL_JSON), b"{}").unwrap();
        assert!(matches!(inspect(root.path()), Err(Error::NoModel { .. })), "a version being written is invisible");
        let path = w.commit().unwrap();
        assert!(path.ends_with("v1") && path.join(MODEL_JSON).exists());
        let w = VersionWriter::begin(root.path(), None).unwrap();
        assert_eq!(w.name(), "v2");
        let tmp = w.dir().to_path_buf();
        drop(w);
        assert!(!tmp.exists(), "an abandoned version is cleaned up");
        assert!(VersionWriter::begin(root.path(), Some(1)).is_err());
    }
}
