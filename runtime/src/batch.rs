//! Dynamic batching: concurrent requests to a model that gains from it (the LSTM autoencoder) run as
//! one batch.
//!
//! Each batched version has one queue and one collector task. The collector takes the first request,
//! waits for a free compute slot (one per CPU), then adds every compatible request that is queued, or
//! arrives within `--max_batch_delay` of the first one's arrival, up to `--max_batch_size` rows; the
//! batch runs on the blocking pool while the collector gathers the next. With the default delay of 0 a
//! request never waits for company: batches form only from requests that queued while the CPUs were
//! busy, so batching adds no latency at low load and saves compute at high load.
//!
//! Requests are compatible when they ask for the same outputs and their inputs have the same names,
//! types and shapes after the first (batch) dimension. A batch's outputs are split back by rows. If the
//! batch fails (one request's bad input fails the whole batch), every request is run alone, so each
//! gets its own answer or its own error: batching never changes what a request receives.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ferroserve_formats::{DataType, Model, Tensor, TensorData};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tracing::debug;

use ferroserve_formats::InferError;

use crate::error::panic_message;

/// Batching settings (`--max_batch_size`, `--max_batch_delay`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchConfig {
    /// The most rows (first-dimension entries) one batch holds; below 2, batching is off.
    pub max_batch_size: usize,
    /// How long the first request of a batch may wait for others.
    pub max_delay: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig { max_batch_size: 64, max_delay: Duration::ZERO }
    }
}

impl BatchConfig {
    /// Whether batching is on.
    pub fn enabled(&self) -> bool {
        self.max_batch_size >= 2
    }
}

/// Counters of one batcher, for logs and metrics.
#[derive(Debug, Default)]
pub struct BatchStats {
    /// Batches run (a request run alone counts as a batch of one).
    pub batches: AtomicU64,
    /// Requests run through the batcher.
    pub requests: AtomicU64,
    /// Rows run through the batcher.
    pub rows: AtomicU64,
    /// Total time requests waited in the queue, in microseconds.
    pub queue_micros: AtomicU64,
    /// Batches that failed as a whole and were rerun request by request.
    pub split_retries: AtomicU64,
}

/// What makes two requests batchable together.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    outputs: Vec<String>,
    inputs: Vec<(String, DataType, Vec<usize>)>,
}

struct Job {
    inputs: Vec<Tensor>,
    outputs: Vec<String>,
    rows: usize,
    key: Key,
    queued: Instant,
    reply: oneshot::Sender<Result<Vec<Tensor>, InferError>>,
}

/// The queue of one model version; cheap to clone. The collector stops when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct Batcher {
    queue: mpsc::UnboundedSender<Job>,
    stats: Arc<BatchStats>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job").field("rows", &self.rows).field("key", &self.key).finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the collector of `model` on `runtime`.
    pub fn start(model: Arc<dyn Model>, config: BatchConfig, runtime: &tokio::runtime::Handle) -> Batcher {
        let (queue, jobs) = mpsc::unbounded_channel();
        let stats = Arc::new(BatchStats::default());
        let slots = Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get())));
        runtime.spawn(collect(model, config, jobs, slots, Arc::clone(&stats)));
        Batcher { queue, stats }
    }

    /// The batcher's counters.
    pub fn stats(&self) -> &BatchStats {
        &self.stats
    }

    /// Runs `inputs` through `model` (the batcher's own), batched with other requests when they fit. A
    /// request that cannot be batched (an input without the batch dimension, such as one LSTM window sent
    /// as `[T, F]`) runs alone on the blocking pool.
    pub async fn infer(
        &self,
        model: &Arc<dyn Model>,
        inputs: Vec<Tensor>,
        outputs: Vec<String>,
    ) -> Result<Vec<Tensor>, InferError> {
        let Some((rows, key)) = batch_key(model.as_ref(), &inputs, &outputs) else {
            let model = Arc::clone(model);
            let span = tracing::Span::current();
            return tokio::task::spawn_blocking(move || {
                span.in_scope(|| guarded_infer(model.as_ref(), &inputs, &outputs))
            })
            .await
            .map_err(|e| InferError::compute(format!("inference task failed: {e}")))?;
        };
        let (reply, answer) = oneshot::channel();
        let job = Job { inputs, outputs, rows, key, queued: Instant::now(), reply };
        if self.queue.send(job).is_err() {
            return Err(InferError::compute("the batch queue is closed"));
        }
        answer.await.unwrap_or_else(|_| Err(InferError::compute("the batch was dropped")))
    }
}

/// The rows of a request and what it must share with others to join their batch; `None` when an
/// input's rank differs from the signature's (e.g. one LSTM window sent as `[T, F]`), or the inputs
/// disagree on the batch dimension.
fn batch_key(model: &dyn Model, inputs: &[Tensor], outputs: &[String]) -> Option<(usize, Key)> {
    let specs = &model.signature().inputs;
    let rows = inputs.first()?.shape.first().copied()?;
    let mut key = Key { outputs: outputs.to_vec(), inputs: Vec::with_capacity(inputs.len()) };
    for t in inputs {
        let spec = specs.iter().find(|s| s.name == t.name).or(if specs.len() == 1 { specs.first() } else { None })?;
        if t.shape.len() != spec.shape.len() || t.shape.first() != Some(&rows) {
            return None;
        }
        key.inputs.push((t.name.clone(), t.datatype(), t.shape[1..].to_vec()));
    }
    Some((rows, key))
}

async fn collect(
    model: Arc<dyn Model>,
    config: BatchConfig,
    mut jobs: mpsc::UnboundedReceiver<Job>,
    slots: Arc<Semaphore>,
    stats: Arc<BatchStats>,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(job) => job,
            None => match jobs.recv().await {
                Some(job) => job,
                None => return,
            },
        };
        // While every slot computes, requests queue up and join this batch.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let deadline = first.queued + config.max_delay;
        let mut rows = first.rows;
        let mut batch = vec![first];
        while rows < config.max_batch_size {
            let next = match jobs.try_recv() {
                Ok(job) => Some(job),
                Err(mpsc::error::TryRecvError::Empty) if Instant::now() < deadline => {
                    tokio::time::timeout_at(deadline, jobs.recv()).await.ok().flatten()
                }
                Err(_) => None,
            };
            let Some(job) = next else {
                break;
            };
            if job.key == batch[0].key && rows + job.rows <= config.max_batch_size {
                rows += job.rows;
                batch.push(job);
            } else {
                carried = Some(job);
                break;
            }
        }
        let now = Instant::now();
        let waited: u128 = batch.iter().map(|j| now.duration_since(j.queued).as_micros()).sum();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.requests.fetch_add(batch.len() as u64, Ordering::Relaxed);
        stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        stats.queue_micros.fetch_add(u64::try_from(waited).unwrap_or(u64::MAX), Ordering::Relaxed);
        debug!(requests = batch.len(), rows, "batch");
        let (model, stats, span) = (Arc::clone(&model), Arc::clone(&stats), tracing::Span::current());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            span.in_scope(|| run(model.as_ref(), batch, rows, &stats));
        });
    }
}

/// Runs a model call, turning a panic into a failed computation.
pub(crate) fn guarded_infer(
    model: &dyn Model,
    inputs: &[Tensor],
    outputs: &[String],
) -> Result<Vec<Tensor>, InferError> {
    // A panicking model is a bug in that model; the request gets a 500 and the server goes on.
    std::panic::catch_unwind(AssertUnwindSafe(|| model.infer(inputs, outputs)))
        .map_err(|p| InferError::compute(format!("model panicked: {}", panic_message(&*p))))?
}

/// Runs one batch and answers each of its requests.
fn run(model: &dyn Model, batch: Vec<Job>, rows: usize, stats: &BatchStats) {
    if batch.len() == 1 {
        for job in batch {
            let answer = guarded_infer(model, &job.inputs, &job.outputs);
            let _ = job.reply.send(answer);
        }
        return;
    }
    match run_together(model, &batch, rows) {
        Some(parts) => {
            for (job, part) in batch.into_iter().zip(parts) {
                // The client may have gone (timeout); nothing to do then.
                let _ = job.reply.send(Ok(part));
            }
        }
        None => {
            stats.split_retries.fetch_add(1, Ordering::Relaxed);
            for job in batch {
                let answer = guarded_infer(model, &job.inputs, &job.outputs);
                let _ = job.reply.send(answer);
            }
        }
    }
}

/// The batch's outputs split per request, or `None` when it failed or its outputs cannot be split.
fn run_together(model: &dyn Model, batch: &[Job], rows: usize) -> Option<Vec<Vec<Tensor>>> {
    let first = batch.first()?;
    let mut inputs = Vec::with_capacity(first.inputs.len());
    for (i, t) in first.inputs.iter().enumerate() {
        let parts: Vec<&TensorData> = batch.iter().map(|j| j.inputs.get(i).map(|t| &t.data)).collect::<Option<_>>()?;
        let mut shape = t.shape.clone();
        shape[0] = rows;
        inputs.push(Tensor::new(t.name.clone(), shape, TensorData::concat(&parts)?).ok()?);
    }
    let outputs = guarded_infer(model, &inputs, &first.outputs).ok()?;
    let mut parts: Vec<Vec<Tensor>> = batch.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for out in outputs {
        if out.shape.first() != Some(&rows) || rows == 0 {
            return None;
        }
        let per_row = out.data.len() / rows;
        let mut start = 0;
        for (job, part) in batch.iter().zip(parts.iter_mut()) {
            let end = start + job.rows;
            let mut shape = out.shape.clone();
            shape[0] = job.rows;
            part.push(Tensor::new(out.name.clone(), shape, out.data.slice(start * per_row, end * per_row)?).ok()?);
            start = end;
        }
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use ferroserve_formats::{Signature, TensorSpec};

    use super::*;

    /// Doubles its input; records the batch sizes it saw; refuses negative values.
    #[derive(Debug)]
    struct Doubler {
        signature: Signature,
        calls: Mutex<Vec<usize>>,
    }

    impl Doubler {
        fn new() -> Arc<Self> {
            Arc::new(Doubler {
                signature: Signature {
                    inputs: vec![TensorSpec::new("x", DataType::Fp32, vec![-1, 2])],
                    outputs: vec![TensorSpec::new("y", DataType::Fp32, vec![-1, 2])],
                },
                calls: Mutex::new(Vec::new()),
            })
        }
    }

    impl Model for Doubler {
        fn signature(&self) -> &Signature {
            &self.signature
        }
        fn kind(&self) -> ferroserve_formats::ModelKind {
            ferroserve_formats::ModelKind::Other("doubler")
        }
        fn gains_from_batching(&self) -> bool {
            true
        }
        fn infer(&self, inputs: &[Tensor], _: &[String]) -> Result<Vec<Tensor>, ferroserve_formats::InferError> {
            let x = &inputs[0];
            self.calls.lock().unwrap().push(x.shape[0]);
            // Slow enough that concurrent requests queue behind the running batch.
            std::thread::sleep(Duration::from_millis(20));
            let TensorData::Fp32(v) = &x.data else { unreachable!() };
            if v.iter().any(|&a| a < 0.0) {
                return Err(ferroserve_formats::InputError::Inputs("negative".into()).into());
            }
            Ok(vec![Tensor::new("y", x.shape.clone(), TensorData::Fp32(v.iter().map(|a| a * 2.0).collect()))?])
        }
    }

    fn rows(values: &[f32]) -> Vec<Tensor> {
        vec![Tensor::new("x", vec![values.len() / 2, 2], TensorData::Fp32(values.to_vec())).unwrap()]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_share_batches_and_get_their_own_rows() {
        let model = Doubler::new();
        let config = BatchConfig { max_batch_size: 64, max_delay: Duration::ZERO };
        let batcher = Batcher::start(model.clone(), config, &tokio::runtime::Handle::current());
        let mut tasks = Vec::new();
        for i in 0..40u8 {
            let (batcher, model) = (batcher.clone(), model.clone());
            tasks.push(tokio::spawn(async move {
                let v = f32::from(i);
                // Request i: i % 3 + 1 rows, all equal to i; request 13 is bad.
                let n = usize::from(i % 3 + 1);
                let value = if i == 13 { -1.0 } else { v };
                let model: Arc<dyn Model> = model;
                let out = batcher.infer(&model, rows(&vec![value; 2 * n]), vec![]).await;
                (i, n, out)
            }));
        }
        for t in tasks {
            let (i, n, out) = t.await.unwrap();
            if i == 13 {
                assert_eq!(out.unwrap_err().to_string(), "negative", "the bad request gets its own error");
                continue;
            }
            let out = out.unwrap();
            assert_eq!(out[0].shape, vec![n, 2]);
            assert_eq!(out[0].data, TensorData::Fp32(vec![f32::from(i) * 2.0; 2 * n]), "request {i}");
        }
        let calls = model.calls.lock().unwrap().clone();
        assert!(calls.iter().any(|&b| b > 3), "some batch held several requests: {calls:?}");
        assert!(calls.iter().all(|&b| b <= 64));
        assert_eq!(batcher.stats().split_retries.load(Ordering::Relaxed), 1, "the batch with request 13 was split");
    }

    #[tokio::test]
    async fn unbatchable_requests_run_alone() {
        let doubler = Doubler::new();
        let model: Arc<dyn Model> = doubler.clone();
        let batcher = Batcher::start(model.clone(), BatchConfig::default(), &tokio::runtime::Handle::current());
        let one = vec![Tensor::new("x", vec![2], TensorData::Fp32(vec![1.0, 2.0])).unwrap()];
        let out = batcher.infer(&model, one, vec![]).await.unwrap();
        assert_eq!(out[0].data, TensorData::Fp32(vec![2.0, 4.0]), "rank 1 against a rank-2 signature: run as sent");
        assert_eq!(batcher.stats().requests.load(Ordering::Relaxed), 0, "not through the queue");
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_lets_a_lone_request_wait_for_company() {
        let model = Doubler::new();
        let config = BatchConfig { max_batch_size: 8, max_delay: Duration::from_millis(5) };
        let batcher = Batcher::start(model.clone(), config, &tokio::runtime::Handle::current());
        let dyn_model: Arc<dyn Model> = model.clone();
        let a = tokio::spawn({
            let (b, m) = (batcher.clone(), dyn_model.clone());
            async move { b.infer(&m, rows(&[1.0, 1.0]), vec![]).await }
        });
        tokio::time::sleep(Duration::from_millis(2)).await;
        let b = batcher.infer(&dyn_model, rows(&[2.0, 2.0]), vec![]).await.unwrap();
        assert_eq!(b[0].data, TensorData::Fp32(vec![4.0, 4.0]));
        a.await.unwrap().unwrap();
        assert_eq!(*model.calls.lock().unwrap(), vec![2], "one batch of both");
    }
}
