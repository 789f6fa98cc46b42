//! PyTorch's `torch.save` files read as data: a `state_dict` of named tensors, from the zip format
//! (torch ≥ 1.6) or the legacy format, through the restricted pickle interpreter.
//!
//! Nothing in the file is executed. The pickle may only name `collections.OrderedDict`,
//! `torch._utils._rebuild_tensor_v2` and the typed storage classes (`torch.FloatStorage`, …); every
//! storage it refers to by persistent ID is looked up in the zip (`<prefix>/data/<key>`) or in the
//! legacy file's storage section, and checked: its size must be `numel × element size`, and every
//! tensor view (offset, sizes, strides) must lie inside it. Floating dtypes (f32, f64, f16, bf16)
//! become f32, as PyTorch computes.
//!
//! A whole pickled `nn.Module` (`torch.save(model)`) and TorchScript archives are refused with what to
//! save instead. `docs/formats.md` describes the accepted forms.

use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;
use std::rc::Rc;

use ferroserve_pickle::{self as pickle, Global, Limits, Options, Value};

use crate::error::{Error, Result};

/// First bytes of a zip file (`torch.save` ≥ 1.6; also TorchScript).
pub const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";
/// The legacy format's first pickle: `LONG1` of the magic number 0x1950A86A20F9469CFC6C.
pub const LEGACY_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";
/// The legacy format's protocol version.
const LEGACY_PROTOCOL: i64 = 1001;

/// Whether the file starts as a `torch.save` file does (zip or legacy magic), as `torch.load` tells them.
pub fn is_torch_file(path: &Path) -> bool {
    let Ok(head) = crate::files::read_prefix(path, LEGACY_MAGIC.len()) else { return false };
    head.starts_with(ZIP_MAGIC) || head.starts_with(LEGACY_MAGIC)
}

/// One tensor of a `state_dict`, as f32 in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct TorchTensor {
    /// Dimensions (`[]` for a 0-d tensor).
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub values: Vec<f32>,
}

/// A `state_dict`: tensors by name, in the file's order.
pub type StateDict = Vec<(String, TorchTensor)>;

/// The element type of a storage, from its typed storage class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Elem {
    F32,
    F64,
    F16,
    Bf16,
    /// A non-floating storage: its element size, for bounds; its tensors are refused.
    Other(usize),
}

impl Elem {
    fn of(g: &Global) -> std::result::Result<Elem, String> {
        if g.module != "torch" {
            return Err(format!("storage type {g} is not a torch storage class"));
        }
        Ok(match g.name.as_str() {
            "FloatStorage" => Elem::F32,
            "DoubleStorage" => Elem::F64,
            "HalfStorage" => Elem::F16,
            "BFloat16Storage" => Elem::Bf16,
            "LongStorage" => Elem::Other(8),
            "IntStorage" => Elem::Other(4),
            "ShortStorage" => Elem::Other(2),
            "CharStorage" | "ByteStorage" | "BoolStorage" => Elem::Other(1),
            other => return Err(format!("storage type torch.{other} is not supported")),
        })
    }

    fn size(self) -> usize {
        match self {
            Elem::F32 => 4,
            Elem::F64 => 8,
            Elem::F16 | Elem::Bf16 => 2,
            Elem::Other(n) => n,
        }
    }
}

/// A storage's bytes and element type.
#[derive(Debug, Clone)]
pub(crate) struct Storage {
    elem: Elem,
    bytes: Rc<[u8]>,
    type_name: String,
}

/// The persistent ID of a storage: `('storage', storage_type, key, location, numel[, view_metadata])`.
fn parse_pid(pid: &Value) -> std::result::Result<(Global, String, u64), String> {
    let items = pid.as_seq().ok_or_else(|| format!("a persistent ID that is a {}, not a tuple", pid.type_name()))?;
    match items.as_slice() {
        [Value::Str(tag), Value::Global(g), Value::Str(key), location, numel, rest @ ..]
            if &**tag == "storage" && rest.len() <= 1 =>
        {
            if let Some(view) = rest.first().filter(|v| !matches!(v, Value::None)) {
                return Err(format!("storage views ({}) are not supported", view.type_name()));
            }
            if location.as_str() == Some("meta") {
                return Err("a storage on the `meta` device has no data".to_owned());
            }
            let numel = numel
                .as_int()
                .and_then(|n| u64::try_from(n).ok())
                .ok_or_else(|| "a storage's element count is not a non-negative integer".to_owned())?;
            Ok(((**g).clone(), key.to_string(), numel))
        }
        [Value::Str(tag), ..] if &**tag == "module" => Err(WHOLE_MODULE.to_owned()),
        _ => Err("a persistent ID that is not ('storage', type, key, location, numel)".to_owned()),
    }
}

const WHOLE_MODULE: &str = "the file holds a whole nn.Module, which can only be loaded by running its Python code; \
     save the weights instead: torch.save(model.state_dict(), 'model.pt')";

/// The inert value a resolved persistent ID becomes: `(storage_type, key)`.
fn storage_ref(g: &Global, key: &str) -> Value {
    Value::Tuple(Rc::from(vec![Value::Global(Rc::new(g.clone())), Value::Str(Rc::from(key))]))
}

/// Reads a `torch.save` file (zip or legacy) holding a `state_dict`.
///
/// # Errors
/// [`Error::Io`]; [`Error::Pickle`] for a file that is not a state_dict `torch.save` (a whole module,
/// TorchScript, a storage out of bounds, big-endian data, …); [`Error::UnsupportedClass`] and
/// [`Error::PickleRead`] from the interpreter.
pub fn read_state_dict_file(path: &Path, limits: &Limits) -> Result<StateDict> {
    let bytes = crate::files::read(path, limits.max_file_bytes, crate::files::MAX_MODEL_BYTES)?;
    read_state_dict(&bytes, path, limits)
}

/// [`read_state_dict_file`] on the file's bytes; `path` names it in errors.
///
/// # Errors
/// As [`read_state_dict_file`].
pub fn read_state_dict(bytes: &[u8], path: &Path, limits: &Limits) -> Result<StateDict> {
    if bytes.len() as u64 > limits.max_file_bytes {
        return Err(bad(path, format!("the file is over the limit max_file_bytes = {}", limits.max_file_bytes)));
    }
    let (value, storages) = if bytes.starts_with(ZIP_MAGIC) {
        read_zip(bytes, path, limits)?
    } else if bytes.starts_with(LEGACY_MAGIC) {
        read_legacy(bytes, limits).map_err(|e| e.into_error(path))?
    } else {
        return Err(bad(path, "not a torch.save file (neither a zip nor the legacy format)".to_owned()));
    };
    let mut budget = element_budget(limits);
    state_dict_of(&value)
        .and_then(|pairs| {
            pairs
                .into_iter()
                .map(|(name, t)| {
                    let tensor = tensor_from(&t, &|v| lookup(&storages, v), &mut budget)
                        .map_err(|e| format!("tensor `{name}`: {e}"))?;
                    Ok((name, tensor))
                })
                .collect::<std::result::Result<StateDict, String>>()
        })
        .map_err(|e| bad(path, e))
}

fn bad(path: &Path, reason: String) -> Error {
    Error::Pickle { path: path.to_path_buf(), reason }
}

fn lookup(storages: &HashMap<String, Storage>, v: &Value) -> std::result::Result<Storage, String> {
    match v.as_seq().as_deref() {
        Some([Value::Global(_), Value::Str(key)]) => {
            storages.get(&**key).cloned().ok_or_else(|| format!("storage `{key}` is missing"))
        }
        _ => Err(format!("the storage argument is a {}", v.type_name())),
    }
}

/// A failure of the interpreter or of the format around it.
#[derive(Debug)]
pub(crate) enum ReadError {
    Pickle(pickle::Error),
    Format(String),
}

impl ReadError {
    pub(crate) fn into_error(self, path: &Path) -> Error {
        match self {
            ReadError::Pickle(e) => whole_module_or(path, e),
            ReadError::Format(reason) => bad(path, reason),
        }
    }
}

impl From<String> for ReadError {
    fn from(s: String) -> Self {
        ReadError::Format(s)
    }
}

/// A class outside the allowlist that marks a pickled `nn.Module` becomes advice to save the state_dict.
fn whole_module_or(path: &Path, e: pickle::Error) -> Error {
    if let pickle::Error::UnsupportedClass { module, name, .. } = &e
        && (module == "__main__"
            || module.starts_with("torch.nn.")
            || (module == "torch._utils" && name == "_rebuild_parameter"))
    {
        return bad(path, format!("{WHOLE_MODULE} (it names {module}.{name})"));
    }
    if let pickle::Error::Malformed { reason, .. } = &e
        && reason.contains(WHOLE_MODULE)
    {
        return bad(path, WHOLE_MODULE.to_owned());
    }
    Error::pickle(path, e)
}

/// The zip format: `<prefix>/data.pkl` with persistent IDs naming `<prefix>/data/<key>`.
fn read_zip(bytes: &[u8], path: &Path, limits: &Limits) -> Result<(Value, HashMap<String, Storage>)> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| bad(path, format!("not a valid zip: {e}")))?;
    if zip.has_duplicate_names() {
        return Err(bad(path, "the zip holds two records of the same name".to_owned()));
    }
    let names: Vec<String> = zip.file_names_raw().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
    let pickles: Vec<&String> = names.iter().filter(|n| n.ends_with("/data.pkl") || *n == "data.pkl").collect();
    let prefix = match pickles.as_slice() {
        [one] => one.strip_suffix("data.pkl").unwrap_or_default().to_owned(),
        [] => return Err(bad(path, "a zip without data.pkl is not a torch.save file".to_owned())),
        many => {
            return Err(bad(path, format!("the zip holds {} data.pkl records; torch.save writes one", many.len())));
        }
    };
    if prefix.matches('/').count() > 1 {
        return Err(bad(path, format!("data.pkl is nested too deep ({prefix}data.pkl)")));
    }
    if names.iter().any(|n| n == &format!("{prefix}constants.pkl") || n.starts_with(&format!("{prefix}code/"))) {
        return Err(bad(
            path,
            "a TorchScript archive (torch.jit.save) is not read; save the weights with \
             torch.save(model.state_dict(), 'model.pt')"
                .to_owned(),
        ));
    }
    let member = |zip: &mut zip::ZipArchive<Cursor<&[u8]>>,
                  name: &str,
                  max: u64|
     -> std::result::Result<Option<Vec<u8>>, String> {
        let mut f = match zip.by_name(name) {
            Ok(f) => f,
            Err(zip::result::ZipError::FileNotFound) => return Ok(None),
            Err(e) => return Err(format!("{name}: {e}")),
        };
        if f.size() > max {
            return Err(format!("{name} is {} bytes, over the limit of {max}", f.size()));
        }
        let mut out = Vec::new();
        (&mut f).take(max.saturating_add(1)).read_to_end(&mut out).map_err(|e| format!("{name}: {e}"))?;
        if out.len() as u64 > max {
            return Err(format!("{name} is over the limit of {max} bytes"));
        }
        Ok(Some(out))
    };
    let max = limits.max_file_bytes;
    if let Some(order) = member(&mut zip, &format!("{prefix}byteorder"), 16).map_err(|e| bad(path, e))? {
        match order.as_slice() {
            b"little" => {}
            b"big" => {
                return Err(bad(
                    path,
                    "the tensors are big-endian (saved on a big-endian machine); only little-endian files are read"
                        .to_owned(),
                ));
            }
            other => return Err(bad(path, format!("unknown byteorder {:?}", String::from_utf8_lossy(other)))),
        }
    }
    let data = member(&mut zip, &format!("{prefix}data.pkl"), max)
        .map_err(|e| bad(path, e))?
        .ok_or_else(|| bad(path, "data.pkl cannot be read".to_owned()))?;
    let mut storages: HashMap<String, Storage> = HashMap::new();
    let mut total: u64 = 0;
    let mut resolve = |pid: &Value| -> std::result::Result<Value, String> {
        let (g, key, numel) = parse_pid(pid)?;
        let elem = Elem::of(&g)?;
        if let Some(s) = storages.get(&key) {
            if s.bytes.len() as u64 != numel.saturating_mul(elem.size() as u64) || s.type_name != g.name {
                return Err(format!("storage `{key}` is referred to with two different types or sizes"));
            }
            return Ok(storage_ref(&g, &key));
        }
        let expected = numel
            .checked_mul(elem.size() as u64)
            .filter(|&n| n <= max)
            .ok_or_else(|| format!("storage `{key}` of {numel} elements is larger than the file limit"))?;
        let name = format!("{prefix}data/{key}");
        let bytes = member(&mut zip, &name, expected)
            .map_err(|e| format!("storage `{key}` ({numel} elements of {}): {e}", g.name))?
            .ok_or_else(|| format!("storage `{key}` is not in the zip (no {name})"))?;
        if bytes.len() as u64 != expected {
            return Err(format!(
                "storage `{key}` declares {numel} elements of {} ({expected} bytes) but {name} holds {} bytes",
                g.name,
                bytes.len()
            ));
        }
        total = total.saturating_add(expected);
        if total > limits.max_alloc_bytes {
            return Err(format!("the storages are over the limit max_alloc_bytes = {}", limits.max_alloc_bytes));
        }
        storages.insert(key.clone(), Storage { elem, bytes: Rc::from(bytes), type_name: g.name.clone() });
        Ok(storage_ref(&g, &key))
    };
    let options = Options { persistent_load: Some(&mut resolve), records: false };
    let value = pickle::load_prefix(&data, limits, options).map(|(v, _)| v).map_err(|e| match e {
        // Offsets count the pickle record, not the zip: say which record.
        pickle::Error::Malformed { .. } | pickle::Error::Truncated { .. } | pickle::Error::UnknownOpcode { .. } => {
            bad(path, format!("{prefix}data.pkl: {e}"))
        }
        e => whole_module_or(path, e),
    })?;
    Ok((value, storages))
}

/// The legacy format: magic, protocol version and system info pickles, the object pickle, the
/// sorted storage keys, then each storage as an int64 element count and its raw bytes.
pub(crate) fn read_legacy(
    bytes: &[u8],
    limits: &Limits,
) -> std::result::Result<(Value, HashMap<String, Storage>), ReadError> {
    if !bytes.starts_with(LEGACY_MAGIC) {
        return Err("not a legacy torch.save (its magic number is missing)".to_owned().into());
    }
    let mut pos = 0usize;
    let next = |pos: &mut usize, what: &str| -> std::result::Result<Value, ReadError> {
        let rest = bytes.get(*pos..).unwrap_or_default();
        let (v, used) = pickle::load_prefix(rest, limits, Options::default()).map_err(|e| match e {
            pickle::Error::UnsupportedClass { .. } => ReadError::Pickle(e),
            other => ReadError::Format(format!("the legacy {what} at byte {}: {other}", *pos)),
        })?;
        *pos += used;
        Ok(v)
    };
    next(&mut pos, "magic number")?;
    let proto = next(&mut pos, "protocol version")?;
    if proto.as_int() != Some(LEGACY_PROTOCOL) {
        return Err(format!("legacy protocol version {proto:?} is not {LEGACY_PROTOCOL}").into());
    }
    let info = next(&mut pos, "system information")?;
    if info.get("little_endian").and_then(|v| v.as_bool()) == Some(false) {
        return Err("the tensors are big-endian (saved on a big-endian machine); only little-endian files are read"
            .to_owned()
            .into());
    }
    let mut declared: HashMap<String, (Global, u64)> = HashMap::new();
    let mut resolve = |pid: &Value| -> std::result::Result<Value, String> {
        let (g, key, numel) = parse_pid(pid)?;
        Elem::of(&g)?;
        match declared.get(&key) {
            Some((g0, n0)) if *g0 != g || *n0 != numel => {
                return Err(format!("storage `{key}` is referred to with two different types or sizes"));
            }
            _ => {}
        }
        declared.insert(key.clone(), (g.clone(), numel));
        Ok(storage_ref(&g, &key))
    };
    let rest = bytes.get(pos..).unwrap_or_default();
    let options = Options { persistent_load: Some(&mut resolve), records: false };
    let (value, used) = pickle::load_prefix(rest, limits, options).map_err(ReadError::Pickle)?;
    pos += used;
    let keys = next(&mut pos, "storage key list")?;
    let keys = keys.as_seq().ok_or_else(|| "the legacy storage key list is not a list".to_owned())?;
    let mut storages = HashMap::new();
    for key in keys {
        let key = key.as_str().ok_or_else(|| "a legacy storage key is not a string".to_owned())?.to_owned();
        let (g, numel) =
            declared.get(&key).cloned().ok_or_else(|| format!("legacy storage `{key}` is not used by any tensor"))?;
        let elem = Elem::of(&g)?;
        let header: [u8; 8] = bytes
            .get(pos..pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("the legacy file ends before storage `{key}`"))?;
        let n = i64::from_le_bytes(header);
        if u64::try_from(n).ok() != Some(numel) {
            return Err(format!("legacy storage `{key}` has {n} elements, its tensors declare {numel}").into());
        }
        pos += 8;
        let len = usize::try_from(numel)
            .ok()
            .and_then(|n| n.checked_mul(elem.size()))
            .filter(|&len| len <= bytes.len() - pos)
            .ok_or_else(|| format!("legacy storage `{key}` of {numel} elements runs past the end of the file"))?;
        let data = &bytes[pos..pos + len];
        pos += len;
        if storages.insert(key.clone(), Storage { elem, bytes: Rc::from(data), type_name: g.name.clone() }).is_some() {
            return Err(format!("legacy storage `{key}` is listed twice").into());
        }
    }
    if let Some(missing) = declared.keys().find(|k| !storages.contains_key(*k)) {
        return Err(format!("legacy storage `{missing}` is not in the file").into());
    }
    if pos != bytes.len() {
        return Err(format!("{} bytes follow the last legacy storage", bytes.len() - pos).into());
    }
    Ok((value, storages))
}

/// The `(name, tensor value)` pairs of a state_dict (an OrderedDict or dict of tensors), also inside a
/// checkpoint dict under `state_dict` or `model_state_dict`.
pub(crate) fn state_dict_of(v: &Value) -> std::result::Result<Vec<(String, Value)>, String> {
    let Value::Dict(d) = v else {
        return Err(format!("the file holds a {}, not a state_dict (a dict of tensors)", v.type_name()));
    };
    let pairs = d.borrow().clone();
    if !pairs.iter().any(|(_, t)| is_tensor(t)) {
        for key in ["state_dict", "model_state_dict"] {
            if let Some(inner) = v.get(key) {
                return state_dict_of(&inner);
            }
        }
    }
    pairs
        .into_iter()
        .map(|(k, t)| {
            let name = k.as_str().ok_or_else(|| format!("a state_dict key is a {}", k.type_name()))?.to_owned();
            if !is_tensor(&t) {
                return Err(format!("`{name}` is a {}, not a tensor", t.type_name()));
            }
            Ok((name, t))
        })
        .collect()
}

fn is_tensor(v: &Value) -> bool {
    v.is_instance("torch._utils", "_rebuild_tensor_v2")
}

/// How many f32 elements the tensors of one file may take in total (`max_alloc_bytes / 4`).
pub(crate) fn element_budget(limits: &Limits) -> u64 {
    limits.max_alloc_bytes / 4
}

/// A tensor from `_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])`,
/// gathered through its strides with every index checked against the storage. A view may not have
/// more elements than its storage (no stride-0 expansion of a small storage into a large tensor), and
/// `budget` (elements left for this file) bounds the sum over all tensors, which may share storages.
pub(crate) fn tensor_from(
    v: &Value,
    storage_of: &dyn Fn(&Value) -> std::result::Result<Storage, String>,
    budget: &mut u64,
) -> std::result::Result<TorchTensor, String> {
    let Value::Object(o) = v else { return Err(format!("a {}, not a tensor", v.type_name())) };
    let args = o.borrow().args.clone();
    let [storage, offset, size, stride, ..] = args.as_slice() else {
        return Err("_rebuild_tensor_v2 needs storage, offset, size and stride".to_owned());
    };
    let storage = storage_of(storage)?;
    let ints = |v: &Value, what: &str| -> std::result::Result<Vec<usize>, String> {
        v.as_seq()
            .ok_or_else(|| format!("its {what} is a {}", v.type_name()))?
            .iter()
            .map(|x| x.as_int().and_then(|i| usize::try_from(i).ok()))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| format!("its {what} holds something other than non-negative integers"))
    };
    let shape = ints(size, "size")?;
    let strides = ints(stride, "stride")?;
    let offset = offset
        .as_int()
        .and_then(|i| usize::try_from(i).ok())
        .ok_or_else(|| "its storage offset is not a non-negative integer".to_owned())?;
    if shape.len() != strides.len() {
        return Err(format!("size {shape:?} and stride {strides:?} differ in length"));
    }
    let elem = match storage.elem {
        Elem::Other(_) => return Err(format!("dtype torch.{} is not a floating type", storage.type_name)),
        e => e,
    };
    let numel_storage = storage.bytes.len() / elem.size();
    let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or("its size overflows")?;
    if count > numel_storage {
        return Err(format!("a view of {count} elements of a storage of {numel_storage} (overlapping strides)"));
    }
    if count as u64 > *budget {
        return Err("the tensors are over the limit max_alloc_bytes (4 bytes per element)".to_owned());
    }
    *budget -= count as u64;
    if count > 0 {
        // The last element the view touches: offset + Σ (size_i − 1) · stride_i.
        let extent = shape
            .iter()
            .zip(&strides)
            .try_fold(offset, |a, (&d, &s)| (d - 1).checked_mul(s).and_then(|x| a.checked_add(x)))
            .ok_or("its strides overflow")?;
        if extent >= numel_storage {
            return Err(format!(
                "the view (offset {offset}, size {shape:?}, stride {strides:?}) reaches element {extent} of a \
                 storage of {numel_storage}"
            ));
        }
    }
    let read = |i: usize| -> f32 {
        let b = &storage.bytes[i * elem.size()..(i + 1) * elem.size()];
        match elem {
            Elem::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            #[allow(clippy::cast_possible_truncation)]
            Elem::F64 => f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32,
            Elem::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
            Elem::Bf16 | Elem::Other(_) => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        }
    };
    let mut values = Vec::with_capacity(count);
    let mut idx = vec![0usize; shape.len()];
    for _ in 0..count {
        let at = offset + idx.iter().zip(&strides).map(|(i, s)| i * s).sum::<usize>();
        values.push(read(at));
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            if idx[d] < shape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(TorchTensor { shape, values })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferroserve_pickle::Object;
    use std::cell::RefCell;

    fn ints(v: &[i64]) -> Value {
        Value::Tuple(Rc::from(v.iter().map(|&i| Value::Int(i)).collect::<Vec<_>>()))
    }

    fn rebuild(offset: i64, size: &[i64], stride: &[i64]) -> Value {
        let g = Global { module: "torch._utils".to_owned(), name: "_rebuild_tensor_v2".to_owned() };
        let args = vec![Value::None, Value::Int(offset), ints(size), ints(stride), Value::Bool(false), Value::None];
        Value::Object(Rc::new(RefCell::new(Object { class: g, args, state: None, items: Vec::new() })))
    }

    fn storage(elem: Elem, bytes: Vec<u8>) -> impl Fn(&Value) -> std::result::Result<Storage, String> {
        let bytes: Rc<[u8]> = Rc::from(bytes);
        move |_| Ok(Storage { elem, bytes: Rc::clone(&bytes), type_name: format!("{elem:?}Storage") })
    }

    #[test]
    fn strides_offsets_and_dtypes() {
        let f32s: Vec<u8> = (0..12).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let s = storage(Elem::F32, f32s);
        // A transposed [3, 2] view of a [2, 3] block starting at element 2.
        let t = tensor_from(&rebuild(2, &[3, 2], &[1, 3]), &s, &mut (1 << 20)).unwrap();
        assert_eq!(t.shape, vec![3, 2]);
        assert_eq!(t.values, vec![2.0, 5.0, 3.0, 6.0, 4.0, 7.0]);
        // A 0-d tensor and an empty one.
        assert_eq!(tensor_from(&rebuild(11, &[], &[]), &s, &mut (1 << 20)).unwrap().values, vec![11.0]);
        assert!(tensor_from(&rebuild(0, &[0, 4], &[4, 1]), &s, &mut (1 << 20)).unwrap().values.is_empty());
        // Views past the end, overflowing strides.
        for (offset, size, stride) in [
            (12, vec![1], vec![1]),
            (0, vec![13], vec![1]),
            (1, vec![3, 4], vec![4, 1]),
            (0, vec![2, 2], vec![i64::MAX, 1]),
        ] {
            let e = tensor_from(&rebuild(offset, &size, &stride), &s, &mut (1 << 20)).unwrap_err();
            assert!(e.contains("reaches element") || e.contains("overflow") || e.contains("overlapping"), "{e}");
        }
        assert!(tensor_from(&rebuild(-1, &[1], &[1]), &s, &mut (1 << 20)).is_err());
        assert!(tensor_from(&rebuild(0, &[2], &[1, 1]), &s, &mut (1 << 20)).is_err());
        // A stride-0 expansion larger than its storage, and a file over its element budget.
        let e = tensor_from(&rebuild(0, &[1000], &[0]), &s, &mut (1 << 20)).unwrap_err();
        assert!(e.contains("overlapping"), "{e}");
        let mut budget = 10;
        assert!(tensor_from(&rebuild(0, &[6], &[1]), &s, &mut budget).is_ok());
        assert_eq!(budget, 4);
        assert!(tensor_from(&rebuild(0, &[6], &[1]), &s, &mut budget).unwrap_err().contains("max_alloc_bytes"));
        // f64, f16 and bf16 become f32 as PyTorch's .float() does.
        let v = [1.0f64 / 3.0, -2.5];
        let f64s: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = tensor_from(&rebuild(0, &[2], &[1]), &storage(Elem::F64, f64s), &mut (1 << 20)).unwrap();
        assert_eq!(t.values, vec![(1.0f64 / 3.0) as f32, -2.5]);
        let f16s: Vec<u8> =
            [half::f16::from_f32(0.1), half::f16::from_f32(-3.0)].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = tensor_from(&rebuild(0, &[2], &[1]), &storage(Elem::F16, f16s), &mut (1 << 20)).unwrap();
        assert_eq!(t.values, vec![half::f16::from_f32(0.1).to_f32(), -3.0]);
        let bf16s: Vec<u8> = [half::bf16::from_f32(0.1)].iter().flat_map(|x| x.to_le_bytes()).collect();
        let t = tensor_from(&rebuild(0, &[1], &[1]), &storage(Elem::Bf16, bf16s), &mut (1 << 20)).unwrap();
        assert_eq!(t.values, vec![half::bf16::from_f32(0.1).to_f32()]);
        // Integer storages are refused.
        let e = tensor_from(&rebuild(0, &[1], &[1]), &storage(Elem::Other(8), vec![0; 8]), &mut (1 << 20)).unwrap_err();
        assert!(e.contains("not a floating type"), "{e}");
    }

    #[test]
    fn persistent_ids() {
        let g = Value::Global(Rc::new(Global { module: "torch".to_owned(), name: "FloatStorage".to_owned() }));
        let s = |x: &str| Value::Str(Rc::from(x));
        let pid = Value::Tuple(Rc::from(vec![s("storage"), g.clone(), s("0"), s("cuda:0"), Value::Int(4)]));
        assert_eq!(parse_pid(&pid).unwrap().1, "0");
        let meta = Value::Tuple(Rc::from(vec![s("storage"), g.clone(), s("0"), s("meta"), Value::Int(4)]));
        assert!(parse_pid(&meta).unwrap_err().contains("meta"));
        let neg = Value::Tuple(Rc::from(vec![s("storage"), g, s("0"), s("cpu"), Value::Int(-4)]));
        assert!(parse_pid(&neg).is_err());
        assert!(parse_pid(&s("x")).is_err());
        let module = Value::Tuple(Rc::from(vec![s("module"), Value::None]));
        assert!(parse_pid(&module).unwrap_err().contains("state_dict"));
    }
}
