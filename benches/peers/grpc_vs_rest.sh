#!/usr/bin/env bash
# Single-row throughput of Ferroserve over gRPC against REST, in one run on this machine: the example
# anomaly-detector (IsolationForest, 200 trees) served by one release ferroserve on 127.0.0.1, loaded by
# ferroserve-load in closed loop over REST (JSON, binary) and gRPC (raw tensors as Triton's client sends them,
# typed contents), at 1, 8 and 16 connections. Prints a Markdown table; the server is stopped by its PID on exit.
#
#   benches/peers/grpc_vs_rest.sh            2 s warm-up, 10 s per scenario (about 4 minutes)
#   benches/peers/grpc_vs_rest.sh --quick    0.5 s warm-up, 2 s per scenario
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
warmup=2s
duration=10s
if [[ ${1:-} == --quick ]]; then
  warmup=500ms
  duration=2s
fi
out=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$out"
}
trap cleanup EXIT

cargo build --release --locked -q -p ferroserve -p ferroserve-load
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
grpc=$(free_port)
target=${CARGO_TARGET_DIR:-target}
"$target/release/ferroserve" --host 127.0.0.1 --http_port "$http" --grpc_port "$grpc" \
  --model_name anomaly-detector --model_dir examples/models/anomaly-detector >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

run() { # name url args...
  local name=$1 url=$2
  shift 2
  "$target/release/ferroserve-load" run --url "$url" --model anomaly-detector --label "$name" \
    --csv examples/data/metrics.csv --warmup "$warmup" --duration "$duration" --out "$out/$name.json" "$@" >/dev/null
}
for c in 1 8 16; do
  run "rest-json-c$c" "http://127.0.0.1:$http" --concurrency "$c"
  run "rest-binary-c$c" "http://127.0.0.1:$http" --concurrency "$c" --body binary
  run "grpc-raw-c$c" "http://127.0.0.1:$grpc" --concurrency "$c" --protocol grpc --body binary
  run "grpc-typed-c$c" "http://127.0.0.1:$grpc" --concurrency "$c" --protocol grpc --body json
done
"$target/release/ferroserve-load" table "$out"/rest-json-c*.json "$out"/rest-binary-c*.json "$out"/grpc-raw-c*.json \
  "$out"/grpc-typed-c*.json
echo
echo "$(nproc) vCPUs ($(lscpu | sed -n 's/^Model name: *//p')), load average $(cut -d' ' -f1-3 /proc/loadavg)"
