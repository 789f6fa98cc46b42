//! The KServe v1 REST protocol's messages, as KServe's Python model server and its scikit-learn server
//! read and write them (<https://kserve.github.io/website/latest/modelserving/data_plane/v1_protocol/>).
//!
//! A request is `{"instances": X}` or `{"inputs": X}` (`inputs` wins when both are present; other keys
//! are ignored). `X` is one of:
//! - rows: a list of lists of numbers (nested deeper for models that take more dimensions, such as LSTM
//!   windows `[B, T, F]`), or a list of numbers for a one-feature model;
//! - a frame, as pandas builds one: a list of records (`[{"cpu": 0.5, "mem": 0.7}, …]`), of
//!   column → list (`[{"cpu": [0.5, 0.6], …}]`), of column → {index → value} (the pandas "columns"
//!   orient, `[{"cpu": {"0": 0.5}, …}]`), or of lists of records; also one such object alone.
//!
//! Numbers are read straight into one float64 buffer, as `numpy.array(instances)` would hold them;
//! `true`/`false` are 1 and 0, `null` is NaN (a missing value, for the models that take one). A frame's
//! columns are placed by the model's feature names (`feature_names_in_`), so records may list them in
//! any order; a missing or unknown feature is an error. For a model fitted without names, columns are
//! taken in the order sent.
//!
//! The response is `{"predictions": P}` with `P` the output tensor as nested lists, as numpy's `tolist()`
//! writes it: integers as JSON integers, booleans as booleans, strings as strings, floats as floats
//! (float32 values widened to float64 exactly, as numpy does), NaN as `null`.

use std::fmt;

use ferroserve_formats::{Tensor, TensorData, TensorSpec};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The most nested list levels a request may use (a batch of LSTM windows needs 3).
const MAX_DEPTH: usize = 32;

/// `GET /v1/models` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelsResponse {
    /// The served models' names.
    pub models: Vec<String>,
}

/// `GET /v1/models/{name}` response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelReadyResponse {
    /// The model's name.
    pub name: String,
    /// Whether it answers (a model that does not is a 503 instead).
    pub ready: bool,
}

/// A `:predict` request, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictRequest {
    /// A Ferroserve extension: an `id` under which the predicted labels are kept for feedback (KServe
    /// ignores unknown keys, so the same body works on both).
    pub id: Option<String>,
    /// The instances (`inputs`, else `instances`).
    pub instances: Instances,
}

/// A `:predict` request's instances, decoded.
#[derive(Debug, Clone, PartialEq)]
pub enum Instances {
    /// Nested lists of values: every element of `values`, row-major, in a `shape` array.
    Array {
        /// The dimensions, outermost first.
        shape: Vec<usize>,
        /// The values, flat.
        values: Vec<f64>,
    },
    /// Named columns of equal length (records or pandas frames).
    Frame {
        /// The column names, in the order first sent.
        names: Vec<String>,
        /// One column per name.
        columns: Vec<Vec<f64>>,
    },
}

/// Why a `:predict` body cannot be read; every one is the client's error (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RequestError(pub String);

impl PredictRequest {
    /// Decodes a `:predict` body.
    ///
    /// # Errors
    /// [`RequestError`] for a body that is not JSON, has neither `instances` nor `inputs`, or whose
    /// instances are not rows or frames of numbers.
    pub fn from_body(body: &[u8]) -> Result<PredictRequest, RequestError> {
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            let what = if first.is_none() { "the body is empty" } else { "the body is not a JSON object" };
            return Err(RequestError(format!(
                "invalid v1 request: {what}; expected {{\"instances\": [[...], ...]}} or {{\"inputs\": ...}}"
            )));
        }
        let body: Body = serde_json::from_slice(body).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io => RequestError(format!("malformed JSON: {e}")),
                Category::Data => RequestError(format!("invalid v1 request: {e}")),
            }
        })?;
        match (body.inputs, body.instances) {
            (Some(instances), _) | (None, Some(instances)) => Ok(PredictRequest { id: body.id, instances }),
            (None, None) => Err(RequestError(
                "invalid v1 request: the body has neither `instances` nor `inputs`; expected {\"instances\": [[...], ...]}"
                    .to_owned(),
            )),
        }
    }
}

impl Instances {
    /// The number of rows (instances).
    pub fn rows(&self) -> usize {
        match self {
            Instances::Array { shape, .. } => shape.first().copied().unwrap_or(0),
            Instances::Frame { columns, .. } => columns.first().map_or(0, Vec::len),
        }
    }

    /// The instances as the input tensor of a model declaring `inputs`: one FP64 tensor named after its
    /// first input. A frame's columns are placed by the model's feature names when it has them (one
    /// `[N]` input per feature), else taken in the order sent; a one-dimensional list (scalars) is a
    /// column for a one-feature model.
    ///
    /// # Errors
    /// [`RequestError`] when a frame lacks one of the model's features or names one it does not have.
    pub fn into_tensor(self, inputs: &[TensorSpec]) -> Result<Tensor, RequestError> {
        let name = inputs.first().map_or("input-0", |s| s.name.as_str()).to_owned();
        let features = feature_names(inputs);
        let (shape, values) = match self {
            Instances::Array { shape, values } => match shape.as_slice() {
                // A list of scalars: one value per row of a one-feature model.
                [n] if inputs.len() == 1 && one_feature(&inputs[0]) => (vec![*n, 1], values),
                _ => (shape, values),
            },
            Instances::Frame { names, columns } => {
                let rows = columns.first().map_or(0, Vec::len);
                let order: Vec<usize> = match features {
                    Some(features) => place(&names, &features)?,
                    None => (0..names.len()).collect(),
                };
                let cols = order.len();
                let mut values = vec![0.0; rows * cols];
                for (j, &src) in order.iter().enumerate() {
                    for (i, v) in columns[src].iter().enumerate() {
                        values[i * cols + j] = *v;
                    }
                }
                (vec![rows, cols], values)
            }
        };
        Tensor::new(name, shape, TensorData::Fp64(values)).map_err(|e| RequestError(e.to_string()))
    }
}

/// The model's feature names: the names of its inputs when it declares one `[N]` input per feature (a
/// scikit-learn model fitted on named columns).
fn feature_names(inputs: &[TensorSpec]) -> Option<Vec<&str>> {
    let columns = !inputs.is_empty() && inputs.iter().all(|s| s.shape == [-1]);
    columns.then(|| inputs.iter().map(|s| s.name.as_str()).collect())
}

/// Whether an input takes one feature per row (`[N]` or `[N, 1]`).
fn one_feature(spec: &TensorSpec) -> bool {
    matches!(spec.shape.as_slice(), [_] | [_, 1])
}

/// The index in `names` (the columns sent) of each of the model's `features`, in the model's order.
fn place(names: &[String], features: &[&str]) -> Result<Vec<usize>, RequestError> {
    let unknown: Vec<&str> = names.iter().map(String::as_str).filter(|n| !features.contains(n)).collect();
    if !unknown.is_empty() {
        return Err(RequestError(format!(
            "unknown feature(s) {}; this model takes: {}",
            quoted(&unknown),
            features.join(", ")
        )));
    }
    let missing: Vec<&str> = features.iter().copied().filter(|f| !names.iter().any(|n| n == f)).collect();
    if !missing.is_empty() {
        return Err(RequestError(format!(
            "missing feature(s) {}; this model takes: {}",
            quoted(&missing),
            features.join(", ")
        )));
    }
    Ok(features.iter().filter_map(|f| names.iter().position(|n| n == f)).collect())
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
}

/// The body: only `instances` and `inputs` are read; anything else is skipped unparsed.
#[derive(Debug, Default)]
struct Body {
    id: Option<String>,
    instances: Option<Instances>,
    inputs: Option<Instances>,
}

impl<'de> Deserialize<'de> for Body {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BodyVisitor;
        impl<'de> Visitor<'de> for BodyVisitor {
            type Value = Body;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object with `instances` or `inputs`")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Body, A::Error> {
                let mut body = Body::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "instances" if body.instances.is_some() => return Err(de::Error::duplicate_field("instances")),
                        "inputs" if body.inputs.is_some() => return Err(de::Error::duplicate_field("inputs")),
                        "instances" => body.instances = Some(map.next_value_seed(InstancesSeed("instances"))?),
                        "inputs" => body.inputs = Some(map.next_value_seed(InstancesSeed("inputs"))?),
                        "id" => body.id = map.next_value::<Option<String>>()?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(body)
            }
        }
        d.deserialize_map(BodyVisitor)
    }
}

/// Reads the value of `instances` (or `inputs`, named by `.0` in errors).
struct InstancesSeed(&'static str);

impl<'de> DeserializeSeed<'de> for InstancesSeed {
    type Value = Instances;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Instances, D::Error> {
        d.deserialize_any(InstancesVisitor(self.0))
    }
}

struct InstancesVisitor(&'static str);

impl<'de> Visitor<'de> for InstancesVisitor {
    type Value = Instances;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` as a list of rows or records, or a pandas column object", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Instances, A::Error> {
        // The first element decides the form: rows of values, or frames.
        let mut state = Rows::default();
        let mut frame = Frame::default();
        let mut is_frame = false;
        let mut n = 0usize;
        while let Some(item) =
            seq.next_element_seed(ItemSeed { rows: &mut state, frame: &mut frame, is_frame, first: n == 0 })?
        {
            if n == 0 {
                is_frame = item;
            }
            n += 1;
        }
        if n == 0 {
            return Err(de::Error::custom(format!("`{}` is empty: send at least one instance", self.0)));
        }
        if is_frame {
            return frame.finish().map_err(de::Error::custom);
        }
        let mut shape = vec![n];
        shape.extend(state.dims.iter().map(|d| d.unwrap_or(0)));
        Ok(Instances::Array { shape, values: state.values })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Instances, A::Error> {
        let mut frame = Frame::default();
        frame.read_object(map)?;
        frame.finish().map_err(de::Error::custom)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Instances, E> {
        Err(E::custom(format!("`{}` must be a list of instances, not a string", self.0)))
    }
}

/// One element of the instances list: a row (a value or a nested list) or a frame part (an object, or a
/// list of objects). Returns whether it was a frame part.
struct ItemSeed<'a> {
    rows: &'a mut Rows,
    frame: &'a mut Frame,
    is_frame: bool,
    first: bool,
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an instance: a number, a list, or a record")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        if !self.first && !self.is_frame {
            return Err(de::Error::custom("instances mix rows (lists) and records (objects)"));
        }
        self.frame.read_object(map)?;
        Ok(true)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        if self.is_frame {
            // A list of records (`[[{...}, {...}]]`): each one a row.
            while seq.next_element_seed(RecordSeed(self.frame))?.is_some() {}
            return Ok(true);
        }
        if self.first {
            // `[[{...}]]`: a list whose first element is a record is a list of records.
            let probe = seq.next_element_seed(FirstOfRow { rows: self.rows, frame: self.frame })?;
            match probe {
                None => {
                    self.rows.close(0, 0).map_err(de::Error::custom)?;
                    return Ok(false);
                }
                Some(true) => {
                    while seq.next_element_seed(RecordSeed(self.frame))?.is_some() {}
                    return Ok(true);
                }
                Some(false) => {
                    let mut n = 1;
                    while seq.next_element_seed(Element { rows: self.rows, depth: 1 })?.is_some() {
                        n += 1;
                    }
                    self.rows.close(0, n).map_err(de::Error::custom)?;
                    return Ok(false);
                }
            }
        }
        let mut n = 0;
        while seq.next_element_seed(Element { rows: self.rows, depth: 1 })?.is_some() {
            n += 1;
        }
        self.rows.close(0, n).map_err(de::Error::custom)?;
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        self.scalar(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        #[allow(clippy::cast_precision_loss)]
        self.scalar(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        #[allow(clippy::cast_precision_loss)]
        self.scalar(v as f64)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        self.scalar(if v { 1.0 } else { 0.0 })
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        self.scalar(f64::NAN)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Err(E::custom(not_a_number(v)))
    }
}

impl ItemSeed<'_> {
    fn scalar<E: de::Error>(self, v: f64) -> Result<bool, E> {
        if self.is_frame {
            return Err(E::custom("instances mix records (objects) and values"));
        }
        self.rows.leaf(0).map_err(E::custom)?;
        self.rows.values.push(v);
        Ok(false)
    }
}

fn not_a_number(v: &str) -> String {
    let v: String = v.chars().take(40).collect();
    format!("instance values must be numbers, booleans or null; found the string \"{v}\"")
}

/// The first element of a row list: a record (the list is a list of records) or a value.
struct FirstOfRow<'a> {
    rows: &'a mut Rows,
    frame: &'a mut Frame,
}

impl<'de> DeserializeSeed<'de> for FirstOfRow<'_> {
    type Value = bool;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstOfRow<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value, a list or a record")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        self.frame.read_record(map)?;
        Ok(true)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        Element { rows: self.rows, depth: 1 }.visit_seq(seq)?;
        Ok(false)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        Element { rows: self.rows, depth: 1 }.visit_f64(v)?;
        Ok(false)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Element { rows: self.rows, depth: 1 }.visit_i64(v)?;
        Ok(false)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Element { rows: self.rows, depth: 1 }.visit_u64(v)?;
        Ok(false)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Element { rows: self.rows, depth: 1 }.visit_bool(v)?;
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Element { rows: self.rows, depth: 1 }.visit_unit()?;
        Ok(false)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Err(E::custom(not_a_number(v)))
    }
}

/// Nested rows being read: the values, flat, and the length of each level below the outermost (the
/// first list at a level sets it; every other list at that level must match).
#[derive(Debug, Default)]
struct Rows {
    values: Vec<f64>,
    /// `dims[d]`: the length of the lists at depth `d + 1`.
    dims: Vec<Option<usize>>,
    /// The depth at which values sit, once the first one is seen.
    leaf: Option<usize>,
}

impl Rows {
    /// A value at `depth` (0 for a list of scalars).
    fn leaf(&mut self, depth: usize) -> Result<(), String> {
        match self.leaf {
            None => {
                self.leaf = Some(depth);
                Ok(())
            }
            Some(d) if d == depth => Ok(()),
            Some(_) => Err(ragged()),
        }
    }

    /// A list of `n` elements closed at `depth` (0 for a row of the outermost list).
    fn close(&mut self, depth: usize, n: usize) -> Result<(), String> {
        if self.leaf.is_some_and(|leaf| leaf <= depth) {
            return Err(ragged());
        }
        if self.dims.len() <= depth {
            self.dims.resize(depth + 1, None);
        }
        match self.dims[depth] {
            None => self.dims[depth] = Some(n),
            Some(m) if m == n => {}
            Some(m) => {
                return Err(format!("instances are ragged: a list of {n} elements where the first had {m}"));
            }
        }
        Ok(())
    }
}

fn ragged() -> String {
    "instances are ragged: values and lists are mixed at the same level".to_owned()
}

/// A value or a nested list at `depth` (1 for an element of a row).
struct Element<'a> {
    rows: &'a mut Rows,
    depth: usize,
}

impl<'de> DeserializeSeed<'de> for Element<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Element<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if self.depth >= MAX_DEPTH {
            return Err(de::Error::custom(format!("instances are nested more than {MAX_DEPTH} levels deep")));
        }
        let mut n = 0;
        while seq.next_element_seed(Element { rows: &mut *self.rows, depth: self.depth + 1 })?.is_some() {
            n += 1;
        }
        self.rows.close(self.depth, n).map_err(de::Error::custom)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.rows.leaf(self.depth).map_err(E::custom)?;
        self.rows.values.push(v);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        #[allow(clippy::cast_precision_loss)]
        self.visit_f64(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        #[allow(clippy::cast_precision_loss)]
        self.visit_f64(v as f64)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.visit_f64(if v { 1.0 } else { 0.0 })
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.visit_f64(f64::NAN)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        Err(E::custom(not_a_number(v)))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom("instances mix rows (lists) and records (objects)"))
    }
}

/// Named columns being gathered from records and pandas objects, as `pandas.concat` of the
/// `DataFrame`s each part makes.
#[derive(Debug, Default)]
struct Frame {
    names: Vec<String>,
    columns: Vec<Vec<f64>>,
    /// Rows gathered so far (every column has this many values between parts).
    rows: usize,
}

/// One column of a frame part: a value (one row), a list, or an {index → value} object.
#[derive(Debug)]
enum Column {
    Scalar(f64),
    List(Vec<f64>),
    Indexed(Vec<(String, f64)>),
}

impl Frame {
    /// An object: a record (`{"cpu": 0.5}`), columns of lists, or the pandas "columns" orient.
    fn read_object<'de, A: MapAccess<'de>>(&mut self, mut map: A) -> Result<(), A::Error> {
        let mut part: Vec<(String, Column)> = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if part.iter().any(|(n, _)| *n == name) {
                return Err(de::Error::custom(format!("column `{name}` is given twice")));
            }
            let column = map.next_value_seed(ColumnSeed)?;
            part.push((name, column));
        }
        self.append(part).map_err(de::Error::custom)
    }

    /// An object that must be a record of scalars (an element of a list of records).
    fn read_record<'de, A: MapAccess<'de>>(&mut self, map: A) -> Result<(), A::Error> {
        self.read_object(map)
    }

    fn append(&mut self, part: Vec<(String, Column)>) -> Result<(), String> {
        if part.is_empty() {
            return Err("an instance record is empty".to_owned());
        }
        // The part's rows: scalars make one, lists and indexed objects their length; all must agree.
        let scalars = part.iter().all(|(_, c)| matches!(c, Column::Scalar(_)));
        let index: Option<Vec<String>> = part.iter().find_map(|(_, c)| match c {
            Column::Indexed(v) => Some(v.iter().map(|(k, _)| k.clone()).collect()),
            _ => None,
        });
        let first_rows = part.iter().map(|(_, c)| column_len(c)).next().unwrap_or(0);
        for (name, c) in &part {
            if matches!(c, Column::Scalar(_)) && !scalars {
                return Err(format!("column `{name}` is a single value where the other columns are lists"));
            }
            if column_len(c) != first_rows {
                return Err(format!(
                    "column `{name}` has {} values where `{}` has {first_rows}",
                    column_len(c),
                    part[0].0
                ));
            }
        }
        if self.names.is_empty() && self.rows == 0 {
            self.names = part.iter().map(|(n, _)| n.clone()).collect();
            self.columns = vec![Vec::new(); self.names.len()];
        } else {
            let missing: Vec<&str> =
                self.names.iter().filter(|n| !part.iter().any(|(p, _)| p == *n)).map(String::as_str).collect();
            let extra: Vec<&str> =
                part.iter().filter(|(p, _)| !self.names.contains(p)).map(|(p, _)| p.as_str()).collect();
            if !missing.is_empty() || !extra.is_empty() {
                return Err(format!(
                    "instance {} has different columns from the first: {}{}",
                    self.rows,
                    if missing.is_empty() { String::new() } else { format!("missing {} ", quoted(&missing)) },
                    if extra.is_empty() { String::new() } else { format!("extra {}", quoted(&extra)) },
                )
                .trim_end()
                .to_owned());
            }
        }
        for (name, column) in part {
            let Some(j) = self.names.iter().position(|n| *n == name) else { continue };
            match column {
                Column::Scalar(v) => self.columns[j].push(v),
                Column::List(v) => self.columns[j].extend(v),
                Column::Indexed(v) => {
                    let index = index.as_deref().unwrap_or_default();
                    if v.len() == index.len() && v.iter().zip(index).all(|((k, _), i)| k == i) {
                        self.columns[j].extend(v.into_iter().map(|(_, x)| x));
                    } else {
                        // Same labels in another order: align them, as pandas does.
                        for label in index {
                            let Some((_, x)) = v.iter().find(|(k, _)| k == label) else {
                                return Err(format!("column `{name}` has no value at index \"{label}\""));
                            };
                            self.columns[j].push(*x);
                        }
                    }
                }
            }
        }
        self.rows += first_rows;
        Ok(())
    }

    fn finish(self) -> Result<Instances, String> {
        if self.rows == 0 {
            return Err("the instances hold no rows".to_owned());
        }
        Ok(Instances::Frame { names: self.names, columns: self.columns })
    }
}

fn column_len(c: &Column) -> usize {
    match c {
        Column::Scalar(_) => 1,
        Column::List(v) => v.len(),
        Column::Indexed(v) => v.len(),
    }
}

/// A record in a list of records.
struct RecordSeed<'a>(&'a mut Frame);

impl<'de> DeserializeSeed<'de> for RecordSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a record (an object of feature values)")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.read_record(map)
    }
}

struct ColumnSeed;

impl<'de> DeserializeSeed<'de> for ColumnSeed {
    type Value = Column;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Column, D::Error> {
        d.deserialize_any(ColumnVisitor)
    }
}

struct ColumnVisitor;

impl<'de> Visitor<'de> for ColumnVisitor {
    type Value = Column;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a feature value, a list of values, or an {index: value} object")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Column, E> {
        Ok(Column::Scalar(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Column, E> {
        #[allow(clippy::cast_precision_loss)]
        Ok(Column::Scalar(v as f64))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Column, E> {
        #[allow(clippy::cast_precision_loss)]
        Ok(Column::Scalar(v as f64))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Column, E> {
        Ok(Column::Scalar(if v { 1.0 } else { 0.0 }))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Column, E> {
        Ok(Column::Scalar(f64::NAN))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Column, E> {
        Err(E::custom(not_a_number(v)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Column, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = seq.next_element_seed(ValueSeed)? {
            v.push(x);
        }
        Ok(Column::List(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Column, A::Error> {
        let mut v: Vec<(String, f64)> = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let x = map.next_value_seed(ValueSeed)?;
            v.push((k, x));
        }
        Ok(Column::Indexed(v))
    }
}

/// One value of a column.
struct ValueSeed;

impl<'de> DeserializeSeed<'de> for ValueSeed {
    type Value = f64;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = f64;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number, a boolean or null")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        #[allow(clippy::cast_precision_loss)]
        Ok(v as f64)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        #[allow(clippy::cast_precision_loss)]
        Ok(v as f64)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<f64, E> {
        Ok(if v { 1.0 } else { 0.0 })
    }
    fn visit_unit<E: de::Error>(self) -> Result<f64, E> {
        Ok(f64::NAN)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        Err(E::custom(not_a_number(v)))
    }
}

/// `{"predictions": P}`: one output tensor as nested lists.
#[derive(Debug)]
pub struct PredictResponse<'a>(pub &'a Tensor);

impl Serialize for PredictResponse<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        map.serialize_entry("predictions", &Nested { tensor: self.0, shape: &self.0.shape, offset: 0, widen: true })?;
        map.end()
    }
}

/// `{"instances": X}`: a tensor as the body of a `:predict` request, its first dimension the instances.
#[derive(Debug)]
pub struct InstancesBody<'a>(pub &'a Tensor);

impl Serialize for InstancesBody<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        // A request keeps float32 values as written (`34.7`, not their float64 expansion).
        map.serialize_entry("instances", &Nested { tensor: self.0, shape: &self.0.shape, offset: 0, widen: false })?;
        map.end()
    }
}

/// The elements of `tensor` from `offset` in a `shape` block, as nested lists.
struct Nested<'a> {
    tensor: &'a Tensor,
    shape: &'a [usize],
    offset: usize,
    /// Float32 values written as the float64 they widen to, as numpy's `tolist()` does.
    widen: bool,
}

impl Serialize for Nested<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Some((&n, rest)) = self.shape.split_first() else {
            return Scalar(&self.tensor.data, self.offset, self.widen).serialize(s);
        };
        let stride: usize = rest.iter().product();
        let mut seq = s.serialize_seq(Some(n))?;
        for i in 0..n {
            let offset = self.offset + i * stride;
            if rest.is_empty() {
                seq.serialize_element(&Scalar(&self.tensor.data, offset, self.widen))?;
            } else {
                seq.serialize_element(&Nested { tensor: self.tensor, shape: rest, offset, widen: self.widen })?;
            }
        }
        seq.end()
    }
}

/// Element `.1` of a tensor's data, with its JSON type; float32 widened to float64 when `.2`.
struct Scalar<'a>(&'a TensorData, usize, bool);

impl Serialize for Scalar<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let i = self.1;
        let missing = || serde::ser::Error::custom("an output tensor is shorter than its shape");
        match self.0 {
            TensorData::Bool(v) => s.serialize_bool(*v.get(i).ok_or_else(missing)?),
            TensorData::Uint8(v) => s.serialize_u8(*v.get(i).ok_or_else(missing)?),
            TensorData::Uint16(v) => s.serialize_u16(*v.get(i).ok_or_else(missing)?),
            TensorData::Uint32(v) => s.serialize_u32(*v.get(i).ok_or_else(missing)?),
            TensorData::Uint64(v) => s.serialize_u64(*v.get(i).ok_or_else(missing)?),
            TensorData::Int8(v) => s.serialize_i8(*v.get(i).ok_or_else(missing)?),
            TensorData::Int16(v) => s.serialize_i16(*v.get(i).ok_or_else(missing)?),
            TensorData::Int32(v) => s.serialize_i32(*v.get(i).ok_or_else(missing)?),
            TensorData::Int64(v) => s.serialize_i64(*v.get(i).ok_or_else(missing)?),
            // numpy's tolist() widens to Python floats: the exact value, written as a float64.
            TensorData::Fp16(v) => s.serialize_f64(f64::from(*v.get(i).ok_or_else(missing)?)),
            TensorData::Fp32(v) if self.2 => s.serialize_f64(f64::from(*v.get(i).ok_or_else(missing)?)),
            TensorData::Fp32(v) => s.serialize_f32(*v.get(i).ok_or_else(missing)?),
            TensorData::Fp64(v) => s.serialize_f64(*v.get(i).ok_or_else(missing)?),
            TensorData::Bytes(v) => s.serialize_str(&String::from_utf8_lossy(v.get(i).ok_or_else(missing)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_formats::DataType;

    fn decode(body: &str) -> Result<Instances, String> {
        PredictRequest::from_body(body.as_bytes()).map(|r| r.instances).map_err(|e| e.0)
    }

    fn spec(names: &[&str]) -> Vec<TensorSpec> {
        names.iter().map(|n| TensorSpec::new(*n, DataType::Fp64, vec![-1])).collect()
    }

    #[test]
    fn rows_keep_their_shape_at_any_depth() {
        let x = decode(r#"{"instances": [[1, 2.5], [true, null]]}"#).unwrap();
        let Instances::Array { shape, values } = x else { panic!("rows") };
        assert_eq!(shape, [2, 2]);
        assert_eq!(&values[..3], &[1.0, 2.5, 1.0]);
        assert!(values[3].is_nan());
        let x = decode(r#"{"instances": [[[1, 2], [3, 4], [5, 6]]]}"#).unwrap();
        assert_eq!(x, Instances::Array { shape: vec![1, 3, 2], values: vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0] });
        let x = decode(r#"{"instances": [3, 4]}"#).unwrap();
        let t = x.into_tensor(&[TensorSpec::new("x", DataType::Fp32, vec![-1, 1])]).unwrap();
        assert_eq!(t.shape, [2, 1], "scalars are one feature each");
    }

    #[test]
    fn frames_are_placed_by_feature_name() {
        for body in [
            r#"{"instances": [{"b": 2, "a": 1}, {"a": 3, "b": 4}]}"#,
            r#"{"instances": [{"b": [2, 4], "a": [1, 3]}]}"#,
            r#"{"instances": [{"b": {"x": 2, "y": 4}, "a": {"y": 3, "x": 1}}]}"#,
            r#"{"instances": {"b": {"0": 2, "1": 4}, "a": {"0": 1, "1": 3}}}"#,
            r#"{"instances": [[{"b": 2, "a": 1}, {"a": 3, "b": 4}]]}"#,
        ] {
            let t = decode(body).unwrap().into_tensor(&spec(&["a", "b"])).unwrap();
            assert_eq!(t.shape, [2, 2], "{body}");
            assert_eq!(t.data, TensorData::Fp64(vec![1.0, 2.0, 3.0, 4.0]), "{body}");
        }
        // Without feature names, the order sent.
        let t = decode(r#"{"instances": [{"b": 2, "a": 1}]}"#)
            .unwrap()
            .into_tensor(&[TensorSpec::new("input-0", DataType::Fp32, vec![-1, 2])])
            .unwrap();
        assert_eq!(t.data, TensorData::Fp64(vec![2.0, 1.0]));
        let err = decode(r#"{"instances": [{"a": 1}]}"#).unwrap().into_tensor(&spec(&["a", "b"])).unwrap_err();
        assert!(err.0.contains("missing feature(s) `b`"), "{}", err.0);
        let err = decode(r#"{"instances": [{"a": 1, "b": 2, "c": 3}]}"#)
            .unwrap()
            .into_tensor(&spec(&["a", "b"]))
            .unwrap_err();
        assert!(err.0.contains("unknown feature(s) `c`"), "{}", err.0);
    }

    #[test]
    fn malformed_instances_say_why() {
        for (body, why) in [
            (r#"{"instances": [[1, 2], [3]]}"#, "ragged"),
            (r#"{"instances": [[1, 2], 3]}"#, "ragged"),
            (r#"{"instances": [{"a": [1, 2], "b": [3]}]}"#, "has 1 values"),
            (r#"{"instances": [{"a": 1, "b": [3]}]}"#, "single value"),
            (r#"{"instances": [{"a": {"0": 1}, "b": {"1": 2}}]}"#, "no value at index"),
            (r#"{"instances": [{"a": 1, "a": 2}]}"#, "twice"),
            (r#"{"instances": [{}]}"#, "empty"),
            (r#"{"instances": [[1]], "instances": [[2]]}"#, "duplicate"),
            (r#"{"inputs": null}"#, "invalid"),
        ] {
            let err = decode(body).unwrap_err();
            assert!(err.contains(why), "{body}: {err}");
        }
    }

    #[test]
    fn predictions_keep_numpy_types() {
        let json = |data: TensorData, shape: Vec<usize>| {
            serde_json::to_string(&PredictResponse(&Tensor::new("y", shape, data).unwrap())).unwrap()
        };
        assert_eq!(json(TensorData::Int64(vec![-1, 1]), vec![2]), r#"{"predictions":[-1,1]}"#);
        assert_eq!(json(TensorData::Bool(vec![true]), vec![1]), r#"{"predictions":[true]}"#);
        assert_eq!(json(TensorData::Bytes(vec![b"low".to_vec()]), vec![1]), r#"{"predictions":["low"]}"#);
        assert_eq!(json(TensorData::Fp64(vec![1.0, f64::NAN]), vec![2]), r#"{"predictions":[1.0,null]}"#);
        assert_eq!(json(TensorData::Fp32(vec![0.8]), vec![1]), r#"{"predictions":[0.800000011920929]}"#);
        assert_eq!(
            json(TensorData::Fp64(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]), vec![3, 2]),
            r#"{"predictions":[[1.0,2.0],[3.0,4.0],[5.0,6.0]]}"#
        );
    }
}
