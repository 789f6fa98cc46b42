//! Fuzzes `ferroserve_formats::lightgbm::Booster::from_bytes` (the LightGBM text model parser and its
//! validation), then predicts rows of special values (NaN, ±0, ±inf, tiny, huge, negative and
//! fractional categories) with whatever it accepts: a model that passes validation must predict without
//! panicking, indexing out of bounds or looping.
//!
//! Run (see docs/formats.md):
//!     cd model-formats/fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run lightgbm_parse corpus/lightgbm_parse ../../tests/fixtures/boosting/latest \
//!         -- -dict=lightgbm.dict -max_total_time=300
#![no_main]

use ferroserve_formats::Matrix;
use ferroserve_formats::lightgbm::Booster;
use libfuzzer_sys::fuzz_target;

/// Values that reach every branch of a split.
const SPECIAL: [f64; 12] =
    [f64::NAN, 0.0, -0.0, 1e-36, -1.0, 0.5, 2.9, 31.0, 32.0, 1e10, f64::INFINITY, f64::NEG_INFINITY];

fuzz_target!(|data: &[u8]| {
    let Ok(mut booster) = Booster::from_bytes(data) else { return };
    let n = booster.n_features();
    let _ = (booster.categorical_features(), booster.pandas_categorical(), booster.has_default_feature_names());
    if n > 4096 {
        return;
    }
    let rows = SPECIAL.len();
    let data: Vec<f64> = (0..rows * n).map(|i| SPECIAL[(i / n + i % n) % SPECIAL.len()]).collect();
    let x = Matrix { data, rows, cols: n };
    let k = booster.outputs_per_row();
    assert_eq!(booster.predict_raw(&x).len(), rows * k);
    assert_eq!(booster.predict(&x).len(), rows * k);
    if let Some(p) = booster.predict_proba(&x) {
        assert_eq!(p.len() % rows, 0);
    }
    booster.limit_iterations(1);
    let _ = booster.predict(&x);
});
