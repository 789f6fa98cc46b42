# Sourced by the check scripts that run one named test of the workspace's `it` binaries:
#
#   one_test [--ignored] NAME
#
# runs `cargo test --workspace --test it -- --exact NAME` (with --ignored for an ignored test) and fails unless
# exactly one test ran, and passed. `--workspace` rather than `-p PACKAGE`: cargo resolves dependency features per
# set of selected packages, so `-p` would compile the dependencies again with other features; the `it` binaries of
# the other packages then run no test, which is why the count is checked (a renamed test must not pass unseen).
one_test() {
  local ignored=()
  if [[ ${1:-} == --ignored ]]; then
    ignored=(--ignored)
    shift
  fi
  local name=$1 log rc status ran
  log=$(mktemp)
  rc=$(mktemp)
  # The other binaries' "running 0 tests" lines and blank lines are left out of what is shown, not of the count.
  { cargo test --locked -q --workspace --test it -- "${ignored[@]}" --exact --nocapture "$name" 2>&1 &&
    echo 0 >"$rc" || echo "$?" >"$rc"; } |
    tee "$log" | { grep -v -E '^(running 0 tests|test result: ok\. 0 passed; .*|)$' || true; }
  status=$(<"$rc")
  ran=$(awk '/^test result: / { n += $4 + $6 } END { print n + 0 }' "$log")
  rm -f "$log" "$rc"
  if ((status != 0)); then
    return "$status"
  fi
  if ((ran != 1)); then
    echo "one_test: $ran tests named $name ran, not 1 (renamed or removed?)" >&2
    return 1
  fi
}
