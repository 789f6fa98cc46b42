//! Loading and saving artifacts: the native `model.json` + `model.safetensors` pair, and the entry
//! point that turns any artifact folder into a served [`Model`].

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use safetensors::{Dtype, SafeTensors, tensor::TensorView};

use crate::error::{Error, Result};
use crate::layout::{ArtifactFiles, MODEL_JSON, MODEL_SAFETENSORS};
use crate::manifest::{FORMAT, FORMAT_VERSION, Manifest, ModelSpec};
use crate::model::Model;
use crate::tree::{DecisionTree, IsolationForest};

/// A model in Ferroserve's native form, as the training crate writes it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum NativeModel {
    /// An IsolationForest.
    IsolationForest(IsolationForest),
}

impl NativeModel {
    /// The shared, servable form.
    pub fn into_model(self) -> Arc<dyn Model> {
        match self {
            NativeModel::IsolationForest(m) => Arc::new(m),
        }
    }

    /// The manifest describing this model.
    pub fn manifest(&self) -> Manifest {
        match self {
            NativeModel::IsolationForest(m) => Manifest {
                format: FORMAT.to_owned(),
                format_version: FORMAT_VERSION,
                spec: ModelSpec::IsolationForest(m.params().clone()),
                n_features: m.n_features(),
                feature_names: m.feature_names().map(<[String]>::to_vec),
                signature: m.signature().clone(),
            },
        }
    }

    /// Writes `model.json` and `model.safetensors` into `dir` (which must exist). The bytes depend only
    /// on the model, so the same model always gives the same files.
    ///
    /// To publish a new version, write into [`crate::layout::VersionWriter::dir`] and commit.
    ///
    /// # Errors
    /// [`Error::Io`] when a file cannot be written.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut tensors = TensorSet::default();
        match self {
            NativeModel::IsolationForest(m) => {
                tensors.put_trees(m.trees());
                let k = m.params().max_features;
                let flat: Vec<i64> = m.estimators_features().iter().flatten().map(|&c| c as i64).collect();
                tensors.put_i32("estimators_features", vec![m.trees().len(), k], &flat);
            }
        }
        let path = dir.join(MODEL_SAFETENSORS);
        let bytes = tensors.serialize().map_err(|message| Error::Safetensors { path: path.clone(), message })?;
        std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
        let json = dir.join(MODEL_JSON);
        std::fs::write(&json, self.manifest().to_bytes()).map_err(|e| Error::io(&json, e))
    }

    /// Reads a native artifact folder, validating every tensor against the manifest.
    ///
    /// # Errors
    /// Typed errors naming the file and what is wrong: [`Error::Io`], [`Error::Json`],
    /// [`Error::UnsupportedFormat`], [`Error::Safetensors`], [`Error::MissingTensor`],
    /// [`Error::BadTensor`], [`Error::InvalidModel`].
    pub fn load(dir: &Path) -> Result<NativeModel> {
        Self::load_with(dir, crate::files::DEFAULT_MAX_MODEL_BYTES)
    }

    /// [`NativeModel::load`] reading a `model.safetensors` of at most `max_bytes`.
    ///
    /// # Errors
    /// As [`NativeModel::load`]; [`Error::TooLarge`] over the limit.
    pub fn load_with(dir: &Path, max_bytes: u64) -> Result<NativeModel> {
        let manifest = Manifest::read(&dir.join(MODEL_JSON))?;
        let path = dir.join(MODEL_SAFETENSORS);
        let bytes = crate::files::read(&path, max_bytes, crate::files::MAX_MODEL_BYTES)?;
        let st = SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Safetensors { path: path.clone(), message: e.to_string() })?;
        let reader = TensorReader { st: &st, path: &path };
        let with_path = |e: Error| match e {
            Error::InvalidModel { reason, .. } => Error::InvalidModel { path: path.clone(), reason },
            other => other,
        };
        match manifest.spec {
            ModelSpec::IsolationForest(params) => {
                let trees = reader.trees()?;
                let t = trees.len();
                let k = params.max_features;
                let cols = reader.ints("estimators_features", &[Some(t), Some(k)])?;
                let mut features = Vec::with_capacity(t);
                for chunk in cols.chunks(k.max(1)).take(t) {
                    let subset: Option<Vec<usize>> = chunk.iter().map(|&c| usize::try_from(c).ok()).collect();
                    features
                        .push(subset.ok_or_else(|| Error::invalid(&path, "a negative column in estimators_features"))?);
                }
                if params.n_estimators != t {
                    return Err(Error::invalid(
                        &path,
                        format!("model.json says {} trees, the file holds {t}", params.n_estimators),
                    ));
                }
                let model = IsolationForest::new(params, manifest.n_features, manifest.feature_names, trees, features)
                    .map_err(with_path)?;
                Ok(NativeModel::IsolationForest(model))
            }
        }
    }
}

/// Loads whatever artifact a bare model folder holds, ready to serve.
///
/// A scikit-learn pickle is read by the restricted interpreter ([`crate::pickle::load_file`], which
/// never executes anything) and the estimator it describes is rebuilt by [`crate::sklearn::from_value`];
/// an XGBoost file is read by [`crate::xgboost::XGBoostModel::load`], a LightGBM text model by
/// [`crate::lightgbm::load_file`].
///
/// # Errors
/// The loaders' errors: for a native artifact as [`NativeModel::load`]; for a pickle
/// [`Error::UnsupportedClass`] (a class outside the allowlist), [`Error::PickleRead`] (a malformed
/// file) and [`Error::Pickle`] (an estimator Ferroserve does not serve); for an XGBoost file
/// [`Error::InvalidModel`] and [`Error::Unsupported`]; for a LightGBM model [`Error::InvalidModel`].
pub fn load_model(files: &ArtifactFiles) -> Result<Arc<dyn Model>> {
    load_model_with(files, &LoadOptions::default())
}

/// How models are loaded: the device of the models that run on one (the LSTM autoencoder), and the
/// limit on what one load may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadOptions {
    /// Where candle models run; `auto` (the default) probes CUDA and falls back to the CPU. Resolve it
    /// once with [`crate::lstm::DeviceChoice::resolve`] and pass the result, so loads do not probe again.
    pub device: crate::lstm::DeviceChoice,
    /// The largest model file read, and the most a compressed one may decompress to
    /// ([`crate::files::DEFAULT_MAX_MODEL_BYTES`] by default; the server's `--max_model_bytes`).
    pub max_model_bytes: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: crate::lstm::DeviceChoice::default(),
            max_model_bytes: crate::files::DEFAULT_MAX_MODEL_BYTES,
        }
    }
}

impl LoadOptions {
    /// The pickle interpreter's limits for these options: files and decompressed streams up to
    /// `max_model_bytes`, and at most twice that built from them (strings, arrays, containers).
    pub fn pickle_limits(&self) -> crate::pickle::Limits {
        let m = self.max_model_bytes;
        crate::pickle::Limits {
            max_file_bytes: m,
            max_decompressed_bytes: m,
            max_alloc_bytes: m.saturating_mul(2),
            ..crate::pickle::Limits::default()
        }
    }

    /// The XGBoost reader's limits for these options (files up to `max_model_bytes`).
    pub fn xgboost_limits(&self) -> crate::xgboost::Limits {
        crate::xgboost::Limits { max_bytes: self.max_model_bytes, ..crate::xgboost::Limits::default() }
    }
}

/// [`load_model`] with explicit [`LoadOptions`]; a PyTorch import folder (`config.json` +
/// `model.safetensors`) loads onto `options.device` ([`crate::lstm::load_pytorch`]).
///
/// # Errors
/// As [`load_model`], and [`crate::lstm::load_pytorch`]'s errors.
pub fn load_model_with(files: &ArtifactFiles, options: &LoadOptions) -> Result<Arc<dyn Model>> {
    match files {
        ArtifactFiles::Native { dir } => Ok(NativeModel::load_with(dir, options.max_model_bytes)?.into_model()),
        ArtifactFiles::PyTorch { dir } => Ok(Arc::new(crate::lstm::load_pytorch_with(dir, options)?)),
        ArtifactFiles::LightGbm { file } => Ok(Arc::new(crate::lightgbm::load_file(file, options.max_model_bytes)?)),
        ArtifactFiles::Torch { file } => Ok(Arc::new(crate::lstm::load_torch(file, options)?)),
        // A single model file (a mount named after the storageUri, not the file) that is a torch.save file.
        ArtifactFiles::Pickle { file } if crate::torch::is_torch_file(file) => {
            Ok(Arc::new(crate::lstm::torch_file::load_torch_with(file, options, false)?))
        }
        ArtifactFiles::Pickle { file } => {
            let limits = options.pickle_limits();
            match crate::pickle::load_file(file, &limits) {
                Ok(value) => crate::sklearn::from_value(&value, file),
                Err(e @ Error::UnsupportedClass { .. }) => load_structural(file, &limits, options).unwrap_or(Err(e)),
                Err(e) => Err(e),
            }
        }
        ArtifactFiles::XGBoost { file } => {
            Ok(Arc::new(crate::xgboost::XGBoostModel::load_with(file, &options.xgboost_limits())?))
        }
    }
}

/// A pickle naming a class outside the allowlist, read again with structural records: `Some` when the
/// object is one Ferroserve recognises by its shape (the notebook's `LSTMPipeline`), `None` to keep
/// the original error (which names the class).
fn load_structural(
    file: &Path,
    limits: &crate::pickle::Limits,
    options: &LoadOptions,
) -> Option<Result<Arc<dyn Model>>> {
    let bytes = crate::files::read(file, limits.max_file_bytes, crate::files::MAX_MODEL_BYTES).ok()?;
    let opts = ferroserve_pickle::Options { persistent_load: None, records: true };
    let value = ferroserve_pickle::loads_with(&bytes, limits, opts).ok()?;
    if crate::lstm::pipeline::is_pipeline(&value) {
        return Some(
            crate::lstm::LstmPipeline::from_value(&value, file, options.device).map(|m| Arc::new(m) as Arc<dyn Model>),
        );
    }
    None
}

/// Named little-endian tensors on their way into a safetensors file.
#[derive(Default)]
struct TensorSet {
    tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)>,
}

impl fmt::Debug for TensorSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.tensors.iter().map(|t| &t.0)).finish()
    }
}

impl TensorSet {
    fn put(&mut self, name: &str, dtype: Dtype, shape: Vec<usize>, bytes: Vec<u8>) {
        self.tensors.push((name.to_owned(), dtype, shape, bytes));
    }

    #[allow(clippy::cast_possible_truncation)]
    fn put_i32(&mut self, name: &str, shape: Vec<usize>, values: &[i64]) {
        let bytes = values.iter().flat_map(|&v| (v as i32).to_le_bytes()).collect();
        self.put(name, Dtype::I32, shape, bytes);
    }

    fn put_i64(&mut self, name: &str, shape: Vec<usize>, values: &[i64]) {
        let bytes = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
        self.put(name, Dtype::I64, shape, bytes);
    }

    fn put_f64(&mut self, name: &str, shape: Vec<usize>, values: &[f64]) {
        let bytes = values.iter().flat_map(|&v| v.to_le_bytes()).collect();
        self.put(name, Dtype::F64, shape, bytes);
    }

    /// Every tree's arrays concatenated, with `trees.node_offsets` marking where each tree starts.
    fn put_trees(&mut self, trees: &[DecisionTree]) {
        let mut offsets = vec![0i64];
        let (mut left, mut right, mut feature, mut threshold, mut samples) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for t in trees {
            left.extend_from_slice(&t.children_left);
            right.extend_from_slice(&t.children_right);
            feature.extend_from_slice(&t.feature);
            threshold.extend_from_slice(&t.threshold);
            samples.extend_from_slice(&t.n_node_samples);
            offsets.push(left.len() as i64);
        }
        let n = left.len();
        self.put_i64("trees.node_offsets", vec![offsets.len()], &offsets);
        self.put_i32("trees.children_left", vec![n], &left);
        self.put_i32("trees.children_right", vec![n], &right);
        self.put_i32("trees.feature", vec![n], &feature);
        self.put_f64("trees.threshold", vec![n], &threshold);
        self.put_i64("trees.n_node_samples", vec![n], &samples);
    }

    fn serialize(&self) -> Result<Vec<u8>, String> {
        let views = self
            .tensors
            .iter()
            .map(|(name, dtype, shape, bytes)| {
                TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.as_str(), v)).map_err(|e| e.to_string())
            })
            .collect::<Result<Vec<_>, String>>()?;
        safetensors::serialize(views, None).map_err(|e| e.to_string())
    }
}

/// Typed reads from a parsed safetensors file, with errors naming the file and tensor.
struct TensorReader<'a> {
    st: &'a SafeTensors<'a>,
    path: &'a PathBuf,
}

impl TensorReader<'_> {
    fn view(&self, name: &str, shape: &[Option<usize>]) -> Result<TensorView<'_>> {
        let view = self
            .st
            .tensor(name)
            .map_err(|_| Error::MissingTensor { path: self.path.clone(), name: name.to_owned() })?;
        let fits = view.shape().len() == shape.len()
            && view.shape().iter().zip(shape).all(|(got, want)| want.is_none_or(|w| w == *got));
        if !fits {
            let want: Vec<String> = shape.iter().map(|d| d.map_or("_".to_owned(), |d| d.to_string())).collect();
            return Err(self.bad(name, format!("shape [{}]", want.join(", ")), format!("shape {:?}", view.shape())));
        }
        Ok(view)
    }

    fn bad(&self, name: &str, expected: String, found: String) -> Error {
        Error::BadTensor { path: self.path.clone(), name: name.to_owned(), expected, found }
    }

    /// An integer tensor (I32 or I64) widened to i64.
    fn ints(&self, name: &str, shape: &[Option<usize>]) -> Result<Vec<i64>> {
        let view = self.view(name, shape)?;
        let data = view.data();
        match view.dtype() {
            Dtype::I64 => {
                Ok(data.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
            }
            Dtype::I32 => Ok(data
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect()),
            other => Err(self.bad(name, "dtype I32 or I64".to_owned(), format!("dtype {other:?}"))),
        }
    }

    /// A float tensor (F32 or F64) widened to f64.
    fn floats(&self, name: &str, shape: &[Option<usize>]) -> Result<Vec<f64>> {
        let view = self.view(name, shape)?;
        let data = view.data();
        match view.dtype() {
            Dtype::F64 => {
                Ok(data.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect())
            }
            Dtype::F32 => Ok(data
                .chunks_exact(4)
                .map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap_or([0; 4]))))
                .collect()),
            other => Err(self.bad(name, "dtype F32 or F64".to_owned(), format!("dtype {other:?}"))),
        }
    }

    fn trees(&self) -> Result<Vec<DecisionTree>> {
        let offsets = self.ints("trees.node_offsets", &[None])?;
        let n = offsets.last().copied().unwrap_or(0);
        let n = usize::try_from(n).map_err(|_| Error::invalid(self.path, "negative node count"))?;
        let left = self.ints("trees.children_left", &[Some(n)])?;
        let right = self.ints("trees.children_right", &[Some(n)])?;
        let feature = self.ints("trees.feature", &[Some(n)])?;
        let threshold = self.floats("trees.threshold", &[Some(n)])?;
        let samples = self.ints("trees.n_node_samples", &[Some(n)])?;
        if offsets.first() != Some(&0) {
            return Err(Error::invalid(self.path, "trees.node_offsets must start at 0"));
        }
        let mut trees = Vec::with_capacity(offsets.len().saturating_sub(1));
        for w in offsets.windows(2) {
            let (Ok(a), Ok(b)) = (usize::try_from(w[0]), usize::try_from(w[1])) else {
                return Err(Error::invalid(self.path, "negative offset in trees.node_offsets"));
            };
            if a >= b || b > n {
                return Err(Error::invalid(self.path, format!("trees.node_offsets is not increasing within 0..={n}")));
            }
            trees.push(DecisionTree {
                children_left: left[a..b].to_vec(),
                children_right: right[a..b].to_vec(),
                feature: feature[a..b].to_vec(),
                threshold: threshold[a..b].to_vec(),
                n_node_samples: samples[a..b].to_vec(),
            });
        }
        Ok(trees)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::IsolationForestParams;

    fn forest() -> IsolationForest {
        let t = DecisionTree {
            children_left: vec![1, -1, -1],
            children_right: vec![2, -1, -1],
            feature: vec![0, -2, -2],
            threshold: vec![0.25, -2.0, -2.0],
            n_node_samples: vec![4, 3, 1],
        };
        let mut p = IsolationForestParams::with_max_samples(4);
        p.offset = -0.47;
        IsolationForest::new(p, 2, Some(vec!["cpu".into(), "mem".into()]), vec![t.clone(), t], vec![vec![1], vec![0]])
            .unwrap()
    }

    #[test]
    fn native_round_trip_is_exact_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let model = NativeModel::IsolationForest(forest());
        model.save(dir.path()).unwrap();
        let first = std::fs::read(dir.path().join(MODEL_SAFETENSORS)).unwrap();
        let NativeModel::IsolationForest(back) = NativeModel::load(dir.path()).unwrap();
        assert_eq!(back.trees(), forest().trees());
        assert_eq!(back.params(), forest().params());
        assert_eq!(back.feature_names(), forest().feature_names());
        NativeModel::IsolationForest(back).save(dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join(MODEL_SAFETENSORS)).unwrap(), first);
    }

    #[test]
    fn corrupt_files_give_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        NativeModel::IsolationForest(forest()).save(dir.path()).unwrap();
        let st = dir.path().join(MODEL_SAFETENSORS);
        let good = std::fs::read(&st).unwrap();

        std::fs::write(&st, &good[..good.len() / 2]).unwrap();
        let err = NativeModel::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Safetensors { .. }), "{err}");
        assert!(err.to_string().contains("model.safetensors"));

        std::fs::remove_file(&st).unwrap();
        assert!(matches!(NativeModel::load(dir.path()), Err(Error::Io { .. })));

        std::fs::write(&st, &good).unwrap();
        let json = dir.path().join(MODEL_JSON);
        let text = std::fs::read_to_string(&json).unwrap();
        std::fs::write(&json, text.replace("isolation_forest", "quantum_forest")).unwrap();
        let err = NativeModel::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("unsupported kind `quantum_forest`"), "{err}");
        std::fs::write(&json, "{not json").unwrap();
        assert!(matches!(NativeModel::load(dir.path()), Err(Error::Json { .. })));
        std::fs::write(&json, text.replace("\"n_estimators\": 2", "\"n_estimators\": 3")).unwrap();
        assert!(NativeModel::load(dir.path()).unwrap_err().to_string().contains("says 3 trees"));
    }

    #[test]
    fn tampered_trees_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = forest().trees().to_vec();
        f[0].children_left[0] = 0; // a cycle
        let mut set = TensorSet::default();
        set.put_trees(&f);
        set.put_i32("estimators_features", vec![2, 1], &[1, 0]);
        NativeModel::IsolationForest(forest()).save(dir.path()).unwrap();
        std::fs::write(dir.path().join(MODEL_SAFETENSORS), set.serialize().unwrap()).unwrap();
        let err = NativeModel::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::InvalidModel { .. }), "{err}");
        assert!(err.to_string().contains("model.safetensors") && err.to_string().contains("tree 0"), "{err}");
    }
}
