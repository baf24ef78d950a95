#!/usr/bin/env bash
# Release build of every berth binary, then `berth-shim` linked again as a
# fully static executable (glibc included, fixed address).
#
# One berth-shim server runs per pod, so every page it maps counts once
# per pod: a static link maps only the parts of libc it uses, and no
# dynamic loader or shared-library relocations run at its start. A cargo
# build cannot link one workspace binary statically (the flag would reach
# proc-macros and build scripts too), hence the second, link-only step.
# Its helper (`berth-shim-helper`, short-lived) stays dynamic.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p berth-runtime -p berth-cri-server -p berth-shim -p berth-cli "$@"
cargo rustc --release --locked -p berth-shim --bin berth-shim "$@" -- \
  -C target-feature=+crt-static -C relocation-model=static
target_dir=${CARGO_TARGET_DIR:-target}
if readelf -d "$target_dir/release/berth-shim" | grep -q NEEDED; then
  echo "build-release.sh: $target_dir/release/berth-shim is not statically linked" >&2
  exit 1
fi
