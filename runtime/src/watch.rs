//! Watching model folders: filesystem events (debounced) and a periodic re-read, both ending in
//! [`ModelStore::reload`], which reuses unchanged versions, so a re-read that finds nothing new costs a
//! few `stat` calls and publishes nothing.
//!
//! Events are reduced to the model they concern (the repository's sub-folder, or the single model);
//! paths with a hidden component (`.v3.tmp/…`, `_scratch/…`) are ignored, since writers build versions
//! there and rename them into place. After an event the folder must stay quiet for `--watch_debounce`
//! (at most 20 debounce periods in all) before the model is re-read, so a version copied file by file
//! is loaded once. Every `--watch_interval`, every model is re-read anyway: that is the polling mode,
//! and with events it catches what a network filesystem never reports.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferroserve_formats::layout;
use notify::{EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use crate::config::{WatchConfig, WatchMode};
use crate::error::Error;
use crate::store::{ModelStore, Reload};

/// What the filesystem told the watcher.
#[derive(Debug)]
enum Signal {
    /// Something changed at this path.
    Changed(PathBuf),
    /// Events were lost (queue overflow): re-read everything.
    Rescan,
}

/// A running watcher; stops when dropped.
#[derive(Debug)]
pub struct WatchTask {
    task: JoinHandle<()>,
}

impl Drop for WatchTask {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts watching the store's folders as `config` says; `None` with `--watch off`.
///
/// # Errors
/// [`Error::Watch`] when `--watch events` is asked for and events cannot be set up.
pub fn start(store: &ModelStore, config: WatchConfig) -> Result<Option<WatchTask>, Error> {
    if config.mode == WatchMode::Off {
        info!("model folders are not watched (--watch off); the repository API applies changes");
        return Ok(None);
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let watcher = match config.mode {
        WatchMode::Poll => None,
        _ => match events(store, tx) {
            Ok(w) => Some(w),
            Err(e) if config.mode == WatchMode::Events => return Err(Error::Watch(e.to_string())),
            Err(e) => {
                warn!(error = %e, interval = ?config.interval, "filesystem events unavailable; polling instead");
                None
            }
        },
    };
    info!(
        mode = if watcher.is_some() { "events" } else { "poll" },
        interval = %humantime::format_duration(config.interval),
        debounce = %humantime::format_duration(config.debounce),
        "watching model folders"
    );
    let store = store.clone();
    let task = tokio::spawn(async move {
        // Owned by the task: dropping it ends the events.
        let _watcher = watcher;
        run(store, rx, config).await;
    });
    Ok(Some(WatchTask { task }))
}

/// A recursive watcher on every root, sending what it sees to `tx`.
fn events(store: &ModelStore, tx: mpsc::UnboundedSender<Signal>) -> notify::Result<notify::RecommendedWatcher> {
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let signals: Vec<Signal> = match event {
            Ok(e) if e.need_rescan() => vec![Signal::Rescan],
            Ok(e) if relevant(e.kind) => e.paths.into_iter().map(Signal::Changed).collect(),
            Ok(_) => Vec::new(),
            Err(e) => {
                warn!(error = %e, "filesystem watch error; re-reading the model folders");
                vec![Signal::Rescan]
            }
        };
        for s in signals {
            // The receiver is gone only when the server stops.
            let _ = tx.send(s);
        }
    })?;
    for (_, root) in store.watch_roots() {
        watcher.watch(&root, RecursiveMode::Recursive)?;
    }
    Ok(watcher)
}

/// Whether an event kind can change what is served. Opening and reading files (loading does both)
/// cannot.
fn relevant(kind: EventKind) -> bool {
    use notify::event::{AccessKind, AccessMode};
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Other => true,
    }
}

async fn run(store: ModelStore, mut rx: mpsc::UnboundedReceiver<Signal>, config: WatchConfig) {
    let mut tick = tokio::time::interval_at(Instant::now() + config.interval, config.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let reloads = Reloads::default();
    loop {
        tokio::select! {
            _ = tick.tick() => rescan(&store, &reloads),
            first = rx.recv() => {
                let Some(first) = first else {
                    // Events ended (the watcher is gone): keep polling.
                    loop {
                        tick.tick().await;
                        rescan(&store, &reloads);
                    }
                };
                let batch = collect(&mut rx, first, config.debounce).await;
                let targets = targets(&store, batch);
                debug!(?targets, "model folders changed");
                match targets {
                    None => rescan(&store, &reloads),
                    Some(names) => {
                        for name in names {
                            reloads.request(&store, name);
                        }
                    }
                }
            }
        }
    }
}

/// The watcher's reloads in flight: each model reloads on a task of its own, so that a slow load (up to
/// `--load_timeout`) delays neither the watcher nor any other model. A change seen while a model's
/// reload runs marks it to run once more when done, never twice at once.
#[derive(Debug, Clone, Default)]
struct Reloads {
    /// Models with a reload in flight, and whether another was asked for since it started.
    running: Arc<Mutex<HashMap<String, bool>>>,
}

impl Reloads {
    fn request(&self, store: &ModelStore, name: String) {
        {
            let mut running = self.running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(again) = running.get_mut(&name) {
                *again = true;
                return;
            }
            running.insert(name.clone(), false);
        }
        let (store, running) = (store.clone(), Arc::clone(&self.running));
        tokio::spawn(async move {
            loop {
                reload(&store, &name).await;
                let mut running = running.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                if running.get(&name) == Some(&true) {
                    running.insert(name.clone(), false);
                } else {
                    running.remove(&name);
                    return;
                }
            }
        });
    }
}

/// Collects `first` and every signal that follows until `debounce` passes without one (or 20 debounce
/// periods in all, so that a folder written to without pause is still re-read).
async fn collect(rx: &mut mpsc::UnboundedReceiver<Signal>, first: Signal, debounce: Duration) -> Vec<Signal> {
    let mut batch = vec![first];
    let deadline = Instant::now() + debounce * 20;
    loop {
        let quiet = (Instant::now() + debounce).min(deadline);
        match tokio::time::timeout_at(quiet, rx.recv()).await {
            Ok(Some(signal)) => batch.push(signal),
            Ok(None) | Err(_) => return batch,
        }
    }
}

/// The models a batch concerns, or `None` for "re-read all".
fn targets(store: &ModelStore, batch: Vec<Signal>) -> Option<BTreeSet<String>> {
    // notify reports absolute paths (it joins a relative watch path onto the working directory), so a relative
    // `--model_dir scratch/models` must be made absolute the same way, or no event would ever match it and every
    // change would wait for the next poll.
    let roots: Vec<(Option<String>, PathBuf)> = store
        .watch_roots()
        .into_iter()
        .map(|(model, root)| (model, std::path::absolute(&root).unwrap_or(root)))
        .collect();
    let mut names = BTreeSet::new();
    for signal in batch {
        let Signal::Changed(path) = signal else {
            return None;
        };
        for (model, root) in &roots {
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            if hidden(relative) {
                continue;
            }
            match model {
                Some(name) => {
                    names.insert(name.clone());
                }
                // The repository: the first component is the model (a single model file `name.pkl` is
                // model `name`); the root itself changing means a model folder appeared or went.
                None => match relative.components().next().and_then(|c| c.as_os_str().to_str()) {
                    Some(name) => {
                        let single = relative.components().count() == 1 && !root.join(name).is_dir();
                        let model = if single { layout::single_file_model_name(name).unwrap_or(name) } else { name };
                        names.insert(model.to_owned());
                    }
                    None => return None,
                },
            }
        }
    }
    Some(names)
}

/// Whether a path relative to a root has a hidden component (a folder being written).
fn hidden(relative: &Path) -> bool {
    relative.components().any(|c| c.as_os_str().to_str().is_none_or(layout::is_hidden))
}

/// Re-reads every model, and in a repository, registers model folders that appeared.
fn rescan(store: &ModelStore, reloads: &Reloads) {
    let mut names: BTreeSet<String> = store.names().into_iter().collect();
    if let Some(root) = store.repository() {
        match layout::scan_repository(root) {
            Ok(found) => names.extend(found.into_iter().map(|(n, _)| n)),
            Err(e) => warn!(path = %root.display(), error = %e, "cannot read the model repository"),
        }
    }
    for name in names {
        reloads.request(store, name);
    }
}

async fn reload(store: &ModelStore, name: &str) {
    if let Err(e) = store.reload(name, Reload::Changes).await {
        debug!(model = %name, error = %e, "not a model");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_burst_is_one_batch_after_the_folder_is_quiet() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let debounce = Duration::from_millis(500);
        let sender = tokio::spawn(async move {
            for i in 0..5 {
                tx.send(Signal::Changed(PathBuf::from(format!("m/v2/file{i}")))).unwrap();
                tokio::time::sleep(Duration::from_millis(400)).await;
            }
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(Signal::Changed(PathBuf::from("m/v3"))).unwrap();
        });
        let started = Instant::now();
        let first = rx.recv().await.unwrap();
        let batch = collect(&mut rx, first, debounce).await;
        assert_eq!(batch.len(), 5, "events 400 ms apart are one batch");
        // The last event came at 1.6 s; the batch closes 500 ms later.
        assert_eq!(started.elapsed(), Duration::from_millis(2100));
        let next = rx.recv().await.unwrap();
        assert_eq!(collect(&mut rx, next, debounce).await.len(), 1, "a later event is a new batch");
        sender.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_folder_written_without_pause_is_still_read() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let debounce = Duration::from_millis(100);
        let sender = tokio::spawn(async move {
            loop {
                if tx.send(Signal::Changed(PathBuf::from("m/v2/log"))).is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let started = Instant::now();
        let first = rx.recv().await.unwrap();
        let batch = collect(&mut rx, first, debounce).await;
        assert_eq!(started.elapsed(), debounce * 20, "capped at 20 debounce periods");
        assert!(batch.len() >= 39, "{}", batch.len());
        drop(rx);
        sender.await.unwrap();
    }

    #[test]
    fn hidden_paths_are_ignored() {
        assert!(hidden(Path::new(".v3.tmp/model.json")));
        assert!(hidden(Path::new("m/_scratch/x")));
        assert!(hidden(Path::new(".serving.json.tmp")));
        assert!(!hidden(Path::new("m/v3/model.json")));
        assert!(!hidden(Path::new("serving.json")));
    }
}
