#!/usr/bin/env bash
# The main job on a fresh machine: install dependencies, build berth in
# release mode, install its binaries into /usr/local/bin and start berthd
# with its embedded defaults (CRI socket unix:///run/berth/berth.sock).
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: installing and starting berth needs root" >&2
  exit 1
fi

./scripts/deps.sh
./scripts/build-release.sh
# cargo honours CARGO_TARGET_DIR; the binaries are where it put them.
target_dir=${CARGO_TARGET_DIR:-target}
for bin in berth-runtime berthd berth-shim berth-shim-helper berth; do
  install -m 0755 "$target_dir/release/$bin" "/usr/local/bin/$bin"
done
# containerd finds a shim for runtime_type "io.containerd.berth.v2" by this name.
ln -sf berth-shim /usr/local/bin/containerd-shim-berth-v2
echo "setup: installed berth-runtime, berthd, berth-shim (with berth-shim-helper) and the berth CLI to /usr/local/bin"

# The default pod network (bridge berth0, 10.89.0.0/16, host-local, portmap,
# masquerade so pods reach out). berthd uses the first conflist in the
# directory by name; ours is rewritten on every run, others are left alone.
install -d -m 0755 /etc/cni/net.d
install -m 0644 config/cni/10-berth.conflist /etc/cni/net.d/10-berth.conflist
echo "setup: installed the pod network /etc/cni/net.d/10-berth.conflist"

# (Re)start berthd so the freshly built binary serves the socket.
PIDFILE=/run/berth/berthd.pid
LOG=/var/log/berth/berthd.log
mkdir -p /run/berth /var/log/berth
if [[ -f $PIDFILE ]] && kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  pid=$(cat "$PIDFILE")
  echo "setup: stopping the running berthd (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
fi
# No berthd runs now: a socket left behind by a killed one is stale.
rm -f /run/berth/berth.sock
setsid nohup /usr/local/bin/berthd >>"$LOG" 2>&1 </dev/null &
echo $! >"$PIDFILE"
for _ in $(seq 100); do [[ -S /run/berth/berth.sock ]] && break; sleep 0.1; done
if [[ ! -S /run/berth/berth.sock ]] || ! kill -0 "$(cat "$PIDFILE")" 2>/dev/null; then
  echo "setup: berthd did not come up; its log ($LOG) ends with:" >&2
  tail -20 "$LOG" >&2
  exit 1
fi
echo "setup: berthd is serving CRI on unix:///run/berth/berth.sock (pid $(cat "$PIDFILE"), log $LOG)"
echo "setup: stop it with: kill \$(cat $PIDFILE)"
