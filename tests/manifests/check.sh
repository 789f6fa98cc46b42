#!/usr/bin/env bash
# The Kubernetes manifests against Kubernetes' own schemas (tests/manifests/check.py says what is checked).
#
#   bash tests/manifests/check.sh
#
# Env: PYTHON (default python3), FERROSERVE_MANIFESTS_VENV (the virtualenv with the pinned kubernetes-validate,
#      default <repo>/.venv-manifests, reused while requirements.txt is unchanged).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
# shellcheck source=tests/venv.sh
source "$root/tests/venv.sh"
venv=${FERROSERVE_MANIFESTS_VENV:-$root/.venv-manifests}
req=$here/requirements.txt
pinned_venv "$venv" "$req"
exec "$venv/bin/python" "$here/check.py"
