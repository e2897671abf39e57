#!/usr/bin/env bash
# Prints the Debian mirror this machine's apt uses for its main archive (the
# first URI of a deb822 .sources file or a one-line `deb` entry that is not
# a security archive), so that debootstrap fetches from the same place. No
# mirror is written into the repository.
set -euo pipefail
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
  awk 'tolower($1) == "uris:" { for (i = 2; i <= NF; i++) print $i }' "$f"
done | grep -v -- '-security' | head -n 1 | grep . && exit 0
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
  [ -f "$f" ] || continue
  awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i !~ /^\[/ && $i !~ /=/) { print $i; break } }' "$f"
done | grep -v -- '-security' | head -n 1 | grep . && exit 0
echo "debian-mirror: no Debian archive in /etc/apt/sources.list{,.d}" >&2
exit 1
