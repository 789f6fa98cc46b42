#!/usr/bin/env bash
# CI hook: what meets a real Prometheus: the monitoring manifests (servingruntime-manifests/monitoring/) and
# `ferroserve-train dataset`.
#
#   bash tests/prometheus/check.sh
#
# 1. `promtool check rules` and `promtool test rules` on the PrometheusRule's rules, with the unit tests in
#    servingruntime-manifests/monitoring/tests/ (tests/it/monitoring.rs extracts the rules file from the manifest).
# 2. A real Prometheus scrapes the real binary under known traffic; every dashboard query and alert expression is
#    asked of its HTTP API, and the alerts it raises are compared with those expected (runtime/tests/it/prometheus.rs).
# 3. `ferroserve-train dataset` against a real Prometheus over backfilled series, the CSV compared with pandas'
#    (training/tests/it/prometheus.rs).
# All three are ignored cargo tests, run here with --ignored. Each Prometheus they start listens on a free port of
# 127.0.0.1, keeps its data in a temporary folder, and is stopped by its PID.
#
# Installs Debian's `prometheus` package (2.42; promtool comes with it) when missing, as root or with passwordless
# sudo, without its recommended node exporter. Where the install starts the package's own service (a host running
# systemd), that service is stopped and disabled again: the tests run their own Prometheus. Skips, saying SKIPPED,
# only when Prometheus is missing and cannot be installed.
#
# Env: PROMETHEUS, PROMTOOL (binaries to use instead of those on PATH), CARGO_TARGET_DIR.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root"
# shellcheck source=tests/one-test.sh
source tests/one-test.sh

skip() {
  echo "################################################################################"
  echo "##  SKIPPED: the Prometheus checks did not run: $*"
  echo "################################################################################"
  exit 0
}

have() { [[ -n ${!1:-} ]] || command -v "$2" >/dev/null; }

if ! have PROMETHEUS prometheus || ! have PROMTOOL promtool; then
  sudo=()
  if [[ $(id -u) != 0 ]]; then
    command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
      skip "prometheus is not installed and this host cannot install it (no apt-get as root)"
    sudo=(sudo -n)
  fi
  command -v apt-get >/dev/null || skip "prometheus is not installed and there is no apt-get to install it"
  echo "== installing prometheus (apt)"
  install=("${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus)
  "${install[@]}" >/dev/null ||
    { "${sudo[@]}" apt-get update -q >/dev/null && "${install[@]}" >/dev/null; } ||
    skip "prometheus is not installed and apt-get could not install it"
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    echo "== stopping and disabling the package's prometheus service (the tests start their own)"
    "${sudo[@]}" systemctl disable --now prometheus >/dev/null 2>&1 || "${sudo[@]}" systemctl stop prometheus
  fi
fi
"${PROMETHEUS:-prometheus}" --version 2>&1 | head -n1

echo "== promtool: check rules, and the rules' unit tests"
one_test --ignored monitoring::alert_rules_pass_their_promtool_tests

echo "== a real Prometheus scraping the binary: the dashboard's queries, the alerts' expressions, the alerts raised"
one_test --ignored prometheus::a_real_prometheus_answers_the_dashboard_and_the_alerts

echo "== ferroserve-train dataset against a real Prometheus: backfilled series, the CSV against pandas'"
one_test --ignored prometheus::dataset_from_a_real_prometheus_matches_pandas
