#!/usr/bin/env bash
# Installs every Debian package berth needs to build, run and be tested.
# Idempotent: packages already present are not fetched again.
set -euo pipefail

PACKAGES=(
  # build
  pkg-config libseccomp-dev protobuf-compiler
  # run: CNI plugins, iptables for pod networking
  containernetworking-plugins iptables iproute2
  # tests: busybox-static bundles and images, the loopback registry, htpasswd
  busybox-static docker-registry apache2-utils openssl ca-certificates
  # comparisons in tests and benchmarks
  runc crun containerd
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts these services on install where an init system exists; berth
# and its tests start the registry and containerd themselves, on their own ports.
for svc in docker-registry containerd; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" || true
  fi
done
