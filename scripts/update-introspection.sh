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
out="$here/dbus/org.flatipfs.Manager1.xml"
{
  cat <<'HEAD'
<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<!--
  The org.flatipfs.Manager1 interface as the running daemon reports it.
  A test compares this file with the daemon; after changing the interface,
  regenerate it with scripts/update-introspection.sh and document the change
  in docs/dbus-api.md. Never change a released signature.
-->
<node>
HEAD
  busctl --system introspect --xml-interface org.flatipfs.Manager1 /org/flatipfs/Manager1 \
    | sed -n '/<interface name="org.flatipfs.Manager1">/,/<\/interface>/p'
  echo '</node>'
} > "$out"
echo "wrote $out"
