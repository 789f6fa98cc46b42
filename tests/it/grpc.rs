//! The Open Inference Protocol over gRPC on every scikit-learn parity fixture: the same server answers
//! the same rows over gRPC (raw contents, as Triton's client sends them, and typed contents) and over
//! REST, and the outputs are identical, value for value; rows with NaN, which JSON cannot carry, are
//! compared with scikit-learn's own outputs.

use std::path::Path;

use ferroserve::grpc::proto::model_infer_request::{InferInputTensor, InferRequestedOutputTensor};
use ferroserve::grpc::proto::{InferTensorContents, ModelInferRequest, ModelInferResponse};
use prost::bytes::Bytes;
use serde_json::{Value, json};

use crate::client::Server;

/// The outputs' values as JSON numbers and strings, flat, whichever way the response carries them.
fn values(r: &ModelInferResponse, i: usize) -> Vec<Value> {
    let o = &r.outputs[i];
    let le = |n: usize| -> Vec<[u8; 8]> {
        r.raw_output_contents[i]
            .chunks_exact(n)
            .map(|c| {
                let mut a = [0; 8];
                a[..n].copy_from_slice(c);
                a
            })
            .collect()
    };
    match (&o.contents, o.datatype.as_str()) {
        (Some(c), "INT64") => c.int64_contents.iter().map(|v| json!(v)).collect(),
        (Some(c), "FP32") => c.fp32_contents.iter().map(|v| json!(v)).collect(),
        (Some(c), "FP64") => c.fp64_contents.iter().map(|v| json!(v)).collect(),
        (Some(c), "BOOL") => c.bool_contents.iter().map(|v| json!(v)).collect(),
        (Some(c), "BYTES") => c.bytes_contents.iter().map(|v| json!(String::from_utf8(v.clone()).unwrap())).collect(),
        (None, "INT64") => le(8).into_iter().map(|b| json!(i64::from_le_bytes(b))).collect(),
        (None, "FP64") => le(8).into_iter().map(|b| json!(f64::from_le_bytes(b))).collect(),
        (None, "FP32") => le(4).into_iter().map(|b| json!(f32::from_le_bytes(b[..4].try_into().unwrap()))).collect(),
        (None, "BOOL") => r.raw_output_contents[i].iter().map(|b| json!(*b != 0)).collect(),
        (None, "BYTES") => {
            let mut out = Vec::new();
            let mut rest = &r.raw_output_contents[i][..];
            while let Some((len, tail)) = rest.split_first_chunk::<4>() {
                let (s, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
                out.push(json!(String::from_utf8(s.to_vec()).unwrap()));
                rest = tail;
            }
            out
        }
        (_, other) => panic!("output {} of datatype {other}", o.name),
    }
}

fn flatten(v: &Value, out: &mut Vec<Value>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other.clone()),
    }
}

/// Every estimator of every parity set, served from one repository; each case asked with all its methods.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_estimator_answers_over_grpc_as_over_rest() {
    let mut compared = 0;
    let mut nan_cases = 0;
    for set in ["1.3", "1.8", "latest"] {
        let root = tempfile::tempdir().unwrap();
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sklearn").join(set);
        let mut cases = Vec::new();
        for entry in std::fs::read_dir(&fixtures).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "json") {
                let case: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                let name = case["case"].as_str().unwrap().to_owned();
                let file = case["files"][0].as_str().unwrap();
                let target = if file.ends_with(".joblib") { "model.joblib" } else { "model.pkl" };
                let dst = root.path().join(&name).join(target);
                std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
                std::fs::copy(fixtures.join(file), dst).unwrap();
                cases.push((name, case));
            }
        }
        assert!(cases.len() >= 25, "{set}: {} cases", cases.len());
        let server = Server::start(&["--model_repository", root.path().to_str().unwrap()]).await;
        let mut grpc = server.grpc().await;
        for (name, case) in &cases {
            let mut x = Vec::new();
            flatten(&case["X"], &mut x);
            let rows = case["X"].as_array().unwrap().len();
            let cols = x.len() / rows;
            let has_nan = x.iter().any(Value::is_string);
            let values_f64: Vec<f64> =
                x.iter().map(|v| v.as_f64().unwrap_or_else(|| v.as_str().unwrap().parse().unwrap())).collect();
            let methods: Vec<&String> = case["outputs"].as_object().unwrap().keys().collect();
            let outputs: Vec<InferRequestedOutputTensor> = methods
                .iter()
                .map(|m| InferRequestedOutputTensor { name: (*m).clone(), parameters: Default::default() })
                .collect();
            let tensor = |contents| InferInputTensor {
                name: "input-0".into(),
                datatype: "FP64".into(),
                shape: vec![rows as i64, cols as i64],
                parameters: Default::default(),
                contents,
            };
            let raw = ModelInferRequest {
                model_name: name.clone(),
                inputs: vec![tensor(None)],
                outputs: outputs.clone(),
                raw_input_contents: vec![Bytes::from(
                    values_f64.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>(),
                )],
                ..Default::default()
            };
            let typed = ModelInferRequest {
                model_name: name.clone(),
                inputs: vec![tensor(Some(InferTensorContents {
                    fp64_contents: values_f64.clone(),
                    ..Default::default()
                }))],
                outputs,
                ..Default::default()
            };
            let raw = grpc.model_infer(raw).await.unwrap_or_else(|e| panic!("{set}/{name}: {e}")).into_inner();
            let typed = grpc.model_infer(typed).await.unwrap_or_else(|e| panic!("{set}/{name}: {e}")).into_inner();
            assert_eq!(raw.raw_output_contents.len(), methods.len(), "{set}/{name}: raw in, raw out");
            assert!(typed.raw_output_contents.is_empty(), "{set}/{name}: typed in, typed out");

            if has_nan {
                // JSON cannot carry NaN: compare with scikit-learn directly.
                nan_cases += 1;
                for (i, method) in methods.iter().enumerate() {
                    let mut want = Vec::new();
                    flatten(&case["outputs"][method.as_str()], &mut want);
                    for got in [values(&raw, i), values(&typed, i)] {
                        assert_eq!(got.len(), want.len(), "{set}/{name} {method}");
                        for (g, w) in got.iter().zip(&want) {
                            match (g.as_f64(), w.as_f64()) {
                                (Some(g), Some(w)) => {
                                    assert!(
                                        (g - w).abs() <= 1e-9 * w.abs().max(1e-3),
                                        "{set}/{name} {method}: {g} vs {w}"
                                    )
                                }
                                _ => assert_eq!(g, w, "{set}/{name} {method}"),
                            }
                        }
                    }
                }
                continue;
            }
            let request = json!({
                "inputs": [{"name": "input-0", "shape": [rows, cols], "datatype": "FP64", "data": case["X"]}],
                "outputs": methods.iter().map(|m| json!({"name": m})).collect::<Vec<_>>(),
            });
            let (status, rest) = server.post(&format!("/v2/models/{name}/infer"), &request).await;
            assert_eq!(status, 200, "{set}/{name}: {rest}");
            for (i, method) in methods.iter().enumerate() {
                let want = &rest["outputs"][i];
                for got in [&raw, &typed] {
                    let o = &got.outputs[i];
                    assert_eq!(
                        (json!(o.name), json!(o.datatype), json!(o.shape)),
                        (want["name"].clone(), want["datatype"].clone(), want["shape"].clone()),
                        "{set}/{name} {method}"
                    );
                    // REST writes FP32 as its shortest f32 text: compare FP32 as f32.
                    let got = values(got, i);
                    let want_data = want["data"].as_array().unwrap();
                    if o.datatype == "FP32" {
                        let as_f32 = |v: &Value| v.as_f64().unwrap() as f32;
                        assert_eq!(
                            got.iter().map(as_f32).collect::<Vec<_>>(),
                            want_data.iter().map(as_f32).collect::<Vec<_>>(),
                            "{set}/{name} {method}"
                        );
                    } else {
                        assert_eq!(&got, want_data, "{set}/{name} {method}: identical to REST");
                    }
                }
            }
            compared += 1;
        }
        server.stop().await;
    }
    assert!(compared >= 75, "{compared} cases compared with REST");
    assert!(nan_cases >= 3, "{nan_cases} NaN cases compared with scikit-learn");
}
