//! [`InferTensor`]: one named tensor on the wire (a v2 `request_input` or `response_output`).

use std::fmt;

use ferroserve_formats::tensor::element_count;
use ferroserve_formats::{DataType, Tensor, TensorData};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::ser::{SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::Parameters;
use super::binary::{self, BINARY_DATA_SIZE, BinaryError, BinaryPart};
use super::data::{DataSeed, Reservation, WireData, base64_decode, needs_base64};

/// The `parameters.content_type` value saying that BYTES elements are base64 text (as MLServer uses it).
pub const BASE64_CONTENT_TYPE: &str = "base64";

/// A named tensor as the v2 protocol writes it: `{name, shape, datatype, parameters?, data}`.
///
/// Decoding checks everything a tensor must satisfy on its own: a known datatype (the message lists
/// the valid ones), `data` values that fit it (integers in range, `true`/`false` for BOOL, strings
/// for BYTES), no negative dimension, and as many elements as the shape holds. Every message names
/// the tensor. `data` may be flat or nested (row-major); it is stored flat.
///
/// BYTES elements are UTF-8 strings, or base64 when `parameters.content_type` is `"base64"`;
/// encoding switches to base64 (and sets that parameter) by itself when an element is not UTF-8.
///
/// Inside a request with binary data ([`super::InferRequest::from_body`]), a tensor may instead have
/// `parameters.binary_data_size` and no `data`: its data is then decoded from the binary part (see
/// [`super::binary`]) and `binary_data_size` is removed from its parameters, the encoding being used up.
/// On its own, a tensor always needs `data`.
#[derive(Debug, Clone, PartialEq)]
pub struct InferTensor {
    /// The tensor's name.
    pub name: String,
    /// Dimensions, outermost first.
    pub shape: Vec<usize>,
    /// The elements, flat and row-major, typed by the datatype.
    pub data: TensorData,
    /// Per-tensor parameters, passed through untouched.
    pub parameters: Option<Parameters>,
}

impl InferTensor {
    /// The element type.
    pub fn datatype(&self) -> DataType {
        self.data.datatype()
    }

    fn is_base64(&self) -> bool {
        self.parameters
            .as_ref()
            .and_then(|p| p.get("content_type"))
            .is_some_and(|c| c.as_str() == Some(BASE64_CONTENT_TYPE))
    }
}

impl From<Tensor> for InferTensor {
    fn from(t: Tensor) -> Self {
        InferTensor { name: t.name, shape: t.shape, data: t.data, parameters: None }
    }
}

impl TryFrom<InferTensor> for Tensor {
    type Error = ferroserve_formats::InputError;

    /// # Errors
    /// [`ferroserve_formats::InputError::Shape`] when the shape does not hold the data;
    /// a decoded tensor always does.
    fn try_from(t: InferTensor) -> Result<Self, Self::Error> {
        Tensor::new(t.name, t.shape, t.data)
    }
}

impl Serialize for InferTensor {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        TensorView { tensor: self, binary: false }.serialize(s)
    }
}

/// A tensor written as JSON, or, when `binary`, as the JSON header of binary data: `data` left out and
/// `parameters.binary_data_size` giving the byte count that follows the JSON.
pub(super) struct TensorView<'a> {
    pub tensor: &'a InferTensor,
    pub binary: bool,
}

impl Serialize for TensorView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let TensorView { tensor: t, binary } = *self;
        let implicit_base64 = !binary && needs_base64(&t.data) && !t.is_base64();
        let base64 = implicit_base64 || (t.is_base64() && t.datatype() == DataType::Bytes);
        let parameters = if binary {
            let mut p = t.parameters.clone().unwrap_or_default();
            // Binary BYTES are raw bytes, whatever a base64 content type said of JSON strings.
            if t.is_base64() {
                p.remove("content_type");
            }
            p.insert(BINARY_DATA_SIZE.to_owned(), binary::encoded_len(&t.data).into());
            Some(p)
        } else if implicit_base64 {
            let mut p = t.parameters.clone().unwrap_or_default();
            p.insert("content_type".to_owned(), BASE64_CONTENT_TYPE.into());
            Some(p)
        } else {
            t.parameters.clone()
        };
        // `datatype` before `data`, so that a reader (ours included) can decode `data` in one pass.
        let fields = 3 + usize::from(parameters.is_some()) + usize::from(!binary);
        let mut st = s.serialize_struct("InferTensor", fields)?;
        st.serialize_field("name", &t.name)?;
        st.serialize_field("datatype", t.datatype().as_str())?;
        st.serialize_field("shape", &t.shape)?;
        if let Some(p) = &parameters {
            st.serialize_field("parameters", p)?;
        }
        if !binary {
            st.serialize_field("data", &WireData { data: &t.data, base64 })?;
        }
        st.end()
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Name,
    Shape,
    Datatype,
    Parameters,
    Data,
    #[serde(other)]
    Other,
}

/// `data` as met in the object: decoded at once when `name` and `datatype` came first (the usual
/// order), otherwise kept as unparsed JSON text and decoded when the object ends.
enum PendingData {
    Decoded(TensorData),
    Raw(Box<RawValue>),
}

impl<'de> Deserialize<'de> for InferTensor {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TensorSeed { binary: None, reserve: &Reservation::unknown() }.deserialize(d)
    }
}

/// Decodes one tensor; `binary` is the binary part of the request, when it has one; `reserve` what the
/// request's data may still reserve up front.
pub(super) struct TensorSeed<'s, 'b> {
    pub binary: Option<&'s mut BinaryPart<'b>>,
    pub reserve: &'s Reservation,
}

impl<'de> DeserializeSeed<'de> for TensorSeed<'_, '_> {
    type Value = InferTensor;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<InferTensor, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TensorSeed<'_, '_> {
    type Value = InferTensor;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a tensor object {name, shape, datatype, data}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InferTensor, A::Error> {
        let mut name: Option<String> = None;
        let mut shape: Option<Vec<i64>> = None;
        let mut datatype: Option<String> = None;
        let mut parameters: Option<Parameters> = None;
        let mut data: Option<PendingData> = None;
        while let Some(key) = map.next_key::<Field>()? {
            match key {
                Field::Name => name = Some(map.next_value()?),
                Field::Shape => shape = Some(map.next_value()?),
                Field::Datatype => datatype = Some(map.next_value()?),
                Field::Parameters => parameters = map.next_value()?,
                Field::Data => {
                    let known = datatype.as_deref().and_then(DataType::parse);
                    data = Some(match (known, name.as_deref()) {
                        (Some(datatype), Some(input)) => PendingData::Decoded(map.next_value_seed(DataSeed {
                            reserve: self.reserve,
                            datatype,
                            input,
                            capacity: self.reserve.take(shape.as_deref()),
                        })?),
                        _ => PendingData::Raw(map.next_value()?),
                    });
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let name = name.ok_or_else(|| de::Error::missing_field("name"))?;
        let missing = |field: &str| de::Error::custom(format!("input `{name}`: missing field `{field}`"));
        let datatype_name = datatype.ok_or_else(|| missing("datatype"))?;
        let datatype = DataType::parse(&datatype_name).ok_or_else(|| {
            let valid: Vec<&str> = DataType::ALL.iter().map(|d| d.as_str()).collect();
            de::Error::custom(format!(
                "input `{name}`: unknown datatype `{datatype_name}`; valid datatypes are {}",
                valid.join(", ")
            ))
        })?;
        let declared = shape.ok_or_else(|| missing("shape"))?;
        let shape =
            declared.iter().map(|&d| usize::try_from(d)).collect::<Result<Vec<usize>, _>>().map_err(|_| {
                de::Error::custom(format!("input `{name}`: shape {declared:?} has a negative dimension"))
            })?;
        let size = binary::binary_data_size(&name, parameters.as_ref()).map_err(de::Error::custom)?;
        let mut data = match (data, size) {
            (Some(_), Some(_)) => return Err(de::Error::custom(BinaryError::DataAndSize { input: name })),
            (None, None) => {
                return Err(de::Error::custom(format!(
                    "input `{name}`: missing field `data` (or `parameters.{BINARY_DATA_SIZE}` for binary data)"
                )));
            }
            (None, Some(size)) => {
                let Some(part) = self.binary else {
                    return Err(de::Error::custom(BinaryError::NoBinaryPart { input: name }));
                };
                let bytes = part.take(&name, size).map_err(de::Error::custom)?;
                let data = binary::decode(&name, datatype, &shape, bytes).map_err(de::Error::custom)?;
                // The parameter described the encoding, which is used up: a tensor that is written out
                // again carries its `data`, and must not claim binary data as well.
                if let Some(p) = parameters.as_mut() {
                    p.remove(BINARY_DATA_SIZE);
                }
                let parameters = parameters.filter(|p| !p.is_empty());
                return Ok(InferTensor { name, shape, data, parameters });
            }
            (Some(PendingData::Decoded(data)), None) => data,
            (Some(PendingData::Raw(raw)), None) => {
                let capacity = self.reserve.take(Some(&declared));
                decode_raw(&raw, datatype, &name, self.reserve, capacity).map_err(de::Error::custom)?
            }
        };
        let tensor_is_base64 = parameters
            .as_ref()
            .and_then(|p| p.get("content_type"))
            .is_some_and(|c| c.as_str() == Some(BASE64_CONTENT_TYPE));
        if let (TensorData::Bytes(elements), true) = (&mut data, tensor_is_base64) {
            for (i, e) in elements.iter_mut().enumerate() {
                *e = base64_decode(e)
                    .ok_or_else(|| de::Error::custom(format!("input `{name}`: data index {i} is not valid base64")))?;
            }
        }
        let expected = element_count(&shape)
            .ok_or_else(|| de::Error::custom(format!("input `{name}`: shape {shape:?} overflows")))?;
        if expected != data.len() {
            return Err(de::Error::custom(format!(
                "input `{name}`: shape {shape:?} holds {expected} elements but data has {}",
                data.len()
            )));
        }
        Ok(InferTensor { name, shape, data, parameters })
    }
}

/// Decodes `data` that arrived before the fields needed to type it.
fn decode_raw(
    raw: &RawValue,
    datatype: DataType,
    input: &str,
    reserve: &Reservation,
    capacity: usize,
) -> Result<TensorData, String> {
    let mut de = serde_json::Deserializer::from_str(raw.get());
    let seed = DataSeed { reserve, datatype, input, capacity };
    let data = seed.deserialize(&mut de).map_err(|e| without_position(&e))?;
    de.end().map_err(|e| without_position(&e))?;
    Ok(data)
}

/// serde_json's message without " at line L column C": positions inside the buffered `data` text
/// would mislead, and the outer parser adds the real position.
fn without_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    text.strip_suffix(&suffix).map_or_else(|| text.clone(), str::to_owned)
}
