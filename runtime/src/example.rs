//! Ready-to-paste example requests, printed by the binary once the server is ready, so that the
//! first thing an operator does after a deploy (or a developer after `cargo run`) works first time.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ferroserve_formats::tensor::element_count;
use ferroserve_formats::{DataType, Tensor, TensorData};

use crate::protocol::v1::InstancesBody;
use crate::protocol::v2::{InferRequest, InferTensor};
use crate::store::{LoadedVersion, ModelStore, zeros};

/// Models whose example input would be larger than this many elements get no example line.
const MAX_EXAMPLE_ELEMENTS: usize = 1024;

/// `curl` commands for an inference on each ready model, against the server listening on `addr`
/// (`127.0.0.1` when it listens on every address): the Open Inference Protocol's (v2), then, for models
/// with one input, KServe v1's.
pub fn curl_examples(store: &ModelStore, addr: SocketAddr) -> Vec<String> {
    let ip = match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let base = format!("http://{}", SocketAddr::new(ip, addr.port()));
    store
        .snapshots()
        .into_iter()
        .filter_map(|snapshot| {
            let name = path_segment(snapshot.name());
            let request = example_request(snapshot.default_version()?)?;
            let body = serde_json::to_string(&request).ok()?;
            let mut lines = vec![format!(
                "curl -s {base}/v2/models/{name}/infer -H 'content-type: application/json' -d '{}'",
                body.replace('\'', r"'\''")
            )];
            if let [input] = request.inputs.as_slice()
                && let Ok(tensor) = Tensor::try_from(input.clone())
                && let Ok(v1) = serde_json::to_string(&InstancesBody(&tensor))
            {
                lines.push(format!(
                    "curl -s {base}/v1/models/{name}:predict -H 'content-type: application/json' -d '{}'",
                    v1.replace('\'', r"'\''")
                ));
            }
            Some(lines)
        })
        .flatten()
        .collect()
}

/// A one-row request for `version`: the training means from `metadata.json`'s
/// `reference_distribution` when they fit the model's single input (repeated over the steps of a
/// `[B, T, F]` window), else zeros. `None` when the input is too large to show.
pub fn example_request(version: &LoadedVersion) -> Option<InferRequest> {
    let specs = &version.model().signature().inputs;
    let means: Option<Vec<f64>> = version
        .metadata()
        .and_then(|m| m.reference_distribution.as_ref())
        .map(|r| r.features.iter().map(|f| f.mean).collect());
    let mut inputs = Vec::with_capacity(specs.len());
    for spec in specs {
        // Variable dimensions (the batch) become one row.
        let shape: Vec<usize> = spec.shape.iter().map(|&d| usize::try_from(d).unwrap_or(1)).collect();
        let n = element_count(&shape).filter(|&n| n <= MAX_EXAMPLE_ELEMENTS)?;
        let data = match (&means, specs.len()) {
            (Some(m), 1) if !m.is_empty() && shape.last() == Some(&m.len()) && n % m.len() == 0 => {
                from_means(spec.datatype, &m.repeat(n / m.len()))
            }
            _ => zeros(spec.datatype, n),
        };
        inputs.push(InferTensor { name: spec.name.clone(), shape, data, parameters: None });
    }
    Some(InferRequest { inputs, ..InferRequest::default() })
}

#[allow(clippy::cast_possible_truncation)]
fn from_means(datatype: DataType, means: &[f64]) -> TensorData {
    match datatype {
        DataType::Fp64 => TensorData::Fp64(means.to_vec()),
        DataType::Fp32 => TensorData::Fp32(means.iter().map(|&m| m as f32).collect()),
        DataType::Fp16 => TensorData::Fp16(means.iter().map(|&m| half::f16::from_f64(m)).collect()),
        DataType::Int64 => TensorData::Int64(means.iter().map(|&m| m.round() as i64).collect()),
        DataType::Int32 => TensorData::Int32(means.iter().map(|&m| m.round() as i32).collect()),
        other => zeros(other, means.len()),
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn path_segment(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("anomaly-detector_v1.2"), "anomaly-detector_v1.2");
        assert_eq!(path_segment("a b/ü"), "a%20b%2F%C3%BC");
    }
}
