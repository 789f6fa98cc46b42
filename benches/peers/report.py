"""One model's section of docs/benchmarks.md from a run of benches/peers/run.sh.

    python report.py RUNS_DIR KIND TABLE WARMUP DURATION
"""

import glob
import json
import os
import platform
import subprocess
import sys

runs_dir, kind, table, warmup, duration = sys.argv[1:6]
runs = {}
for f in glob.glob(os.path.join(runs_dir, "*.json")):
    r = json.load(open(f))
    scenario = os.path.basename(f).rsplit("-", 1)[0]
    runs.setdefault(scenario, {})[r["label"]] = r


def get(scenario, label):
    return runs.get(scenario, {}).get(label)


def ratio(scenario, key="throughput_rps", against=("mlserver", None), of="ferroserve", fmt="{:.0f}×"):
    """`of`'s figure over `against`'s: (label, scenario or None for the same one)."""
    f = get(scenario, of)
    m = get(against[1] or scenario, against[0])
    if not f or not m or not m[key]:
        return "n/a"
    return fmt.format(f[key] / m[key])


def rps(scenario, label="ferroserve"):
    r = get(scenario, label)
    return f"{r['throughput_rps']:.0f} req/s" if r else "n/a"


def p(scenario, q, label="ferroserve"):
    r = get(scenario, label)
    return f"{r['latency_ms'][q]:.3f} ms" if r else "n/a"


def grpc_vs_rest():
    pairs = []
    for c, rest in ((1, "1-row-c1"), (8, "2-row-c8"), (16, "3-row-c16")):
        g, r = get(f"7-row-c{c}-grpc", "ferroserve"), get(rest, "ferroserve")
        if g and r and r["throughput_rps"]:
            pairs.append(f"{c} conn {g['throughput_rps']:.0f} vs {r['throughput_rps']:.0f} req/s "
                         f"({g['throughput_rps'] / r['throughput_rps']:.2f}×)")
    return "; ".join(pairs) or "n/a"


cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[:3]
rss_file = os.path.join(runs_dir, "ferroserve-rss-kib")
rss = int(open(rss_file).read().strip()) / 1024 if os.path.exists(rss_file) else float("nan")
machine = (f"{platform.machine()}, {os.cpu_count()} vCPUs ({cpu}), load average before the report {' '.join(load)}")
harness = (f"One run of `benches/peers/run.sh` ({warmup} warm-up, {duration} per scenario), one server at a time, "
           f"the load from `ferroserve-load` on the same machine ({machine}); server and load generator share the "
           f"cores, so every figure is lower than either would reach alone.")

if kind == "example":
    single = get("3-row-c16", "ferroserve") or {}
    print(f"""## HTTP serving: Ferroserve vs MLServer vs KServe

{harness} The same scikit-learn `model.joblib` (IsolationForest, 100 trees, fitted on `examples/data/metrics.csv` by
`benches/peers/make_model.py example`) served by Ferroserve (release build, default flags), MLServer 1.7.1
(`mlserver_sklearn`), and KServe 0.16's Python `ModelServer` (`benches/peers/kserve_sklearn.py`: KServe's
sklearnserver is not on PyPI, so the same load-and-predict model class); and `http-floor`, an axum handler answering a
fixed v2 response (no model), for the HTTP limit of this machine.

{table}

MLServer and KServe's Python server do not take Triton's binary tensor extension on REST, so they have no binary row.

- Single row, 16 connections: Ferroserve {ratio('3-row-c16')} MLServer's throughput, p99
  {single.get('latency_ms', {}).get('p99', float('nan')):.2f} ms (goals: ≥ 100×, p99 < 2 ms).
- 1000-row batches, JSON: {ratio('5-batch1000-json', 'rows_per_s')} MLServer's rows/s (goal ≥ 20×).
- Single row over gRPC (raw tensors, `7-row-c*-grpc`) against REST (JSON) in the same run, Ferroserve: {grpc_vs_rest()}.
- Ferroserve's resident memory after the run: {rss:.1f} MiB (goal < 50 MB); start to ready: see
  [operations.md](operations.md#cold-start).

![latency percentiles](benchmarks/latency.svg)
""")
elif kind == "anomaly-detector":
    print(f"""### The platform's anomaly-detector

`benches/peers/make_model.py anomaly-detector`: `joblib.dump` of `Pipeline([RobustScaler(), IsolationForest(200
trees)])` fitted on 45 features (5 metrics × value, 5-minute mean/std/min/max, lags 1 and 5, diff, pct_change), the
same `model.pkl` for every server. {harness}

{table}

| goal | measured | ratio |
| --- | --- | --- |
| single row, 16 connections, ≥ 60 % of the HTTP floor | {rps('3-row-c16')} vs floor {rps('3-row-c16', 'floor')} | {ratio('3-row-c16', against=('floor', None), fmt='{:.0%}')} |
| single row, 16 connections, p99 < 2 ms | p99 {p('3-row-c16', 'p99')} | |
| 1000-row batches, JSON, ≥ 20× MLServer's rows/s | | {ratio('5-batch1000-json', 'rows_per_s', fmt='{:.1f}×')} |
| 1000-row batches, binary (REST), ≥ 30× MLServer's JSON | | {ratio('6-batch1000-binary', 'rows_per_s', against=('mlserver', '5-batch1000-json'), fmt='{:.1f}×')} |
| 1000-row batches, gRPC raw, ≥ 30× MLServer's JSON | | {ratio('6-batch1000-grpc', 'rows_per_s', against=('mlserver', '5-batch1000-json'), fmt='{:.1f}×')} |
| KServe v1, 16 connections, within 10 % of v2 | {rps('3-row-c16-v1')} vs {rps('3-row-c16')} | {ratio('3-row-c16-v1', against=('ferroserve', '3-row-c16'), fmt='{:.2f}×')} |
| gRPC raw, 16 connections (one each), within 10 % of v2 | {rps('7-row-c16-grpc')} vs {rps('3-row-c16')} | {ratio('7-row-c16-grpc', against=('ferroserve', '3-row-c16'), fmt='{:.2f}×')} |

Ferroserve's resident memory after its scenarios: {rss:.1f} MiB.
""")
else:
    print(f"""### The platform's predictive-analytics

`benches/peers/make_model.py predictive-analytics`: `joblib.dump` of `Pipeline([StandardScaler(),
MultiOutputRegressor(XGBRegressor(n_estimators=100, max_depth=10))])`, 30 features → 5 targets, the same `model.pkl`
for every server (XGBoost 3.2 inside the pickle). {harness}

{table}

| goal | measured | ratio |
| --- | --- | --- |
| single row through HTTP, p50 < 0.2 ms | p50 {p('1-row-c1', 'p50')} at 1 connection, {p('3-row-c16', 'p50')} at 16 | |
| 1000-row batches, JSON, ≥ 20× MLServer's rows/s | | {ratio('5-batch1000-json', 'rows_per_s', fmt='{:.1f}×')} |
| 1000-row batches, binary (REST), against MLServer's JSON | | {ratio('6-batch1000-binary', 'rows_per_s', against=('mlserver', '5-batch1000-json'), fmt='{:.1f}×')} |
| KServe v1, 16 connections, within 10 % of v2 | {rps('3-row-c16-v1')} vs {rps('3-row-c16')} | {ratio('3-row-c16-v1', against=('ferroserve', '3-row-c16'), fmt='{:.2f}×')} |
| gRPC raw, 16 connections (one each), within 10 % of v2 | {rps('7-row-c16-grpc')} vs {rps('3-row-c16')} | {ratio('7-row-c16-grpc', against=('ferroserve', '3-row-c16'), fmt='{:.2f}×')} |

Ferroserve's resident memory after its scenarios: {rss:.1f} MiB.
""")
