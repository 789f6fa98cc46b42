#!/usr/bin/env bash
# One caller of Triton's Python clients (tritonclient.http and tritonclient.grpc, pinned, with their defaults) against
# one release ferroserve on 127.0.0.1 serving the example anomaly-detector: single rows, the protocols taking turns
# (triton_clients.py says what is measured). Where the load generator's gRPC against REST (grpc_vs_rest.sh) shows the
# server, this shows what a Python caller of Triton's clients gets. The server is stopped by its PID on exit.
#
#   benches/peers/triton_clients.sh            5 s per protocol, 3 repetitions (about a minute)
#   benches/peers/triton_clients.sh --pinned   the server on CPU 0 (one tokio worker), the client on CPU 1
# Env: PYTHON (default python3), FERROSERVE_VENVS (folder for the venv, default ~/.cache/ferroserve-venvs).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
server_cpu=()
client_cpu=()
for arg in "$@"; do
  case $arg in
    --pinned) server_cpu=(env TOKIO_WORKER_THREADS=1 taskset -c 0) client_cpu=(taskset -c 1) ;;
    *) echo "unknown argument $arg (--pinned)" >&2; exit 2 ;;
  esac
done
# shellcheck source=tests/venv.sh
source "$root/tests/venv.sh"
venv=${FERROSERVE_VENVS:-$HOME/.cache/ferroserve-venvs}/tritonclient-bench
pinned_venv "$venv" benches/peers/requirements-tritonclient.txt

cargo build --release --locked -q -p ferroserve
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
grpc=$(free_port)
log=$(mktemp)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -f "$log"
}
trap cleanup EXIT
"${server_cpu[@]}" "${CARGO_TARGET_DIR:-target}/release/ferroserve" --host 127.0.0.1 --http_port "$http" \
  --grpc_port "$grpc" --model_name anomaly-detector --model_dir examples/models/anomaly-detector >"$log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; exit 1; }
  sleep 0.1
done
"${client_cpu[@]}" "$venv/bin/python" benches/peers/triton_clients.py --http "127.0.0.1:$http" \
  --grpc "127.0.0.1:$grpc" --pid "$pid"
echo
[[ ${#server_cpu[@]} -gt 0 ]] && echo "server pinned to CPU 0 with one tokio worker, client pinned to CPU 1"
echo "$(nproc) vCPUs ($(lscpu | sed -n 's/^Model name: *//p')), load average after the run $(cut -d' ' -f1-3 /proc/loadavg)"
