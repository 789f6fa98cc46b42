"""The HTTP and gRPC section of docs/benchmarks.md from a run of benches/peers/run.sh."""

import glob
import json
import os
import platform
import subprocess
import sys

results, table, warmup, duration = sys.argv[1:5]
runs = {}
for f in glob.glob(os.path.join(results, "runs", "*.json")):
    r = json.load(open(f))
    scenario = os.path.basename(f).rsplit("-", 1)[0]
    runs.setdefault(scenario, {})[r["label"]] = r


def ratio(scenario, key="throughput_rps"):
    s = runs.get(scenario, {})
    f, m = s.get("ferroserve"), s.get("mlserver")
    if not f or not m or not m[key]:
        return "n/a"
    return f"{f[key] / m[key]:.0f}×"


def grpc_vs_rest():
    pairs = []
    for c, rest in ((1, "1-row-c1"), (8, "2-row-c8"), (16, "3-row-c16")):
        g = runs.get(f"7-row-c{c}-grpc", {}).get("ferroserve")
        r = runs.get(rest, {}).get("ferroserve")
        if g and r and r["throughput_rps"]:
            pairs.append(f"{c} conn {g['throughput_rps']:.0f} vs {r['throughput_rps']:.0f} req/s "
                         f"({g['throughput_rps'] / r['throughput_rps']:.2f}×)")
    return "; ".join(pairs) or "n/a"


cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
rss = open(os.path.join(results, "ferroserve-rss-kib")).read().strip()
single = runs.get("3-row-c16", {}).get("ferroserve", {})
print(f"""## HTTP serving: Ferroserve vs MLServer vs KServe

One run of `benches/peers/run.sh` ({warmup} warm-up, {duration} per scenario): the same scikit-learn `model.joblib`
(IsolationForest, 100 trees, fitted on `examples/data/metrics.csv` by `benches/peers/make_model.py`) served by
Ferroserve (release build, default flags), MLServer 1.7.1 (`mlserver_sklearn`), and KServe 0.16's Python
`ModelServer` (`benches/peers/kserve_sklearn.py`: KServe's sklearnserver is not on PyPI, so the same load-and-predict
model class), one server at a time; and `http-floor`, an axum handler answering a fixed v2 response (no model), for
the HTTP limit of this machine. The load comes from `ferroserve-load` on the same machine: {platform.machine()},
{os.cpu_count()} vCPUs ({cpu}), load average before the report {' '.join(load)}. Server and load generator share the
two cores, so every figure is lower than either would reach alone.

{table}

MLServer and KServe's Python server do not take Triton's binary tensor extension on REST, so they have no binary row.

- Single row, 16 connections: Ferroserve {ratio('3-row-c16')} MLServer's throughput, p99
  {single.get('latency_ms', {}).get('p99', float('nan')):.2f} ms (goals: ≥ 100×, p99 < 2 ms).
- 1000-row batches, JSON: {ratio('5-batch1000-json', 'rows_per_s')} MLServer's rows/s (goal ≥ 20×).
- Single row over gRPC (raw tensors, `7-row-c*-grpc`) against REST (JSON) in the same run, Ferroserve: {grpc_vs_rest()}.
- Ferroserve's resident memory after the run: {int(rss) / 1024:.1f} MiB (goal < 50 MB); start to ready: see
  [operations.md](operations.md#cold-start).

![latency percentiles](benchmarks/latency.svg)
""")
