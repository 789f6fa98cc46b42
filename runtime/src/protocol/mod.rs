//! Wire protocols. Each is defined once here; handlers, tests, benchmarks and clients reuse these types.

pub mod v1;
pub mod v2;
