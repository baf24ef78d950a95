#!/usr/bin/env bash
# The whole test suite: installs what the tests need, checks formatting and
# lints, then runs every unit, integration and end-to-end test (as root).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "test.sh: the tests create namespaces, cgroups and mounts: run as root" >&2
  exit 1
fi

./scripts/deps.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build"
# The end-to-end suite (conformance/) runs the berthd and berth-shim
# binaries of this same debug build: build them before any test runs.
cargo build --workspace --locked
echo "== cargo test"
# Tests that mount, create cgroups or start a registry serialise themselves
# where they must; the default parallelism is safe.
log=$(mktemp /tmp/berth-test.XXXXXX.log)
trap 'rm -f "$log"' EXIT
status=0
cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { p += $4; f += $6; s += $8 }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
exit "$status"
