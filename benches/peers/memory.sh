#!/usr/bin/env bash
# Ferroserve's resident memory under a long mixed load: one release server on 127.0.0.1 serving the platform's
# anomaly-detector and predictive-analytics pipelines and the example IsolationForest from one model repository,
# 16 connections at once for DURATION (default 10 minutes):
#   6 × single rows to anomaly-detector over v2 JSON,     4 × single rows to predictive-analytics over KServe v1,
#   2 × single rows to anomaly-detector over gRPC (raw),  2 × 1000-row batches to predictive-analytics (binary),
#   2 × 1000-row batches to the example model (JSON).
# VmRSS is read from /proc every 10 s; the curve goes to OUT (CSV: seconds,rss_kib) and a summary to stdout.
#
#   benches/peers/memory.sh [DURATION] [OUT]     e.g. benches/peers/memory.sh 10m benches/results/memory.csv
#
# The models come from benches/peers/make_model.py (through run.sh's venv, made if missing). The server and the load
# generators are stopped by their PIDs on exit.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
duration=${1:-10m}
out=${2:-benches/results/memory.csv}
results=benches/results
mls=$results/.venv-mlserver
# shellcheck source=tests/venv.sh
source tests/venv.sh
pinned_venv "$mls" benches/peers/requirements-mlserver.txt
cargo build --release --locked -q -p ferroserve -p ferroserve-load
repo=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$repo"
}
trap cleanup EXIT
for kind in example anomaly-detector predictive-analytics; do
  dir=$results/models/$kind
  [[ -f $dir/columns.txt ]] || "$mls/bin/python" benches/peers/make_model.py "$kind" "$dir" >&2
  mkdir -p "$repo/$kind"
  cp "$dir"/model.* "$repo/$kind/"
done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
grpc=$(free_port)
target/release/ferroserve --host 127.0.0.1 --http_port "$http" --grpc_port "$grpc" --model_repository "$repo" \
  >"$results/memory-server.log" 2>&1 &
server=$!
pids+=("$server")
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$server/status"; }
echo "ready: RSS $(rss) KiB" >&2

load() { # port kind args...
  local port=$1 kind=$2
  shift 2
  target/release/ferroserve-load run --url "http://127.0.0.1:$port" --model "$kind" \
    --csv "$results/models/$kind/rows.csv" --columns "$(cat "$results/models/$kind/columns.txt")" \
    --warmup 0s --duration "$duration" "$@" >/dev/null &
  pids+=("$!")
}
load "$http" anomaly-detector --concurrency 6
load "$http" predictive-analytics --concurrency 4 --protocol v1
load "$grpc" anomaly-detector --concurrency 2 --protocol grpc --body binary
load "$http" predictive-analytics --concurrency 2 --rows 1000 --body binary --output predict
load "$http" example --concurrency 2 --rows 1000

echo "seconds,rss_kib" >"$out"
start=$(date +%s)
echo "0,$(rss)" >>"$out"
while true; do
  sleep 10
  alive=0
  for pid in "${pids[@]:1}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
  echo "$(($(date +%s) - start)),$(rss)" >>"$out"
  [[ $alive == 1 ]] || break
done
answered=$(curl -sf "http://127.0.0.1:$http/metrics" | awk '/^kserve_inference_requests_total\{/ {s += $2} END {print s + 0}')
python3 - "$out" "$answered" <<'PY'
import csv, sys
rows = [(int(s), int(k)) for s, k in list(csv.reader(open(sys.argv[1])))[1:]]
mib = lambda k: k / 1024
peak = max(rows, key=lambda r: r[1])
print(f"requests answered: {int(float(sys.argv[2]))}")
print(f"RSS at start of load {mib(rows[0][1]):.1f} MiB, peak {mib(peak[1]):.1f} MiB at {peak[0]} s, "
      f"after {rows[-1][0]} s {mib(rows[-1][1]):.1f} MiB")
step = max(1, len(rows) // 12)
print("| seconds | RSS MiB |\n| ---: | ---: |")
for s, k in rows[::step] + ([rows[-1]] if (len(rows) - 1) % step else []):
    print(f"| {s} | {mib(k):.1f} |")
PY
