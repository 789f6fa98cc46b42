//! The runtime's integration tests: every endpoint and error path through `app(state).oneshot`, with
//! models saved into temporary folders, plus one real-socket smoke test and the binary's exit codes, and
//! (`prometheus`, ignored unless asked for) a real Prometheus scraping the binary.

// clippy's allow-unwrap-in-tests covers `#[test]` functions only, not the helpers they share; in a
// test binary a panic is the intended way to fail.
#![allow(clippy::unwrap_used)]

mod binary;
mod cli;
mod connections;
mod errors;
mod example;
mod grpc;
mod health;
mod hostile;
mod hotswap;
mod infer;
mod lstm;
mod metadata;
mod observability;
mod prometheus;
mod socket;
mod support;
mod v1;
mod validate;
