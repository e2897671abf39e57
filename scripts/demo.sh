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
rm -rf "$dir"   # every demo starts from nothing
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

step "Serving the releases from the second Kubo node over FUSE, in a flatipfs Flatpak installation"
# The installer (flatipfsctl install) is not there yet; flatipfsd's
# mount-release tool lays out and mounts a release the way it will.
release_of() { # INDEX-JSON APP-ID
  python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["apps"][sys.argv[2]]["release"])' "$1" "$2"
}
index_name=$("$bin/flatipfsctl" remote list --json | python3 -c 'import json, sys; print([r for r in json.load(sys.stdin)["remotes"] if r["name"] == "main"][0]["address"])')
IPFS_PATH="$FLATIPFS_KUBO_PATH_1" "$(bash "$here/scripts/build-kubo.sh")" cat "$index_name" > "$dir/index.json"
mkdir -p "$dir/flatpak-config"
for id in org.test.Platform org.test.Hello; do
  "$bin/flatipfsd" mount-release --kubo-api "$FLATIPFS_KUBO_API_2" --installation "$dir/installation" \
    --flatpak-config-dir "$dir/flatpak-config" "$(release_of "$dir/index.json" "$id")" 2>>"$dir/logs/mount-release.log" &
done
for _ in $(seq 100); do
  [ -e "$dir/installation/app/org.test.Hello/$arch/master/active/files/bin/hello.sh" ] && break
  sleep 0.1
done
export FLATPAK_CONFIG_DIR="$dir/flatpak-config"

step "flatpak list / flatpak run org.test.Hello"
flatpak list
flatpak run org.test.Hello
kill $(jobs -p) 2>/dev/null; wait 2>/dev/null || true

if [ "${FLATIPFS_DEMO_KEEP:-0}" = 1 ]; then
  step "The stack keeps running. To use it:"
  "$bin/flatipfs-stack" env "$dir"
  echo "Stop it with: $bin/flatipfs-stack down $dir"
fi
