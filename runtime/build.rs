//! Generates the gRPC service (`inference.GRPCInferenceService`) from `proto/grpc_predict_v2.proto`.
//!
//! protox compiles the file in Rust, so building needs no system `protoc`; tonic-prost-build writes the
//! messages, the server trait and the client into `OUT_DIR` (the client is for tests, `ferroserve-load`
//! and anyone embedding the library).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/grpc_predict_v2.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Raw tensor data as `Bytes`: sliced out of the received buffer, and answered without a copy.
        .bytes(".inference.ModelInferRequest.raw_input_contents")
        .bytes(".inference.ModelInferResponse.raw_output_contents")
        .compile_fds(descriptors)?;
    Ok(())
}
