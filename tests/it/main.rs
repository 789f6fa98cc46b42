//! Workspace integration tests: one binary, one module per concern.
//!
//! - `pipeline`: synth data → `ferroserve-train` → a version folder → `ferroserve` over a real socket
//!   on 127.0.0.1:0 → inference, compared with the model loaded directly.
//! - `gate`: a version the pre-deploy gate refuses is set aside and never listed, loaded or served.
//! - `examples`: the committed example repository serves and answers as its training metrics say.
//! - `sklearn`: real scikit-learn joblib/pickle files served beside hostile and truncated ones.
//! - `v1`: KServe v1 as the platform's engine calls it, and v1 against v2 on every scikit-learn fixture.
//! - `grpc`: every scikit-learn fixture over gRPC (raw and typed tensors) answers exactly as over REST.
//! - `manifests`: the ServingRuntime args parse with the real CLI; manifests validate against KServe's CRDs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod client;
mod examples;
mod gate;
mod grpc;
mod manifests;
mod monitoring;
mod pipeline;
mod sklearn;
mod v1;
