//! The allowlist: every module-qualified name a pickle may mention, and what the interpreter does
//! with it. Anything else fails at `GLOBAL`/`STACK_GLOBAL`/`INST` with
//! [`Error::UnsupportedClass`](crate::Error::UnsupportedClass), before any argument is even read.
//!
//! Why this is safe: the interpreter never calls, imports or looks up Python code. A name here is a
//! label on data. "Calling" a `Kind::Class` only records the class and its arguments in an inert
//! [`Object`](super::Object); the handful of other kinds are pure functions implemented in Rust
//! (decode bytes, build a set, materialise a numpy array) whose inputs are checked and bounded.
//! The list is still kept narrow, so that a file that reaches for anything unexpected is refused
//! with the name it reached for, and so that every name a model depends on is reviewed here.
//!
//! To add a class: find the exact `module.name` in the file (`python -m pickletools model.pkl`),
//! add one row to the group it belongs to (or a new group with a comment saying why it is only
//! data), and add a fixture or test that loads it. A name that must *do* something on load needs a
//! new `Kind` and its Rust implementation in the interpreter; never map it to a Python callable.

use std::collections::HashMap;
use std::sync::LazyLock;

/// What the interpreter does when a pickle calls (`REDUCE`, `NEWOBJ`, `INST`, `OBJ`) or builds
/// (`BUILD`) an allowlisted name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An inert object: calling records `Object { class, args }`, `BUILD` records its state.
    Class,
    /// `numpy.dtype(typestr, align, copy)`: a [`Dtype`](super::Dtype); `BUILD` applies numpy's dtype state.
    Dtype,
    /// `numpy…multiarray._reconstruct(subtype, shape, typecode)`: an array placeholder that `BUILD`
    /// (with numpy's `(version, shape, dtype, is_fortran, data)` state) turns into an array.
    Reconstruct,
    /// `numpy…numeric._frombuffer(buffer, dtype, shape, order)`: an array (protocol 5).
    FromBuffer,
    /// `numpy…multiarray.scalar(dtype, bytes)`: a 0-d array.
    Scalar,
    /// joblib's `NumpyArrayWrapper`: after its `BUILD` the array's bytes follow in the stream.
    NumpyArrayWrapper,
    /// `_codecs.encode(str, "latin1")`: bytes (how protocols 0–2 store `bytes`).
    CodecsEncode,
    /// `builtins.bytes(…)` / `builtins.bytearray(…)`: bytes.
    Bytes,
    /// `builtins.set(iterable)` / `builtins.frozenset(iterable)`: a set.
    Set,
    /// `collections.OrderedDict(…)`: a dict.
    OrderedDict,
    /// `collections.defaultdict(factory, …)`: a dict; the factory (a bare class such as `OrderedDict`,
    /// never called) is dropped.
    DefaultDict,
    /// `copyreg._reconstructor(cls, base, state)`: an empty instance of `cls` (protocols 0–1).
    CopyregReconstructor,
    /// A name that is only ever referred to, never called: PyTorch's typed storage classes
    /// (`torch.FloatStorage`) in a persistent ID, which say the storage's dtype.
    Label,
    /// PyTorch's tensor rebuild functions (`torch._utils._rebuild_tensor_v2(storage, offset, size,
    /// stride, requires_grad, hooks[, metadata])`): recorded as an inert object of the function and its
    /// arguments, which `ferroserve_formats::torch` interprets (bounds-checked) into a tensor.
    TorchRebuild,
    /// `torch.storage._load_from_bytes(bytes)`: a storage pickled inside a plain pickle, its bytes a
    /// nested legacy `torch.save`. Recorded as an inert object of its one bytes argument; the caller
    /// reads the bytes as data.
    TorchLoadFromBytes,
}

/// One reviewed group of names: the module, its names, and what they are.
struct Group {
    module: &'static str,
    names: &'static [&'static str],
    kind: Kind,
}

/// The Cython loss classes of `sklearn._loss._loss` and their `__pyx_unpickle_*` reconstructors.
const CY_LOSSES: &[&str] = &[
    "CyHalfSquaredError",
    "CyAbsoluteError",
    "CyPinballLoss",
    "CyHuberLoss",
    "CyHalfPoissonLoss",
    "CyHalfGammaLoss",
    "CyHalfTweedieLoss",
    "CyHalfTweedieLossIdentity",
    "CyHalfBinomialLoss",
    "CyHalfMultinomialLoss",
    "CyExponentialLoss",
    "__pyx_unpickle_CyHalfSquaredError",
    "__pyx_unpickle_CyAbsoluteError",
    "__pyx_unpickle_CyPinballLoss",
    "__pyx_unpickle_CyHuberLoss",
    "__pyx_unpickle_CyHalfPoissonLoss",
    "__pyx_unpickle_CyHalfGammaLoss",
    "__pyx_unpickle_CyHalfTweedieLoss",
    "__pyx_unpickle_CyHalfTweedieLossIdentity",
    "__pyx_unpickle_CyHalfBinomialLoss",
    "__pyx_unpickle_CyHalfMultinomialLoss",
    "__pyx_unpickle_CyExponentialLoss",
];

/// The allowlist, in reviewed groups. See the module documentation for why each kind is safe.
static GROUPS: &[Group] = &[
    // --- Python builtins that protocols 0–4 use to spell plain data. Evaluated in Rust as pure
    // constructors of bytes, sets and dicts; they take data and return data.
    Group { module: "_codecs", names: &["encode"], kind: Kind::CodecsEncode },
    Group { module: "builtins", names: &["bytes", "bytearray"], kind: Kind::Bytes },
    Group { module: "builtins", names: &["set", "frozenset"], kind: Kind::Set },
    Group { module: "collections", names: &["OrderedDict"], kind: Kind::OrderedDict },
    Group { module: "copyreg", names: &["_reconstructor"], kind: Kind::CopyregReconstructor },
    // `object` is the base class argument of `copyreg._reconstructor`; `slice` appears in some
    // estimators' parameters. Both only label inert objects.
    Group { module: "builtins", names: &["object", "slice"], kind: Kind::Class },
    // --- numpy arrays, dtypes and scalars, under numpy 1.x (`numpy.core`) and 2.x (`numpy._core`)
    // module names. Materialised in Rust from checked bytes; nothing of numpy runs.
    Group { module: "numpy", names: &["dtype"], kind: Kind::Dtype },
    // The array classes: labels passed to `_reconstruct` and stored in joblib's wrapper.
    Group { module: "numpy", names: &["ndarray", "memmap"], kind: Kind::Class },
    Group { module: "numpy.core.multiarray", names: &["_reconstruct"], kind: Kind::Reconstruct },
    Group { module: "numpy._core.multiarray", names: &["_reconstruct"], kind: Kind::Reconstruct },
    Group { module: "numpy.core.numeric", names: &["_frombuffer"], kind: Kind::FromBuffer },
    Group { module: "numpy._core.numeric", names: &["_frombuffer"], kind: Kind::FromBuffer },
    Group { module: "numpy.core.multiarray", names: &["scalar"], kind: Kind::Scalar },
    Group { module: "numpy._core.multiarray", names: &["scalar"], kind: Kind::Scalar },
    // --- numpy random state (GradientBoosting keeps a RandomState in `_rng`; estimators may keep a
    // Generator in `random_state`). Inert objects: prediction never draws random numbers.
    Group { module: "numpy.random.mtrand", names: &["RandomState"], kind: Kind::Class },
    Group {
        module: "numpy.random._pickle",
        names: &["__randomstate_ctor", "__bit_generator_ctor", "__generator_ctor"],
        kind: Kind::Class,
    },
    Group { module: "numpy.random._generator", names: &["Generator"], kind: Kind::Class },
    Group { module: "numpy.random._mt19937", names: &["MT19937"], kind: Kind::Class },
    Group { module: "numpy.random._pcg64", names: &["PCG64", "PCG64DXSM"], kind: Kind::Class },
    Group { module: "numpy.random._philox", names: &["Philox"], kind: Kind::Class },
    Group { module: "numpy.random._sfc64", names: &["SFC64"], kind: Kind::Class },
    Group {
        module: "numpy.random.bit_generator",
        names: &[
            "SeedSequence",
            "SeedlessSeedSequence",
            "__pyx_unpickle_SeedSequence",
            "__pyx_unpickle_SeedlessSeedSequence",
        ],
        kind: Kind::Class,
    },
    // --- joblib's array container (current, and the copy once vendored in scikit-learn). The
    // wrapper's state describes the array whose raw bytes follow; read in Rust with checked sizes.
    Group { module: "joblib.numpy_pickle", names: &["NumpyArrayWrapper"], kind: Kind::NumpyArrayWrapper },
    Group {
        module: "sklearn.externals.joblib.numpy_pickle",
        names: &["NumpyArrayWrapper"],
        kind: Kind::NumpyArrayWrapper,
    },
    // --- PyTorch's `torch.save` of a state_dict: the tensor rebuild function, the typed storage classes
    // (dtype labels in persistent IDs, never called) and the storage of a plain pickle. All inert.
    Group { module: "torch._utils", names: &["_rebuild_tensor_v2"], kind: Kind::TorchRebuild },
    Group { module: "torch.storage", names: &["_load_from_bytes"], kind: Kind::TorchLoadFromBytes },
    Group {
        module: "torch",
        names: &[
            "FloatStorage",
            "DoubleStorage",
            "HalfStorage",
            "BFloat16Storage",
            "LongStorage",
            "IntStorage",
            "ShortStorage",
            "CharStorage",
            "ByteStorage",
            "BoolStorage",
        ],
        kind: Kind::Label,
    },
    // --- scikit-learn estimators Ferroserve serves (1.2 to the newest release). Inert objects:
    // their `__dict__` state is read by `ferroserve_formats::sklearn`, their methods never exist here.
    Group { module: "sklearn.ensemble._iforest", names: &["IsolationForest"], kind: Kind::Class },
    Group {
        module: "sklearn.ensemble._forest",
        names: &["RandomForestClassifier", "RandomForestRegressor", "ExtraTreesClassifier", "ExtraTreesRegressor"],
        kind: Kind::Class,
    },
    Group {
        module: "sklearn.tree._classes",
        names: &["DecisionTreeClassifier", "DecisionTreeRegressor", "ExtraTreeClassifier", "ExtraTreeRegressor"],
        kind: Kind::Class,
    },
    Group { module: "sklearn.tree._tree", names: &["Tree"], kind: Kind::Class },
    Group {
        module: "sklearn.multioutput",
        names: &["MultiOutputRegressor", "MultiOutputClassifier"],
        kind: Kind::Class,
    },
    Group {
        module: "sklearn.ensemble._gb",
        names: &["GradientBoostingClassifier", "GradientBoostingRegressor"],
        kind: Kind::Class,
    },
    Group { module: "sklearn.dummy", names: &["DummyClassifier", "DummyRegressor"], kind: Kind::Class },
    Group { module: "sklearn.linear_model._base", names: &["LinearRegression"], kind: Kind::Class },
    Group { module: "sklearn.linear_model._ridge", names: &["Ridge"], kind: Kind::Class },
    Group { module: "sklearn.linear_model._coordinate_descent", names: &["Lasso", "ElasticNet"], kind: Kind::Class },
    Group { module: "sklearn.linear_model._logistic", names: &["LogisticRegression"], kind: Kind::Class },
    Group {
        module: "sklearn.preprocessing._data",
        names: &["StandardScaler", "MinMaxScaler", "RobustScaler"],
        kind: Kind::Class,
    },
    Group { module: "sklearn.pipeline", names: &["Pipeline"], kind: Kind::Class },
    // --- XGBoost's scikit-learn wrappers and their booster. Inert objects: the wrapper's `__dict__` holds
    // its parameters, the Booster's state only `handle`, the model as UBJSON bytes (`builtins.bytearray`,
    // above, or `BYTEARRAY8`), read as data by `crate::xgboost`.
    Group { module: "xgboost.sklearn", names: &["XGBRegressor", "XGBClassifier"], kind: Kind::Class },
    Group { module: "xgboost.core", names: &["Booster"], kind: Kind::Class },
    // --- LightGBM's scikit-learn wrappers and the Booster they hold (lightgbm 3.x–4.x), with the
    // LabelEncoder a classifier keeps and the `defaultdict(OrderedDict)` of its `best_score`. Inert
    // objects and a dict: the model itself is the text in the Booster's `_handle`, parsed by
    // `crate::lightgbm`.
    Group { module: "lightgbm.sklearn", names: &["LGBMRegressor", "LGBMClassifier"], kind: Kind::Class },
    Group { module: "lightgbm.basic", names: &["Booster"], kind: Kind::Class },
    Group { module: "sklearn.preprocessing._label", names: &["LabelEncoder"], kind: Kind::Class },
    Group { module: "collections", names: &["defaultdict"], kind: Kind::DefaultDict },
    // --- Loss and link objects the estimators above keep as attributes: GradientBoosting's `_loss`
    // (`sklearn.ensemble._gb_losses` up to 1.3, `sklearn._loss` from 1.4), whose Cython parts pickle
    // through `__pyx_unpickle_*` functions. Inert objects: only their class names are read.
    Group {
        module: "sklearn.ensemble._gb_losses",
        names: &[
            "LeastSquaresError",
            "LeastAbsoluteError",
            "HuberLossFunction",
            "QuantileLossFunction",
            "BinomialDeviance",
            "MultinomialDeviance",
            "ExponentialLoss",
        ],
        kind: Kind::Class,
    },
    Group {
        module: "sklearn._loss.loss",
        names: &[
            "HalfSquaredError",
            "AbsoluteError",
            "PinballLoss",
            "HuberLoss",
            "HalfPoissonLoss",
            "HalfGammaLoss",
            "HalfTweedieLoss",
            "HalfTweedieLossIdentity",
            "HalfBinomialLoss",
            "HalfMultinomialLoss",
            "ExponentialLoss",
        ],
        kind: Kind::Class,
    },
    Group {
        module: "sklearn._loss.link",
        names: &["IdentityLink", "LogLink", "LogitLink", "HalfLogitLink", "MultinomialLogit", "Interval"],
        kind: Kind::Class,
    },
    Group { module: "sklearn._loss._loss", names: CY_LOSSES, kind: Kind::Class },
    // scikit-learn 1.6–1.8 builds pickle the same Cython loss classes under the bare module name `_loss`.
    Group { module: "_loss", names: CY_LOSSES, kind: Kind::Class },
];

const OLD_JOBLIB: &str =
    "old joblib format (joblib < 0.10 keeps arrays in side files): load and re-save the model with a current joblib";

/// Names that are known and deliberately refused, with what to do instead.
static REFUSED: &[(&str, &str, &str)] = &[
    ("joblib.numpy_pickle_compat", "NDArrayWrapper", OLD_JOBLIB),
    ("joblib.numpy_pickle_compat", "ZNDArrayWrapper", OLD_JOBLIB),
    ("joblib.numpy_pickle", "NDArrayWrapper", OLD_JOBLIB),
    ("joblib.numpy_pickle", "ZNDArrayWrapper", OLD_JOBLIB),
    ("sklearn.externals.joblib.numpy_pickle", "NDArrayWrapper", OLD_JOBLIB),
    ("sklearn.externals.joblib.numpy_pickle", "ZNDArrayWrapper", OLD_JOBLIB),
];

static TABLE: LazyLock<HashMap<(&'static str, &'static str), Kind>> =
    LazyLock::new(|| GROUPS.iter().flat_map(|g| g.names.iter().map(move |&name| ((g.module, name), g.kind))).collect());

/// Python 2 module names that Python 3's unpickler maps to their Python 3 names (`fix_imports`),
/// limited to the modules on the allowlist.
pub(crate) fn canonical_module(module: &str) -> &str {
    match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        other => other,
    }
}

/// The kind of an allowlisted name, or `None` when the name is not allowed. `module` must already
/// be canonical (see [`canonical_module`]).
pub(crate) fn lookup(module: &str, name: &str) -> Option<Kind> {
    TABLE.get(&(module, name)).copied()
}

/// Why a known name is refused, when it is one of those.
pub(crate) fn refusal(module: &str, name: &str) -> Option<&'static str> {
    REFUSED.iter().find(|(m, n, _)| *m == module && *n == name).map(|(_, _, why)| *why)
}

/// The number of allowlisted names.
pub fn len() -> usize {
    TABLE.len()
}

/// Every allowlisted name as `module.name`, in table order (for documentation and review).
pub fn names() -> Vec<String> {
    GROUPS.iter().flat_map(|g| g.names.iter().map(move |n| format!("{}.{n}", g.module))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_all_found() {
        let names = names();
        assert_eq!(names.len(), len(), "a name appears twice in the allowlist");
        for g in GROUPS {
            for n in g.names {
                assert_eq!(lookup(g.module, n), Some(g.kind));
            }
        }
    }

    #[test]
    fn dangerous_names_are_absent() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("builtins", "eval"),
            ("builtins", "exec"),
            ("builtins", "getattr"),
            ("builtins", "__import__"),
            ("builtins", "open"),
            ("subprocess", "Popen"),
            ("numpy", "load"),
            ("numpy.lib.npyio", "load"),
            ("joblib", "load"),
            ("pickle", "loads"),
            ("sklearn.utils", "_print_elapsed_time"),
        ] {
            assert_eq!(lookup(canonical_module(m), n), None, "{m}.{n}");
        }
        assert_eq!(canonical_module("__builtin__"), "builtins");
        assert_eq!(lookup(canonical_module("__builtin__"), "eval"), None);
    }
}
