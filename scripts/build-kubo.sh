#!/usr/bin/env bash
# Builds Kubo (the `ipfs` binary) at the version pinned in tools/kubo/go.mod,
# from the Go module proxy, and caches it outside the source tree.
#
#   scripts/build-kubo.sh          # prints the path of the cached binary
#
# Cache: ${FLATIPFS_CACHE:-$HOME/.cache/flatipfs}/kubo/<version>/ipfs.
# A binary already in the cache is reused; delete it to force a rebuild.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
mod="$here/tools/kubo"
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

version=$(awk '$1 == "github.com/ipfs/kubo" { print $2 }' "$mod/go.mod")
[ -n "$version" ] || { echo "build-kubo: no github.com/ipfs/kubo line in $mod/go.mod" >&2; exit 1; }
cache="${FLATIPFS_CACHE:-$HOME/.cache/flatipfs}/kubo/$version"
bin="$cache/ipfs"

if [ -x "$bin" ] && "$bin" version >/dev/null 2>&1; then
  echo "$bin"
  exit 0
fi
command -v go >/dev/null || { echo "build-kubo: 'go' not found; install Go 1.26 or newer" >&2; exit 1; }
mkdir -p "$cache"
echo "build-kubo: building Kubo $version (takes a few minutes the first time)" >&2
(cd "$mod" && go build -trimpath -o "$bin.tmp" github.com/ipfs/kubo/cmd/ipfs)
mv "$bin.tmp" "$bin"
echo "$bin"
