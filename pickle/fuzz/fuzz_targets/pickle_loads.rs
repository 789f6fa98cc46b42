//! Fuzzes `ferroserve_pickle::loads` (the pickle interpreter, joblib's container and zlib/gzip
//! decompression) and then every accessor the estimator readers call on what it returns, and the
//! error's message and offset when it fails; then `load_prefix` on the same bytes with a
//! persistent-ID resolver and structural records.
//!
//! Run (see docs/pickle.md):
//!     cd pickle/fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run pickle_loads corpus/pickle_loads ../tests/fixtures \
//!         -- -dict=pickle.dict -max_total_time=300
#![no_main]

use ferroserve_pickle::{Limits, Options, Value, load_prefix, loads};
use libfuzzer_sys::fuzz_target;

/// Production limits scaled down so that each input is cheap: an input that hits a limit exercises
/// the same code as one that finishes.
fn limits() -> Limits {
    Limits {
        max_file_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 22,
        max_alloc_bytes: 1 << 26,
        max_ops: 1 << 20,
        max_memo: 1 << 16,
        max_stack: 1 << 16,
        max_collection_len: 1 << 16,
        ..Limits::default()
    }
}

/// Calls the accessors an estimator reader would, on every value reachable from `v` (iteratively:
/// the result is acyclic and at most `max_depth` deep, which the interpreter guarantees).
fn exercise(v: &Value) {
    let mut work = vec![v.clone()];
    let mut budget = 1 << 16;
    while let Some(v) = work.pop() {
        budget -= 1;
        if budget == 0 {
            return;
        }
        let _ = (v.type_name(), v.as_int(), v.as_f64(), v.as_bool(), v.as_str(), v.class());
        let _ = (v.attr("tree_"), v.get("nodes"));
        match &v {
            Value::Array(a) => {
                let _ = (a.len(), a.to_f64(), a.to_i64(), a.to_strings(), a.dtype.descr());
                for (name, _, _) in &a.dtype.fields {
                    if let Ok(f) = a.field(name) {
                        let _ = (f.to_f64(), f.to_i64());
                    }
                }
                if let Ok(items) = a.to_values() {
                    work.extend(items);
                }
            }
            Value::Object(o) => {
                let o = o.borrow();
                work.extend(o.args.iter().cloned());
                work.extend(o.state.iter().cloned());
                work.extend(o.items.iter().cloned());
            }
            Value::Dict(d) => work.extend(d.borrow().iter().flat_map(|(k, v)| [k.clone(), v.clone()])),
            other => work.extend(other.as_seq().unwrap_or_default()),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    match loads(data, &limits()) {
        Ok(v) => {
            exercise(&v);
            // Debug recurses: the interpreter's depth and sharing bounds make that safe.
            let _ = format!("{v:?}").len();
        }
        Err(e) => {
            let _ = (e.to_string().len(), e.offset(), e.class_name());
        }
    }
    // The same bytes with persistent IDs resolved (to the ID itself, or refused by its type) and
    // structural records of unknown classes: the paths `ferroserve_formats::torch` uses.
    let limits = limits();
    let mut resolve = |pid: &Value| match pid {
        Value::Tuple(_) | Value::Str(_) => Ok(pid.clone()),
        other => Err(format!("a {}", other.type_name())),
    };
    let options = Options { persistent_load: Some(&mut resolve), records: data.first().is_some_and(|b| b & 1 == 1) };
    match load_prefix(data, &limits, options) {
        Ok((v, used)) => {
            assert!(used <= data.len());
            exercise(&v);
        }
        Err(e) => {
            let _ = (e.to_string().len(), e.offset());
        }
    }
});
