//! Fuzzes KServe v1 `:predict` decoding (`instances` / `inputs`: rows, scalars, records, pandas
//! column forms) and its placement into a model's input tensor, for a model with named features and
//! one without. Whatever the bytes, it either yields a tensor whose data fits its shape or an error.
//!
//! Run (see docs/operations.md, "Fuzzing the request decoders"):
//!     cd runtime/fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run v1_request corpus/v1_request seeds/v1 -- -dict=v1.dict -max_total_time=300
#![no_main]

use ferroserve::protocol::v1::PredictRequest;
use ferroserve_formats::{DataType, TensorSpec, tensor::element_count};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = PredictRequest::from_body(data) else { return };
    let rows = request.instances.rows();
    let named = ["cpu", "mem", "disk"].map(|n| TensorSpec::new(n, DataType::Fp64, vec![-1]));
    let unnamed = [TensorSpec::new("input-0", DataType::Fp32, vec![-1, 3])];
    for inputs in [&named[..], &unnamed[..]] {
        if let Ok(tensor) = request.instances.clone().into_tensor(inputs) {
            assert_eq!(element_count(&tensor.shape), Some(tensor.data.len()), "a placed tensor fits its shape");
            assert_eq!(tensor.shape.first().copied().unwrap_or(rows), rows);
        }
    }
});
