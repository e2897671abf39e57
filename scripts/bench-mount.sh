#!/usr/bin/env bash
# Release filesystem benchmark: ratios taken side by side in one run.
#
#  1. A find+stat walk of the mounted tree (metadata comes from the manifest,
#     so the walk needs no content) against the same walk on local disk,
#     before anything was fetched and after.
#  2. A sequential read of every file through the mount, fully fetched into
#     the serving node, against the same read from local disk.
#
# The tree is the one bench-publish.sh uses (a scipy wheel unpacked into an
# app's files/), published on Kubo node 1 and served from node 2.
#   scripts/bench-mount.sh     # prints Markdown (also target/bench-mount.md)
source "$(dirname "$0")/bench-common.sh"
version=${BENCH_OLD:-1.14.0}
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; "$bin/flatipfs-stack" down "$work/stack" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
tree="$work/tree"
make_tree "$version" "$tree"

env_lines=$("$bin/flatipfs-stack" up "$work/stack")
eval "$env_lines"
"$bin/flatipfsctl" remote create bench >/dev/null
release=$("$bin/flatipfsctl" publish --json --remote bench "$tree" | tail -1 | python3 -c 'import json, sys; print(json.load(sys.stdin)["release"])')
IPFS_PATH="$FLATIPFS_KUBO_PATH_2" "$kubo" cat "/ipfs/$release/manifest" >/dev/null
mnt="$work/mnt"; mkdir -p "$mnt"
"$bin/flatipfsd" mount-release --kubo-api "$FLATIPFS_KUBO_API_2" "$release" "$mnt" 2>"$work/mount.log" &
for _ in $(seq 200); do findmnt "$mnt" >/dev/null && break; sleep 0.05; done

now() { date +%s.%N; }
walk() { local t0 t1; t0=$(now); find "$1" -exec stat --format=%s {} + >/dev/null; t1=$(now); python3 -c "print($t1 - $t0)"; }
readall() { local t0 t1; t0=$(now); find "$1" -type f -exec cat {} + >/dev/null; t1=$(now); python3 -c "print($t1 - $t0)"; }

walk_local=$(walk "$tree/files"); walk_cold=$(walk "$mnt")
IPFS_PATH="$FLATIPFS_KUBO_PATH_2" "$kubo" pin add --progress=false "/ipfs/$release" >/dev/null
walk_warm=$(walk "$mnt")
read_local=$(readall "$tree/files"); read_mnt=$(readall "$mnt")
read_mnt_again=$(readall "$mnt")
bytes=$(du -sb --apparent-size "$tree/files" | cut -f1)
files=$(find "$tree/files" -type f | wc -l)

python3 - "$walk_local" "$walk_cold" "$walk_warm" "$read_local" "$read_mnt" "$read_mnt_again" "$bytes" "$files" "$package" "$version" <<'PY' | tee "$here/target/bench-mount.md"
import sys
wl, wc, ww, rl, rm, rm2, size, files, package, version = sys.argv[1:]
wl, wc, ww, rl, rm, rm2, size = map(float, (wl, wc, ww, rl, rm, rm2, size))
print(f"## Release filesystem benchmark: {package} {version}\n")
print(f"Release builds; one run of scripts/bench-mount.sh. Tree: {size / 1e6:.1f} MB in {files} files; served from the second Kubo node. The local tree was just written, so its reads come from the page cache.\n")
print("| measurement | mount | local disk | mount / local |")
print("| --- | --- | --- | --- |")
print(f"| find+stat walk, first (no content fetched; the kernel caches nothing yet) | {wc:.3f} s | {wl:.3f} s | {wc / wl:.1f} |")
print(f"| find+stat walk, again after the full fetch (kernel entry/attribute cache) | {ww:.3f} s | {wl:.3f} s | {ww / wl:.1f} |")
print(f"| sequential read of every file, fully fetched into node 2 (first read through the mount) | {rm:.2f} s, {size / rm / 1e6:.0f} MB/s | {rl:.2f} s, {size / rl / 1e6:.0f} MB/s | {rm / rl:.1f} |")
print(f"| the same read again (kernel page cache, keep_cache) | {rm2:.2f} s | {rl:.2f} s | {rm2 / rl:.1f} |")
PY
