#!/usr/bin/env bash
# Regenerates dbus/org.flatipfs.Manager1.xml from a running daemon (in a
# throw-away stack). Review the diff: released signatures must never change.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin="$here/target/debug"
(cd "$here" && cargo build --workspace --quiet)
dir=$(mktemp -d)
trap '"$bin/flatipfs-stack" down "$dir"; rm -rf "$dir"' EXIT
eval "$("$bin/flatipfs-stack" up "$dir" --kubo-nodes 1)"
write() { # INTERFACE OBJECT
  local out="$here/dbus/$1.xml"
  {
    cat <<HEAD
<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!--
  The $1 interface as the running daemon reports it.
  A test compares this file with the daemon; after changing the interface,
  regenerate it with scripts/update-introspection.sh and document the change
  in docs/dbus-api.md. Never change a released signature.
-->
<node>
HEAD
    busctl --system introspect --xml-interface org.flatipfs.Manager1 "$2" \
      | sed -n "/<interface name=\"$1\">/,/<\/interface>/p"
    echo '</node>'
  } > "$out"
  echo "wrote $out"
}
write org.flatipfs.Manager1 /org/flatipfs/Manager1
# A job object exists while a job runs and for a grace period after: start
# one that fails at once (no such remote).
job=$(busctl --system call org.flatipfs.Manager1 /org/flatipfs/Manager1 org.flatipfs.Manager1 \
  Publish 'sa{sv}' / 1 remote s no-such-remote | awk '{ print $2 }' | tr -d '"')
write org.flatipfs.Manager1.Job "$job"
# An app object exists once an app is installed: publish the test app and
# its runtime to a remote of this daemon and install it from there.
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")
ctl="$bin/flatipfsctl"
ipns=$("$ctl" --json remote create main | sed 's/.*"name":"\/ipns\/\([^"]*\)".*/\1/')
"$ctl" remote add local "/ipns/$ipns" >/dev/null
"$ctl" --json publish --remote main --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
"$ctl" --json publish --remote main --repo "$apps/repo-v1" "app/org.test.Hello/$arch/master" >/dev/null
"$ctl" --json install local org.test.Hello >/dev/null
write org.flatipfs.Manager1.App /org/flatipfs/Manager1/app/org_2etest_2eHello
