#!/usr/bin/env bash
# The whole loop in one command, on a copy of the example repository: build once, serve, call the models over
# KServe v2 and v1, start a canary of v2 beside v1 and watch the split, roll it back, read the metrics.
#
#   examples/demo.sh            # PORT=18080 and GRPC_PORT=18081 by default; nothing outside 127.0.0.1 is touched
#
# Needs cargo and curl. The server it starts is stopped when the script ends, however it ends.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

port=${PORT:-18080}
url="http://127.0.0.1:$port"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "building (release; the first build takes an estimated 6–7 minutes on an idle 2-core machine, later ones seconds)"
cargo build --release --locked -q -p ferroserve -p ferroserve-train
target=${CARGO_TARGET_DIR:-target}
ferroserve=$target/release/ferroserve
train=$target/release/ferroserve-train

work=$(mktemp -d)
server=""
cleanup() {
  if [[ -n "$server" ]]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cp -r examples/models "$work/models"
model="$work/models/anomaly-detector"

say "serving a copy of examples/models on $url (log: $work/server.log)"
"$ferroserve" --model_repository "$work/models" --host 127.0.0.1 --http_port "$port" --grpc_port "${GRPC_PORT:-18081}" \
  --watch_interval 300ms --watch_debounce 50ms >"$work/server.log" 2>&1 &
server=$!
for _ in $(seq 1 300); do
  if curl -sf "$url/v2/health/ready" >/dev/null; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then cat "$work/server.log"; echo "the server exited" >&2; exit 1; fi
  sleep 0.1
done
curl -sf "$url/v2/health/ready" >/dev/null || { echo "the server never became ready" >&2; exit 1; }
echo "ready: $(curl -s "$url/v2/repository/index" -X POST -d '{}')"

row='[35, 59, 90, 0.005, 0, 185]'
spike='[97, 95, 2400, 0.4, 3, 320]'
say "KServe v2: POST /v2/models/anomaly-detector/infer (a normal minute and a spike)"
curl -s "$url/v2/models/anomaly-detector/infer" -d "{\"inputs\": [{\"name\": \"input-0\", \"shape\": [2, 6],
  \"datatype\": \"FP32\", \"data\": [$row, $spike]}]}"
echo
say "KServe v1: POST /v1/models/anomaly-detector:predict (what the coordination engine sends; -1 = anomaly)"
curl -s "$url/v1/models/anomaly-detector:predict" -d "{\"instances\": [$row, $spike]}"
echo

# Sends $1 requests and prints how many each version answered (from the x-model-version header).
split() {
  for _ in $(seq 1 "$1"); do
    curl -s -o /dev/null -D - "$url/v1/models/anomaly-detector:predict" -d "{\"instances\": [$row]}" |
      tr -d '\r' | sed -n 's/^x-model-version: //p'
  done | sort | uniq -c | sed 's/^ */   /'
}
# Waits until unpinned answers come only from version $1.
settle() {
  for _ in $(seq 1 100); do
    if [[ "$(split 10 | awk '{print $2}' | sort -u)" == "$1" ]]; then return; fi
    sleep 0.1
  done
  echo "version $1 never took over" >&2
  exit 1
}

say "rollout: v1 serves, then a 25 % canary of v2 (ferroserve-train writes serving.json; the server picks it up)"
"$train" promote --model-dir "$model" --version v1
settle v1
"$train" canary --model-dir "$model" --version v2 --percent 25
sleep 1
echo "200 requests, answered by:"
split 200

say "rollback: the canary is dropped, v1 answers everything again"
"$train" rollback --model-dir "$model"
settle v1
echo "50 requests, answered by:"
split 50

say "metrics: GET /metrics (requests by version and status)"
curl -s "$url/metrics" | grep -E '^(kserve_inference_requests_total|request_predict_seconds_count)\{' | grep anomaly-detector || true

say "done; the server is stopped and the copy removed"
