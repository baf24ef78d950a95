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
echo "== cargo test"
# Tests that mount, create cgroups or start a registry serialise themselves
# where they must; the default parallelism is safe.
cargo test --workspace --locked 2>&1
