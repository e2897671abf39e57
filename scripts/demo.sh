#!/usr/bin/env bash
# The flatipfs demo, from a fresh machine: sets everything up, starts a
# private stack (system bus, polkitd, two Kubo nodes, flatipfsd) and drives
# the daemon through flatipfsctl.
#
#   scripts/demo.sh            # stops the stack at the end
#   FLATIPFS_DEMO_KEEP=1 scripts/demo.sh   # leaves it running to play with
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup.sh"

dir=${FLATIPFS_DEMO_DIR:-/tmp/flatipfs-demo}
bin="$here/target/debug"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ -f "$dir/pids" ]; then
  "$bin/flatipfs-stack" down "$dir" || true
fi
step "Starting a private stack in $dir"
eval "$("$bin/flatipfs-stack" up "$dir")"
if [ "${FLATIPFS_DEMO_KEEP:-0}" != 1 ]; then
  trap '"$bin/flatipfs-stack" down "$dir"' EXIT
fi

step "flatipfsctl status"
"$bin/flatipfsctl" status

step "flatipfsctl status --json"
"$bin/flatipfsctl" status --json

step "flatipfsctl reload-config (root passes polkit)"
"$bin/flatipfsctl" reload-config

if [ "${FLATIPFS_DEMO_KEEP:-0}" = 1 ]; then
  step "The stack keeps running. To use it:"
  "$bin/flatipfs-stack" env "$dir"
  echo "Stop it with: $bin/flatipfs-stack down $dir"
fi
