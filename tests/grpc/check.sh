#!/usr/bin/env bash
# CI hook: Triton's Python gRPC client (tritonclient[grpc], pinned in requirements.txt) with its defaults against
# a real ferroserve on 127.0.0.1, over the example models and every scikit-learn parity case; every answer is
# compared with REST's (tritonclient_check.py says what is checked). The server is stopped by its PID on exit.
#
#   bash tests/grpc/check.sh
# Env: PYTHON (default python3), FERROSERVE_VENVS (folder for the venv, default ~/.cache/ferroserve-venvs),
#      CARGO_TARGET_DIR (where the debug build is).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-python3}
# shellcheck source=tests/venv.sh
source "$root/tests/venv.sh"
venv=${FERROSERVE_VENVS:-$HOME/.cache/ferroserve-venvs}/tritonclient
pinned_venv "$venv" "$here/requirements.txt"

cd "$root"
# The workspace's test build (which builds the binary for the integration tests): the same features as every
# other debug build CI makes, so the dependencies are compiled once, not once for each set of packages.
cargo test --workspace --locked -q --no-run
server=${CARGO_TARGET_DIR:-$root/target}/debug/ferroserve

repo=$(mktemp -d)
pid=
cleanup() {
  if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$repo"
}
trap cleanup EXIT
cp -r examples/models/. "$repo/"
fixtures=tests/fixtures/sklearn/latest
for json in "$fixtures"/*.json; do
  case=$(basename "$json" .json)
  file=$("$python" -c 'import json,sys; print(json.load(open(sys.argv[1]))["files"][0])' "$json")
  mkdir -p "$repo/$case"
  if [[ $file == *.joblib ]]; then cp "$fixtures/$file" "$repo/$case/model.joblib"; else cp "$fixtures/$file" "$repo/$case/model.pkl"; fi
done

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port)
grpc=$(free_port)
"$server" --host 127.0.0.1 --http_port "$http" --grpc_port "$grpc" --model_repository "$repo" --version_policy all \
  >"$repo.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  if curl -sf "http://127.0.0.1:$http/v2/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$pid" 2>/dev/null; then cat "$repo.log" >&2; exit 1; fi
  sleep 0.1
done
timeout 300 "$venv/bin/python" "$here/tritonclient_check.py" --http "127.0.0.1:$http" --grpc "127.0.0.1:$grpc" \
  --fixtures "$fixtures" || { tail -20 "$repo.log" >&2; rm -f "$repo.log"; exit 1; }
rm -f "$repo.log"
