#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build berth in
# release mode, install its binaries into /usr/local/bin.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: installing and starting berth needs root" >&2
  exit 1
fi

./scripts/deps.sh
cargo build --release --locked
install -m 0755 target/release/berth-runtime /usr/local/bin/berth-runtime
echo "setup: installed berth-runtime to /usr/local/bin"
