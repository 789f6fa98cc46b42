#!/usr/bin/env bash
# The image, run as KServe runs servingruntime.yaml's container (tests/container/e2e.py says what is checked).
#
#   bash tests/container/e2e.sh
#
# Installs podman and runc with apt when missing. Builds the image with
# `servingruntime-manifests/build-image.sh --offline` (no image registry needed; reuses an up-to-date release build)
# under a tag of its own and removes it afterwards, unless FERROSERVE_E2E_IMAGE names an image to test instead (kept).
# Skips, saying SKIPPED, only where containers cannot run at all: no podman and no way to install it, or a podman
# that cannot run containers (`podman info` fails). Any other failure fails the test.
#
# Env: FERROSERVE_E2E_IMAGE (an image to test instead of building one), FERROSERVE_E2E_RUNS (start-to-ready runs,
#      default 3), FERROSERVE_E2E_OCI_RUNTIME (podman --runtime; default runc when installed, as crun's cgroup setup
#      fails on some hosts), FERROSERVE_E2E_ULIMITS (default "nofile=1024:1024 nproc=1024:1024": podman's default
#      rlimits are refused on some hosts), PYTHON (default python3), FERROSERVE_CONTAINER_VENV (the PyYAML
#      virtualenv, default <repo>/.venv-container, reused while requirements.txt is unchanged).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/venv.sh
source "$root/tests/venv.sh"
venv=${FERROSERVE_CONTAINER_VENV:-$root/.venv-container}

skip() {
  echo "################################################################################"
  echo "##  SKIPPED: the container test did not run: $*"
  echo "################################################################################"
  exit 0
}

if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    echo "== installing podman and runc (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q podman runc >/dev/null ||
      { apt-get update -q >/dev/null && apt-get install -y -q podman runc >/dev/null; } ||
      skip "podman is not installed and apt-get could not install it"
  elif command -v apt-get >/dev/null && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    echo "== installing podman and runc (sudo apt)"
    sudo -n env DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc >/dev/null ||
      skip "podman is not installed and apt-get could not install it"
  elif ! command -v podman >/dev/null; then
    skip "podman is not installed and this host cannot install it (no apt-get as root)"
  fi
fi

oci_runtime=${FERROSERVE_E2E_OCI_RUNTIME:-}
if [[ -z $oci_runtime ]] && command -v runc >/dev/null; then
  oci_runtime=runc
fi
podman_global=()
[[ -n $oci_runtime ]] && podman_global=(--runtime "$oci_runtime")
if ! info=$(podman "${podman_global[@]}" info 2>&1); then
  skip "podman cannot run containers here: $(tail -n1 <<<"$info")"
fi

image=${FERROSERVE_E2E_IMAGE:-}
built=""
cleanup() {
  if [[ -n $built ]]; then
    podman rmi --force "$built" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT
if [[ -z $image ]]; then
  built=localhost/ferroserve:e2e-$$
  echo "== build-image.sh --offline --tag $built"
  t0=$(date +%s)
  image=$(bash "$root/servingruntime-manifests/build-image.sh" --offline --tag "$built" | tail -n1)
  echo "   built $image in $(($(date +%s) - t0)) s"
fi

req=$here/requirements.txt
pinned_venv "$venv" "$req"

ulimit_args=()
for u in ${FERROSERVE_E2E_ULIMITS-nofile=1024:1024 nproc=1024:1024}; do
  ulimit_args+=(--ulimit "$u")
done
runtime_args=()
[[ -n $oci_runtime ]] && runtime_args=(--oci-runtime "$oci_runtime")
echo "== the image as the ServingRuntime runs it"
timeout 600 "$venv/bin/python" "$here/e2e.py" --image "$image" --runs "${FERROSERVE_E2E_RUNS:-3}" \
  "${runtime_args[@]}" "${ulimit_args[@]}"

# The weekly retraining CronJob (servingruntime-manifests/mlops/) in the same image, against a real Prometheus.
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  echo "== the retraining CronJob's containers in the image, against a real Prometheus"
  (cd "$here" && timeout 900 "$venv/bin/python" "$here/mlops.py" --image "$image" "${runtime_args[@]}" "${ulimit_args[@]}")
else
  echo "################################################################################"
  echo "##  SKIPPED: the retraining CronJob was NOT run: prometheus/promtool not installed"
  echo "##  (tests/prometheus/check.sh installs them)"
  echo "################################################################################"
fi
