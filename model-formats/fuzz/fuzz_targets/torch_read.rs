//! Fuzzes the PyTorch `torch.save` reader (zip and legacy formats, persistent-ID storages, strided
//! views): any input must give a state_dict or an error, never a panic, a hang or an unbounded
//! allocation. Seed the corpus with `tests/fixtures/torch/*/v1/model.pt` and `whole_module/model.pt`:
//!
//! ```sh
//! cd model-formats/fuzz && mkdir -p corpus/torch_read && cp ../tests/fixtures/torch/*/v1/model.pt corpus/torch_read/ 2>/dev/null
//! cargo +nightly fuzz run torch_read -- -max_len=65536
//! ```
#![no_main]

use std::path::Path;

use ferroserve_formats::pickle::Limits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_file_bytes: 1 << 20,
        max_decompressed_bytes: 1 << 20,
        max_alloc_bytes: 1 << 24,
        max_ops: 1_000_000,
        ..Limits::default()
    };
    let _ = ferroserve_formats::torch::read_state_dict(data, Path::new("model.pt"), &limits);
});
