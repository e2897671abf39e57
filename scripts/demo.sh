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

step "Building the sample apps with the real flatpak tools (runtime org.test.Platform, org.test.Hello v1 and v2)"
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")
ls "$apps"

step "flatipfsctl remote create main"
"$bin/flatipfsctl" remote create main

step "flatipfsctl publish: the runtime, then org.test.Hello version 1"
"$bin/flatipfsctl" publish --remote main --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master"
"$bin/flatipfsctl" publish --remote main --repo "$apps/repo-v1" "app/org.test.Hello/$arch/master"

step "flatipfsctl publish: org.test.Hello version 2 (one file changed, one added)"
"$bin/flatipfsctl" publish --remote main --repo "$apps/repo-v2" "app/org.test.Hello/$arch/master"

if [ "${FLATIPFS_DEMO_KEEP:-0}" = 1 ]; then
  step "The stack keeps running. To use it:"
  "$bin/flatipfs-stack" env "$dir"
  echo "Stop it with: $bin/flatipfs-stack down $dir"
fi
