#!/usr/bin/env bash
# Regenerates the committed example model repository, bit for bit:
#
#   examples/data/metrics.csv                synthetic cluster metrics, one week of minutes (seed 42)
#   examples/models/anomaly-detector/v1/     IsolationForest: 100 trees, contamination auto, seed 1
#   examples/models/anomaly-detector/v2/     IsolationForest: 200 trees, max_samples 512,
#                                            contamination 0.03, seed 2
#   examples/models/lstm-detector/v1/        LSTM autoencoder (PyTorch import form): windows of 30 minutes
#                                            (stride 5), hidden 16, 1 layer, up to 25 epochs, seed 7,
#                                            threshold at the 95th percentile of training-window errors
#
# Usage:
#   examples/regenerate.sh           rebuild the files in place (old versions are removed first)
#   examples/regenerate.sh --check   rebuild into a temporary copy and fail on any difference (CI)
#
# Everything recorded is fixed: the seeds, SOURCE_DATE_EPOCH (metadata.json's created_at), no git
# commit, and relative paths run from the repository root (training_command, training_data.path).
# The LSTM trains on one thread: candle's CPU matmul gave identical bytes with 1 and 2 threads here, but
# one thread takes the question off the table on other machines.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

check=false
case "${1:-}" in
  "") ;;
  --check) check=true ;;
  *)
    echo "usage: $0 [--check]" >&2
    exit 2
    ;;
esac

# 2026-01-12T00:00:00Z, the day after the data ends.
export SOURCE_DATE_EPOCH=1768176000
data=examples/data/metrics.csv
model=examples/models/anomaly-detector
lstm=examples/models/lstm-detector

# The same two packages as build-image.sh and demo.sh build, so the three share one release build of the
# dependencies (cargo resolves features per set of selected packages: `-p ferroserve-train` alone builds them
# again).
cargo build --quiet --release --locked -p ferroserve -p ferroserve-train
target=${CARGO_TARGET_DIR:-target}
trainer="$(cd "$target/release" && pwd)/ferroserve-train"
train() {
  "$trainer" "$@"
}

# Rebuilds the files under the current directory, which mirrors the repository root.
regenerate() {
  rm -rf "$data" "$model"/v[0-9]* "$model"/.v[0-9]*.tmp "$lstm"/v[0-9]* "$lstm"/.v[0-9]*.tmp
  mkdir -p "$(dirname "$data")" "$model" "$lstm"
  train synth --seed 42 --out "$data"
  train isolation-forest --data "$data" --out "$model" --version 1 \
    --n-estimators 100 --contamination auto --seed 1 --git-commit none >/dev/null
  train isolation-forest --data "$data" --out "$model" --version 2 \
    --n-estimators 200 --max-samples 512 --contamination 0.03 --seed 2 --git-commit none >/dev/null
  RAYON_NUM_THREADS=1 train lstm-autoencoder --data "$data" --out "$lstm" --version 1 \
    --window 30 --stride 5 --hidden-size 16 --num-layers 1 --epochs 25 --patience 4 \
    --threshold-percentile 95 --seed 7 --git-commit none >/dev/null 2>&1
}

if ! $check; then
  regenerate
  echo "regenerated $data, $model/v1, $model/v2 and $lstm/v1" >&2
  exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/examples/data" "$work/$model" "$work/$lstm"
# Start from a copy, so that files this script does not write (a README, serving.json) compare equal.
if [[ -d examples/data ]]; then cp -a examples/data/. "$work/examples/data/"; fi
if [[ -d $model ]]; then cp -a "$model/." "$work/$model/"; fi
if [[ -d $lstm ]]; then cp -a "$lstm/." "$work/$lstm/"; fi
(
  cd "$work"
  regenerate
)
status=0
diff -r "$root/examples/data" "$work/examples/data" || status=1
diff -r "$root/$model" "$work/$model" || status=1
diff -r "$root/$lstm" "$work/$lstm" || status=1
if ((status != 0)); then
  echo "examples/regenerate.sh --check: the committed examples differ from what the trainer produces;" \
    "run examples/regenerate.sh and commit the result" >&2
  exit 1
fi
echo "examples are up to date" >&2
