#!/usr/bin/env bash
# The flatipfs demo, from a fresh machine: sets everything up, starts two
# private stacks (each a system bus, polkitd, a Kubo node and flatipfsd): a
# publisher and a client on a private IPFS network (a third stack is its
# bootstrap node); the client's node finds the publisher's only through routing.
# The publisher publishes a sample app; the client installs it through its
# daemon and runs it with `flatpak run`, served over FUSE from IPFS; then the
# publisher publishes version 2, the client updates, runs it, rolls back and
# runs version 1 again.
#
#   scripts/demo.sh            # stops the stack at the end
#   FLATIPFS_DEMO_KEEP=1 scripts/demo.sh   # leaves it running to play with
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/setup.sh"

dir=${FLATIPFS_DEMO_DIR:-/tmp/flatipfs-demo}
bin="$here/target/debug"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

kubo=$(bash "$here/scripts/build-kubo.sh")
for stack in publisher client network; do
  [ -f "$dir/$stack/pids" ] && "$bin/flatipfs-stack" down "$dir/$stack" || true
done
rm -rf "$dir"   # every demo starts from nothing
source "$here/scripts/two-stacks.sh"
step "Starting two private stacks in $dir: publisher and client"
if [ "${FLATIPFS_DEMO_KEEP:-0}" != 1 ]; then
  trap 'stop_two_stacks "$dir"' EXIT
fi
start_two_stacks "$dir"
ctl="$bin/flatipfsctl"

step "flatipfsctl status (client)"
client "$ctl" status

step "flatipfsctl reload-config (root passes polkit)"
client "$ctl" reload-config

step "Building the sample apps with the real flatpak tools (runtime org.test.Platform, org.test.Hello v1 and v2)"
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")
ls "$apps"

step "Publisher: flatipfsctl remote create main"
ipns=$(pub "$ctl" --json remote create main | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')
echo "$ipns"

step "Publisher: flatipfsctl publish the runtime, then org.test.Hello version 1"
pub "$ctl" publish --remote main --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master"
pub "$ctl" publish --remote main --repo "$apps/repo-v1" "app/org.test.Hello/$arch/master"
# Nothing is carried by hand: the client's node finds the store index's
# IPNS record through the DHT of the private network.
wait_for_index

step "Client: flatipfsctl remote add main $ipns"
client "$ctl" remote add main "$ipns"

step "Client: flatipfsctl install main org.test.Hello (the runtime comes along)"
client "$ctl" install main org.test.Hello

step "Client: flatipfsctl list / info"
client "$ctl" list
client "$ctl" info org.test.Hello

step "Client: flatpak list / flatpak run org.test.Hello"
client flatpak list
client flatpak run org.test.Hello

step "Publisher: flatipfsctl publish org.test.Hello version 2 (one file changed, one added)"
pub "$ctl" publish --remote main --repo "$apps/repo-v2" "app/org.test.Hello/$arch/master"
wait_for_index

step "Client: flatipfsctl update --check, then update"
client "$ctl" update --check
client "$ctl" update org.test.Hello

step "Client: flatpak run org.test.Hello (version 2)"
client flatpak run org.test.Hello

step "Client: flatipfsctl rollback org.test.Hello (no network needed), pins, run"
client "$ctl" rollback org.test.Hello
client "$ctl" pins
client flatpak run org.test.Hello

if [ "${FLATIPFS_DEMO_KEEP:-0}" = 1 ]; then
  step "The stacks keep running. To use the client:"
  "$bin/flatipfs-stack" env "$dir/client"
  echo "Stop them with: $bin/flatipfs-stack down $dir/client; $bin/flatipfs-stack down $dir/publisher"
fi
