//! Proto messages ↔ the core's terms: [`ModelInferRequest`] → [`Inference`], output [`Tensor`]s →
//! [`ModelInferResponse`], and the v2 protocol's metadata, repository and statistics types → their
//! proto forms. No type is declared twice: the proto types are generated, the rest are
//! [`crate::protocol::v2`]'s and the formats crate's.
//!
//! Tensor data comes either typed (`contents`, the repeated field of the datatype) or raw
//! (`raw_input_contents`, one entry per input, in the binary tensor data extension's layout: little-endian
//! elements, BYTES length-prefixed), decoded by the same [`binary::decode`] as REST's binary bodies.
//! The answer is raw when the request was (Triton's client sends raw and reads raw), or when an output
//! is FP16, which has no typed field; else typed.

use ferroserve_formats::{DataType, Tensor, TensorData};
use prost::bytes::Bytes;

use super::proto::model_infer_request::InferInputTensor;
use super::proto::model_infer_response::InferOutputTensor;
use super::proto::model_metadata_response::TensorMetadata;
use super::proto::repository_index_response::ModelIndex;
use super::proto::{
    self, InferTensorContents, ModelInferRequest, ModelInferResponse, ModelMetadataResponse, RepositoryIndexResponse,
};
use crate::api_error::ApiError;
use crate::inference::Inference;
use crate::protocol::v2::{self, ModelVersionState, RepositoryIndexEntry, binary};

/// How the response carries its tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// In `raw_output_contents`.
    Raw,
    /// In each output's `contents`.
    Typed,
}

/// The request's tensors and requested outputs, and how to answer.
///
/// # Errors
/// 400 (INVALID_ARGUMENT) naming the input: an unknown datatype, a negative dimension, data that does
/// not fit the shape or the datatype, typed and raw contents mixed, a raw entry count that is not the
/// input count.
pub fn decode(request: ModelInferRequest) -> Result<(Inference, Encoding), ApiError> {
    let ModelInferRequest { id, inputs, outputs, raw_input_contents, .. } = request;
    let raw = !raw_input_contents.is_empty();
    if raw && raw_input_contents.len() != inputs.len() {
        return Err(ApiError::BadRequest(format!(
            "raw_input_contents has {} entries for {} inputs; it needs one per input, in the order of `inputs`",
            raw_input_contents.len(),
            inputs.len()
        )));
    }
    let mut raw_contents = raw_input_contents.into_iter();
    let tensors = inputs
        .into_iter()
        .map(|input| {
            let bytes = raw_contents.next();
            input_tensor(input, bytes.as_deref())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let inference = Inference {
        id: (!id.is_empty()).then_some(id),
        inputs: tensors,
        outputs: outputs.into_iter().map(|o| o.name).collect(),
    };
    Ok((inference, if raw { Encoding::Raw } else { Encoding::Typed }))
}

/// One input: its raw bytes when the request is raw, else its typed contents.
fn input_tensor(input: InferInputTensor, raw: Option<&[u8]>) -> Result<Tensor, ApiError> {
    let InferInputTensor { name, datatype, shape, contents, .. } = input;
    let bad = |why: String| ApiError::BadRequest(format!("input `{name}`: {why}"));
    let Some(dt) = DataType::parse(&datatype) else {
        let valid = DataType::ALL.iter().map(|d| d.as_str()).collect::<Vec<_>>().join(", ");
        return Err(bad(format!("unknown datatype `{datatype}`; valid datatypes are {valid}")));
    };
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| bad(format!("shape {shape:?} has a negative dimension")))?;
    let data = match (raw, contents) {
        (Some(_), Some(c)) if !is_empty(&c) => {
            return Err(bad(
                "has typed contents in a request with raw_input_contents; send every input one way".to_owned()
            ));
        }
        (Some(bytes), _) => binary::decode(&name, dt, &dims, bytes)?,
        (None, contents) => typed(dt, contents.unwrap_or_default()).map_err(bad)?,
    };
    Ok(Tensor::new(name, dims, data)?)
}

/// The typed contents of datatype `dt`; narrow integer types are range-checked.
fn typed(dt: DataType, c: InferTensorContents) -> Result<TensorData, String> {
    let expected = field(dt);
    if let Some(other) = filled_fields(&c).into_iter().find(|f| Some(*f) != expected) {
        return Err(format!("{dt} data belongs in {}, not in {other}", expected.unwrap_or("raw_input_contents")));
    }
    Ok(match dt {
        DataType::Bool => TensorData::Bool(c.bool_contents),
        DataType::Uint8 => TensorData::Uint8(narrow(c.uint_contents, dt)?),
        DataType::Uint16 => TensorData::Uint16(narrow(c.uint_contents, dt)?),
        DataType::Uint32 => TensorData::Uint32(c.uint_contents),
        DataType::Uint64 => TensorData::Uint64(c.uint64_contents),
        DataType::Int8 => TensorData::Int8(narrow(c.int_contents, dt)?),
        DataType::Int16 => TensorData::Int16(narrow(c.int_contents, dt)?),
        DataType::Int32 => TensorData::Int32(c.int_contents),
        DataType::Int64 => TensorData::Int64(c.int64_contents),
        DataType::Fp16 => return Err("FP16 has no typed contents field; send it in raw_input_contents".to_owned()),
        DataType::Fp32 => TensorData::Fp32(c.fp32_contents),
        DataType::Fp64 => TensorData::Fp64(c.fp64_contents),
        DataType::Bytes => TensorData::Bytes(c.bytes_contents),
    })
}

/// The contents field that carries `dt`; `None` for FP16, which is raw only.
fn field(dt: DataType) -> Option<&'static str> {
    Some(match dt {
        DataType::Bool => "bool_contents",
        DataType::Uint8 | DataType::Uint16 | DataType::Uint32 => "uint_contents",
        DataType::Uint64 => "uint64_contents",
        DataType::Int8 | DataType::Int16 | DataType::Int32 => "int_contents",
        DataType::Int64 => "int64_contents",
        DataType::Fp16 => return None,
        DataType::Fp32 => "fp32_contents",
        DataType::Fp64 => "fp64_contents",
        DataType::Bytes => "bytes_contents",
    })
}

fn filled_fields(c: &InferTensorContents) -> Vec<&'static str> {
    let fields = [
        ("bool_contents", c.bool_contents.is_empty()),
        ("int_contents", c.int_contents.is_empty()),
        ("int64_contents", c.int64_contents.is_empty()),
        ("uint_contents", c.uint_contents.is_empty()),
        ("uint64_contents", c.uint64_contents.is_empty()),
        ("fp32_contents", c.fp32_contents.is_empty()),
        ("fp64_contents", c.fp64_contents.is_empty()),
        ("bytes_contents", c.bytes_contents.is_empty()),
    ];
    fields.into_iter().filter(|(_, empty)| !empty).map(|(name, _)| name).collect()
}

fn is_empty(c: &InferTensorContents) -> bool {
    filled_fields(c).is_empty()
}

/// 32-bit protobuf integers into a narrower type, each checked.
fn narrow<W: Copy + std::fmt::Display, T: TryFrom<W>>(values: Vec<W>, dt: DataType) -> Result<Vec<T>, String> {
    values
        .into_iter()
        .enumerate()
        .map(|(index, v)| T::try_from(v).map_err(|_| format!("{v} at index {index} is out of range for {dt}")))
        .collect()
}

/// The response naming the model and version that answered, its tensors carried as `encoding` says
/// (raw regardless when an output is FP16).
///
/// # Errors
/// A 500 when an output cannot be encoded (a BYTES element of 4 GiB or more).
pub fn encode(
    model_name: &str,
    model_version: &str,
    id: Option<String>,
    tensors: Vec<Tensor>,
    encoding: Encoding,
) -> Result<ModelInferResponse, ApiError> {
    let raw = encoding == Encoding::Raw || tensors.iter().any(|t| t.datatype() == DataType::Fp16);
    let mut outputs = Vec::with_capacity(tensors.len());
    let mut raw_output_contents = Vec::with_capacity(if raw { tensors.len() } else { 0 });
    for Tensor { name, shape, data } in tensors {
        let datatype = data.datatype().as_str().to_owned();
        let contents = if raw {
            let mut bytes = Vec::new();
            binary::encode(&name, &data, &mut bytes)
                .map_err(|e| ApiError::internal(format!("encoding the response: {e}")))?;
            raw_output_contents.push(Bytes::from(bytes));
            None
        } else {
            Some(contents(data))
        };
        outputs.push(InferOutputTensor {
            name,
            datatype,
            shape: shape.iter().map(|&d| i64::try_from(d).unwrap_or(i64::MAX)).collect(),
            parameters: Default::default(),
            contents,
        });
    }
    Ok(ModelInferResponse {
        model_name: model_name.to_owned(),
        model_version: model_version.to_owned(),
        id: id.unwrap_or_default(),
        parameters: Default::default(),
        outputs,
        raw_output_contents,
    })
}

/// `data` in the typed field of its datatype (FP16, which has none, is answered raw by [`encode`]).
fn contents(data: TensorData) -> InferTensorContents {
    let mut c = InferTensorContents::default();
    match data {
        TensorData::Bool(v) => c.bool_contents = v,
        TensorData::Uint8(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::Uint16(v) => c.uint_contents = v.into_iter().map(u32::from).collect(),
        TensorData::Uint32(v) => c.uint_contents = v,
        TensorData::Uint64(v) => c.uint64_contents = v,
        TensorData::Int8(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::Int16(v) => c.int_contents = v.into_iter().map(i32::from).collect(),
        TensorData::Int32(v) => c.int_contents = v,
        TensorData::Int64(v) => c.int64_contents = v,
        TensorData::Fp16(v) => c.fp32_contents = v.into_iter().map(f32::from).collect(),
        TensorData::Fp32(v) => c.fp32_contents = v,
        TensorData::Fp64(v) => c.fp64_contents = v,
        TensorData::Bytes(v) => c.bytes_contents = v,
    }
    c
}

impl From<v2::ModelMetadataResponse> for ModelMetadataResponse {
    fn from(m: v2::ModelMetadataResponse) -> Self {
        let tensors = |specs: Vec<ferroserve_formats::TensorSpec>| {
            specs
                .into_iter()
                .map(|s| TensorMetadata { name: s.name, datatype: s.datatype.as_str().to_owned(), shape: s.shape })
                .collect()
        };
        ModelMetadataResponse {
            name: m.name,
            versions: m.versions,
            platform: m.platform,
            inputs: tensors(m.inputs),
            outputs: tensors(m.outputs),
        }
    }
}

impl From<Vec<RepositoryIndexEntry>> for RepositoryIndexResponse {
    fn from(entries: Vec<RepositoryIndexEntry>) -> Self {
        let models = entries
            .into_iter()
            .map(|e| ModelIndex {
                name: e.name,
                version: e.version.unwrap_or_default(),
                state: match e.state {
                    ModelVersionState::Ready => "READY",
                    ModelVersionState::Unavailable => "UNAVAILABLE",
                    ModelVersionState::Loading => "LOADING",
                }
                .to_owned(),
                reason: e.reason,
            })
            .collect();
        RepositoryIndexResponse { models }
    }
}

impl From<v2::StatisticDuration> for proto::StatisticDuration {
    fn from(d: v2::StatisticDuration) -> Self {
        proto::StatisticDuration { count: d.count, ns: d.ns }
    }
}

impl From<v2::ModelStatisticsResponse> for proto::ModelStatisticsResponse {
    fn from(r: v2::ModelStatisticsResponse) -> Self {
        let model_stats = r
            .model_stats
            .into_iter()
            .map(|m| {
                let s = m.inference_stats;
                proto::ModelStatistics {
                    name: m.name,
                    version: m.version,
                    last_inference: m.last_inference,
                    inference_count: m.inference_count,
                    execution_count: m.execution_count,
                    inference_stats: Some(proto::InferStatistics {
                        success: Some(s.success.into()),
                        fail: Some(s.fail.into()),
                        queue: Some(s.queue.into()),
                        compute_input: Some(s.compute_input.into()),
                        compute_infer: Some(s.compute_infer.into()),
                        compute_output: Some(s.compute_output.into()),
                    }),
                    batch_stats: m
                        .batch_stats
                        .into_iter()
                        .map(|b| proto::InferBatchStatistics {
                            batch_size: b.batch_size,
                            compute_input: Some(b.compute_input.into()),
                            compute_infer: Some(b.compute_infer.into()),
                            compute_output: Some(b.compute_output.into()),
                        })
                        .collect(),
                }
            })
            .collect();
        proto::ModelStatisticsResponse { model_stats }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proto::model_infer_request::InferRequestedOutputTensor;

    fn input(name: &str, datatype: &str, shape: Vec<i64>, contents: Option<InferTensorContents>) -> InferInputTensor {
        InferInputTensor {
            name: name.into(),
            datatype: datatype.into(),
            shape,
            parameters: Default::default(),
            contents,
        }
    }

    fn request(inputs: Vec<InferInputTensor>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            model_name: "m".into(),
            id: "42".into(),
            inputs,
            outputs: vec![InferRequestedOutputTensor { name: "predict".into(), parameters: Default::default() }],
            raw_input_contents: raw.into_iter().map(Bytes::from).collect(),
            ..ModelInferRequest::default()
        }
    }

    fn error(r: ModelInferRequest) -> String {
        let e = decode(r).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        e.to_string()
    }

    #[test]
    fn typed_and_raw_contents_decode_to_the_same_tensors() {
        let typed = InferTensorContents { fp32_contents: vec![1.0, -2.5, 3.0, 0.5], ..Default::default() };
        let (a, enc) = decode(request(vec![input("x", "FP32", vec![2, 2], Some(typed))], vec![])).unwrap();
        assert_eq!(enc, Encoding::Typed);
        let raw: Vec<u8> = [1.0f32, -2.5, 3.0, 0.5].iter().flat_map(|v| v.to_le_bytes()).collect();
        let (b, enc) = decode(request(vec![input("x", "FP32", vec![2, 2], None)], vec![raw])).unwrap();
        assert_eq!(enc, Encoding::Raw);
        assert_eq!(a.inputs, b.inputs);
        assert_eq!(a.inputs[0].shape, vec![2, 2]);
        assert_eq!(a.id.as_deref(), Some("42"));
        assert_eq!(a.outputs, vec!["predict".to_owned()]);
    }

    #[test]
    fn every_typed_datatype_round_trips() {
        let cases = [
            TensorData::Bool(vec![true, false]),
            TensorData::Uint8(vec![0, 255]),
            TensorData::Uint16(vec![0, 65535]),
            TensorData::Uint32(vec![0, u32::MAX]),
            TensorData::Uint64(vec![0, u64::MAX]),
            TensorData::Int8(vec![-128, 127]),
            TensorData::Int16(vec![i16::MIN, i16::MAX]),
            TensorData::Int32(vec![i32::MIN, 7]),
            TensorData::Int64(vec![i64::MIN, i64::MAX]),
            TensorData::Fp32(vec![0.1, 3.0]),
            TensorData::Fp64(vec![0.1, -1e300]),
            TensorData::Bytes(vec![b"h\xc3\xa9".to_vec(), vec![0xff]]),
        ];
        for data in cases {
            let dt = data.datatype();
            let t = Tensor::new("y", vec![2], data.clone()).unwrap();
            for encoding in [Encoding::Typed, Encoding::Raw] {
                let response = encode("m", "1", None, vec![t.clone()], encoding).unwrap();
                assert_eq!(response.outputs[0].datatype, dt.as_str());
                // The response's output, sent back as an input, decodes to the same tensor.
                let out = response.outputs[0].clone();
                let back = input("y", &out.datatype, out.shape, out.contents);
                let raw = response.raw_output_contents.iter().map(|b| b.to_vec()).collect();
                let (inference, _) = decode(request(vec![back], raw)).unwrap();
                assert_eq!(inference.inputs[0], t, "{dt} {encoding:?}");
            }
        }
    }

    #[test]
    fn fp16_is_answered_raw() {
        let t = Tensor::new("h", vec![1], TensorData::Fp16(vec![half::f16::from_f32(0.5)])).unwrap();
        let response = encode("m", "1", None, vec![t], Encoding::Typed).unwrap();
        assert_eq!(response.raw_output_contents.len(), 1);
        assert!(response.outputs[0].contents.is_none());
        let err = error(request(vec![input("h", "FP16", vec![1], None)], vec![]));
        assert_eq!(err, "input `h`: FP16 has no typed contents field; send it in raw_input_contents");
    }

    #[test]
    fn bad_inputs_are_named() {
        let c = |v: Vec<u32>| Some(InferTensorContents { uint_contents: v, ..Default::default() });
        let err = error(request(vec![input("x", "UINT8", vec![2], c(vec![1, 300]))], vec![]));
        assert_eq!(err, "input `x`: 300 at index 1 is out of range for UINT8");
        let err = error(request(vec![input("x", "FLOAT32", vec![1], None)], vec![]));
        assert!(err.starts_with("input `x`: unknown datatype `FLOAT32`; valid datatypes are BOOL"), "{err}");
        let err = error(request(vec![input("x", "FP32", vec![-1, 2], None)], vec![]));
        assert_eq!(err, "input `x`: shape [-1, 2] has a negative dimension");
        let wrong = Some(InferTensorContents { fp64_contents: vec![1.0], ..Default::default() });
        let err = error(request(vec![input("x", "FP32", vec![1], wrong)], vec![]));
        assert_eq!(err, "input `x`: FP32 data belongs in fp32_contents, not in fp64_contents");
        let err = error(request(vec![input("x", "FP32", vec![3], c(vec![]))], vec![]));
        assert!(err.contains("x") && err.contains('3'), "{err}");
        let err = error(request(
            vec![input("x", "FP32", vec![1], None), input("z", "FP32", vec![1], None)],
            vec![vec![0; 4]],
        ));
        assert!(err.starts_with("raw_input_contents has 1 entries for 2 inputs"), "{err}");
        let err = error(request(vec![input("x", "FP32", vec![2], None)], vec![vec![0; 4]]));
        assert!(err.contains("x"), "{err}");
        let both = Some(InferTensorContents { fp32_contents: vec![1.0], ..Default::default() });
        let err = error(request(vec![input("x", "FP32", vec![1], both)], vec![vec![0; 4]]));
        assert!(err.contains("typed contents in a request with raw_input_contents"), "{err}");
    }
}
