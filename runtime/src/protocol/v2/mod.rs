//! The KServe v2 Open Inference Protocol's REST messages
//! (<https://kserve.github.io/website/latest/modelserving/data_plane/v2_protocol/>).
//!
//! Lenient on input: unknown fields are ignored and `parameters` is an open map, so that clients
//! written for KServe, Triton or MLServer work unchanged. Exact on output: every field the
//! specification requires is written, optional ones only when set.
//!
//! Tensor `data` never passes through a `serde_json::Value`: [`InferTensor`] decodes it straight into
//! the typed buffer of its datatype. The [`binary`] tensor data extension does the same from raw
//! bytes: [`InferRequest::from_body`] decodes a body with a binary part, [`InferResponse::to_body`]
//! writes the outputs a request asks for ([`InferRequest::binary_outputs`]) as binary data.

pub mod binary;
mod data;
mod message;
pub mod statistics;
mod tensor;

use ferroserve_formats::TensorSpec;
use serde::{Deserialize, Serialize};

pub use binary::{BinaryError, BinaryOutputs};
pub use message::{DecodeError, ResponseBody};
pub use statistics::{
    InferBatchStatistics, InferStatistics, ModelStatistics, ModelStatisticsResponse, StatisticDuration,
};
pub use tensor::{BASE64_CONTENT_TYPE, InferTensor};

/// An open `parameters` object (`$parameters` in the specification).
pub type Parameters = serde_json::Map<String, serde_json::Value>;

/// `POST /v2/models/{name}[/versions/{version}]/infer` request body.
///
/// Deserializing reads a JSON body; [`InferRequest::from_body`] also reads one with binary tensor data.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InferRequest {
    /// An identifier the response echoes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Request parameters, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// The input tensors.
    pub inputs: Vec<InferTensor>,
    /// The outputs wanted, by name; empty means the model's default output.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outputs: Vec<RequestedOutput>,
}

/// One entry of a request's `outputs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestedOutput {
    /// The output's name.
    pub name: String,
    /// Per-output parameters, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
}

/// The response to an inference request.
///
/// Serializing writes it as JSON; [`InferResponse::to_body`] can also put outputs in binary after it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct InferResponse {
    /// The model that answered.
    pub model_name: String,
    /// The version that answered (always written by Ferroserve, so that a canary is observable).
    #[serde(default)]
    pub model_version: String,
    /// The request's `id`, when it had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Response parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Parameters>,
    /// The output tensors, in the order requested.
    pub outputs: Vec<InferTensor>,
}

/// `GET /v2` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerMetadataResponse {
    /// The server's name.
    pub name: String,
    /// The server's version.
    pub version: String,
    /// The protocol extensions implemented.
    pub extensions: Vec<String>,
}

/// `GET /v2/models/{name}[/versions/{version}]` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelMetadataResponse {
    /// The model's name.
    pub name: String,
    /// The versions that can be requested, ascending.
    pub versions: Vec<String>,
    /// The framework: `ferroserve/<kind>`.
    pub platform: String,
    /// The inputs the model takes.
    pub inputs: Vec<TensorSpec>,
    /// The outputs the model can produce, the default first.
    pub outputs: Vec<TensorSpec>,
}

/// `GET /v2/health/live` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveResponse {
    /// Always `true`: answering is being alive.
    pub live: bool,
}

/// `GET /v2/health/ready` response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyResponse {
    /// Whether every configured model can answer.
    pub ready: bool,
}

/// `GET /v2/models/{name}[/versions/{version}]/ready` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReadyResponse {
    /// The model's name.
    pub name: String,
    /// Whether it can answer.
    pub ready: bool,
}

/// `POST /v2/repository/index` request body (optional: an empty body lists every model).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryIndexRequest {
    /// List only versions that can answer.
    #[serde(default)]
    pub ready: bool,
}

/// One entry of the `POST /v2/repository/index` response (a JSON array of them): a model version,
/// or a model with no version to list (loading, unloaded, unreadable).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryIndexEntry {
    /// The model's name.
    pub name: String,
    /// The version, when the entry is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `READY`, `UNAVAILABLE` or `LOADING`.
    pub state: ModelVersionState,
    /// Why it is not ready, or what else an operator should know; empty otherwise.
    #[serde(default)]
    pub reason: String,
}

/// The state of a model version in the repository index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ModelVersionState {
    /// It answers requests.
    Ready,
    /// It does not (failed to load, unloaded).
    Unavailable,
    /// It is being loaded for the first time.
    Loading,
}

/// `POST /v2/repository/models/{name}/load` response (KServe's form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryLoadResponse {
    /// The model.
    pub name: String,
    /// Always `true`: a failed load is an error response.
    pub load: bool,
}

/// `POST /v2/repository/models/{name}/unload` response (KServe's form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepositoryUnloadResponse {
    /// The model.
    pub name: String,
    /// Always `true`.
    pub unload: bool,
}

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorResponse {
    /// What went wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use ferroserve_formats::{DataType, TensorData};
    use half::f16;
    use serde_json::json;

    use super::*;

    fn input(json: &serde_json::Value) -> Result<InferTensor, String> {
        serde_json::from_str(&json.to_string()).map_err(|e| e.to_string())
    }

    fn request(text: &str) -> Result<InferRequest, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn every_datatype_decodes_and_round_trips() {
        let cases = [
            (json!([true, false]), TensorData::Bool(vec![true, false])),
            (json!([0, 255]), TensorData::Uint8(vec![0, 255])),
            (json!([0, 65535]), TensorData::Uint16(vec![0, 65535])),
            (json!([0, 4_294_967_295u64]), TensorData::Uint32(vec![0, u32::MAX])),
            (json!([0, u64::MAX]), TensorData::Uint64(vec![0, u64::MAX])),
            (json!([-128, 127]), TensorData::Int8(vec![-128, 127])),
            (json!([-32768, 32767]), TensorData::Int16(vec![i16::MIN, i16::MAX])),
            (json!([-2_147_483_648i64, 7]), TensorData::Int32(vec![i32::MIN, 7])),
            (json!([i64::MIN, i64::MAX]), TensorData::Int64(vec![i64::MIN, i64::MAX])),
            (json!([0.5, -2]), TensorData::Fp16(vec![f16::from_f32(0.5), f16::from_f32(-2.0)])),
            (json!([0.1, 3]), TensorData::Fp32(vec![0.1, 3.0])),
            (json!([0.1, -1e300]), TensorData::Fp64(vec![0.1, -1e300])),
            (json!(["héllo", ""]), TensorData::Bytes(vec!["héllo".as_bytes().to_vec(), vec![]])),
        ];
        assert_eq!(cases.len(), DataType::ALL.len());
        for (data, expected) in cases {
            let dt = expected.datatype();
            let t = input(&json!({"name": "x", "shape": [2], "datatype": dt.as_str(), "data": data})).unwrap();
            assert_eq!(t.data, expected, "{dt}");
            assert_eq!(t.shape, vec![2]);
            let text = serde_json::to_string(&t).unwrap();
            let back: InferTensor = serde_json::from_str(&text).unwrap();
            assert_eq!(back, t, "{dt}: {text}");
        }
    }

    #[test]
    fn output_is_exact() {
        let t = InferTensor {
            name: "predict".into(),
            shape: vec![2],
            data: TensorData::Fp32(vec![0.1, -3.0]),
            parameters: None,
        };
        assert_eq!(
            serde_json::to_string(&t).unwrap(),
            r#"{"name":"predict","datatype":"FP32","shape":[2],"data":[0.1,-3.0]}"#
        );
        let f16s = InferTensor { data: TensorData::Fp16(vec![f16::from_f32(0.1)]), shape: vec![1], ..t };
        // f16(0.1) is 0.0999755859375; written as the f32 it equals.
        assert_eq!(serde_json::to_value(&f16s).unwrap()["data"], json!([0.0999755859375]));
    }

    #[test]
    fn nested_data_is_flattened_row_major() {
        let t = input(&json!({"name": "x", "shape": [2, 2, 2], "datatype": "INT32",
            "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}))
        .unwrap();
        assert_eq!(t.data, TensorData::Int32((1..=8).collect()));
        let empty = input(&json!({"name": "x", "shape": [0, 3], "datatype": "FP32", "data": []})).unwrap();
        assert!(empty.data.is_empty());
    }

    #[test]
    fn ragged_and_mixed_nesting_is_refused() {
        let err = input(&json!({"name": "x", "shape": [4], "datatype": "FP32", "data": [[1, 2, 3], [4]]})).unwrap_err();
        assert!(err.contains("input `x`: nested data is ragged"), "{err}");
        let err = input(&json!({"name": "x", "shape": [2], "datatype": "FP32", "data": [1, [2]]})).unwrap_err();
        assert!(err.contains("mixes values and arrays"), "{err}");
        let err = input(&json!({"name": "x", "shape": [1], "datatype": "FP32", "data": 1})).unwrap_err();
        assert!(err.contains("`data` must be an array"), "{err}");
    }

    #[test]
    fn key_order_does_not_matter() {
        let expected = TensorData::Uint8(vec![1, 2, 3]);
        for text in [
            r#"{"data":[1,2,3],"datatype":"UINT8","shape":[3],"name":"x"}"#,
            r#"{"datatype":"UINT8","data":[[1,2,3]],"name":"x","shape":[1,3]}"#,
            r#"{"name":"x","data":[1,2,3],"shape":[3],"datatype":"UINT8"}"#,
            r#"{"shape":[3],"name":"x","datatype":"UINT8","data":[1,2,3],"extra":{"a":[1]}}"#,
        ] {
            let t: InferTensor = serde_json::from_str(text).unwrap();
            assert_eq!(t.data, expected, "{text}");
        }
        // Errors found late still name the input, and carry no position inside the buffered text.
        let err = request(r#"{"inputs":[{"data":[1,300],"datatype":"UINT8","shape":[2],"name":"late"}]}"#).unwrap_err();
        assert!(err.starts_with("input `late`: 300 at data index 1 is out of range for UINT8 (0..=255)"), "{err}");
        assert_eq!(err.matches(" at line ").count(), 1, "{err}");
    }

    #[test]
    fn values_must_fit_the_datatype() {
        let cases = [
            ("INT32", json!([1, 1.5]), "input `x`: 1.5 at data index 1 is not an integer, which INT32 requires"),
            ("UINT8", json!([300, 1]), "input `x`: 300 at data index 0 is out of range for UINT8 (0..=255)"),
            ("UINT64", json!([-1, 1]), "-1 at data index 0 is out of range for UINT64"),
            ("INT8", json!([1, 1e20]), "1e20 at data index 1 is out of range for INT8"),
            ("BOOL", json!([1, 0]), "1 at data index 0 is not a valid BOOL value (expected true or false)"),
            ("FP32", json!(["1", 2]), "\"1\" at data index 0 is not a valid FP32 value (expected a number)"),
            ("BYTES", json!([1, 2]), "1 at data index 0 is not a valid BYTES value (expected a string)"),
            ("FP64", json!([null, 2]), "invalid type: null, expected a FP64 value or a nested array for input `x`"),
        ];
        for (dt, data, message) in cases {
            let err = input(&json!({"name": "x", "shape": [2], "datatype": dt, "data": data})).unwrap_err();
            assert!(err.contains(message), "{dt}: {err}");
        }
        // Integral floats are integers.
        let t = input(&json!({"name": "x", "shape": [1], "datatype": "INT64", "data": [2.0]})).unwrap();
        assert_eq!(t.data, TensorData::Int64(vec![2]));
    }

    #[test]
    fn shapes_are_checked() {
        let err =
            input(&json!({"name": "x", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5]})).unwrap_err();
        assert!(err.contains("input `x`: shape [2, 3] holds 6 elements but data has 5"), "{err}");
        let err = input(&json!({"name": "x", "shape": [-1, 2], "datatype": "FP32", "data": [1, 2]})).unwrap_err();
        assert!(err.contains("input `x`: shape [-1, 2] has a negative dimension"), "{err}");
        let err =
            input(&json!({"name": "x", "shape": [i64::MAX, i64::MAX], "datatype": "FP32", "data": []})).unwrap_err();
        assert!(err.contains("overflows"), "{err}");
    }

    #[test]
    fn unknown_datatypes_list_the_valid_ones() {
        for order in [
            r#"{"name":"x","shape":[1],"datatype":"FLOAT32","data":[1]}"#,
            r#"{"data":[1],"name":"x","shape":[1],"datatype":"FLOAT32"}"#,
        ] {
            let err = serde_json::from_str::<InferTensor>(order).unwrap_err().to_string();
            assert!(
                err.contains("input `x`: unknown datatype `FLOAT32`; valid datatypes are BOOL, UINT8, UINT16, UINT32"),
                "{err}"
            );
            assert!(err.contains("FP64, BYTES"), "{err}");
        }
    }

    #[test]
    fn missing_fields_are_named() {
        for (text, field) in [
            (r#"{"shape":[1],"datatype":"FP32","data":[1]}"#, "`name`"),
            (r#"{"name":"x","datatype":"FP32","data":[1]}"#, "input `x`: missing field `shape`"),
            (r#"{"name":"x","shape":[1],"data":[1]}"#, "input `x`: missing field `datatype`"),
            (r#"{"name":"x","shape":[1],"datatype":"FP32"}"#, "input `x`: missing field `data`"),
        ] {
            let err = serde_json::from_str::<InferTensor>(text).unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }

    #[test]
    fn bytes_use_base64_when_not_utf8() {
        let t = InferTensor {
            name: "b".into(),
            shape: vec![2],
            data: TensorData::Bytes(vec![vec![0xff, 0x00], b"ok".to_vec()]),
            parameters: None,
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["parameters"], json!({"content_type": "base64"}));
        assert_eq!(v["data"], json!(["/wA=", "b2s="]));
        let back: InferTensor = serde_json::from_value(v).unwrap();
        assert_eq!(back.data, t.data);
        let err = input(&json!({"name": "b", "shape": [1], "datatype": "BYTES", "data": ["%%"],
            "parameters": {"content_type": "base64"}}))
        .unwrap_err();
        assert!(err.contains("input `b`: data index 0 is not valid base64"), "{err}");
    }

    #[test]
    fn requests_are_lenient_and_responses_exact() {
        let r = request(
            r#"{"id":"42","parameters":{"custom":[1,{"a":null}]},"unknown":true,
                "inputs":[{"name":"x","shape":[1],"datatype":"FP64","data":[1],"parameters":{"p":1}}],
                "outputs":[{"name":"score_samples","parameters":{"binary_data":false}}]}"#,
        )
        .unwrap();
        assert_eq!(r.id.as_deref(), Some("42"));
        assert_eq!(r.outputs[0].name, "score_samples");
        assert_eq!(r.inputs[0].parameters.as_ref().unwrap()["p"], 1);
        let response = InferResponse {
            model_name: "m".into(),
            model_version: "v2".into(),
            id: None,
            parameters: None,
            outputs: vec![InferTensor {
                name: "predict".into(),
                shape: vec![1],
                data: TensorData::Int64(vec![-1]),
                parameters: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&response).unwrap(),
            r#"{"model_name":"m","model_version":"v2","outputs":[{"name":"predict","datatype":"INT64","shape":[1],"data":[-1]}]}"#
        );
        assert!(request(r#"{"inputs":[]"#).unwrap_err().contains("EOF"));
        assert!(request(r#"{"id":"1"}"#).unwrap_err().contains("missing field `inputs`"));
    }
}
