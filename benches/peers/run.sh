#!/usr/bin/env bash
# Ferroserve, MLServer and KServe's Python server serving the same scikit-learn model.joblib, and the HTTP floor,
# loaded by the same harness in one run (REST, and the Open Inference Protocol over gRPC for Ferroserve and
# MLServer); writes the table and the plot into docs/benchmarks.md.
#
#   benches/peers/run.sh            full run (2 s warm-up, 10 s per scenario; about 10 minutes)
#   benches/peers/run.sh --quick    smoke run (0.5 s warm-up, 2 s per scenario)
#
# Installs pinned venvs under benches/results/ (git-ignored). Every server listens on 127.0.0.1 and is stopped by
# its PID on exit.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
warmup=2s
duration=10s
if [[ ${1:-} == --quick ]]; then
  warmup=500ms
  duration=2s
fi
results=benches/results
mkdir -p "$results/runs" "$results/model" "$results/mlserver"
rm -f "$results"/runs/*.json

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

venv() { # name requirements
  local dir="$results/.venv-$1"
  if [[ ! -f $dir/.ok || $2 -nt $dir/.ok ]]; then
    python3 -m venv "$dir"
    "$dir/bin/pip" install -q --upgrade pip >/dev/null
    "$dir/bin/pip" install -q -r "$2"
    touch "$dir/.ok"
  fi
  echo "$dir"
}

echo "building" >&2
cargo build --release --locked -q -p ferroserve -p ferroserve-load
mls=$(venv mlserver benches/peers/requirements-mlserver.txt)
ksv=$(venv kserve benches/peers/requirements-kserve.txt)

"$mls/bin/python" benches/peers/make_model.py examples/data/metrics.csv "$results/model/model.joblib" >&2
cp "$results/model/model.joblib" "$results/mlserver/model.joblib"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # port
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$1/v2/health/ready" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "server on port $1 never got ready" >&2
  return 1
}

load() { # label port model scenario-name args...
  local label=$1 port=$2 model=$3 name=$4
  shift 4
  target/release/ferroserve-load run --url "http://127.0.0.1:$port" --model "$model" --label "$label" \
    --csv examples/data/metrics.csv --warmup "$warmup" --duration "$duration" --out "$results/runs/$name-$label.json" "$@" \
    | tail -1
}

scenarios() { # label port model binary(yes|no) grpc-port
  local label=$1 port=$2 model=$3 gport=$5
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
    grep VmRSS "/proc/$pid/status" | awk '{print $2}' >"$results/ferroserve-rss-kib"
  fi
  # MLServer's workers are its children: stopped first, so none outlives the run.
  pkill -TERM -P "$pid" 2>/dev/null || true
  kill "$pid"
  wait "$pid" 2>/dev/null || true
}

cat >"$results/mlserver/model-settings.json" <<JSON
{"name": "anomaly-detector", "implementation": "mlserver_sklearn.SKLearnModel",
 "parameters": {"uri": "./model.joblib", "version": "v1"}}
JSON

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

run_server ferroserve anomaly-detector yes target/release/ferroserve --model_name anomaly-detector \
  --model_dir "$results/model" --host 127.0.0.1
run_server floor floor yes floor_cmd
run_server mlserver anomaly-detector no mlserver_cmd
run_server kserve anomaly-detector no "$ksv/bin/python" benches/peers/kserve_sklearn.py --model_name anomaly-detector \
  --model_dir "$results/model" --grpc_port "$(free_port)"

# The report: table, ratios, plot, machine.
files=("$results"/runs/*.json)
table=$(target/release/ferroserve-load table "${files[@]}")
target/release/ferroserve-load plot --out docs/benchmarks/latency.svg "${files[@]}"
python3 benches/peers/report.py "$results" "$table" "$warmup" "$duration" >"$results/section.md"
python3 - "$results/section.md" <<'PY'
import re, sys
section = open(sys.argv[1]).read()
doc = open("docs/benchmarks.md").read()
new = re.sub(r"<!-- load:begin -->.*<!-- load:end -->", lambda m: "<!-- load:begin -->\n" + section + "<!-- load:end -->", doc, flags=re.S)
open("docs/benchmarks.md", "w").write(new)
PY
echo "wrote docs/benchmarks.md and docs/benchmarks/latency.svg" >&2
