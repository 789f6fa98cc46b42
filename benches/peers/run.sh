#!/usr/bin/env bash
# Ferroserve, MLServer and KServe's Python server serving the same model file, and the HTTP floor, loaded by the same
# harness in one run (REST, KServe v1 and the Open Inference Protocol over gRPC); writes each model's table into
# docs/benchmarks.md (and the example's latency plot).
#
#   benches/peers/run.sh                     every model, full run (2 s warm-up, 10 s per scenario; about 25 minutes)
#   benches/peers/run.sh --quick             smoke run (0.5 s warm-up, 2 s per scenario)
#   benches/peers/run.sh --models a,b        only these models (example, anomaly-detector, predictive-analytics)
#
# Models (benches/peers/make_model.py): `example`, an IsolationForest on the example data's 6 metrics; the platform's
# `anomaly-detector` (Pipeline(RobustScaler, IsolationForest 200 trees), 45 features) and `predictive-analytics`
# (Pipeline(StandardScaler, MultiOutputRegressor(5 x XGBRegressor 100 trees, depth 10)), 30 features).
#
# Installs pinned venvs under benches/results/ (git-ignored). Every server listens on 127.0.0.1 and is stopped by
# its PID on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
warmup=2s
duration=10s
models=example,anomaly-detector,predictive-analytics
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) warmup=500ms duration=2s ;;
    --models) models=$2; shift ;;
    *) echo "unknown argument $1 (--quick, --models a,b)" >&2; exit 2 ;;
  esac
  shift
done
results=benches/results
mkdir -p "$results/runs" "$results/mlserver"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=tests/venv.sh
source tests/venv.sh

echo "building" >&2
cargo build --release --locked -q -p ferroserve -p ferroserve-load
mls=$results/.venv-mlserver
ksv=$results/.venv-kserve
pinned_venv "$mls" benches/peers/requirements-mlserver.txt
pinned_venv "$ksv" benches/peers/requirements-kserve.txt


free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # port
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 never got ready" >&2
  return 1
}

load() { # label port model scenario-name args...   ($dir: the model's folder, with rows.csv and columns.txt)
  local label=$1 port=$2 model=$3 name=$4
  shift 4
  target/release/ferroserve-load run --url "http://127.0.0.1:$port" --model "$model" --label "$label" \
    --csv "$dir/rows.csv" --columns "$(cat "$dir/columns.txt")" --warmup "$warmup" --duration "$duration" \
    --out "$results/runs/$kind/$name-$label.json" "$@" | tail -1
}

scenarios() { # label port model binary(yes|no) grpc-port
  local label=$1 port=$2 model=$3 gport=$5
  if [[ $kind != example ]]; then
    platform_scenarios "$@"
    return
  fi
  load "$label" "$port" "$model" 1-row-c1 --concurrency 1
  if [[ $label == ferroserve ]]; then
    # The same single row over KServe v1 (`/v1/models/{m}:predict`); a build without v1 skips it, not the run.
    load "$label" "$port" "$model" 1-row-c1-v1 --concurrency 1 --protocol v1 ||
      echo "$label: no KServe v1 answer, v1 scenario skipped" >&2
  fi
  load "$label" "$port" "$model" 2-row-c8 --concurrency 8
  load "$label" "$port" "$model" 3-row-c16 --concurrency 16
  load "$label" "$port" "$model" 4-row-open100 --mode open --rate 100
  load "$label" "$port" "$model" 5-batch1000-json --concurrency 2 --rows 1000
  if [[ $4 == yes ]]; then
    load "$label" "$port" "$model" 6-batch1000-binary --concurrency 2 --rows 1000 --body binary --output predict
  fi
  if [[ $label == ferroserve || $label == mlserver ]]; then
    # The same single row over gRPC ModelInfer, raw tensors as Triton's client sends them, one HTTP/2 connection per
    # closed-loop connection; a server whose gRPC does not answer skips these, not the run.
    for c in 1 8 16; do
      load "$label" "$gport" "$model" "7-row-c$c-grpc" --concurrency "$c" --protocol grpc --body binary ||
        echo "$label: no gRPC answer, gRPC scenario c$c skipped" >&2
    done
  fi
}

# The platform's models: the goals' scenarios (single row at 1 and 16 connections over v2, v1 and gRPC; 1000-row
# batches in JSON and binary); the floor answers the same 16-connection single rows.
platform_scenarios() { # label port model binary(yes|no) grpc-port
  local label=$1 port=$2 model=$3 gport=$5
  load "$label" "$port" "$model" 3-row-c16 --concurrency 16
  [[ $label == floor ]] && return
  load "$label" "$port" "$model" 1-row-c1 --concurrency 1
  load "$label" "$port" "$model" 5-batch1000-json --concurrency 2 --rows 1000
  if [[ $label == ferroserve ]]; then
    load "$label" "$port" "$model" 3-row-c16-v1 --concurrency 16 --protocol v1
    load "$label" "$port" "$model" 6-batch1000-binary --concurrency 2 --rows 1000 --body binary --output predict
    load "$label" "$gport" "$model" 6-batch1000-grpc --concurrency 2 --rows 1000 --protocol grpc --body binary
  fi
  if [[ $label == ferroserve || $label == mlserver ]]; then
    load "$label" "$gport" "$model" 7-row-c16-grpc --concurrency 16 --protocol grpc --body binary ||
      echo "$label: no gRPC answer, gRPC scenario skipped" >&2
  fi
}

run_server() { # label model binary-supported command...
  local label=$1 model=$2 binary=$3
  shift 3
  local port gport
  port=$(free_port)
  gport=$(free_port)
  # The gRPC port through the environment: ferroserve reads GRPC_PORT, mlserver_cmd writes it into its settings.
  GRPC_PORT=$gport "$@" --http_port "$port" >"$results/$label.log" 2>&1 &
  local pid=$!
  pids+=("$pid")
  local t0
  t0=$(date +%s%N)
  wait_ready "$port"
  echo "$label ready in $((($(date +%s%N) - t0) / 1000000)) ms (pid $pid)" >&2
  scenarios "$label" "$port" "$model" "$binary" "$gport"
  if [[ $label == ferroserve ]]; then
    grep VmRSS "/proc/$pid/status" | awk '{printf "ferroserve RSS after the run: %.1f MiB\n", $2/1024}' >&2
    grep VmRSS "/proc/$pid/status" | awk '{print $2}' >"$results/runs/$kind/ferroserve-rss-kib"
  fi
  # MLServer's workers are its children: stopped first, so none outlives the run.
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

mlserver_cmd() { # --http_port N
  local port=$2
  cat >"$results/mlserver/settings.json" <<JSON
{"host": "127.0.0.1", "http_port": $port, "grpc_port": $GRPC_PORT, "metrics_port": $(free_port), "debug": false,
 "metrics_dir": "$root/$results/mlserver-metrics"}
JSON
  # exec: the PID run_server records (and kills) is the server's own, not a subshell's.
  exec "$mls/bin/mlserver" start "$results/mlserver"
}

floor_cmd() { exec target/release/http-floor --port "$2"; }

IFS=, read -ra kinds <<<"$models"
for kind in "${kinds[@]}"; do
  dir=$results/models/$kind
  rm -rf "$results/runs/$kind"
  mkdir -p "$results/runs/$kind"
  "$mls/bin/python" benches/peers/make_model.py "$kind" "$dir" >&2
  file=model.pkl
  [[ -f $dir/model.joblib ]] && file=model.joblib
  # The example keeps the name its earlier runs had; the platform's models are served under their own.
  model=$kind
  [[ $kind == example ]] && model=anomaly-detector
  rm -f "$results/mlserver"/model*
  cp "$dir/$file" "$results/mlserver/$file"
  cat >"$results/mlserver/model-settings.json" <<JSON
{"name": "$model", "implementation": "mlserver_sklearn.SKLearnModel",
 "parameters": {"uri": "./$file", "version": "v1"}}
JSON
  run_server ferroserve "$model" yes target/release/ferroserve --model_name "$model" --model_dir "$dir" \
    --host 127.0.0.1
  run_server floor floor yes floor_cmd
  run_server mlserver "$model" no mlserver_cmd
  run_server kserve "$model" no "$ksv/bin/python" benches/peers/kserve_sklearn.py --model_name "$model" \
    --model_dir "$dir" --grpc_port "$(free_port)"

  # The report: table, ratios, plot (the example's), machine; into the model's section of docs/benchmarks.md.
  files=("$results/runs/$kind"/*.json)
  table=$(target/release/ferroserve-load table "${files[@]}")
  if [[ $kind == example ]]; then
    target/release/ferroserve-load plot --out docs/benchmarks/latency.svg "${files[@]}"
  fi
  python3 benches/peers/report.py "$results/runs/$kind" "$kind" "$table" "$warmup" "$duration" >"$results/section-$kind.md"
  python3 - "$results/section-$kind.md" "$kind" <<'PY'
import re, sys
section, kind = open(sys.argv[1]).read(), sys.argv[2]
doc = open("docs/benchmarks.md").read()
begin, end = f"<!-- load:{kind}:begin -->", f"<!-- load:{kind}:end -->"
if begin not in doc:
    sys.exit(f"docs/benchmarks.md has no {begin} … {end} section")
new = re.sub(re.escape(begin) + ".*" + re.escape(end), lambda m: begin + "\n" + section + end, doc, flags=re.S)
open("docs/benchmarks.md", "w").write(new)
PY
  echo "wrote the $kind section of docs/benchmarks.md" >&2
done
