//! What decoding a numeric JSON request costs in memory, measured with a counting allocator: the peak
//! of heap bytes allocated while the body (already read) becomes the core's tensors, as a multiple of the
//! body's size. This bounds what `--max_inflight_body_bytes` admits: at most 3× for numeric JSON as
//! clients write it (about 1× for FP64 and 0.5× for FP32 with 6 decimals), 4× for FP64/INT64 written
//! with one digit per value (8 bytes out of 2 in), 5× for such values in KServe v1 `instances`.
//!
//! One test binary of its own, because the allocator (dhat's, which counts) is the whole process's.

#![allow(clippy::unwrap_used)]

use std::fmt::Write as _;
use std::sync::Mutex;

use ferroserve::protocol::v2::InferRequest;
use ferroserve_formats::Tensor;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

/// One profiler runs at a time: tests in this binary measure one after the other.
static SERIAL: Mutex<()> = Mutex::new(());

/// Peak heap bytes allocated while `body` is decoded into tensors, divided by the body's length.
fn decode_ratio(body: &[u8]) -> f64 {
    // The profiler counts what is allocated after it starts: the body itself is not counted.
    let profiler = dhat::Profiler::builder().testing().build();
    let request = InferRequest::from_body(body, None).unwrap();
    let tensors: Vec<Tensor> = request.inputs.into_iter().map(|t| Tensor::try_from(t).unwrap()).collect();
    let peak = dhat::HeapStats::get().max_bytes;
    assert_eq!(tensors.len(), 1);
    drop(tensors);
    drop(profiler);
    peak as f64 / body.len() as f64
}

fn body(datatype: &str, rows: usize, cols: usize, value: impl Fn(usize) -> String) -> Vec<u8> {
    let mut data = String::with_capacity(rows * cols * 12);
    for i in 0..rows * cols {
        if i > 0 {
            data.push(',');
        }
        data.push_str(&value(i));
    }
    let mut out = String::new();
    write!(out, r#"{{"inputs":[{{"name":"x","shape":[{rows},{cols}],"datatype":"{datatype}","data":[{data}]}}]}}"#)
        .unwrap();
    out.into_bytes()
}

#[test]
fn numeric_json_decodes_within_three_times_its_size() {
    let _one = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let (rows, cols) = (20_000, 45);
    let cases = [
        ("FP32, 6 decimals", body("FP32", rows, cols, |i| format!("{:.6}", (i % 1000) as f64 * 0.001_37))),
        ("FP64, 6 decimals", body("FP64", rows, cols, |i| format!("{:.6}", (i % 1000) as f64 * 0.001_37))),
        ("FP64, shortest round-trip", body("FP64", rows, cols, |i| format!("{}", (i as f64).sqrt()))),
        ("FP32, one digit", body("FP32", rows, cols, |i| format!("{}", i % 10))),
        ("INT64, 3 digits", body("INT64", rows, cols, |i| format!("{}", i % 1000))),
    ];
    for (what, body) in &cases {
        let ratio = decode_ratio(body);
        eprintln!("{what}: {} bytes, peak {ratio:.2}× the body", body.len());
        assert!(ratio <= 3.0, "{what}: {ratio:.2}×");
    }
}

/// KServe v1 `{"instances": [[…], …]}`, decoded into rows of FP64: within 3× as clients write numbers;
/// one-digit values take 8 bytes out of 2, plus the growth of a buffer with no shape to size it by.
#[test]
fn v1_instances_decode_within_three_times_their_size() {
    let _one = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for (what, digits, bound) in [("6 decimals", 6, 3.0), ("one digit", 0, 5.0)] {
        let mut body = String::from(r#"{"instances":["#);
        for r in 0..20_000 {
            body.push_str(if r == 0 { "[" } else { ",[" });
            for c in 0..45 {
                let sep = if c == 0 { "" } else { "," };
                write!(body, "{sep}{:.digits$}", ((r * 45 + c) % 1000) as f64 * 0.001_37).unwrap();
            }
            body.push(']');
        }
        body.push_str("]}");
        let profiler = dhat::Profiler::builder().testing().build();
        let request = ferroserve::protocol::v1::PredictRequest::from_body(body.as_bytes()).unwrap();
        assert_eq!(request.instances.rows(), 20_000);
        let peak = dhat::HeapStats::get().max_bytes;
        drop((request, profiler));
        let ratio = peak as f64 / body.len() as f64;
        eprintln!("v1 instances, {what}: {} bytes, peak {ratio:.2}× the body", body.len());
        assert!(ratio <= bound, "{what}: {ratio:.2}×");
    }
}

/// BYTES values take 24 bytes each beside their text: `["", "", …]` (3 bytes a value) would decode to 8× its
/// size; decoding stops at 4× with a 400 instead.
#[test]
fn empty_strings_stop_at_four_times_their_size() {
    let _one = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let n = 600_000;
    let body = body("BYTES", n, 1, |_| "\"\"".to_owned());
    let profiler = dhat::Profiler::builder().testing().build();
    let e = InferRequest::from_body(&body, None).unwrap_err().to_string();
    let peak = dhat::HeapStats::get().max_bytes;
    drop(profiler);
    assert!(e.contains("decodes to more than 4× its JSON"), "{e}");
    let ratio = peak as f64 / body.len() as f64;
    eprintln!("BYTES, empty strings: {} bytes, refused at a peak of {ratio:.2}× the body", body.len());
    assert!(ratio <= 4.1, "{ratio:.2}×");
    // Strings of a few characters decode.
    let body = body_of_words(n / 4);
    let ratio = decode_ratio(&body);
    eprintln!("BYTES, 6-letter words: {} bytes, peak {ratio:.2}× the body", body.len());
    assert!(ratio <= 4.0, "{ratio:.2}×");
}

fn body_of_words(n: usize) -> Vec<u8> {
    body("BYTES", n, 1, |i| format!("\"w{:05}\"", i % 100_000))
}

#[test]
fn one_digit_wide_values_decode_within_four_times_their_size() {
    let _one = SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for datatype in ["FP64", "INT64"] {
        let body = body(datatype, 20_000, 45, |i| format!("{}", i % 10));
        let ratio = decode_ratio(&body);
        eprintln!("{datatype}, one digit: {} bytes, peak {ratio:.2}× the body", body.len());
        assert!(ratio <= 4.001, "{datatype}: {ratio:.3}×");
    }
}
