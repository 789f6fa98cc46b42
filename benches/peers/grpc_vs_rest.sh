#!/usr/bin/env bash
# Single-row throughput of Ferroserve over gRPC against REST, in one run on this machine: the example
# anomaly-detector (IsolationForest, 200 trees) served by one release ferroserve on 127.0.0.1, loaded by
# ferroserve-load in closed loop at 1, 8 and 16 callers over REST (JSON; binary tensors) and gRPC (raw tensors as
# Triton's client sends them, one HTTP/2 connection per caller as REST has; typed contents; raw with every caller on
# one HTTP/2 connection, as a gRPC client shares its channel; raw with 6 callers a connection, as Triton's C++ client
# library and perf_analyzer share channels). The scenarios take turns, repeated, so that a change
# in the machine's load hits them alike; the table gives the median of the repetitions, the server's own CPU time
# per answered request (from /proc and its request counter), which other jobs on the machine move far less than
# throughput, and the load generator's (which a single caller waits on as it waits on the server). The server is stopped by its PID on exit.
#
#   benches/peers/grpc_vs_rest.sh            1 s warm-up, 5 s per scenario, 3 repetitions (about 5 minutes)
#   benches/peers/grpc_vs_rest.sh --quick    0.5 s warm-up, 2 s per scenario, 1 repetition
#   benches/peers/grpc_vs_rest.sh --pinned   the server on CPU 0 (one tokio worker), the load generator on CPU 1, so
#                                            that the protocols are compared on the server's cost alone (taskset)
#   benches/peers/grpc_vs_rest.sh --model DIR
#                                            another model: a folder of benches/results/models/ as run.sh makes them
#                                            (the model file, rows.csv and columns.txt), named by the folder
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
warmup=1s
duration=5s
reps=3
server_cpu=()
load_cpu=()
model_dir=examples/models/anomaly-detector
rows=(--csv examples/data/metrics.csv)
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) warmup=500ms duration=2s reps=1 ;;
    --pinned) server_cpu=(env TOKIO_WORKER_THREADS=1 taskset -c 0) load_cpu=(taskset -c 1) ;;
    --model)
      model_dir=${2:?--model needs a folder}
      rows=(--csv "$model_dir/rows.csv" --columns "$(cat "$model_dir/columns.txt")")
      shift
      ;;
    *) echo "unknown argument $1 (--quick, --pinned, --model DIR)" >&2; exit 2 ;;
  esac
  shift
done
model=$(basename "$model_dir")
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
"${server_cpu[@]}" "$target/release/ferroserve" --host 127.0.0.1 --http_port "$http" --grpc_port "$grpc" \
  --model_name "$model" --model_dir "$model_dir" >"$out/server.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done

tick_us=$((1000000 / $(getconf CLK_TCK)))
server_cpu_ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
answered() { curl -sf "http://127.0.0.1:$http/metrics" | awk '/^kserve_inference_requests_total\{.*status="200"/ {s += $2} END {print s + 0}'; }

run() { # name rep url args...
  local name=$1 rep=$2 url=$3
  shift 3
  local c0 r0
  c0=$(server_cpu_ticks)
  r0=$(answered)
  "${load_cpu[@]}" "$target/release/ferroserve-load" run --url "$url" --model "$model" --label "$name" \
    "${rows[@]}" --warmup "$warmup" --duration "$duration" --expect-output predict \
    --out "$out/$name.$rep.json" "$@" >/dev/null
  echo "$((($(server_cpu_ticks) - c0) * tick_us)) $(($(answered) - r0))" >"$out/$name.$rep.cpu"
}
for rep in $(seq 1 "$reps"); do
  for c in 1 8 16; do
    run "REST JSON|$c" "$rep" "http://127.0.0.1:$http" --concurrency "$c"
    run "gRPC raw|$c" "$rep" "http://127.0.0.1:$grpc" --concurrency "$c" --protocol grpc --body binary
    run "REST binary|$c" "$rep" "http://127.0.0.1:$http" --concurrency "$c" --body binary --output predict
    run "gRPC typed|$c" "$rep" "http://127.0.0.1:$grpc" --concurrency "$c" --protocol grpc --body json
    run "gRPC raw, 1 connection|$c" "$rep" "http://127.0.0.1:$grpc" --concurrency "$c" --protocol grpc --body binary \
      --connections 1
    # Triton's C++ client library (perf_analyzer's) puts up to 6 clients on one channel
    # (TRITON_CLIENT_GRPC_CHANNEL_MAX_SHARE_COUNT, default 6): 16 callers share 3 connections.
    run "gRPC raw, 6 callers a connection|$c" "$rep" "http://127.0.0.1:$grpc" --concurrency "$c" --protocol grpc \
      --body binary --connections $(((c + 5) / 6))
  done
done
python3 - "$out" "$reps" <<'PY'
import glob, json, os, statistics, sys
out, reps = sys.argv[1], sys.argv[2]
runs = {}
for f in glob.glob(os.path.join(out, "*.json")):
    r = json.load(open(f))
    name, c = r["label"].split("|")
    ticks_us, answered = open(f[:-len(".json")] + ".cpu").read().split()
    r["server_us"] = int(ticks_us) / max(int(answered), 1)
    runs.setdefault((int(c), name), []).append(r)
order = ["REST JSON", "REST binary", "gRPC raw", "gRPC typed", "gRPC raw, 1 connection",
         "gRPC raw, 6 callers a connection"]
print(f"| callers | protocol | req/s (median of {reps}) | range | p50 ms | p99 ms | errors | vs REST JSON | server CPU µs/request | load generator CPU µs/request |")
print("| ---: | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for c in sorted({c for c, _ in runs}):
    base = statistics.median(r["throughput_rps"] for r in runs[(c, "REST JSON")])
    for name in order:
        rs = runs.get((c, name), [])
        if not rs:
            continue
        t = [r["throughput_rps"] for r in rs]
        med = statistics.median(t)
        p50 = statistics.median(r["latency_ms"]["p50"] for r in rs)
        p99 = statistics.median(r["latency_ms"]["p99"] for r in rs)
        errors = sum(r["errors"] for r in rs)
        cpu = statistics.median(r["server_us"] for r in rs)
        client = [r["client_cpu_us"] for r in rs if "client_cpu_us" in r]
        client = f"{statistics.median(client):.1f}" if client else "n/a"
        print(f"| {c} | {name} | {med:.0f} | {min(t):.0f}–{max(t):.0f} | {p50:.3f} | {p99:.3f} | {errors} | {med / base:.2f}× | {cpu:.1f} | {client} |")
PY
echo
[[ ${#server_cpu[@]} -gt 0 ]] && echo "server pinned to CPU 0 with one tokio worker, load generator pinned to CPU 1"
echo "$(nproc) vCPUs ($(lscpu | sed -n 's/^Model name: *//p')), load average after the run $(cut -d' ' -f1-3 /proc/loadavg)"
