//! The served models, and how their versions change while they serve.
//!
//! Each model is an [`ArcSwap`] of a [`ModelSnapshot`]: its loaded versions, its default version and
//! canary at one moment. A request takes the snapshot once and finishes on the version it resolved, so
//! replacing a model's versions (hot-swap) never changes a request mid-way and never waits for one.
//!
//! Loading a model folder ([`layout::inspect`]): a bare folder is one version; a versioned folder loads
//! the version folders its [`VersionPolicy`] selects, plus those `serving.json` names. A version is
//! published only after one warm-up inference, so the first request does not pay for cold caches and a
//! model that cannot run its own declared input never becomes visible.
//!
//! Every change goes through one routine, [`ModelStore::reload`] (the watcher after a filesystem event,
//! the repository API's `load`, the first load at start): it re-reads the folder off the async
//! executor, reuses every version whose files have not changed, loads new and changed ones, and swaps
//! the snapshot in one atomic store. Its rules:
//! - a version that fails to load never replaces one that works: the failure is logged, counted and
//!   listed in the repository index, and the version loaded before keeps serving;
//! - a failed version is retried when its files change, not before;
//! - a model that serves is never left with no version: an empty or unreadable folder keeps what is
//!   loaded (a repository model whose folder is removed is unloaded);
//! - one reload of a model runs at a time.

mod load;
mod policy;

use std::any::Any;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwap;
use ferroserve_formats::layout;
use ferroserve_formats::serving::{ServingConfig, same_version};
use ferroserve_formats::{LoadOptions, Model, ModelMetadata};
use tokio::sync::watch as channel;
use tracing::{debug, error, info, warn};

pub(crate) use load::zeros;
pub use policy::VersionPolicy;

use crate::batch::{BatchConfig, Batcher};
use crate::drift::{DriftConfig, DriftWindow};
use crate::error::Error;

/// The files of a version folder as last seen (name, length, modification time): a version is
/// reloaded when they change.
pub(crate) type Fingerprint = Vec<(String, u64, i128)>;

/// Where the served models come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// One model folder served under one name (`--model_name`, `--model_dir`).
    Single {
        /// The served name.
        name: String,
        /// The folder.
        dir: PathBuf,
    },
    /// Every visible sub-folder of `root`, each served under its folder's name (`--model_repository`).
    Repository {
        /// The repository folder.
        root: PathBuf,
    },
}

/// One loaded, servable version of a model.
#[derive(Debug, Clone)]
pub struct LoadedVersion {
    name: String,
    number: Option<u64>,
    model: Arc<dyn Model>,
    metadata: Option<ModelMetadata>,
    path: Option<PathBuf>,
    fingerprint: Option<Fingerprint>,
    batcher: Option<Batcher>,
    load_seconds: Option<f64>,
    drift: Option<Arc<DriftWindow>>,
    /// What a front-end attaches to the version once (its metric handles), with the identity of the
    /// owner it belongs to; the store knows nothing of what it is.
    attached: std::sync::OnceLock<(usize, Arc<dyn Any + Send + Sync>)>,
}

impl LoadedVersion {
    /// A version named `name` (`v2`, `2`, or any other name); its number, for ordering and for
    /// lookups by number, is parsed from the name when it is one.
    pub fn new(name: impl Into<String>, model: Arc<dyn Model>) -> Self {
        let name = name.into();
        LoadedVersion {
            number: layout::parse_version(&name),
            name,
            model,
            metadata: None,
            path: None,
            fingerprint: None,
            batcher: None,
            load_seconds: None,
            drift: None,
            attached: std::sync::OnceLock::new(),
        }
    }

    /// Tracks input drift against `reference` (the training distribution) as `config` says.
    pub fn with_drift(
        mut self,
        reference: &[ferroserve_formats::metadata::FeatureReference],
        config: DriftConfig,
    ) -> Self {
        self.drift = DriftWindow::new(reference, config).map(Arc::new);
        self
    }

    /// The input drift window, when the version has a reference distribution.
    pub fn drift(&self) -> Option<&DriftWindow> {
        self.drift.as_deref()
    }

    /// How long loading and warming up took, for versions loaded from a folder.
    pub fn load_seconds(&self) -> Option<f64> {
        self.load_seconds
    }

    /// The value `owner` attached to this version, made by `make` the first time: how the metrics
    /// registry caches a version's handles without the store depending on it.
    pub(crate) fn attached<O, T>(&self, owner: &Arc<O>, make: impl Fn() -> Arc<T>) -> Arc<T>
    where
        T: Any + Send + Sync,
    {
        let id = Arc::as_ptr(owner).cast::<()>() as usize;
        let (first, cached) = self.attached.get_or_init(|| (id, make() as Arc<dyn Any + Send + Sync>));
        // A version served through two owners (tests, embedding) gets uncached values in the second.
        match Arc::clone(cached).downcast::<T>() {
            Ok(value) if *first == id => value,
            _ => make(),
        }
    }

    /// Batches concurrent requests to this version as `config` says, when batching is on and the
    /// model gains from it ([`Model::gains_from_batching`]). Needs a tokio runtime (the collector is a
    /// task on it); without one, requests are not batched.
    pub fn with_batching(mut self, config: BatchConfig) -> Self {
        if config.enabled()
            && self.model.gains_from_batching()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            self.batcher = Some(Batcher::start(Arc::clone(&self.model), config, &runtime));
        }
        self
    }

    /// The version's batcher, when its requests are batched.
    pub fn batcher(&self) -> Option<&Batcher> {
        self.batcher.as_ref()
    }

    /// Attaches the version's `metadata.json`.
    pub fn with_metadata(mut self, metadata: ModelMetadata) -> Self {
        self.metadata = Some(metadata);
        self
    }

    /// The version's name, as used in URLs and responses.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The version's number, when its name is one (`v2` → 2).
    pub fn number(&self) -> Option<u64> {
        self.number
    }

    /// The model.
    pub fn model(&self) -> &Arc<dyn Model> {
        &self.model
    }

    /// The version's `metadata.json`, when it had a readable one.
    pub fn metadata(&self) -> Option<&ModelMetadata> {
        self.metadata.as_ref()
    }

    /// The folder it was loaded from (`None` for models built in memory).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

/// A version that could not be served, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionFailure {
    /// The version's name.
    pub version: String,
    /// Its folder.
    pub path: PathBuf,
    /// What went wrong.
    pub reason: String,
    /// The files that failed; the version is retried when they change.
    fingerprint: Option<Fingerprint>,
}

/// Where a model is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelState {
    /// Being loaded for the first time.
    Loading,
    /// Loaded: it serves if it has a version.
    Loaded,
    /// Unloaded through the repository API (or its repository folder was removed).
    Unloaded,
}

/// A model's versions at one moment: what one request sees from start to end.
#[derive(Debug)]
pub struct ModelSnapshot {
    name: String,
    state: ModelState,
    /// Ascending by number.
    versions: Vec<Arc<LoadedVersion>>,
    /// Index into `versions` of the version answering unpinned requests.
    default: usize,
    /// Index into `versions` of the canary, and its percent of unpinned requests.
    canary: Option<(usize, u8)>,
    failures: Vec<VersionFailure>,
    error: Option<String>,
    /// The `serving.json` applied (the last valid one read).
    serving: Option<ServingConfig>,
    /// Problems with `serving.json` (unreadable, or naming versions that are not loaded).
    serving_notes: Vec<String>,
    /// Unpinned requests resolved so far, for the canary split.
    unpinned: AtomicU64,
}

/// What a reload produced, before it becomes a snapshot.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub versions: Vec<Arc<LoadedVersion>>,
    pub failures: Vec<VersionFailure>,
    pub error: Option<String>,
    pub serving: Option<ServingConfig>,
    pub serving_notes: Vec<String>,
    /// Versions loaded (not reused) and versions that failed, in this reload.
    pub loaded: u64,
    pub failed: u64,
}

impl ModelSnapshot {
    fn empty(name: &str, state: ModelState, error: Option<String>) -> Self {
        ModelSnapshot {
            name: name.to_owned(),
            state,
            versions: Vec::new(),
            default: 0,
            canary: None,
            failures: Vec::new(),
            error,
            serving: None,
            serving_notes: Vec::new(),
            unpinned: AtomicU64::new(0),
        }
    }

    /// Builds a loaded snapshot: versions sorted, the default and canary chosen from `serving.json`.
    pub(crate) fn build(name: &str, outcome: Outcome) -> Self {
        let Outcome { mut versions, mut failures, error, serving, mut serving_notes, .. } = outcome;
        failures.sort_by(|a, b| {
            let key = |f: &VersionFailure| (layout::parse_version(&f.version), f.version.clone());
            key(a).cmp(&key(b))
        });
        versions.sort_by(|a, b| (a.number.is_none(), a.number, &a.name).cmp(&(b.number.is_none(), b.number, &b.name)));
        versions.dedup_by(|a, b| a.name == b.name);
        let find = |wanted: &str| versions.iter().position(|v| same_version(&v.name, wanted));
        let highest = versions.len().saturating_sub(1);
        let default = match serving.as_ref().and_then(|s| s.default.as_deref()) {
            None => highest,
            Some(d) => find(d).unwrap_or_else(|| {
                serving_notes.push(format!("serving.json's default `{d}` is not loaded; the highest version answers"));
                highest
            }),
        };
        let canary = serving.as_ref().and_then(|s| s.canary.as_ref()).and_then(|c| match find(&c.version) {
            // A canary that takes other inputs than the default would fail its share of unchanged requests.
            Some(i) if i != default && c.percent > 0 => match versions[i]
                .model
                .signature()
                .same_inputs(versions[default].model.signature())
            {
                Ok(()) => Some((i, c.percent)),
                Err(why) => {
                    serving_notes.push(format!(
                        "serving.json's canary `{}` is refused: its {why} of the default `{}`; the default takes all traffic",
                        c.version, versions[default].name
                    ));
                    None
                }
            },
            Some(_) => None,
            None => {
                serving_notes.push(format!(
                    "serving.json's canary `{}` is not loaded; the default takes all traffic",
                    c.version
                ));
                None
            }
        });
        ModelSnapshot {
            name: name.to_owned(),
            state: ModelState::Loaded,
            versions,
            default,
            canary,
            failures,
            error,
            serving,
            serving_notes,
            unpinned: AtomicU64::new(0),
        }
    }

    /// The model's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the model is in its life.
    pub fn state(&self) -> ModelState {
        self.state
    }

    /// Whether the model is still being loaded for the first time.
    pub fn is_loading(&self) -> bool {
        self.state == ModelState::Loading
    }

    /// Whether at least one version can answer.
    pub fn is_ready(&self) -> bool {
        !self.versions.is_empty()
    }

    /// The loaded versions, ascending by number.
    pub fn versions(&self) -> &[Arc<LoadedVersion>] {
        &self.versions
    }

    /// The names of the loaded versions, ascending.
    pub fn version_names(&self) -> Vec<String> {
        self.versions.iter().map(|v| v.name.clone()).collect()
    }

    /// The versions that failed to load, and why.
    pub fn failures(&self) -> &[VersionFailure] {
        &self.failures
    }

    /// Why the model folder as a whole could not be read, if it could not.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// The `serving.json` in force, if any.
    pub fn serving(&self) -> Option<&ServingConfig> {
        self.serving.as_ref()
    }

    /// What is wrong with `serving.json`, if anything.
    pub fn serving_notes(&self) -> &[String] {
        &self.serving_notes
    }

    /// The default version: `serving.json`'s `default` when it is loaded, else the highest.
    pub fn default_version(&self) -> Option<&Arc<LoadedVersion>> {
        self.versions.get(self.default)
    }

    /// The canary and its percent of unpinned requests, when one runs.
    pub fn canary(&self) -> Option<(&Arc<LoadedVersion>, u8)> {
        self.canary.and_then(|(i, p)| Some((self.versions.get(i)?, p)))
    }

    /// Finds a version by its exact name, or by its number (`2` finds `v2`, `v2` finds `2`). With
    /// `None`, the default version, or the canary for its share of requests: the split is exact
    /// (of every 100 unpinned requests, `percent` go to the canary, spread evenly), not random.
    ///
    /// # Errors
    /// [`LookupError::NotReady`] when no version is loaded; [`LookupError::UnknownVersion`].
    pub fn resolve(&self, version: Option<&str>) -> Result<&Arc<LoadedVersion>, LookupError> {
        let Some(default) = self.default_version() else {
            let reason = match self.state {
                ModelState::Loading => "loading".to_owned(),
                ModelState::Unloaded => "unloaded".to_owned(),
                ModelState::Loaded => match &self.error {
                    Some(e) => format!("no version could be loaded: {e}"),
                    None => "no version could be loaded".to_owned(),
                },
            };
            return Err(LookupError::NotReady { model: self.name.clone(), reason });
        };
        let Some(wanted) = version else {
            if let Some((canary, percent)) = self.canary() {
                let n = self.unpinned.fetch_add(1, Ordering::Relaxed);
                if takes_canary(n, percent) {
                    return Ok(canary);
                }
            }
            return Ok(default);
        };
        let number = layout::parse_version(wanted);
        self.versions
            .iter()
            .find(|v| v.name == wanted)
            .or_else(|| number.and_then(|n| self.versions.iter().find(|v| v.number == Some(n))))
            .ok_or_else(|| LookupError::UnknownVersion {
                model: self.name.clone(),
                version: wanted.to_owned(),
                available: self.version_names(),
            })
    }

    /// Whether `other` serves exactly what this snapshot serves (so publishing it would change nothing).
    fn same_as(&self, other: &ModelSnapshot) -> bool {
        self.state == other.state
            && self.versions.len() == other.versions.len()
            && self.versions.iter().zip(&other.versions).all(|(a, b)| Arc::ptr_eq(a, b))
            && self.default == other.default
            && self.canary == other.canary
            && self.failures == other.failures
            && self.error == other.error
            && self.serving == other.serving
            && self.serving_notes == other.serving_notes
    }
}

/// Whether unpinned request number `n` goes to a canary taking `percent` %: request `n` does when
/// `⌊(n+1)·p/100⌋ > ⌊n·p/100⌋`, which sends exactly `p` of every 100 consecutive requests, evenly spaced.
fn takes_canary(n: u64, percent: u8) -> bool {
    let p = u128::from(percent.min(100));
    let n = u128::from(n % 100);
    (n + 1) * p / 100 > n * p / 100
}

/// Why a request's model or version cannot answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LookupError {
    /// No model has this name.
    #[error("model `{model}` not found")]
    UnknownModel {
        /// The name requested.
        model: String,
    },
    /// The model has no loaded version of this name or number.
    #[error("model `{model}` has no version `{version}`; loaded versions: {}", available.join(", "))]
    UnknownVersion {
        /// The model.
        model: String,
        /// The version requested.
        version: String,
        /// The versions that exist.
        available: Vec<String>,
    },
    /// The model exists but no version can answer (yet).
    #[error("model `{model}` is not ready: {reason}")]
    NotReady {
        /// The model.
        model: String,
        /// Why.
        reason: String,
    },
}

/// Counters of one model's life, for logs and metrics.
#[derive(Debug, Default)]
pub struct ModelStats {
    /// Versions loaded (first loads and reloads).
    pub loads: AtomicU64,
    /// Versions that failed to load.
    pub load_failures: AtomicU64,
    /// Snapshots published after the first: every change of what the model serves.
    pub swaps: AtomicU64,
}

#[derive(Debug)]
struct ModelEntry {
    /// Where the model is loaded from; `None` for models built in memory.
    dir: Option<PathBuf>,
    current: ArcSwap<ModelSnapshot>,
    /// Whether the server's readiness waits for this model (models present at start do; models added
    /// later, or unloaded, do not).
    required: std::sync::atomic::AtomicBool,
    /// Serialises reloads and unloads of this model.
    changing: tokio::sync::Mutex<()>,
    stats: ModelStats,
}

impl ModelEntry {
    fn new(dir: Option<PathBuf>, snapshot: ModelSnapshot, required: bool) -> Arc<Self> {
        Arc::new(ModelEntry {
            dir,
            current: ArcSwap::from_pointee(snapshot),
            required: required.into(),
            changing: tokio::sync::Mutex::new(()),
            stats: ModelStats::default(),
        })
    }
}

type Models = BTreeMap<String, Arc<ModelEntry>>;

#[derive(Debug)]
struct Inner {
    models: ArcSwap<Models>,
    /// Serialises additions to `models` (reads never wait for it).
    adding: std::sync::Mutex<()>,
    /// The repository folder, when models are discovered in one.
    repository: Option<PathBuf>,
    /// `true` once every required model has a version; a watch so that waiters need no polling.
    ready: channel::Sender<bool>,
    config: StoreConfig,
}

/// How a store loads versions.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The device of candle models and the file limit (`--max_model_bytes`).
    pub load: LoadOptions,
    /// How long one version's load may take (`--load_timeout`).
    pub load_timeout: std::time::Duration,
    /// Which versions are loaded.
    pub policy: VersionPolicy,
    /// How requests to models that gain from it are batched.
    pub batch: BatchConfig,
    /// How input drift is tracked.
    pub drift: DriftConfig,
}

/// How long one version's load may take by default (`--load_timeout`).
pub const DEFAULT_LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            load: LoadOptions::default(),
            load_timeout: DEFAULT_LOAD_TIMEOUT,
            policy: VersionPolicy::default(),
            batch: BatchConfig::default(),
            drift: DriftConfig::default(),
        }
    }
}

/// Whether a reload re-reads versions whose files have not changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    /// Reuse unchanged versions; retry failed ones only when their files changed (the watcher).
    Changes,
    /// Load every selected version afresh, then swap (the repository API's `load`: make before break).
    Everything,
}

/// The set of served models; a cheap handle to share.
#[derive(Debug, Clone)]
pub struct ModelStore {
    inner: Arc<Inner>,
}

impl ModelStore {
    /// Registers the models of `source`, none loaded yet ([`ModelStore::load_all`] loads them), with
    /// the default [`StoreConfig`].
    ///
    /// # Errors
    /// [`Error::ModelRoot`] when the model folder or repository is missing, not a folder, or
    /// unreadable.
    pub fn open(source: &ModelSource) -> Result<Self, Error> {
        Self::open_with(source, StoreConfig::default())
    }

    /// [`ModelStore::open`] with `config`.
    ///
    /// # Errors
    /// As [`ModelStore::open`].
    pub fn open_with(source: &ModelSource, config: StoreConfig) -> Result<Self, Error> {
        let (models, repository) = match source {
            ModelSource::Single { name, dir } => {
                check_dir("--model_dir", dir)?;
                (vec![(name.clone(), dir.clone())], None)
            }
            ModelSource::Repository { root } => {
                check_dir("--model_repository", root)?;
                let models = layout::scan_repository(root).map_err(|e| Error::ModelRoot {
                    flag: "--model_repository",
                    path: root.clone(),
                    reason: e.to_string(),
                })?;
                if models.is_empty() {
                    warn!(path = %root.display(), "the model repository holds no model folder");
                }
                (models, Some(root.clone()))
            }
        };
        let models = models
            .into_iter()
            .map(|(name, dir)| {
                let snapshot = ModelSnapshot::empty(&name, ModelState::Loading, None);
                (name, ModelEntry::new(Some(dir), snapshot, true))
            })
            .collect();
        Ok(Self::with_entries(config, models, repository))
    }

    /// A store of models built in memory, already loaded (for embedding, tests and benchmarks). A
    /// model given no version is never ready.
    pub fn from_versions(models: impl IntoIterator<Item = (String, Vec<LoadedVersion>)>) -> Self {
        let models = models
            .into_iter()
            .map(|(name, versions)| {
                let outcome = Outcome { versions: versions.into_iter().map(Arc::new).collect(), ..Outcome::default() };
                let snapshot = ModelSnapshot::build(&name, outcome);
                (name, ModelEntry::new(None, snapshot, true))
            })
            .collect();
        Self::with_entries(StoreConfig::default(), models, None)
    }

    fn with_entries(config: StoreConfig, models: Models, repository: Option<PathBuf>) -> Self {
        let ready = models.values().all(|m| m.current.load().is_ready());
        let (ready, _) = channel::channel(ready);
        ModelStore {
            inner: Arc::new(Inner {
                models: ArcSwap::from_pointee(models),
                adding: std::sync::Mutex::new(()),
                repository,
                ready,
                config,
            }),
        }
    }

    /// The served models' names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.inner.models.load().keys().cloned().collect()
    }

    /// The folder watched for changes: the repository, or the single model's folder.
    pub(crate) fn watch_roots(&self) -> Vec<(Option<String>, PathBuf)> {
        if let Some(root) = &self.inner.repository {
            return vec![(None, root.clone())];
        }
        self.inner.models.load().iter().filter_map(|(n, e)| Some((Some(n.clone()), e.dir.clone()?))).collect()
    }

    /// The repository folder, when models are discovered in one.
    pub(crate) fn repository(&self) -> Option<&Path> {
        self.inner.repository.as_deref()
    }

    fn entry(&self, name: &str) -> Option<Arc<ModelEntry>> {
        self.inner.models.load().get(name).cloned()
    }

    /// The current snapshot of model `name`.
    ///
    /// # Errors
    /// [`LookupError::UnknownModel`].
    pub fn snapshot(&self, name: &str) -> Result<Arc<ModelSnapshot>, LookupError> {
        self.inner
            .models
            .load()
            .get(name)
            .map(|m| m.current.load_full())
            .ok_or_else(|| LookupError::UnknownModel { model: name.to_owned() })
    }

    /// Every model's current snapshot, by name.
    pub fn snapshots(&self) -> Vec<Arc<ModelSnapshot>> {
        self.inner.models.load().values().map(|m| m.current.load_full()).collect()
    }

    /// The counters of model `name`.
    pub fn stats(&self, name: &str) -> Option<impl std::ops::Deref<Target = ModelStats> + use<>> {
        struct Stats(Arc<ModelEntry>);
        impl std::ops::Deref for Stats {
            type Target = ModelStats;
            fn deref(&self) -> &ModelStats {
                &self.0.stats
            }
        }
        self.entry(name).map(Stats)
    }

    /// Checks that every model the server waits for has a version that can answer.
    ///
    /// # Errors
    /// [`LookupError::NotReady`] for the first model that has none.
    pub fn check_ready(&self) -> Result<(), LookupError> {
        for (name, entry) in self.inner.models.load().iter() {
            if !entry.required.load(Ordering::Relaxed) {
                continue;
            }
            let snapshot = entry.current.load();
            if let Err(e) = snapshot.resolve_default() {
                debug!(model = %name, error = %e, "not ready");
                return Err(e);
            }
        }
        Ok(())
    }

    /// Whether every model the server waits for is ready.
    pub fn is_ready(&self) -> bool {
        self.check_ready().is_ok()
    }

    /// A receiver that sees `true` once every model is ready.
    pub fn subscribe_ready(&self) -> channel::Receiver<bool> {
        self.inner.ready.subscribe()
    }

    /// Waits until every model is ready; never returns if a model has no loadable version.
    pub async fn wait_ready(&self) {
        let mut ready = self.subscribe_ready();
        // The sender lives in `self.inner`, so it outlives this wait and `wait_for` cannot fail.
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Loads every model that has a folder, concurrently, each off the async executor, and publishes
    /// each as soon as its versions are loaded.
    pub async fn load_all(&self) {
        let mut tasks = tokio::task::JoinSet::new();
        for name in self.names() {
            let store = self.clone();
            tasks.spawn(async move { store.reload(&name, Reload::Changes).await });
        }
        while let Some(joined) = tasks.join_next().await {
            if let Err(e) = joined {
                error!(error = %e, "a model loading task failed");
            }
        }
        if self.is_ready() {
            info!(models = self.inner.models.load().len(), "all models ready");
        }
    }

    /// Re-reads model `name`'s folder and swaps in what changed (see the module's rules). An unloaded
    /// model stays unloaded unless `how` is [`Reload::Everything`] (an explicit load). In a repository,
    /// a model folder that appeared since the start is registered first.
    ///
    /// # Errors
    /// [`LookupError::UnknownModel`] when no model (or repository folder) has this name.
    pub async fn reload(&self, name: &str, how: Reload) -> Result<Arc<ModelSnapshot>, LookupError> {
        let entry = match self.entry(name) {
            Some(e) => e,
            None => self.discover(name).ok_or_else(|| LookupError::UnknownModel { model: name.to_owned() })?,
        };
        let Some(dir) = entry.dir.clone() else {
            return Ok(entry.current.load_full());
        };
        let _changing = entry.changing.lock().await;
        let previous = entry.current.load_full();
        // Unloaded through the API (no error): only an explicit load brings it back. Unloaded because its
        // folder was removed: the watcher loads it again when the folder is back.
        if previous.state == ModelState::Unloaded && previous.error.is_none() && how == Reload::Changes {
            return Ok(previous);
        }
        if self.inner.repository.is_some() && !dir.exists() {
            info!(model = %name, path = %dir.display(), "the model's folder or file is gone; unloading it");
            entry.required.store(false, Ordering::Relaxed);
            let reason = "its folder was removed".to_owned();
            self.publish(name, &entry, ModelSnapshot::empty(name, ModelState::Unloaded, Some(reason)));
            return Ok(entry.current.load_full());
        }
        let (model, config, prior) = (name.to_owned(), self.inner.config.clone(), Arc::clone(&previous));
        // Files must stay inside the repository, or inside the model's own folder.
        let root = self.inner.repository.clone().unwrap_or_else(|| dir.clone());
        let everything = how == Reload::Everything;
        let loaded =
            tokio::task::spawn_blocking(move || load::reload(&model, &root, &dir, &prior, &config, everything)).await;
        let (snapshot, outcome_counts) = match loaded {
            Ok(r) => r,
            Err(e) => {
                error!(model = %name, error = %e, "a model loading task failed; the model keeps what it serves");
                return Ok(previous);
            }
        };
        entry.stats.loads.fetch_add(outcome_counts.0, Ordering::Relaxed);
        entry.stats.load_failures.fetch_add(outcome_counts.1, Ordering::Relaxed);
        if how == Reload::Everything {
            entry.required.store(true, Ordering::Relaxed);
        }
        if snapshot.same_as(&previous) {
            debug!(model = %name, "nothing changed");
        } else {
            log_change(&previous, &snapshot);
            self.publish(name, &entry, snapshot);
        }
        Ok(entry.current.load_full())
    }

    /// Unloads model `name`: it stops answering (requests in flight finish on their version), the
    /// server's readiness no longer waits for it, and the watcher leaves it alone until it is loaded
    /// again.
    ///
    /// # Errors
    /// [`LookupError::UnknownModel`].
    pub async fn unload(&self, name: &str) -> Result<(), LookupError> {
        let entry = self.entry(name).ok_or_else(|| LookupError::UnknownModel { model: name.to_owned() })?;
        let _changing = entry.changing.lock().await;
        entry.required.store(false, Ordering::Relaxed);
        info!(model = %name, "model unloaded");
        self.publish(name, &entry, ModelSnapshot::empty(name, ModelState::Unloaded, None));
        Ok(())
    }

    /// Registers repository folder `name` as a model (not loaded yet), if it is one.
    fn discover(&self, name: &str) -> Option<Arc<ModelEntry>> {
        let root = self.inner.repository.as_ref()?;
        if layout::is_hidden(name) || name.contains(['/', '\\']) || name == ".." {
            return None;
        }
        // A folder of that name, else a single model file `name.joblib`, `name.pkl` or `name.pickle`.
        let dir = std::iter::once(root.join(name))
            .chain(layout::PICKLE_EXTENSIONS.iter().map(|e| root.join(format!("{name}.{e}"))))
            .find(|p| p.is_dir() || (p != &root.join(name) && p.is_file()))?;
        if layout::ensure_within(root, &dir).is_err() {
            return None;
        }
        let _adding = self.inner.adding.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(e) = self.entry(name) {
            return Some(e);
        }
        info!(model = %name, path = %dir.display(), "new model folder");
        let entry = ModelEntry::new(Some(dir), ModelSnapshot::empty(name, ModelState::Loading, None), false);
        let mut models = Models::clone(&self.inner.models.load());
        models.insert(name.to_owned(), Arc::clone(&entry));
        self.inner.models.store(Arc::new(models));
        Some(entry)
    }

    /// Makes `snapshot` the current versions of model `name` and updates readiness.
    fn publish(&self, name: &str, entry: &ModelEntry, snapshot: ModelSnapshot) {
        let first = entry.current.load().is_loading();
        entry.current.store(Arc::new(snapshot));
        if !first {
            entry.stats.swaps.fetch_add(1, Ordering::Relaxed);
        }
        debug!(model = %name, "snapshot published");
        let ready = self.is_ready();
        self.inner.ready.send_if_modified(|r| std::mem::replace(r, ready) != ready);
    }
}

impl ModelSnapshot {
    /// [`ModelSnapshot::resolve`] without a version, but always the default and never counting towards
    /// the canary split (for metadata and readiness).
    ///
    /// # Errors
    /// [`LookupError::NotReady`] when no version is loaded.
    pub fn resolve_default(&self) -> Result<&Arc<LoadedVersion>, LookupError> {
        match self.default_version() {
            Some(v) => Ok(v),
            None => self.resolve(None),
        }
    }
}

/// Logs what a reload changed, in the terms an operator checks: versions added and removed, the
/// default, the canary, `serving.json` problems.
fn log_change(before: &ModelSnapshot, after: &ModelSnapshot) {
    let model = after.name();
    let names = |s: &ModelSnapshot| s.version_names();
    let (old, new) = (names(before), names(after));
    let added: Vec<&String> = new.iter().filter(|v| !old.contains(v)).collect();
    let removed: Vec<&String> = old.iter().filter(|v| !new.contains(v)).collect();
    let reloaded: Vec<&str> = after
        .versions
        .iter()
        .filter(|v| before.versions.iter().any(|b| b.name == v.name && !Arc::ptr_eq(b, v)))
        .map(|v| v.name())
        .collect();
    let default = after.default_version().map_or("-", |v| v.name());
    let canary = after.canary().map(|(v, p)| format!("{} {p}%", v.name()));
    if after.is_ready() {
        info!(
            model = %model,
            versions = %new.join(","),
            added = ?added,
            removed = ?removed,
            reloaded = ?reloaded,
            default = %default,
            canary = canary.as_deref().unwrap_or("none"),
            failed = after.failures.len(),
            "model serving"
        );
    } else if let Some(e) = after.error() {
        error!(model = %model, error = %e, "model cannot be loaded; it does not serve");
    } else {
        error!(model = %model, failed = after.failures.len(), "model has no loadable version; it does not serve");
    }
    if !before.is_ready() && !after.is_ready() {
        return;
    }
    for note in after.serving_notes.iter().filter(|n| !before.serving_notes.contains(n)) {
        warn!(model = %model, problem = %note, "serving.json");
    }
}

fn check_dir(flag: &'static str, dir: &Path) -> Result<(), Error> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        // One model file (`storageUri: pvc://…/model.pkl`): a bare model, for `--model_dir`.
        Ok(m) if m.is_file() && flag == "--model_dir" => Ok(()),
        Ok(_) => Err(Error::ModelRoot { flag, path: dir.to_path_buf(), reason: "not a directory".to_owned() }),
        Err(e) => Err(Error::ModelRoot { flag, path: dir.to_path_buf(), reason: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-tree IsolationForest over `features` columns.
    fn detector(features: usize) -> Arc<dyn Model> {
        use ferroserve_formats::tree::{DecisionTree, IsolationForest, IsolationForestParams};
        let tree = DecisionTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![0.5, -2.0, -2.0],
            n_node_samples: vec![4, 3, 1],
        };
        let params = IsolationForestParams::with_max_samples(4);
        Arc::new(IsolationForest::new(params, features, None, vec![tree], vec![vec![0]]).unwrap())
    }

    #[test]
    fn a_canary_with_other_inputs_takes_no_traffic() {
        let serving = |canary: &str| ServingConfig {
            default: Some("v1".into()),
            canary: Some(ferroserve_formats::serving::Canary { version: canary.into(), percent: 50 }),
        };
        let versions = vec![
            Arc::new(LoadedVersion::new("v1", detector(2))),
            Arc::new(LoadedVersion::new("v2", detector(2))),
            Arc::new(LoadedVersion::new("v3", detector(3))),
        ];
        let outcome =
            |canary: &str| Outcome { versions: versions.clone(), serving: Some(serving(canary)), ..Outcome::default() };
        let ok = ModelSnapshot::build("m", outcome("v2"));
        assert_eq!(ok.canary().map(|(v, p)| (v.name().to_owned(), p)), Some(("v2".to_owned(), 50)));
        let refused = ModelSnapshot::build("m", outcome("v3"));
        assert!(refused.canary().is_none(), "a canary with 3 inputs beside a default with 2");
        assert_eq!(refused.default_version().unwrap().name(), "v1");
        assert!(refused.serving_notes()[0].contains("canary `v3` is refused"), "{:?}", refused.serving_notes());
        for _ in 0..10 {
            assert_eq!(refused.resolve(None).unwrap().name(), "v1");
        }
    }

    #[test]
    fn missing_roots_are_config_errors() {
        let missing = Path::new("/nonexistent/ferroserve/models");
        let err = ModelStore::open(&ModelSource::Single { name: "m".into(), dir: missing.into() }).unwrap_err();
        assert!(err.to_string().starts_with("--model_dir /nonexistent/ferroserve/models: "), "{err}");
        let err = ModelStore::open(&ModelSource::Repository { root: missing.into() }).unwrap_err();
        assert!(err.to_string().starts_with("--model_repository /nonexistent"), "{err}");
    }

    #[test]
    fn the_canary_split_is_exact_and_even() {
        for p in [0u8, 1, 10, 33, 50, 99, 100] {
            let hits: Vec<u64> = (0..1000).filter(|&n| takes_canary(n, p)).collect();
            assert_eq!(hits.len(), usize::from(p) * 10, "{p}%");
            if p == 10 {
                assert!(hits.windows(2).all(|w| w[1] - w[0] == 10), "spread evenly: {hits:?}");
            }
        }
        assert!(takes_canary(u64::MAX, 100), "no overflow at the end of the counter");
    }
}
