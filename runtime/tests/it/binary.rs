//! The binary tensor data extension: binary inputs and outputs of every datatype, mixed with JSON,
//! Triton's client's exact wire format, and every malformed body (400, never a panic).
//!
//! The bytes are built and read here with a second, deliberately plain implementation of the layout
//! (`le_bytes`, `from_le`), so that the server's encoder and decoder are checked against it rather
//! than against themselves.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode, header};
use ferroserve::protocol::v2::InferTensor;
use ferroserve::{AppState, Limits, LoadedVersion, ModelStore};
use ferroserve_formats::{DataType, Matrix, Model, Signature, Tensor, TensorData};
use half::f16;
use http_body_util::BodyExt as _;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use crate::support::{Fixture, loaded, rows_request, v2};

const ECHO: &str = "/v2/models/echo/infer";
const DETECTOR: &str = "/v2/models/anomaly-detector/infer";
const HEADER: &str = "Inference-Header-Content-Length";

/// Returns its inputs: the requested ones in the order requested, or all of them.
#[derive(Debug)]
struct Echo(Signature);

impl Model for Echo {
    fn signature(&self) -> &Signature {
        &self.0
    }

    fn kind(&self) -> ferroserve_formats::ModelKind {
        ferroserve_formats::ModelKind::Other("echo")
    }

    fn infer(&self, inputs: &[Tensor], outputs: &[String]) -> Result<Vec<Tensor>, ferroserve_formats::InferError> {
        if outputs.is_empty() {
            return Ok(inputs.to_vec());
        }
        let available = || inputs.iter().map(|t| t.name.clone()).collect();
        outputs
            .iter()
            .map(|name| {
                inputs.iter().find(|t| &t.name == name).cloned().ok_or_else(|| {
                    ferroserve_formats::InputError::UnknownOutput { name: name.clone(), available: available() }.into()
                })
            })
            .collect()
    }
}

fn echo() -> Router {
    let model: Arc<dyn Model> = Arc::new(Echo(Signature { inputs: vec![], outputs: vec![] }));
    let store = ModelStore::from_versions([("echo".to_owned(), vec![LoadedVersion::new("1", model)])]);
    ferroserve::app(AppState::new(store, Limits::default()))
}

/// Four values of every datatype, extremes included; all representable in JSON.
fn samples() -> Vec<TensorData> {
    let h = |v: f32| f16::from_f32(v);
    vec![
        TensorData::Bool(vec![true, false, false, true]),
        TensorData::Uint8(vec![0, 1, 128, 255]),
        TensorData::Uint16(vec![0, 1, 0x1234, u16::MAX]),
        TensorData::Uint32(vec![0, 1, 0x1234_5678, u32::MAX]),
        TensorData::Uint64(vec![0, 1, 1 << 53 | 1, u64::MAX]),
        TensorData::Int8(vec![i8::MIN, -1, 0, i8::MAX]),
        TensorData::Int16(vec![i16::MIN, -1, 0x1234, i16::MAX]),
        TensorData::Int32(vec![i32::MIN, -1, 0x1234_5678, i32::MAX]),
        TensorData::Int64(vec![i64::MIN, -1, 1 << 53 | 1, i64::MAX]),
        TensorData::Fp16(vec![h(0.1), h(-2.0), f16::MAX, f16::from_bits(1)]),
        TensorData::Fp32(vec![0.1, -3.5, f32::MAX, f32::from_bits(1)]),
        TensorData::Fp64(vec![0.1, -1e300, f64::MAX, f64::from_bits(1)]),
        TensorData::Bytes(vec![b"h\xc3\xa9llo".to_vec(), vec![], b"a".to_vec(), vec![b'z'; 300]]),
    ]
}

/// Values JSON cannot carry: NaN with a payload, infinities, -0.0, BYTES that are not UTF-8.
fn binary_only_samples() -> Vec<TensorData> {
    vec![
        TensorData::Fp16(vec![f16::NAN, f16::INFINITY, f16::NEG_ZERO, f16::from_bits(0x7c01)]),
        TensorData::Fp32(vec![f32::NAN, f32::NEG_INFINITY, -0.0, f32::from_bits(0x7fc0_0001)]),
        TensorData::Fp64(vec![f64::NAN, f64::INFINITY, -0.0, f64::from_bits(0x7ff8_0000_0000_0001)]),
        TensorData::Bytes(vec![vec![0xff, 0xfe], vec![0], vec![], b"\x00\x00\x00\x00".to_vec()]),
    ]
}

/// The binary layout, written out plainly: little-endian elements, BOOL as 0/1, BYTES length-prefixed.
fn le_bytes(data: &TensorData) -> Vec<u8> {
    match data {
        TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        TensorData::Uint8(v) => v.clone(),
        TensorData::Uint16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Uint32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Uint64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Int8(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Int16(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Int32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Int64(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorData::Fp16(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        TensorData::Fp32(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        TensorData::Fp64(v) => v.iter().flat_map(|x| x.to_bits().to_le_bytes()).collect(),
        TensorData::Bytes(v) => v
            .iter()
            .flat_map(|b| u32::try_from(b.len()).unwrap().to_le_bytes().into_iter().chain(b.iter().copied()))
            .collect(),
    }
}

/// Reads binary data of `datatype`, as a client does with the response.
fn from_le(datatype: &str, bytes: &[u8]) -> TensorData {
    fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
        assert_eq!(bytes.len() % N, 0);
        bytes.chunks(N).map(|c| c.try_into().unwrap())
    }
    match datatype {
        "BOOL" => TensorData::Bool(bytes.iter().map(|&b| b == 1).collect()),
        "UINT8" => TensorData::Uint8(bytes.to_vec()),
        "UINT16" => TensorData::Uint16(chunks(bytes).map(u16::from_le_bytes).collect()),
        "UINT32" => TensorData::Uint32(chunks(bytes).map(u32::from_le_bytes).collect()),
        "UINT64" => TensorData::Uint64(chunks(bytes).map(u64::from_le_bytes).collect()),
        "INT8" => TensorData::Int8(chunks(bytes).map(i8::from_le_bytes).collect()),
        "INT16" => TensorData::Int16(chunks(bytes).map(i16::from_le_bytes).collect()),
        "INT32" => TensorData::Int32(chunks(bytes).map(i32::from_le_bytes).collect()),
        "INT64" => TensorData::Int64(chunks(bytes).map(i64::from_le_bytes).collect()),
        "FP16" => TensorData::Fp16(chunks(bytes).map(|c| f16::from_bits(u16::from_le_bytes(c))).collect()),
        "FP32" => TensorData::Fp32(chunks(bytes).map(f32::from_le_bytes).collect()),
        "FP64" => TensorData::Fp64(chunks(bytes).map(f64::from_le_bytes).collect()),
        "BYTES" => {
            let mut out = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                out.push(rest[4..4 + len].to_vec());
                rest = &rest[4 + len..];
            }
            TensorData::Bytes(out)
        }
        other => panic!("unknown datatype {other}"),
    }
}

/// An input tensor's JSON, with `data` or, when `binary`, with `binary_data_size`.
fn input_json(name: &str, data: &TensorData, binary: bool) -> Value {
    let shape = [2, data.len() / 2];
    if binary {
        json!({"name": name, "shape": shape, "datatype": data.datatype().as_str(),
            "parameters": {"binary_data_size": le_bytes(data).len()}})
    } else {
        let t = InferTensor { name: name.to_owned(), shape: shape.to_vec(), data: data.clone(), parameters: None };
        serde_json::to_value(t).unwrap()
    }
}

/// A response, split as a client splits it.
#[derive(Debug)]
struct Reply {
    status: StatusCode,
    content_type: String,
    json_len: Option<usize>,
    body: Bytes,
}

impl Reply {
    fn json(&self) -> Value {
        let json = &self.body[..self.json_len.unwrap_or(self.body.len())];
        serde_json::from_slice(json).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(json)))
    }

    fn binary(&self) -> &[u8] {
        &self.body[self.json_len.unwrap_or(self.body.len())..]
    }

    fn message(&self) -> String {
        assert_eq!(self.content_type, "application/json");
        self.json()["error"].as_str().unwrap().to_owned()
    }

    /// Every output by name with its data, read per the extension: an output with `binary_data_size`
    /// takes the next that many bytes of the binary part, the others carry `data`.
    fn outputs(&self) -> Vec<(String, TensorData, bool)> {
        let json = self.json();
        let mut rest = self.binary();
        let mut out = Vec::new();
        for o in json["outputs"].as_array().unwrap() {
            let name = o["name"].as_str().unwrap().to_owned();
            if let Some(size) = o["parameters"].get("binary_data_size") {
                assert!(o.get("data").is_none(), "{o}");
                let (bytes, tail) = rest.split_at(usize::try_from(size.as_u64().unwrap()).unwrap());
                rest = tail;
                out.push((name, from_le(o["datatype"].as_str().unwrap(), bytes), true));
            } else {
                let t: InferTensor = serde_json::from_value(o.clone()).unwrap();
                out.push((name, t.data, false));
            }
        }
        assert!(rest.is_empty(), "{} bytes of binary data belong to no output", rest.len());
        out
    }
}

async fn send(app: &Router, uri: &str, json: &[u8], binary: &[u8], header: Option<String>) -> Reply {
    let mut request = Request::post(uri).header(header::CONTENT_TYPE, "application/octet-stream");
    if let Some(value) = header {
        request = request.header(HEADER, value);
    }
    let body = [json, binary].concat();
    let response = app.clone().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let content_type = headers[header::CONTENT_TYPE].to_str().unwrap().to_owned();
    let json_len = headers.get(HEADER).map(|v| v.to_str().unwrap().parse().unwrap());
    match json_len {
        Some(_) => assert_eq!(content_type, "application/octet-stream"),
        None => assert_eq!(content_type, "application/json"),
    }
    Reply { status, content_type, json_len, body }
}

/// Sends `json` followed by `binary`, with the header giving the JSON's length.
async fn send_binary(app: &Router, uri: &str, json: &Value, binary: &[u8]) -> Reply {
    let json = serde_json::to_vec(json).unwrap();
    let len = json.len();
    send(app, uri, &json, binary, Some(len.to_string())).await
}

async fn send_json(app: &Router, uri: &str, json: &Value) -> Reply {
    send(app, uri, &serde_json::to_vec(json).unwrap(), &[], None).await
}

#[tokio::test]
async fn every_datatype_in_binary_gives_what_json_gives() {
    let app = echo();
    let samples = samples();
    assert_eq!(samples.len(), DataType::ALL.len());
    for data in &samples {
        let dt = data.datatype();
        let as_json = send_json(&app, ECHO, &json!({"inputs": [input_json("x", data, false)]})).await;
        let as_binary =
            send_binary(&app, ECHO, &json!({"inputs": [input_json("x", data, true)]}), &le_bytes(data)).await;
        assert_eq!(as_json.status, StatusCode::OK, "{dt}: {:?}", as_json.json());
        assert_eq!(as_binary.status, StatusCode::OK, "{dt}: {:?}", as_binary.json());
        assert_eq!(as_binary.body, as_json.body, "{dt}");
        assert_eq!(as_binary.outputs(), [("x".to_owned(), data.clone(), false)], "{dt}");
    }
    // All at once, in one body.
    let names: Vec<String> = (0..samples.len()).map(|i| format!("t{i}")).collect();
    let inputs = |binary| -> Vec<Value> {
        names.iter().zip(&samples).map(|(name, data)| input_json(name, data, binary)).collect()
    };
    let binary: Vec<u8> = samples.iter().flat_map(le_bytes).collect();
    let as_json = send_json(&app, ECHO, &json!({"inputs": inputs(false)})).await;
    let as_binary = send_binary(&app, ECHO, &json!({"inputs": inputs(true)}), &binary).await;
    assert_eq!(as_binary.status, StatusCode::OK, "{:?}", as_binary.json());
    assert_eq!(as_binary.body, as_json.body);
}

#[tokio::test]
async fn every_datatype_comes_back_in_binary_bit_for_bit() {
    let app = echo();
    let samples: Vec<TensorData> = samples().into_iter().chain(binary_only_samples()).collect();
    let names: Vec<String> = (0..samples.len()).map(|i| format!("t{i}")).collect();
    let inputs: Vec<Value> = names.iter().zip(&samples).map(|(name, data)| input_json(name, data, true)).collect();
    let binary: Vec<u8> = samples.iter().flat_map(le_bytes).collect();
    let reply =
        send_binary(&app, ECHO, &json!({"inputs": inputs, "parameters": {"binary_data_output": true}}), &binary).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    // The echo returns every input in order, so the binary part is the request's, byte for byte.
    assert_eq!(reply.binary(), binary);
    let json = reply.json();
    for (i, (o, data)) in json["outputs"].as_array().unwrap().iter().zip(&samples).enumerate() {
        assert_eq!(
            o,
            &json!({"name": names[i], "datatype": data.datatype().as_str(), "shape": [2, 2],
                "parameters": {"binary_data_size": le_bytes(data).len()}})
        );
    }
    for ((name, got, binary), (expected_name, data)) in reply.outputs().into_iter().zip(names.iter().zip(&samples)) {
        assert!(binary);
        assert_eq!(&name, expected_name);
        // Compared as bytes: NaN is not equal to itself.
        assert_eq!(le_bytes(&got), le_bytes(data), "{name}");
    }
}

#[tokio::test]
async fn json_and_binary_mix_in_requests_and_responses() {
    let app = echo();
    let a = TensorData::Int32(vec![1, -2, 3, -4]);
    let b = TensorData::Fp64(vec![0.5, 1.5, -2.5, 1e-300]);
    let c = TensorData::Bytes(vec![b"x".to_vec(), vec![0xff; 3], vec![], b"yz".to_vec()]);
    let d = TensorData::Bool(vec![false, true, true, false]);
    let request = json!({
        "inputs": [input_json("a", &a, true), input_json("b", &b, false), input_json("c", &c, true),
                   input_json("d", &d, false)],
        "outputs": [{"name": "c", "parameters": {"binary_data": true}}, {"name": "b"},
                    {"name": "a", "parameters": {"binary_data": true}}, {"name": "d", "parameters": {"binary_data": false}}],
    });
    let reply = send_binary(&app, ECHO, &request, &[le_bytes(&a), le_bytes(&c)].concat()).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    assert_eq!(reply.json_len, Some(reply.body.len() - le_bytes(&c).len() - le_bytes(&a).len()));
    assert_eq!(reply.binary(), [le_bytes(&c), le_bytes(&a)].concat());
    assert_eq!(
        reply.outputs(),
        [("c".to_owned(), c, true), ("b".to_owned(), b, false), ("a".to_owned(), a, true), ("d".to_owned(), d, false)]
    );
}

const ROWS: [[f32; 2]; 3] = [[0.0, 0.0], [-5.0, 3.0], [0.0, 1.0]];

fn expected(output: &str) -> TensorData {
    let x = Matrix { data: ROWS.concat(), rows: 3, cols: 2 };
    match output {
        "predict" => TensorData::Int64(v2().predict(&x)),
        "score_samples" => TensorData::Fp64(v2().score_samples(&x)),
        "decision_function" => TensorData::Fp64(v2().decision_function(&x)),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn binary_data_output_and_per_output_choices() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let json_request = |extra: &str| -> Value { serde_json::from_str(&rows_request(&ROWS, extra)).unwrap() };
    let cases = [
        // No choice: plain JSON, as before the extension.
        ("", vec![("predict", false)]),
        (r#""outputs":[{"name":"score_samples"}],"#, vec![("score_samples", false)]),
        // No outputs named: the default output, in binary.
        (r#""parameters":{"binary_data_output":true},"#, vec![("predict", true)]),
        (
            r#""parameters":{"binary_data_output":true},"outputs":[{"name":"score_samples"},{"name":"predict","parameters":{"binary_data":false}}],"#,
            vec![("score_samples", true), ("predict", false)],
        ),
        (
            r#""parameters":{"binary_data_output":false},"outputs":[{"name":"decision_function","parameters":{"binary_data":true}},{"name":"predict"}],"#,
            vec![("decision_function", true), ("predict", false)],
        ),
        (r#""outputs":[{"name":"predict","parameters":{"binary_data":false}}],"#, vec![("predict", false)]),
    ];
    for (extra, wanted) in cases {
        let reply = send_json(&app, DETECTOR, &json_request(extra)).await;
        assert_eq!(reply.status, StatusCode::OK, "{extra}: {:?}", reply.json());
        let any_binary = wanted.iter().any(|(_, b)| *b);
        assert_eq!(reply.json_len.is_some(), any_binary, "{extra}");
        let got = reply.outputs();
        let wanted: Vec<(String, TensorData, bool)> =
            wanted.into_iter().map(|(name, binary)| (name.to_owned(), expected(name), binary)).collect();
        assert_eq!(got, wanted, "{extra}");
    }
}

/// The bytes `tritonclient.http` (2.x) sends for
/// `client.infer("anomaly-detector", [i], outputs=[InferRequestedOutput("predict"), InferRequestedOutput("score_samples")])`
/// with `i = InferInput("input-0", [3, 2], "FP32"); i.set_data_from_numpy(x)` (binary by default):
/// rapidjson's compact JSON, its length in `Inference-Header-Content-Length`, then `x.tobytes()`.
/// Without `outputs`, the client sets `binary_data_output` instead.
#[tokio::test]
async fn tritonclient_wire_format() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    let x: &[u8] = b"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\xa0\xc0\x00\x00\x40\x40\x00\x00\x00\x00\x00\x00\x80\x3f";
    let with_outputs = br#"{"inputs":[{"name":"input-0","shape":[3,2],"datatype":"FP32","parameters":{"binary_data_size":24}}],"outputs":[{"name":"predict","parameters":{"binary_data":true}},{"name":"score_samples","parameters":{"binary_data":true}}]}"#;
    let reply = send(&app, DETECTOR, with_outputs, x, Some(with_outputs.len().to_string())).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    let json_len = reply.json_len.unwrap();
    assert_eq!(
        std::str::from_utf8(&reply.body[..json_len]).unwrap(),
        r#"{"model_name":"anomaly-detector","model_version":"v2","outputs":[{"name":"predict","datatype":"INT64","shape":[3],"parameters":{"binary_data_size":24}},{"name":"score_samples","datatype":"FP64","shape":[3],"parameters":{"binary_data_size":24}}]}"#
    );
    let (predict, scores) = reply.binary().split_at(24);
    // predict: -1, -1, -1 (the fixture's tiny forest finds every row abnormal) as little-endian int64.
    assert_eq!(predict, [0xff; 24]);
    assert_eq!(TensorData::Int64(vec![-1, -1, -1]), expected("predict"));
    assert_eq!(from_le("FP64", scores), expected("score_samples"));

    let no_outputs = br#"{"inputs":[{"name":"input-0","shape":[3,2],"datatype":"FP32","parameters":{"binary_data_size":24}}],"parameters":{"binary_data_output":true}}"#;
    let reply = send(&app, DETECTOR, no_outputs, x, Some(no_outputs.len().to_string())).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    assert_eq!(reply.json()["outputs"][0]["parameters"], json!({"binary_data_size": 24}));
    assert_eq!(reply.binary(), predict);

    // A BYTES input as `serialize_byte_tensor` writes it, after an FP32 one.
    let two = br#"{"inputs":[{"name":"input-0","shape":[3,2],"datatype":"FP32","parameters":{"binary_data_size":24}},{"name":"s","shape":[2],"datatype":"BYTES","parameters":{"binary_data_size":10}}],"parameters":{"binary_data_output":true}}"#;
    let binary = [x, b"\x02\x00\x00\x00ab\x00\x00\x00\x00"].concat();
    let reply = send(&echo(), ECHO, two, &binary, Some(two.len().to_string())).await;
    assert_eq!(reply.status, StatusCode::OK, "{:?}", reply.json());
    assert_eq!(reply.binary(), binary);
    assert_eq!(reply.outputs()[1], ("s".to_owned(), TensorData::Bytes(vec![b"ab".to_vec(), vec![]]), true));
}

#[tokio::test]
async fn large_binary_requests_give_the_same_results() {
    let app = loaded(&Fixture::new().single(), Limits::default()).await;
    #[allow(clippy::cast_precision_loss)]
    let rows: Vec<[f32; 2]> = (0..3000).map(|i| [(i % 17) as f32 - 8.0, (i % 5) as f32 * 0.75]).collect();
    let data = TensorData::Fp32(rows.concat());
    let request = json!({"inputs": [{"name": "input-0", "shape": [rows.len(), 2], "datatype": "FP32",
        "parameters": {"binary_data_size": rows.len() * 8}}], "outputs": [{"name": "score_samples"}]});
    assert!(rows.len() * 8 > Limits::default().inline_body_bytes, "must take the blocking-pool path");
    let as_binary = send_binary(&app, DETECTOR, &request, &le_bytes(&data)).await;
    let as_json = send_json(
        &app,
        DETECTOR,
        &serde_json::from_str(&rows_request(&rows, r#""outputs":[{"name":"score_samples"}],"#)).unwrap(),
    )
    .await;
    assert_eq!(as_binary.status, StatusCode::OK);
    assert_eq!(as_binary.body, as_json.body);
}

#[tokio::test]
async fn malformed_binary_requests_are_400_naming_the_input() {
    let app = echo();
    let fp32 =
        |size: usize| json!({"name": "x", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": size}});
    let one = |input: Value| json!({"inputs": [input]});
    let cases: Vec<(Value, Vec<u8>, &str)> = vec![
        (one(fp32(8)), vec![0; 12], "the binary data has 12 bytes but the inputs with binary_data_size (`x`) take 8"),
        (
            json!({"inputs": [fp32(8), {"name": "y", "shape": [1], "datatype": "INT64", "parameters": {"binary_data_size": 8}}]}),
            vec![0; 12],
            "input `y`: binary_data_size is 8 but only 4 bytes of binary data are left",
        ),
        (one(fp32(4)), vec![0; 4], "input `x`: binary_data_size is 4 but shape [2] of FP32 takes 8 bytes"),
        (
            one(
                json!({"name": "x", "shape": [1], "datatype": "FP32", "data": [1], "parameters": {"binary_data_size": 4}}),
            ),
            vec![0; 4],
            "input `x`: has both `data` and `parameters.binary_data_size`; a binary tensor has no `data`",
        ),
        (
            one(json!({"name": "x", "shape": [1], "datatype": "FP32"})),
            vec![],
            "input `x`: missing field `data` (or `parameters.binary_data_size` for binary data)",
        ),
        (
            one(json!({"name": "x", "shape": [1], "datatype": "FP32", "parameters": {"binary_data_size": -4}})),
            vec![0; 4],
            "input `x`: `parameters.binary_data_size` must be a non-negative integer, not -4",
        ),
        (
            one(json!({"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 9}})),
            vec![1, 0, 0, 0, b'a', 9, 0, 0, 0],
            "input `s`: BYTES element 1 needs 13 bytes (4-byte length prefix included) but only 4 of the tensor's \
             binary data are left",
        ),
        (
            one(json!({"name": "s", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 7}})),
            vec![1, 0, 0, 0, b'a', 0, 0],
            "input `s`: BYTES element 1 needs 4 bytes",
        ),
        (
            one(json!({"name": "s", "shape": [3], "datatype": "BYTES", "parameters": {"binary_data_size": 5}})),
            vec![1, 0, 0, 0, b'a'],
            "input `s`: shape [3] holds 3 elements but the binary data has 1",
        ),
        (
            one(json!({"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}})),
            vec![1, 7],
            "input `b`: byte 7 at element 1 is not a BOOL (0 or 1)",
        ),
        (
            one(
                json!({"name": "x", "shape": [i64::MAX, 2], "datatype": "FP64", "parameters": {"binary_data_size": 0}}),
            ),
            vec![],
            "input `x`: shape [9223372036854775807, 2] overflows",
        ),
        (
            json!({"inputs": [fp32(8)], "outputs": [{"name": "x", "parameters": {"binary_data": "yes"}}]}),
            vec![0; 8],
            r#"output `x`: `parameters.binary_data` must be true or false, not "yes""#,
        ),
        (
            json!({"inputs": [fp32(8)], "parameters": {"binary_data_output": 1}}),
            vec![0; 8],
            "`parameters.binary_data_output` must be true or false, not 1",
        ),
    ];
    for (request, binary, message) in cases {
        let reply = send_binary(&app, ECHO, &request, &binary).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{request}");
        assert!(reply.message().contains(message), "{request}\n{}", reply.message());
    }

    // The header.
    let json = serde_json::to_vec(&one(fp32(8))).unwrap();
    let len = json.len();
    for (header, message) in [
        (
            (len + 9).to_string(),
            format!("Inference-Header-Content-Length is {} but the body has only {} bytes", len + 9, len + 8),
        ),
        ("12abc".to_owned(), r#"invalid Inference-Header-Content-Length header "12abc""#.to_owned()),
        ("-1".to_owned(), "invalid Inference-Header-Content-Length header".to_owned()),
    ] {
        let reply = send(&app, ECHO, &json, &[0; 8], Some(header.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{header}");
        assert!(reply.message().starts_with(&message), "{header}: {}", reply.message());
    }
    // binary_data_size without the header.
    let reply = send(&app, ECHO, &json, &[], None).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        reply.message().contains("input `x`: `parameters.binary_data_size` is set but the request has no binary data")
    );
    // The header twice.
    let request = Request::post(ECHO)
        .header(HEADER, len)
        .header(HEADER, len)
        .body(Body::from([json.clone(), vec![0; 8]].concat()));
    let response = app.clone().oneshot(request.unwrap()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}

/// Every header value, every truncation and every corrupted byte of a valid body: 200 or 400, never a
/// panic or a 500.
#[tokio::test]
async fn no_body_makes_the_server_fail() {
    let app = echo();
    let inputs = [
        TensorData::Bytes(vec![b"abc".to_vec(), vec![], b"d".to_vec(), vec![0xff; 2]]),
        TensorData::Fp32(vec![1.0, 2.0, 3.0, 4.0]),
        TensorData::Bool(vec![true, false, true, true]),
    ];
    let request = json!({
        "inputs": [input_json("s", &inputs[0], true), input_json("f", &inputs[1], true), input_json("b", &inputs[2], true)],
        "parameters": {"binary_data_output": true},
    });
    let json = serde_json::to_vec(&request).unwrap();
    let binary: Vec<u8> = inputs.iter().flat_map(le_bytes).collect();
    let body = [json.clone(), binary.clone()].concat();
    let ok = send(&app, ECHO, &json, &binary, Some(json.len().to_string())).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.binary(), binary);
    let check = |reply: &Reply, what: &str| {
        assert!(
            reply.status == StatusCode::OK || reply.status == StatusCode::BAD_REQUEST,
            "{what}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    };
    for header in 0..=body.len() + 1 {
        let reply = send(&app, ECHO, &body, &[], Some(header.to_string())).await;
        check(&reply, &format!("header {header}"));
    }
    for end in json.len()..body.len() {
        let reply = send(&app, ECHO, &body[..end], &[], Some(json.len().to_string())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "truncated at {end}");
    }
    for i in 0..body.len() {
        for flip in [0x01, 0x80, 0xff] {
            let mut corrupt = body.clone();
            corrupt[i] ^= flip;
            let reply = send(&app, ECHO, &corrupt, &[], Some(json.len().to_string())).await;
            check(&reply, &format!("byte {i} ^ {flip:#x}"));
        }
    }
}

#[tokio::test]
async fn the_body_limit_covers_the_binary_part() {
    let limits = Limits { max_body_bytes: 256, ..Limits::default() };
    let app = loaded(&Fixture::new().single(), limits).await;
    let request = json!({"inputs": [{"name": "input-0", "shape": [32, 2], "datatype": "FP32",
        "parameters": {"binary_data_size": 256}}]});
    assert!(serde_json::to_vec(&request).unwrap().len() < 256);
    let reply = send_binary(&app, DETECTOR, &request, &[0; 256]).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(reply.message(), "request body exceeds the limit of 256 bytes (--max_body_bytes)");
}
