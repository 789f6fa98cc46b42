//! What the parity tests share: reading a case's numbers (NaN written `"nan"`) and comparing an output
//! with the library's, by type.

#![allow(dead_code, clippy::unwrap_used)]

use ferroserve_formats::{Tensor, TensorData};
use serde_json::Value;

/// A case's number: JSON numbers, `"nan"`, `"inf"`, `"-inf"`, and null as NaN.
pub fn float(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::Null => f64::NAN,
        other => other.as_f64().unwrap_or_else(|| panic!("not a number: {other}")),
    }
}

/// A case's rows.
pub fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(float).collect()).collect()
}

pub fn flatten(v: &Value) -> (Vec<Value>, Vec<usize>) {
    let outer = v.as_array().unwrap();
    // A list of `[N, c]` arrays, one per target (MultiOutputClassifier.predict_proba): served rows first,
    // `[N, targets, c]`.
    if let Some(Value::Array(first)) = outer.first()
        && let Some(Value::Array(row)) = first.first()
    {
        let (k, n, c) = (outer.len(), first.len(), row.len());
        let mut out = Vec::with_capacity(k * n * c);
        for i in 0..n {
            for target in outer {
                out.extend(target[i].as_array().unwrap().iter().cloned());
            }
        }
        return (out, vec![n, k, c]);
    }
    match outer.first() {
        Some(Value::Array(inner)) => {
            let cols = inner.len();
            (outer.iter().flat_map(|r| r.as_array().unwrap().clone()).collect(), vec![outer.len(), cols])
        }
        _ => (outer.clone(), vec![outer.len()]),
    }
}

/// Equal, both NaN, or within `rel` relative plus `abs` absolute.
pub fn close(got: f64, want: f64, (rel, abs): (f64, f64)) -> bool {
    (got.is_nan() && want.is_nan()) || got == want || (got - want).abs() <= rel * want.abs().max(got.abs()) + abs
}

/// Compares one output with the library's (floats within `tol`, labels exactly); returns the largest relative
/// difference seen (0 for labels).
pub fn compare(what: &str, got: &Tensor, want: &Value, tol: (f64, f64)) -> f64 {
    let (want, shape) = flatten(want);
    assert_eq!(got.shape, shape, "{what}: shape");
    let mut worst = 0.0f64;
    let mut floats = |g: &mut dyn Iterator<Item = f64>| {
        for (i, (g, w)) in g.zip(&want).enumerate() {
            let w = float(w);
            assert!(close(g, w, tol), "{what}[{i}]: {g:e} vs the library's {w:e}");
            if w != 0.0 && g.is_finite() {
                worst = worst.max((g - w).abs() / w.abs());
            }
        }
    };
    match &got.data {
        TensorData::Fp64(g) => floats(&mut g.iter().copied()),
        TensorData::Fp32(g) => floats(&mut g.iter().map(|&v| f64::from(v))),
        TensorData::Int64(g) => {
            let w: Vec<i64> = want.iter().map(|v| v.as_i64().unwrap()).collect();
            assert_eq!(g, &w, "{what}");
        }
        TensorData::Bool(g) => {
            let w: Vec<bool> = want.iter().map(|v| v.as_bool().unwrap()).collect();
            assert_eq!(g, &w, "{what}");
        }
        TensorData::Bytes(g) => {
            let g: Vec<String> = g.iter().map(|b| String::from_utf8(b.clone()).unwrap()).collect();
            let w: Vec<String> = want.iter().map(|v| v.as_str().unwrap().to_owned()).collect();
            assert_eq!(g, w, "{what}");
        }
        other => panic!("{what}: unexpected datatype {:?}", other.datatype()),
    }
    worst
}

/// Asserts that `got` and `want` agree within `tolerance`, relative to `max(|want|, 1)`, and prints the worst
/// difference (the LSTM parity tests' measure).
pub fn assert_close(
    what: &str,
    got: impl IntoIterator<Item = f64>,
    want: impl IntoIterator<Item = f64>,
    tolerance: f64,
) {
    let (got, want): (Vec<f64>, Vec<f64>) = (got.into_iter().collect(), want.into_iter().collect());
    assert_eq!(got.len(), want.len(), "{what}: length");
    let worst = got.iter().zip(&want).map(|(g, w)| (g - w).abs() / w.abs().max(1.0)).fold(0.0, f64::max);
    eprintln!("{what}: worst relative difference {worst:e}");
    assert!(worst <= tolerance, "{what}: worst difference {worst:e} exceeds {tolerance:e}");
}
