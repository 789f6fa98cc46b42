//! Fuzzes `ferroserve_formats::xgboost::parse` (the JSON and UBJSON decoders, chosen by the first bytes as
//! XGBoost chooses, and the schema validation), then serves what loads and predicts with it: every output,
//! on rows of ordinary, boundary and missing values.
//!
//! Run (see docs/pickle.md for the toolchain):
//!     cd model-formats/fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run xgboost_parse corpus/xgboost_parse ../../tests/fixtures/boosting/latest \
//!         -- -dict=xgboost.dict -max_total_time=300
//! (the fixture folder seeds the corpus with real `.model.json` / `.model.ubj` files; the other files in it
//! are refused quickly.)
#![no_main]

use ferroserve_formats::xgboost::{self, Limits, XGBoostModel};
use ferroserve_formats::{Model, Tensor, TensorData};
use libfuzzer_sys::fuzz_target;

/// Production limits scaled down so that each input is cheap.
fn limits() -> Limits {
    Limits { max_bytes: 1 << 20, max_depth: 64, max_values: 1 << 16 }
}

/// Values that sit on every kind of branch: NaN (missing), infinities, zeros of both signs, category
/// codes and fractions, float32's extremes.
const VALUES: [f32; 12] =
    [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1.0, 2.7, -1.0, 16_777_216.0, f32::MAX, f32::MIN, 0.5];

fuzz_target!(|data: &[u8]| {
    let Ok(booster) = xgboost::parse(data, &limits()) else { return };
    let model = XGBoostModel::from_booster(&booster);
    let f = booster.n_features();
    if f > 256 {
        return;
    }
    let rows = 4;
    let x: Vec<f32> = (0..rows * f).map(|i| VALUES[(i * 7 + i / f) % VALUES.len()]).collect();
    let Ok(t) = Tensor::new("input-0", vec![rows, f], TensorData::Fp32(x)) else { return };
    let names: Vec<String> = model.signature().outputs.iter().map(|o| o.name.clone()).collect();
    // Infinities are refused as DMatrix refuses them (a client error); NaN rows must predict.
    let _ = model.infer(std::slice::from_ref(&t), &names);
    if let Ok(nan) = Tensor::new("input-0", vec![1, f], TensorData::Fp32(vec![f32::NAN; f])) {
        let out = model.infer(&[nan], &names);
        assert!(out.is_ok(), "a NaN row must predict: {out:?}");
    }
});
