//! Loading a model folder: every version, each loaded, validated and warmed up off the async
//! executor; failures recorded per version.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use ferroserve_formats::layout::{self, ArtifactFiles, METADATA_JSON, ModelLayout};
use ferroserve_formats::serving::{ServingConfig, same_version};
use ferroserve_formats::tensor::element_count;
use ferroserve_formats::{DataType, Model, ModelMetadata, Tensor, TensorData, load_model_with};
use tracing::{debug, info, warn};

use super::{Fingerprint, LoadedVersion, ModelSnapshot, Outcome, StoreConfig, VersionFailure, VersionPolicy};
use crate::error::panic_message;

/// Inputs larger than this many elements are not warmed up: a model declaring a huge fixed shape
/// should not allocate gigabytes of zeros at start.
const MAX_WARM_UP_ELEMENTS: usize = 1 << 20;

/// Why one version could not be served.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    #[error(transparent)]
    Artifact(#[from] ferroserve_formats::Error),
    #[error("warm-up inference failed: {0}")]
    WarmUp(ferroserve_formats::InferError),
    #[error("loading panicked: {0}")]
    Panicked(String),
    #[error("loading took longer than {} s (--load_timeout) and was abandoned", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("cannot start a loading thread: {0}")]
    Spawn(std::io::Error),
}

/// Runs `f`, turning a panic into an error: a corrupt artifact must cost one version, never the server.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, LoadError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| LoadError::Panicked(panic_message(&*p)))
}

/// Runs `load` on a thread of its own and waits at most `deadline` for it. A load still running then is
/// abandoned (its thread finishes on its own, bounded by the readers' limits, and its result is
/// dropped): a slow or stuck load costs its version, never the watcher or the other models.
fn within<T: Send + 'static>(
    deadline: Duration,
    load: impl FnOnce() -> Result<T, LoadError> + Send + 'static,
) -> Result<T, LoadError> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    // The batcher of a loaded version starts its task on the runtime the store runs on.
    let runtime = tokio::runtime::Handle::try_current().ok();
    std::thread::Builder::new()
        .name("ferroserve-load".to_owned())
        .spawn(move || {
            let _entered = runtime.as_ref().map(tokio::runtime::Handle::enter);
            // The receiver may be gone (timed out): nothing to do then.
            let _ = tx.send(guarded(load).and_then(|r| r));
        })
        .map_err(LoadError::Spawn)?;
    match rx.recv_timeout(deadline) {
        Ok(result) => result,
        Err(RecvTimeoutError::Timeout) => Err(LoadError::TimedOut(deadline)),
        Err(RecvTimeoutError::Disconnected) => Err(LoadError::Panicked("the loading thread ended early".to_owned())),
    }
}

/// Re-reads model folder `dir` (blocking) and builds the snapshot it should serve, reusing the versions
/// of `previous` whose files have not changed (all are loaded afresh with `everything`). Returns the
/// snapshot and the numbers of versions loaded and failed. Every file a version is read from must stay
/// inside `root` (the model folder, or the repository) after following symlinks.
pub(super) fn reload(
    name: &str,
    root: &Path,
    dir: &Path,
    previous: &ModelSnapshot,
    config: &StoreConfig,
    everything: bool,
) -> (ModelSnapshot, (u64, u64)) {
    let started = Instant::now();
    let mut out = Outcome { serving: previous.serving().cloned(), ..Outcome::default() };
    let mut attempt = Attempt { model: name, previous, everything, out: &mut out };
    match guarded(|| layout::inspect(dir)).and_then(|r| r.map_err(LoadError::from)) {
        Err(e) => attempt.out.error = Some(e.to_string()),
        Ok(ModelLayout::Bare(files)) => {
            let metadata = read_metadata(name, dir);
            let version = bare_version_name(dir, metadata.as_ref());
            let job = Job {
                model: name.to_owned(),
                version: version.clone(),
                root: root.to_path_buf(),
                path: dir.to_path_buf(),
                config: config.clone(),
            };
            attempt.version(&version, dir, || job.run(Some((files, metadata))));
            attempt.out.serving = None;
        }
        Ok(ModelLayout::Versioned(dirs)) => {
            match ServingConfig::read(dir) {
                Ok(serving) => attempt.out.serving = serving,
                Err(e) => {
                    let kept = if attempt.out.serving.is_some() { "the one read before stays" } else { "ignored" };
                    attempt.out.serving_notes.push(format!("{e}; {kept}"));
                }
            }
            let serving = attempt.out.serving.clone().unwrap_or_default();
            let pinned = |v: &str| {
                serving.default.as_deref().is_some_and(|d| same_version(d, v))
                    || serving.canary.as_ref().is_some_and(|c| same_version(&c.version, v))
            };
            // Highest first, so that `latest:N` counts the N highest versions that load.
            let mut loaded = 0;
            for d in dirs.iter().rev() {
                let selected = match &config.policy {
                    VersionPolicy::Latest(n) => loaded < *n,
                    policy => policy.lists(&d.name),
                };
                if !(selected || pinned(&d.name)) {
                    continue;
                }
                let job = Job {
                    model: name.to_owned(),
                    version: d.name.clone(),
                    root: root.to_path_buf(),
                    path: d.path.clone(),
                    config: config.clone(),
                };
                let ok = attempt.version(&d.name, &d.path, || job.run(None));
                loaded += usize::from(ok);
            }
        }
    }
    // A model that serves is never left with nothing: an emptied, unreadable or all-broken folder keeps
    // the versions loaded before.
    if out.versions.is_empty() && previous.is_ready() {
        let why = out.error.clone().unwrap_or_else(|| "no version could be loaded".to_owned());
        warn!(model = %name, path = %dir.display(), reason = %why, "keeping the versions loaded before");
        out.versions = previous.versions().to_vec();
        out.error = Some(format!("{why}; serving the versions loaded before"));
    }
    let counts = (out.loaded, out.failed);
    let snapshot = ModelSnapshot::build(name, out);
    debug!(model = %name, elapsed_ms = elapsed_ms(started), "model folder read");
    (snapshot, counts)
}

/// One reload's bookkeeping of versions: reuse, load, or record a failure.
struct Attempt<'a> {
    model: &'a str,
    previous: &'a ModelSnapshot,
    everything: bool,
    out: &'a mut Outcome,
}

impl Attempt<'_> {
    /// Serves version `version` from folder `path`: the loaded copy when its files are unchanged, else
    /// `load()`'s. A failure is recorded, and the copy loaded before (if any) keeps serving. A version
    /// that failed is not retried until its files change. Returns whether the version serves.
    fn version(&mut self, version: &str, path: &Path, load: impl FnOnce() -> Result<LoadedVersion, LoadError>) -> bool {
        let fingerprint = fingerprint(path);
        let before = self.previous.versions().iter().find(|v| v.name() == version && v.path() == Some(path));
        if !self.everything {
            if let Some(v) = before.filter(|v| v.fingerprint.is_some() && v.fingerprint == fingerprint) {
                self.out.versions.push(Arc::clone(v));
                return true;
            }
            if let Some(f) =
                self.previous.failures().iter().find(|f| f.version == version && f.fingerprint == fingerprint)
            {
                self.out.failures.push(f.clone());
                return self.keep(before);
            }
        }
        match load() {
            Ok(mut loaded) => {
                loaded.fingerprint = fingerprint;
                self.out.loaded += 1;
                self.out.versions.push(Arc::new(loaded));
                true
            }
            Err(e) => {
                warn!(model = %self.model, version = %version, path = %path.display(), error = %e, "model version failed to load");
                self.out.failed += 1;
                self.out.failures.push(VersionFailure {
                    version: version.to_owned(),
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                    fingerprint,
                });
                if before.is_some() {
                    warn!(model = %self.model, version = %version, "the copy loaded before keeps serving");
                }
                self.keep(before)
            }
        }
    }

    fn keep(&mut self, before: Option<&Arc<LoadedVersion>>) -> bool {
        match before {
            Some(v) => {
                self.out.versions.push(Arc::clone(v));
                true
            }
            None => false,
        }
    }
}

/// The visible files of `dir` (name, length, modification time), sorted; `None` when it cannot be read.
fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    if layout::single_file(dir) {
        let meta = std::fs::metadata(dir).ok()?;
        return Some(vec![(String::new(), meta.len(), modified(&meta))]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).ok()? {
        let entry = entry.ok()?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        if layout::is_hidden(&name) {
            continue;
        }
        // Follows symlinks, as loading does (Kubernetes mounts files as links into `..data/`).
        let Ok(meta) = std::fs::metadata(entry.path()) else { continue };
        if !meta.is_file() {
            continue;
        }
        files.push((name, meta.len(), modified(&meta)));
    }
    files.sort();
    Some(files)
}

/// A file's modification time in nanoseconds since the epoch (0 when unknown).
fn modified(meta: &std::fs::Metadata) -> i128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| i128::try_from(d.as_nanos()).unwrap_or(i128::MAX))
}

/// One version to load: everything the loading thread needs, owned.
struct Job {
    model: String,
    version: String,
    root: PathBuf,
    path: PathBuf,
    config: StoreConfig,
}

impl Job {
    /// Loads the version within `--load_timeout`: its files (found in its folder unless `found`) must
    /// stay inside the root, then [`load_version`].
    fn run(self, found: Option<(ArtifactFiles, Option<ModelMetadata>)>) -> Result<LoadedVersion, LoadError> {
        let deadline = self.config.load_timeout;
        within(deadline, move || {
            layout::ensure_contents_within(&self.root, &self.path)?;
            let (files, metadata) = match found {
                Some(found) => found,
                None => match layout::find_artifact(&self.path)? {
                    Some(files) => (files, read_metadata(&self.model, &self.path)),
                    None => return Err(ferroserve_formats::Error::NoModel { path: self.path.clone() }.into()),
                },
            };
            load_version(&self.model, &self.version, &self.path, &files, metadata, &self.config)
        })
    }
}

/// Loads, then warms up, one version.
fn load_version(
    model_name: &str,
    version: &str,
    path: &Path,
    files: &ArtifactFiles,
    metadata: Option<ModelMetadata>,
    config: &StoreConfig,
) -> Result<LoadedVersion, LoadError> {
    let started = Instant::now();
    let model = guarded(|| load_model_with(files, &config.load))??;
    guarded(|| warm_up(model.as_ref()))?.map_err(LoadError::WarmUp)?;
    let path = path.to_path_buf();
    info!(
        model = %model_name,
        version = %version,
        kind = %model.kind(),
        path = %path.display(),
        elapsed_ms = elapsed_ms(started),
        "model version loaded"
    );
    let mut loaded = LoadedVersion::new(version, model).with_batching(config.batch);
    if let Some(reference) = metadata.as_ref().and_then(|m| m.reference_distribution.as_ref()) {
        loaded = loaded.with_drift(&reference.features, config.drift);
    }
    loaded.metadata = metadata;
    loaded.path = Some(path);
    loaded.load_seconds = Some(started.elapsed().as_secs_f64());
    Ok(loaded)
}

/// Milliseconds since `started`, as a u64 so that JSON logs show a number (tracing writes u128 as text).
fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `metadata.json` of `dir`, if present and readable; a broken one is logged and ignored, since it
/// describes the model but is not needed to run it.
fn read_metadata(model_name: &str, dir: &Path) -> Option<ModelMetadata> {
    let path = dir.join(METADATA_JSON);
    if !path.exists() {
        return None;
    }
    match ModelMetadata::read(&path) {
        Ok(m) => Some(m),
        Err(e) => {
            warn!(model = %model_name, path = %path.display(), error = %e, "metadata.json is unreadable; serving without it");
            None
        }
    }
}

/// A bare model's version: `metadata.json`'s `version`, else the folder's name when it is a version
/// (`…/anomaly-detector/v2` mounted directly), else `1`.
fn bare_version_name(dir: &Path, metadata: Option<&ModelMetadata>) -> String {
    let from_metadata =
        metadata.and_then(|m| m.version.as_deref()).map(str::trim).filter(|v| !v.is_empty() && !v.contains('/'));
    if let Some(v) = from_metadata {
        return v.to_owned();
    }
    // `--model_dir .` has no file name until resolved.
    let real = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    real.file_name()
        .and_then(|n| n.to_str())
        .filter(|n| layout::parse_version(n).is_some())
        .map_or_else(|| "1".to_owned(), str::to_owned)
}

/// Runs the model once on zeros of its declared inputs, with variable dimensions set to 1.
fn warm_up(model: &dyn Model) -> Result<(), ferroserve_formats::InferError> {
    let mut inputs = Vec::new();
    for spec in &model.signature().inputs {
        let shape: Vec<usize> = spec.shape.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
        match element_count(&shape) {
            Some(n) if n <= MAX_WARM_UP_ELEMENTS => {
                inputs.push(Tensor::new(spec.name.clone(), shape, zeros(spec.datatype, n))?);
            }
            _ => {
                debug!(input = %spec.name, "input too large to warm up; skipping the warm-up");
                return Ok(());
            }
        }
    }
    if inputs.is_empty() {
        return Ok(());
    }
    model.infer(&inputs, &[]).map(drop)
}

/// `n` zeros (`false`, empty strings) of `datatype`.
pub(crate) fn zeros(datatype: DataType, n: usize) -> TensorData {
    match datatype {
        DataType::Bool => TensorData::Bool(vec![false; n]),
        DataType::Uint8 => TensorData::Uint8(vec![0; n]),
        DataType::Uint16 => TensorData::Uint16(vec![0; n]),
        DataType::Uint32 => TensorData::Uint32(vec![0; n]),
        DataType::Uint64 => TensorData::Uint64(vec![0; n]),
        DataType::Int8 => TensorData::Int8(vec![0; n]),
        DataType::Int16 => TensorData::Int16(vec![0; n]),
        DataType::Int32 => TensorData::Int32(vec![0; n]),
        DataType::Int64 => TensorData::Int64(vec![0; n]),
        DataType::Fp16 => TensorData::Fp16(vec![half::f16::ZERO; n]),
        DataType::Fp32 => TensorData::Fp32(vec![0.0; n]),
        DataType::Fp64 => TensorData::Fp64(vec![0.0; n]),
        DataType::Bytes => TensorData::Bytes(vec![Vec::new(); n]),
    }
}

#[cfg(test)]
mod tests {
    use ferroserve_formats::tree::{DecisionTree, IsolationForest, IsolationForestParams};
    use ferroserve_formats::{LoadOptions, NativeModel};

    use super::*;
    use crate::store::ModelSource;
    use crate::store::{ModelState, ModelStore};

    fn load_model_dir(name: &str, dir: &Path, _: &LoadOptions) -> ModelSnapshot {
        load_with(name, dir, VersionPolicy::All)
    }

    fn load_with(name: &str, dir: &Path, policy: VersionPolicy) -> ModelSnapshot {
        let before = ModelSnapshot::empty(name, ModelState::Loading, None);
        reload(name, dir, dir, &before, &StoreConfig { policy, ..StoreConfig::default() }, false).0
    }

    fn forest() -> IsolationForest {
        let tree = DecisionTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![0.5, -2.0, -2.0],
            n_node_samples: vec![4, 3, 1],
        };
        IsolationForest::new(IsolationForestParams::with_max_samples(4), 2, None, vec![tree], vec![vec![1]]).unwrap()
    }

    fn save(dir: &Path, metadata: Option<&str>) {
        std::fs::create_dir_all(dir).unwrap();
        NativeModel::IsolationForest(forest()).save(dir).unwrap();
        if let Some(m) = metadata {
            std::fs::write(dir.join(METADATA_JSON), m).unwrap();
        }
    }

    #[test]
    fn bare_versions_are_named_by_metadata_then_folder() {
        let root = tempfile::tempdir().unwrap();
        let named = root.path().join("anything");
        save(&named, Some(r#"{"version": "v7"}"#));
        assert_eq!(load_model_dir("m", &named, &LoadOptions::default()).version_names(), ["v7"]);
        let folder = root.path().join("v3");
        save(&folder, Some("{broken"));
        let s = load_model_dir("m", &folder, &LoadOptions::default());
        assert_eq!(s.version_names(), ["v3"]);
        assert!(s.versions()[0].metadata().is_none(), "broken metadata is ignored");
        let plain = root.path().join("plain");
        save(&plain, None);
        assert_eq!(load_model_dir("m", &plain, &LoadOptions::default()).version_names(), ["1"]);
    }

    #[test]
    fn broken_versions_are_recorded_and_the_rest_serve() {
        let root = tempfile::tempdir().unwrap();
        save(&root.path().join("v1"), None);
        save(&root.path().join("v10"), None);
        std::fs::create_dir(root.path().join("v2")).unwrap();
        std::fs::write(root.path().join("v2").join("model.json"), "{not json").unwrap();
        std::fs::create_dir(root.path().join("v3")).unwrap();
        let s = load_model_dir("m", root.path(), &LoadOptions::default());
        assert_eq!(s.version_names(), ["v1", "v10"]);
        assert_eq!(s.default_version().unwrap().name(), "v10");
        let failed: Vec<&str> = s.failures().iter().map(|f| f.version.as_str()).collect();
        assert_eq!(failed, ["v2", "v3"]);
        assert!(s.failures()[1].reason.contains("no model found"), "{:?}", s.failures());
        assert_eq!(s.resolve(Some("10")).unwrap().name(), "v10");
        assert_eq!(s.resolve(Some("v1")).unwrap().name(), "v1");
        let err = s.resolve(Some("v2")).unwrap_err();
        assert_eq!(err.to_string(), "model `m` has no version `v2`; loaded versions: v1, v10");
    }

    #[test]
    fn an_empty_folder_is_an_error_not_a_panic() {
        let root = tempfile::tempdir().unwrap();
        let s = load_model_dir("m", root.path(), &LoadOptions::default());
        assert!(!s.is_ready() && !s.is_loading());
        assert!(s.error().unwrap().contains("no model found"));
        let err = s.resolve(None).unwrap_err().to_string();
        assert!(
            err.starts_with("model `m` is not ready: no version could be loaded: ") && err.contains("no model found"),
            "{err}"
        );
    }

    #[test]
    fn a_load_past_its_deadline_is_abandoned() {
        let (tx, rx) = std::sync::mpsc::channel();
        let r: Result<(), LoadError> = within(Duration::from_millis(50), move || {
            // A load that never ends on its own (a read that blocks, say) until the test lets it go.
            let _ = rx.recv();
            Ok(())
        });
        let e = r.unwrap_err();
        assert!(matches!(e, LoadError::TimedOut(_)), "{e}");
        assert_eq!(e.to_string(), "loading took longer than 0.05 s (--load_timeout) and was abandoned");
        let _ = tx.send(());
        // A load within its deadline returns its result; a panicking one is an error, not a crash.
        assert_eq!(within(Duration::from_secs(5), || Ok(7)).unwrap(), 7);
        let e = within::<()>(Duration::from_secs(5), || panic!("boom")).unwrap_err();
        assert_eq!(e.to_string(), "loading panicked: boom");
    }

    #[test]
    fn warm_up_failures_fail_the_version() {
        #[derive(Debug)]
        struct Refuses(ferroserve_formats::Signature);
        impl Model for Refuses {
            fn signature(&self) -> &ferroserve_formats::Signature {
                &self.0
            }
            fn kind(&self) -> ferroserve_formats::ModelKind {
                ferroserve_formats::ModelKind::Other("refuses")
            }
            fn infer(&self, inputs: &[Tensor], _: &[String]) -> Result<Vec<Tensor>, ferroserve_formats::InferError> {
                assert_eq!(inputs[0].shape, vec![1, 3], "variable dimensions become 1");
                Err(ferroserve_formats::InputError::Inputs("no".into()).into())
            }
        }
        let sig = ferroserve_formats::Signature {
            inputs: vec![ferroserve_formats::TensorSpec::new("x", DataType::Fp32, vec![-1, 3])],
            outputs: vec![],
        };
        assert!(warm_up(&Refuses(sig)).is_err());
        assert!(warm_up(&forest()).is_ok());
    }

    #[tokio::test]
    async fn readiness_follows_loading() {
        let root = tempfile::tempdir().unwrap();
        save(&root.path().join("good"), None);
        std::fs::create_dir(root.path().join("empty")).unwrap();
        let store = ModelStore::open(&ModelSource::Repository { root: root.path().into() }).unwrap();
        assert_eq!(store.names(), ["empty", "good"]);
        assert!(!store.is_ready());
        assert!(store.check_ready().unwrap_err().to_string().contains("loading"));
        store.load_all().await;
        assert!(store.snapshot("good").unwrap().is_ready());
        assert!(!store.is_ready(), "a model without a loadable version keeps the server not ready");
        assert!(!*store.subscribe_ready().borrow());

        std::fs::remove_dir(root.path().join("empty")).unwrap();
        let store = ModelStore::open(&ModelSource::Repository { root: root.path().into() }).unwrap();
        store.load_all().await;
        store.wait_ready().await;
        assert!(store.is_ready());
    }
}
