//! The manifests in `servingruntime-manifests/` against the real CLI and KServe's real CRD schemas.
//!
//! - every container arg of the ServingRuntimes parses with `ferroserve`'s own `Args`, so the manifest
//!   and the binary cannot drift apart;
//! - every manifest validates against the `openAPIV3Schema` of KServe v0.20.0's CRDs (types, required
//!   fields, enums, and no unknown fields, which Kubernetes would silently prune). The CRDs are read
//!   from `$KSERVE_CRD_DIR`; that test is `#[ignore]`d (cargo reports it as ignored, with the reason) and
//!   `.ci/run` runs it with `--ignored` where the CRDs are available.

use std::path::{Path, PathBuf};

use clap::Parser;
use serde_json::Value;

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../servingruntime-manifests")
}

/// The YAML files under `dir`, recursively, sorted.
fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(yaml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// Every YAML document of every manifest file (sub-folders included), with its path below the folder.
fn manifests() -> Vec<(String, Value)> {
    let root = manifests_dir();
    let mut out = Vec::new();
    for file in yaml_files(&root) {
        let text = std::fs::read_to_string(&file).unwrap();
        let name = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        for doc in serde_yaml_ng::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(doc).unwrap();
            if !value.is_null() {
                out.push((name.clone(), value));
            }
        }
    }
    out
}

/// The runtime's own container args (as the ServingRuntime gives them), for appending an InferenceService's.
fn runtime_args() -> Vec<String> {
    let (_, runtime) = manifests().into_iter().find(|(f, _)| f == "servingruntime.yaml").unwrap();
    runtime["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().replace("{{.Name}}", "anomaly-detector"))
        .collect()
}

#[test]
fn inference_service_args_parse_after_the_runtime_args() {
    // KServe appends the InferenceService's `args` to the ServingRuntime's: together they must parse.
    let mut checked = 0;
    for (file, doc) in manifests() {
        if doc["kind"] != "InferenceService" {
            continue;
        }
        let predictors = std::iter::once(&doc["spec"]["predictor"])
            .chain(doc["spec"]["canary"].as_array().into_iter().flatten().map(|c| &c["predictor"]));
        for predictor in predictors {
            let Some(extra) = predictor["model"]["args"].as_array() else { continue };
            let args = runtime_args().into_iter().chain(extra.iter().map(|a| a.as_str().unwrap().to_owned()));
            let parsed = ferroserve::config::Args::try_parse_from(std::iter::once("ferroserve".to_owned()).chain(args))
                .unwrap_or_else(|e| panic!("{file}: args do not parse: {e}"));
            ferroserve::config::Config::try_from(parsed).unwrap_or_else(|e| panic!("{file}: {e}"));
            checked += 1;
        }
    }
    assert!(checked >= 1, "the in-process rollout passes args");
}

#[test]
fn the_example_serving_json_is_valid() {
    let dir = manifests_dir().join("rollout/in-process");
    let config = ferroserve_formats::serving::ServingConfig::read(&dir).unwrap().expect("serving.json");
    assert_eq!(config.default.as_deref(), Some("v1"));
    assert_eq!(config.canary.map(|c| (c.version, c.percent)), Some(("v2".to_owned(), 10)));
}

#[test]
fn serving_runtime_args_parse_with_the_real_cli() {
    let mut checked = 0;
    for (file, doc) in manifests() {
        let kind = doc["kind"].as_str().unwrap_or_default();
        if !kind.ends_with("ServingRuntime") {
            continue;
        }
        for c in doc["spec"]["containers"].as_array().unwrap() {
            assert_eq!(c["name"], "kserve-container", "{file}: KServe requires the container name");
            let args: Vec<String> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap().replace("{{.Name}}", "anomaly-detector"))
                .collect();
            let parsed = ferroserve::config::Args::try_parse_from(std::iter::once("ferroserve".to_owned()).chain(args))
                .unwrap_or_else(|e| panic!("{file}: args do not parse: {e}"));
            let config = ferroserve::config::Config::try_from(parsed).unwrap();
            assert_eq!(config.http_port, 8080, "{file}");
            // Readiness is REST's /v2/health/ready, or grpc.health.v1 on the gRPC port.
            let probe = &c["readinessProbe"];
            assert!(
                probe["httpGet"]["path"] == "/v2/health/ready" || probe["grpc"]["port"] == config.grpc_port,
                "{file}: {probe}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "expected a ServingRuntime and a ClusterServingRuntime");
}

/// KServe's runtime choice for every InferenceService here: the protocol it asks for (`protocolVersion`,
/// v1 when unset) and its model format must be ones Ferroserve's ServingRuntime declares, and without a
/// `runtime` the format must be auto-selected (KServe lists the namespace's runtimes before cluster ones).
#[test]
fn every_inference_service_selects_ferroserve() {
    let docs = manifests();
    let runtime = |name: &str| {
        docs.iter()
            .find(|(_, d)| d["kind"] == "ServingRuntime" && d["metadata"]["name"] == name)
            .map(|(_, d)| d["spec"].clone())
            .unwrap_or_else(|| panic!("no ServingRuntime {name}"))
    };
    let protocols = |spec: &Value| -> Vec<String> {
        spec["protocolVersions"].as_array().unwrap().iter().filter_map(|v| v.as_str().map(str::to_owned)).collect()
    };
    let default = protocols(&runtime("ferroserve"));
    assert!(default.iter().any(|p| p == "v1") && default.iter().any(|p| p == "v2"), "{default:?}");
    let mut unset = 0;
    let mut grpc = 0;
    for (file, doc) in &docs {
        if doc["kind"] != "InferenceService" {
            continue;
        }
        for component in ["predictor", "canary"] {
            let model = &doc["spec"][component]["model"];
            if !model.is_object() {
                continue;
            }
            let protocol = model["protocolVersion"].as_str().unwrap_or("v1");
            unset += usize::from(model["protocolVersion"].is_null());
            grpc += usize::from(protocol == "grpc-v2");
            let name = model["runtime"].as_str().unwrap_or("ferroserve");
            assert!(name.starts_with("ferroserve"), "{file}: runtime {name}");
            let spec = runtime(name);
            assert!(
                protocols(&spec).iter().any(|p| p == protocol),
                "{file}: protocol {protocol} is not declared by runtime {name}"
            );
            let format = model["modelFormat"]["name"].as_str().unwrap();
            let supported = spec["supportedModelFormats"].as_array().unwrap().iter().find(|f| f["name"] == format);
            let supported = supported.unwrap_or_else(|| panic!("{file}: format {format} is not supported by {name}"));
            if model["runtime"].is_null() {
                assert_eq!(supported["autoSelect"], true, "{file}: {format} is not auto-selected");
            }
        }
    }
    assert!(unset >= 1, "the platform's InferenceService leaves protocolVersion unset");
    assert!(grpc >= 1, "an InferenceService asks for grpc-v2");
}

/// The gRPC runtime as KServe routes to it: `grpc-v2` declared, the one container port named `h2c` (KServe and
/// Knative send HTTP/2 cleartext to it) and equal to `--grpc_port`, gRPC health probes on it, and formats that
/// are never auto-selected, so that the REST runtime stays the default.
#[test]
fn the_grpc_runtime_declares_its_port_as_kserve_expects() {
    let (file, doc) = manifests()
        .into_iter()
        .find(|(_, d)| d["kind"] == "ServingRuntime" && d["metadata"]["name"] == "ferroserve-grpc")
        .expect("servingruntime-grpc.yaml");
    let spec = &doc["spec"];
    assert!(spec["protocolVersions"].as_array().unwrap().iter().any(|p| p == "grpc-v2"), "{file}");
    let c = &spec["containers"][0];
    let args = c["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().replace("{{.Name}}", "m"));
    let parsed =
        ferroserve::config::Args::try_parse_from(std::iter::once("ferroserve".to_owned()).chain(args)).unwrap();
    let config = ferroserve::config::Config::try_from(parsed).unwrap();
    let ports = c["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1, "{file}: Knative routes one port per container");
    assert_eq!(ports[0]["name"], "h2c", "{file}");
    assert_eq!(ports[0]["containerPort"], config.grpc_port, "{file}");
    assert_eq!(c["readinessProbe"]["grpc"]["port"], config.grpc_port, "{file}");
    assert_eq!(c["livenessProbe"]["grpc"]["service"], "live", "{file}");
    for format in spec["supportedModelFormats"].as_array().unwrap() {
        assert_eq!(format["autoSelect"], false, "{file}: {format}");
    }
}

/// Validates `value` against a Kubernetes structural schema; returns every violation with its path.
fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if schema.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true) {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            errors.push(format!("{path}: expected an integer or a string"));
        }
        return;
    }
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        errors.push(format!("{path}: {value} is not one of {options:?}"));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("object") => {
            let Some(obj) = value.as_object() else {
                errors.push(format!("{path}: expected an object"));
                return;
            };
            for req in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
                let key = req.as_str().unwrap_or_default();
                if !obj.contains_key(key) {
                    errors.push(format!("{path}: missing required field `{key}`"));
                }
            }
            let props = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema.get("x-kubernetes-preserve-unknown-fields").and_then(Value::as_bool) == Some(true);
            for (key, v) in obj {
                let sub = format!("{path}.{key}");
                match (props.and_then(|p| p.get(key)), additional) {
                    (Some(s), _) => validate(s, v, &sub, errors),
                    (None, Some(s)) if s.is_object() => validate(s, v, &sub, errors),
                    (None, _) if preserve || props.is_none() => {}
                    (None, _) => errors.push(format!("{sub}: unknown field (Kubernetes would drop it)")),
                }
            }
        }
        Some("array") => match (value.as_array(), schema.get("items")) {
            (Some(items), Some(s)) => {
                for (i, v) in items.iter().enumerate() {
                    validate(s, v, &format!("{path}[{i}]"), errors);
                }
            }
            (Some(_), None) => {}
            (None, _) => errors.push(format!("{path}: expected an array")),
        },
        Some("string") if !value.is_string() => errors.push(format!("{path}: expected a string")),
        Some("integer") if !(value.is_i64() || value.is_u64()) => errors.push(format!("{path}: expected an integer")),
        Some("boolean") if !value.is_boolean() => errors.push(format!("{path}: expected a boolean")),
        Some("number") if !value.is_number() => errors.push(format!("{path}: expected a number")),
        _ => {}
    }
}

/// The schema of `kind` at `version` from the CRD files in `dir`.
fn crd_schema(dir: &Path, kind: &str, version: &str) -> Option<Value> {
    for entry in std::fs::read_dir(dir).ok()? {
        let path = entry.ok()?.path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        let crd: Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&path).ok()?).ok()?;
        if crd["spec"]["names"]["kind"] != kind {
            continue;
        }
        for v in crd["spec"]["versions"].as_array()? {
            if v["name"] == version {
                return Some(v["schema"]["openAPIV3Schema"].clone());
            }
        }
    }
    None
}

#[test]
#[ignore = "needs KServe v0.20.0's CRDs in $KSERVE_CRD_DIR; .ci/run runs it with --ignored"]
fn manifests_validate_against_kserve_crds() {
    let dir = std::env::var_os("KSERVE_CRD_DIR")
        .expect("KSERVE_CRD_DIR names the folder of KServe's CRD YAML files (serving.kserve.io_*.yaml)");
    let dir = PathBuf::from(dir);
    let mut checked = 0;
    for (file, doc) in manifests() {
        let (Some(api), Some(kind)) = (doc["apiVersion"].as_str(), doc["kind"].as_str()) else { continue };
        let Some(version) = api.strip_prefix("serving.kserve.io/") else { continue };
        let schema = crd_schema(&dir, kind, version).unwrap_or_else(|| panic!("{file}: no CRD for {kind} {version}"));
        let mut errors = Vec::new();
        validate(&schema, &doc, kind, &mut errors);
        assert!(errors.is_empty(), "{file} does not validate against KServe's {kind} schema:\n{}", errors.join("\n"));
        checked += 1;
    }
    assert!(checked >= 12, "expected the runtimes, the InferenceServices and the rollout steps, got {checked}");
}

#[test]
fn the_schema_check_catches_mistakes() {
    // The validator itself must fail on a typo, a wrong type and a missing required field.
    let schema: Value = serde_json::json!({
        "type": "object", "required": ["name"],
        "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}
    });
    let mut errors = Vec::new();
    validate(&schema, &serde_json::json!({"port": "8080", "nmae": "x"}), "x", &mut errors);
    assert_eq!(errors.len(), 3, "{errors:?}");
}
