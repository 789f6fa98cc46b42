"""Triton's Python gRPC client, with its defaults, against a running Ferroserve; every answer compared with REST.

Run by tests/grpc/check.sh, which starts the server on 127.0.0.1 over a repository holding the example models
(examples/models) and one model per scikit-learn parity case (tests/fixtures/sklearn/latest):

    python tritonclient_check.py --http 127.0.0.1:PORT --grpc 127.0.0.1:PORT --fixtures tests/fixtures/sklearn/latest

tritonclient.grpc sends tensors as raw_input_contents by default and reads raw_output_contents; the checks:
- liveness, readiness, server and model metadata (compared with REST's);
- inference on the example IsolationForest with FP32, FP64, INT64 and BOOL inputs, and on the LSTM autoencoder;
- every scikit-learn parity case: every method's output equal to REST's answer to the same rows, value for value
  (BYTES outputs for string classes, BOOL for boolean ones), or to scikit-learn's for rows holding NaN;
- BYTES input refused with INVALID_ARGUMENT, an unknown model with NOT_FOUND;
- the repository index, unload and load, and the statistics extension.
Exits non-zero with the failures listed.
"""

import argparse
import glob
import json
import os
import sys
import urllib.error
import urllib.request

import numpy as np
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL {what}", file=sys.stderr)


def rest(http, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{http}{path}", data=data, method=method)
    request.add_header("content-type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def grpc_infer(client, model, x, outputs, datatype=None):
    datatype = datatype or np_to_triton_dtype(x.dtype)
    tensor = grpcclient.InferInput("input-0", list(x.shape), datatype)
    tensor.set_data_from_numpy(x)
    requested = [grpcclient.InferRequestedOutput(o) for o in outputs]
    return client.infer(model, [tensor], outputs=requested or None)


def rest_infer(http, model, x, outputs):
    body = {
        "inputs": [{"name": "input-0", "shape": list(x.shape), "datatype": np_to_triton_dtype(x.dtype), "data": x.tolist()}],
        "outputs": [{"name": o} for o in outputs],
    }
    return rest(http, "POST", f"/v2/models/{model}/infer", body)


def same(got, want_json, datatype, what):
    """gRPC's numpy output against REST's JSON data, value for value."""
    flat = got.reshape(-1)
    if datatype == "BYTES":
        check([v.decode() for v in flat] == want_json, f"{what}: {flat[:5]} vs {want_json[:5]}")
    elif datatype == "FP32":
        check(np.array_equal(flat, np.array(want_json, dtype=np.float32)), f"{what}: {flat[:5]} vs {want_json[:5]}")
    elif datatype == "BOOL":
        check(flat.tolist() == want_json, f"{what}: {flat[:5]} vs {want_json[:5]}")
    else:
        check(flat.tolist() == want_json, f"{what}: {flat[:5]} vs {want_json[:5]}")


def status_of(call):
    try:
        call()
    except InferenceServerException as e:
        return e.status(), e.message()
    return "OK", ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    parser.add_argument("--grpc", required=True)
    parser.add_argument("--fixtures", required=True)
    args = parser.parse_args()
    client = grpcclient.InferenceServerClient(url=args.grpc)

    check(client.is_server_live(), "server live")
    check(client.is_server_ready(), "server ready")
    meta = client.get_server_metadata()
    check(meta.name == "ferroserve" and "model_repository" in meta.extensions, f"server metadata {meta}")

    # The example IsolationForest: metadata as REST's, then FP32 / FP64 / INT64 / BOOL inputs as REST answers them.
    model = "anomaly-detector"
    check(client.is_model_ready(model), "model ready")
    check(client.is_model_ready(model, "1"), "version 1 ready")
    m = client.get_model_metadata(model)
    status, rest_meta = rest(args.http, "GET", f"/v2/models/{model}")
    check(status == 200 and list(m.versions) == rest_meta["versions"] and m.platform == rest_meta["platform"],
          f"model metadata {m} vs {rest_meta}")
    check([(t.name, t.datatype, list(t.shape)) for t in m.inputs]
          == [(t["name"], t["datatype"], t["shape"]) for t in rest_meta["inputs"]], "input metadata")
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 100, size=(16, 6))
    for dtype in (np.float32, np.float64, np.int64, np.bool_):
        x = rows.astype(dtype) if dtype is not np.bool_ else rows > 50
        outputs = ["predict", "score_samples"]
        result = grpc_infer(client, model, x, outputs)
        status, body = rest_infer(args.http, model, x, outputs)
        check(status == 200, f"REST {dtype.__name__}: {body}")
        response = result.get_response()
        check(response.model_version == body["model_version"], f"{dtype.__name__} version")
        for i, name in enumerate(outputs):
            o = body["outputs"][i]
            same(result.as_numpy(name), o["data"], o["datatype"], f"{model} {dtype.__name__} {name}")
            check(list(result.as_numpy(name).shape) == o["shape"], f"{dtype.__name__} {name} shape")
    # A pinned version, and the id echoed.
    tensor = grpcclient.InferInput("input-0", [2, 6], "FP32")
    tensor.set_data_from_numpy(rows[:2].astype(np.float32))
    pinned = client.infer(model, [tensor], model_version="1", request_id="tc-1").get_response()
    check(pinned.model_version == "v1" and pinned.id == "tc-1", f"pinned {pinned.model_version} {pinned.id}")

    # The LSTM autoencoder: windows of 30 minutes of 6 metrics.
    lstm = client.get_model_metadata("lstm-detector")
    shape = [2] + [d if d > 0 else 30 for d in lstm.inputs[0].shape[1:]]
    x = rng.uniform(0, 1, size=shape).astype(np.float32)
    outs = [o.name for o in lstm.outputs]
    tensor = grpcclient.InferInput(lstm.inputs[0].name, shape, "FP32")
    tensor.set_data_from_numpy(x)
    result = client.infer("lstm-detector", [tensor], outputs=[grpcclient.InferRequestedOutput(o) for o in outs])
    body = {"inputs": [{"name": lstm.inputs[0].name, "shape": shape, "datatype": "FP32", "data": x.reshape(-1).tolist()}],
            "outputs": [{"name": o} for o in outs]}
    status, body = rest(args.http, "POST", "/v2/models/lstm-detector/infer", body)
    check(status == 200, f"lstm REST {body}")
    for i, name in enumerate(outs):
        same(result.as_numpy(name), body["outputs"][i]["data"], body["outputs"][i]["datatype"], f"lstm {name}")

    # Every scikit-learn parity case.
    cases = 0
    for path in sorted(glob.glob(os.path.join(args.fixtures, "*.json"))):
        case = json.load(open(path))
        name = case["case"]
        x = np.array([[float(v) for v in row] for row in case["X"]], dtype=np.float64)
        methods = list(case["outputs"])
        result = grpc_infer(client, name, x, methods)
        if np.isnan(x).any():
            # JSON cannot carry NaN: scikit-learn's own outputs instead.
            for method in methods:
                got = result.as_numpy(method).reshape(-1)
                want = np.array(case["outputs"][method], dtype=object).reshape(-1)
                if got.dtype.kind in "fi":
                    check(np.allclose(got.astype(float), want.astype(float), rtol=1e-9, atol=1e-12), f"{name} {method}")
                else:
                    check([g.decode() if isinstance(g, bytes) else g for g in got] == list(want), f"{name} {method}")
            cases += 1
            continue
        status, body = rest_infer(args.http, name, x, methods)
        check(status == 200, f"{name} REST {status} {body}")
        if status != 200:
            continue
        for i, method in enumerate(methods):
            o = body["outputs"][i]
            same(result.as_numpy(method), o["data"], o["datatype"], f"{name} {method}")
            check(list(result.as_numpy(method).shape) == o["shape"], f"{name} {method} shape")
        cases += 1
    check(cases >= 25, f"{cases} scikit-learn cases")
    print(f"{cases} scikit-learn cases equal over gRPC and REST (NaN rows against scikit-learn)")

    # Errors, with Triton's client's view of the codes.
    code, message = status_of(lambda: grpc_infer(client, "nope", rows.astype(np.float32), []))
    check(code == "StatusCode.NOT_FOUND" and "nope" in message, f"unknown model: {code} {message}")
    strings = np.array([[b"a"] * 6], dtype=np.object_)
    code, message = status_of(lambda: grpc_infer(client, model, strings, [], "BYTES"))
    check(code == "StatusCode.INVALID_ARGUMENT", f"BYTES input: {code} {message}")
    code, message = status_of(lambda: grpc_infer(client, model, rows[:, :3].astype(np.float32), []))
    check(code == "StatusCode.INVALID_ARGUMENT", f"3 features: {code} {message}")

    # Repository: index, unload, load.
    index = client.get_model_repository_index()
    names = {m.name for m in index.models}
    check(model in names and "lstm-detector" in names, f"index {names}")
    client.unload_model("ridge")
    check(not client.is_model_ready("ridge"), "ridge unloaded")
    client.load_model("ridge")
    check(client.is_model_ready("ridge"), "ridge loaded again")

    # Statistics: Triton's shape, counting what was sent above.
    stats = client.get_inference_statistics(model, as_json=True)
    rest_status, rest_stats = rest(args.http, "GET", f"/v2/models/{model}/stats")
    check(rest_status == 200, f"REST stats {rest_stats}")
    by_version = {s["version"]: s for s in stats["model_stats"]}
    success = sum(int(s["inference_stats"]["success"].get("count", 0)) for s in by_version.values())
    check(success >= 9, f"statistics success count {success}: {stats}")
    check(sorted(by_version) == sorted(s["version"] for s in rest_stats["model_stats"]), "stats versions")

    if failures:
        print(f"{len(failures)} failure(s)", file=sys.stderr)
        sys.exit(1)
    print("tritonclient.grpc: every check passed")


if __name__ == "__main__":
    main()
