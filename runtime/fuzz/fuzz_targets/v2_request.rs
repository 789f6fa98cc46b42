//! Fuzzes the Open Inference Protocol's request decoding as the REST front-end runs it: JSON alone, or
//! JSON followed by binary tensor data (the binary extension, `Inference-Header-Content-Length`), then
//! the conversion into the core's tensors, then the response encoder (JSON or binary) over those
//! tensors. Whatever the bytes, decoding either succeeds with tensors whose data fits their shapes or
//! fails with an error; it never panics, and never allocates past what the body can hold.
//!
//! The first byte picks the form: even → JSON only; odd → the next two bytes (little-endian) are the
//! JSON part's length and the rest is the body.
//!
//! Run (see docs/operations.md, "Fuzzing the request decoders"):
//!     cd runtime/fuzz
//!     RUSTC_BOOTSTRAP=1 cargo fuzz run v2_request corpus/v2_request seeds/v2 -- -dict=v2.dict -max_total_time=300
#![no_main]

use ferroserve::protocol::v2::{InferRequest, InferResponse, InferTensor};
use ferroserve_formats::{Tensor, tensor::element_count};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let (body, json_len) = if mode % 2 == 0 {
        (rest, None)
    } else {
        let Some((len, body)) = rest.split_first_chunk::<2>() else { return };
        (body, Some(usize::from(u16::from_le_bytes(*len))))
    };
    let Ok(request) = InferRequest::from_body(body, json_len) else { return };
    let Ok(binary) = request.binary_outputs() else { return };
    let mut outputs = Vec::new();
    for input in request.inputs {
        let Ok(tensor) = Tensor::try_from(input) else { return };
        assert_eq!(element_count(&tensor.shape), Some(tensor.data.len()), "a decoded tensor fits its shape");
        outputs.push(InferTensor::from(tensor));
    }
    let response = InferResponse {
        model_name: "m".to_owned(),
        model_version: "1".to_owned(),
        id: request.id,
        parameters: None,
        outputs,
    };
    let encoded = response.to_body(&binary).expect("a decoded request encodes back");
    if let Some(n) = encoded.json_len {
        assert!(n <= encoded.bytes.len());
    }
});
