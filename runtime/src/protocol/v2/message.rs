//! Whole messages on the wire: an [`InferRequest`] read from a body that may carry binary tensor data,
//! and an [`InferResponse`] written as JSON or as JSON followed by binary output data.
//!
//! The request is decoded by hand rather than derived so that one pass over the JSON can hand each
//! input the binary part of the body: an input with `binary_data_size` takes its bytes the moment its
//! object ends, which is the order the extension specifies, and never exists without its data.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{Error as _, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};

use super::binary::{self, BinaryError, BinaryOutputs, BinaryPart};
use super::data::Reservation;
use super::tensor::{TensorSeed, TensorView};
use super::{InferRequest, InferResponse, InferTensor, Parameters, RequestedOutput};

/// A request body that cannot be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The JSON is malformed or not an inference request (binary errors of one input included:
    /// they are found while that input's JSON is read).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The body's framing: the JSON part longer than the body, or binary data left over.
    #[error(transparent)]
    Binary(#[from] BinaryError),
}

impl InferRequest {
    /// Decodes a request body. `json_len` is the `Inference-Header-Content-Length` header: when
    /// given, the body is that many bytes of JSON followed by the binary data of the inputs that have
    /// `parameters.binary_data_size`, in order; otherwise the body is JSON.
    ///
    /// # Errors
    /// [`DecodeError::Json`] for JSON that is malformed or not a valid request, including an input
    /// whose binary data is wrong (size, layout, both or neither of `data` and `binary_data_size`);
    /// [`DecodeError::Binary`] when `json_len` exceeds the body or the inputs leave binary data unused.
    pub fn from_body(body: &[u8], json_len: Option<usize>) -> Result<Self, DecodeError> {
        let Some(json_len) = json_len else {
            let reserve = Reservation::for_json(body.len());
            let mut de = serde_json::Deserializer::from_slice(body);
            let request = RequestSeed { binary: None, reserve: &reserve }.deserialize(&mut de)?;
            de.end()?;
            return Ok(request);
        };
        let (json, rest) =
            body.split_at_checked(json_len).ok_or(BinaryError::HeaderTooLong { json_len, body_len: body.len() })?;
        let mut part = BinaryPart::new(rest);
        let mut de = serde_json::Deserializer::from_slice(json);
        let reserve = Reservation::for_json(json.len());
        let request = RequestSeed { binary: Some(&mut part), reserve: &reserve }.deserialize(&mut de)?;
        de.end()?;
        part.finish()?;
        Ok(request)
    }

    /// Which outputs the request wants as binary data.
    ///
    /// # Errors
    /// [`BinaryError::InvalidFlag`] when `binary_data` or `binary_data_output` is not a boolean.
    pub fn binary_outputs(&self) -> Result<BinaryOutputs, BinaryError> {
        BinaryOutputs::of(self)
    }
}

impl<'de> Deserialize<'de> for InferRequest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RequestSeed { binary: None, reserve: &Reservation::unknown() }.deserialize(d)
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Id,
    Parameters,
    Inputs,
    Outputs,
    #[serde(other)]
    Other,
}

/// Decodes a request; `binary` is the body's binary part, when it has one.
struct RequestSeed<'s, 'b> {
    binary: Option<&'s mut BinaryPart<'b>>,
    reserve: &'s Reservation,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, '_> {
    type Value = InferRequest;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<InferRequest, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, '_> {
    type Value = InferRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an inference request object {\"inputs\": [...]}")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<InferRequest, A::Error> {
        let mut id: Option<Option<String>> = None;
        let mut parameters: Option<Option<Parameters>> = None;
        let mut inputs: Option<Vec<InferTensor>> = None;
        let mut outputs: Option<Vec<RequestedOutput>> = None;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Id if id.is_some() => return Err(de::Error::duplicate_field("id")),
                Field::Id => id = Some(map.next_value()?),
                Field::Parameters if parameters.is_some() => return Err(de::Error::duplicate_field("parameters")),
                Field::Parameters => parameters = Some(map.next_value()?),
                // A second `inputs` would take binary data meant for nobody.
                Field::Inputs if inputs.is_some() => return Err(de::Error::duplicate_field("inputs")),
                Field::Inputs => {
                    let seed = InputsSeed { binary: self.binary.as_deref_mut(), reserve: self.reserve };
                    inputs = Some(map.next_value_seed(seed)?);
                }
                Field::Outputs if outputs.is_some() => return Err(de::Error::duplicate_field("outputs")),
                Field::Outputs => outputs = Some(map.next_value()?),
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(InferRequest {
            id: id.flatten(),
            parameters: parameters.flatten(),
            inputs: inputs.ok_or_else(|| de::Error::missing_field("inputs"))?,
            outputs: outputs.unwrap_or_default(),
        })
    }
}

/// Decodes `inputs`, handing each tensor the binary part in turn.
struct InputsSeed<'s, 'b> {
    binary: Option<&'s mut BinaryPart<'b>>,
    reserve: &'s Reservation,
}

impl<'de> DeserializeSeed<'de> for InputsSeed<'_, '_> {
    type Value = Vec<InferTensor>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<InferTensor>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for InputsSeed<'_, '_> {
    type Value = Vec<InferTensor>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of input tensors")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Vec<InferTensor>, A::Error> {
        let mut inputs = Vec::new();
        while let Some(t) =
            seq.next_element_seed(TensorSeed { binary: self.binary.as_deref_mut(), reserve: self.reserve })?
        {
            inputs.push(t);
        }
        Ok(inputs)
    }
}

/// An encoded response body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseBody {
    /// The body: JSON, then the binary data of the binary outputs, in order.
    pub bytes: Vec<u8>,
    /// The length of the JSON part, when binary data follows it: the value of the response's
    /// `Inference-Header-Content-Length` header. `None` for a plain JSON body.
    pub json_len: Option<usize>,
}

impl InferResponse {
    /// Encodes the response, the outputs that `binary` contains as binary data after the JSON (each
    /// with `parameters.binary_data_size` and no `data`), the others in the JSON. With no binary output
    /// the body is plain JSON.
    ///
    /// # Errors
    /// When a BYTES element is 4 GiB or more, which the binary format cannot carry.
    pub fn to_body(&self, binary: &BinaryOutputs) -> Result<ResponseBody, serde_json::Error> {
        let flags: Vec<bool> = self.outputs.iter().map(|o| binary.contains(&o.name)).collect();
        if !flags.contains(&true) {
            return Ok(ResponseBody { bytes: serde_json::to_vec(self)?, json_len: None });
        }
        let binary_len = self
            .outputs
            .iter()
            .zip(&flags)
            .filter(|(_, b)| **b)
            .map(|(o, _)| binary::encoded_len(&o.data))
            .fold(0, usize::saturating_add);
        let mut bytes = Vec::new();
        serde_json::to_writer(&mut bytes, &ResponseView { response: self, binary: &flags })?;
        let json_len = bytes.len();
        bytes.reserve_exact(binary_len);
        for (output, _) in self.outputs.iter().zip(&flags).filter(|(_, b)| **b) {
            binary::encode(&output.name, &output.data, &mut bytes).map_err(serde_json::Error::custom)?;
        }
        Ok(ResponseBody { bytes, json_len: Some(json_len) })
    }
}

impl Serialize for InferResponse {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ResponseView { response: self, binary: &[] }.serialize(s)
    }
}

/// A response with the outputs flagged in `binary` written as binary-data headers.
struct ResponseView<'a> {
    response: &'a InferResponse,
    /// Per output; missing entries are `false`.
    binary: &'a [bool],
}

impl Serialize for ResponseView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.response;
        let fields = 3 + usize::from(r.id.is_some()) + usize::from(r.parameters.is_some());
        let mut st = s.serialize_struct("InferResponse", fields)?;
        st.serialize_field("model_name", &r.model_name)?;
        st.serialize_field("model_version", &r.model_version)?;
        if let Some(id) = &r.id {
            st.serialize_field("id", id)?;
        }
        if let Some(p) = &r.parameters {
            st.serialize_field("parameters", p)?;
        }
        st.serialize_field("outputs", &OutputsView(self))?;
        st.end()
    }
}

struct OutputsView<'a>(&'a ResponseView<'a>);

impl Serialize for OutputsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let ResponseView { response, binary } = self.0;
        s.collect_seq(
            response
                .outputs
                .iter()
                .enumerate()
                .map(|(i, tensor)| TensorView { tensor, binary: binary.get(i).copied().unwrap_or(false) }),
        )
    }
}

#[cfg(test)]
mod tests {
    use ferroserve_formats::TensorData;
    use serde_json::json;

    use super::*;

    /// A body of `json` followed by `binary`, and the header value that goes with it.
    fn body(json: &serde_json::Value, binary: &[u8]) -> (Vec<u8>, usize) {
        let mut body = serde_json::to_vec(json).unwrap();
        let len = body.len();
        body.extend_from_slice(binary);
        (body, len)
    }

    fn decode(json: &serde_json::Value, binary: &[u8]) -> Result<InferRequest, String> {
        let (body, len) = body(json, binary);
        InferRequest::from_body(&body, Some(len)).map_err(|e| e.to_string())
    }

    #[test]
    fn binary_inputs_take_their_bytes_in_order() {
        let request = decode(
            &json!({"id": "7", "inputs": [
                {"parameters": {"binary_data_size": 4, "keep": 1}, "shape": [2], "name": "a", "datatype": "INT16"},
                {"name": "b", "shape": [1], "datatype": "FP64", "data": [0.5]},
                {"name": "c", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": 6}},
            ], "outputs": [{"name": "a"}]}),
            &[1, 0, 0xff, 0xff, 2, 0, 0, 0, b'h', b'i'],
        )
        .unwrap();
        assert_eq!(request.id.as_deref(), Some("7"));
        let data: Vec<&TensorData> = request.inputs.iter().map(|t| &t.data).collect();
        assert_eq!(
            data,
            [&TensorData::Int16(vec![1, -1]), &TensorData::Fp64(vec![0.5]), &TensorData::Bytes(vec![b"hi".to_vec()])]
        );
        // The encoding is used up: other parameters stay, binary_data_size goes, an empty map goes.
        assert_eq!(request.inputs[0].parameters, Some(serde_json::from_value(json!({"keep": 1})).unwrap()));
        assert_eq!(request.inputs[2].parameters, None);
        // So the decoded request reads back as plain JSON.
        let text = serde_json::to_vec(&request).unwrap();
        assert_eq!(InferRequest::from_body(&text, None).unwrap(), request);
    }

    #[test]
    fn framing_errors() {
        let input = json!({"inputs": [{"name": "x", "shape": [2], "datatype": "FP32",
            "parameters": {"binary_data_size": 8}}]});
        let err = decode(&input, &[0; 12]).unwrap_err();
        assert_eq!(err, "the binary data has 12 bytes but the inputs with binary_data_size (`x`) take 8");
        let err = decode(&input, &[0; 4]).unwrap_err();
        assert!(err.starts_with("input `x`: binary_data_size is 8 but only 4 bytes of binary data are left"), "{err}");
        let (body, len) = body(&input, &[0; 8]);
        let err = InferRequest::from_body(&body, Some(body.len() + 1)).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("Inference-Header-Content-Length is {} but the body has only {} bytes", len + 9, len + 8)
        );
        let err = InferRequest::from_body(&body[..len], None).unwrap_err().to_string();
        assert!(err.starts_with("input `x`: `parameters.binary_data_size` is set but the request has no binary data"));
        // Trailing text inside the JSON part is still an error.
        let mut padded = body[..len].to_vec();
        padded.extend_from_slice(b" x");
        padded.extend_from_slice(&[0; 8]);
        let err = InferRequest::from_body(&padded, Some(len + 2)).unwrap_err().to_string();
        assert!(err.starts_with("trailing characters"), "{err}");
    }

    #[test]
    fn data_and_binary_data_size_exclude_each_other() {
        let both = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": [1],
            "parameters": {"binary_data_size": 4}}]});
        let err = decode(&both, &[0; 4]).unwrap_err();
        assert!(err.starts_with("input `x`: has both `data` and `parameters.binary_data_size`"), "{err}");
        let neither = json!({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]});
        let err = decode(&neither, &[]).unwrap_err();
        assert!(err.starts_with("input `x`: missing field `data` (or `parameters.binary_data_size`"), "{err}");
        let twice = br#"{"inputs": [], "inputs": []}"#;
        let err = InferRequest::from_body(twice, Some(twice.len())).unwrap_err().to_string();
        assert!(err.starts_with("duplicate field `inputs`"), "{err}");
    }

    fn output(name: &str, data: TensorData) -> InferTensor {
        InferTensor { name: name.to_owned(), shape: vec![data.len()], data, parameters: None }
    }

    fn response() -> InferResponse {
        InferResponse {
            model_name: "m".into(),
            model_version: "1".into(),
            id: Some("r".into()),
            parameters: None,
            outputs: vec![
                output("a", TensorData::Int64(vec![-1, 1])),
                output("b", TensorData::Fp32(vec![0.5])),
                output("c", TensorData::Bytes(vec![vec![0xff], b"ok".to_vec()])),
            ],
        }
    }

    fn outputs(request: serde_json::Value) -> BinaryOutputs {
        let mut request = request;
        request["inputs"] = json!([]);
        serde_json::from_value::<InferRequest>(request).unwrap().binary_outputs().unwrap()
    }

    #[test]
    fn binary_outputs_follow_the_request() {
        let r = response();
        let none = r.to_body(&BinaryOutputs::default()).unwrap();
        assert_eq!((none.bytes, none.json_len), (serde_json::to_vec(&r).unwrap(), None));

        let body = r
            .to_body(&outputs(json!({"outputs": [{"name": "c", "parameters": {"binary_data": true}},
            {"name": "a", "parameters": {"binary_data": true}}, {"name": "b"}]})))
            .unwrap();
        let json_len = body.json_len.unwrap();
        let (json, binary) = body.bytes.split_at(json_len);
        assert_eq!(
            std::str::from_utf8(json).unwrap(),
            r#"{"model_name":"m","model_version":"1","id":"r","outputs":[{"name":"a","datatype":"INT64","shape":[2],"parameters":{"binary_data_size":16}},{"name":"b","datatype":"FP32","shape":[1],"data":[0.5]},{"name":"c","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":11}}]}"#
        );
        // In the response's order, whatever the order of the request's outputs.
        let mut expected = Vec::new();
        expected.extend_from_slice(&(-1i64).to_le_bytes());
        expected.extend_from_slice(&1i64.to_le_bytes());
        expected.extend_from_slice(&[1, 0, 0, 0, 0xff, 2, 0, 0, 0, b'o', b'k']);
        assert_eq!(binary, expected);
    }

    #[test]
    fn binary_data_output_covers_every_output_but_the_refused() {
        let all = outputs(json!({"parameters": {"binary_data_output": true},
            "outputs": [{"name": "b", "parameters": {"binary_data": false}}]}));
        assert!(all.contains("a") && all.contains("c") && !all.contains("b"));
        let none = outputs(json!({"parameters": {"binary_data_output": false}, "outputs": [{"name": "a"}]}));
        assert!(!none.contains("a"));
        let err =
            serde_json::from_value::<InferRequest>(json!({"inputs": [], "parameters": {"binary_data_output": 1}}))
                .unwrap()
                .binary_outputs()
                .unwrap_err();
        assert_eq!(err.to_string(), "`parameters.binary_data_output` must be true or false, not 1");
        let err = serde_json::from_value::<InferRequest>(
            json!({"inputs": [], "outputs": [{"name": "a", "parameters": {"binary_data": "yes"}}]}),
        )
        .unwrap()
        .binary_outputs()
        .unwrap_err();
        assert_eq!(err.to_string(), r#"output `a`: `parameters.binary_data` must be true or false, not "yes""#);
    }
}
