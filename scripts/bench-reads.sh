#!/usr/bin/env bash
# Read benchmark of installed apps: ratios taken side by side in one run.
#
# A publisher stack (one Kubo node) and a client stack whose flatipfsd runs
# its embedded Kubo node (the normal case: fetched files are then kept as
# local files the mount passes reads through to). The app is the scipy
# wheel tree of bench-publish.sh. The client installs it, waits until the
# whole release is fetched and kept as local files, then reads the tree
# through the mount and the same tree on local disk with
# flatipfs-read-bench, alternating sides, three rounds, the best of each:
#
#  1. warm sequential read of every file (both sides read once before);
#  2. warm random 4 KiB reads (pread at random 4 KiB-aligned offsets of
#     random files of 4 KiB or more, the same sequence on both sides);
#  3. the same two cold: the page cache dropped for the files read on both
#     sides (posix_fadvise DONTNEED on the local tree and on the client's
#     local files, which the mount passes through to) before each read.
#
#   scripts/bench-reads.sh   # prints Markdown (also target/bench-reads.md)
#   BENCH_PROFILE=debug BENCH_READ_BENCH=/path/to/release/flatipfs-read-bench …
source "$(dirname "$0")/bench-common.sh"
version=${BENCH_OLD:-1.14.0}
count=${BENCH_RANDOM_READS:-200000}
source "$here/scripts/two-stacks.sh"
trap 'stop_two_stacks "$work"; rm -rf "$work"' EXIT
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")

tree="$work/tree"
make_tree "$version" "$tree"
mkdir -p "$tree/files/bin"
printf '#!/bin/sh\necho "bench app started"\n' > "$tree/files/bin/start.sh"
chmod 0755 "$tree/files/bin/start.sh"
printf '[Application]\nname=org.bench.Package\nruntime=org.test.Platform/%s/master\ncommand=start.sh\n' "$arch" > "$tree/metadata"

# The private network of two-stacks.sh: the client's node finds the
# publisher's record and blocks through routing (nothing carried or
# connected by hand).
client_stack_options="--kubo-nodes 0 --embedded-kubo" start_two_stacks "$work"
ipns=$(pub "$bin/flatipfsctl" --json remote create bench | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')
pub "$bin/flatipfsctl" --json publish --remote bench --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
# No pack or deltas: the reads do not depend on them, and a zstd pack of
# 132 MB at level 19 takes many minutes on a shared machine.
pub "$bin/flatipfsctl" --json publish --remote bench --no-pack --no-deltas "$tree" >/dev/null
wait_for_index
client "$bin/flatipfsctl" remote add bench "$ipns" >/dev/null
state="$work/client/state"
repo_before=$(du -s --block-size=1 "$state/kubo" | cut -f1)
client "$bin/flatipfsctl" --json install bench org.test.Platform >/dev/null
client "$bin/flatipfsctl" --json install bench org.bench.Package >/dev/null
mnt=$(client "$bin/flatipfsctl" --json info org.bench.Package | python3 -c 'import json, sys; print(json.load(sys.stdin)["mount_point"])')
# Every kept release kept as local files (its .local marker).
for _ in $(seq 6000); do
  json=$(ls "$state/releases"/*.json | grep -vc "\.wire\.json$"); local_=$(ls "$state/releases"/*.local 2>/dev/null | wc -l)
  [ "$json" -gt 0 ] && [ "$json" = "$local_" ] && break
  sleep 0.1
done
[ "$json" = "$local_" ] || { echo "the releases were not made local" >&2; exit 1; }
# Each release then gets its local tree, which replaces its FUSE mount
# (trees.rs): wait until the topmost mount on the app's files/ is not FUSE.
topmost() { awk -v p="$1" '$5 == p { split($0, a, " - "); split(a[2], b, " "); t = b[1] } END { print t }' /proc/self/mountinfo; }
for _ in $(seq 1200); do
  fstype=$(topmost "$mnt")
  [ -n "$fstype" ] && [ "${fstype#fuse}" = "$fstype" ] && break
  sleep 0.1
done
mounts_at=$(awk -v p="$mnt" '$5 == p' /proc/self/mountinfo | wc -l)
passthrough=$(grep -c "FUSE passthrough on" "$work/client/logs/flatipfsd.log" || true)

# BENCH_READ_BENCH: an optimized flatipfs-read-bench when the rest is a
# debug build (the reader's own cost per call is on both sides).
rb="${BENCH_READ_BENCH:-$bin/flatipfs-read-bench}"
best() { sort -n | head -1; }
# Warm: both sides read once first.
"$rb" seq "$tree/files" >/dev/null; "$rb" seq "$mnt" >/dev/null
seq_l=(); seq_m=(); rnd_l=(); rnd_m=(); cseq_l=(); cseq_m=(); crnd_l=(); crnd_m=()
for _ in 1 2 3; do
  seq_l+=("$("$rb" seq "$tree/files" | cut -d' ' -f1)")
  seq_m+=("$("$rb" seq "$mnt" | cut -d' ' -f1)")
  rnd_l+=("$("$rb" random "$tree/files" "$count" | cut -d' ' -f1)")
  rnd_m+=("$("$rb" random "$mnt" "$count" | cut -d' ' -f1)")
done
for _ in 1 2 3; do
  "$rb" drop "$tree/files"; cseq_l+=("$("$rb" seq "$tree/files" | cut -d' ' -f1)")
  "$rb" drop "$state/local"; cseq_m+=("$("$rb" seq "$mnt" | cut -d' ' -f1)")
  "$rb" drop "$tree/files"; crnd_l+=("$("$rb" random "$tree/files" "$((count / 10))" | cut -d' ' -f1)")
  "$rb" drop "$state/local"; crnd_m+=("$("$rb" random "$mnt" "$((count / 10))" | cut -d' ' -f1)")
done
pick() { printf '%s\n' "$@" | best; }
bytes=$(du -sb --apparent-size "$tree/files" | cut -f1)
files=$(find "$tree/files" -type f | wc -l)
# The local files and the trees together (du counts a hard link once).
local_du=$(du -s -c --block-size=1 "$state/local" "$state/trees" 2>/dev/null | tail -1 | cut -f1)
trees_extra=$(du -s -c --block-size=1 "$state/local" "$state/trees" 2>/dev/null | sed -n 2p | cut -f1)
repo_du=$(du -s --block-size=1 "$state/kubo" | cut -f1)
blocks_du=$(du -s --block-size=1 "$state/kubo/blocks" | cut -f1)
datastore_du=$(du -s --block-size=1 "$state/kubo/datastore" | cut -f1)
runtime_mnt=$(client "$bin/flatipfsctl" --json info org.test.Platform | python3 -c 'import json, sys; print(json.load(sys.stdin)["mount_point"])')
# Size on disk of the installed files as plain files: each rounded up to 4 KiB blocks.
on_disk=$(find "$tree/files" "$runtime_mnt" -type f -printf '%s\n' | python3 -c 'import sys; print(sum(-(-int(l) // 4096) * 4096 for l in sys.stdin))')
runtime_bytes=$(du -sb --apparent-size "$(client "$bin/flatipfsctl" --json info org.test.Platform | python3 -c 'import json, sys; print(json.load(sys.stdin)["mount_point"])')" | cut -f1)

python3 - "$(pick "${seq_l[@]}")" "$(pick "${seq_m[@]}")" "$(pick "${rnd_l[@]}")" "$(pick "${rnd_m[@]}")" \
  "$(pick "${cseq_l[@]}")" "$(pick "${cseq_m[@]}")" "$(pick "${crnd_l[@]}")" "$(pick "${crnd_m[@]}")" \
  "$count" "$bytes" "$files" "$local_du" "$repo_du" "$runtime_bytes" "$repo_before" "$blocks_du" "$datastore_du" "$on_disk" "$passthrough" "$package" "$version" "$profile" "$fstype" "$mounts_at" "$trees_extra" <<'PY' | tee "$here/target/bench-reads.md"
import sys
(sl, sm, rl, rm, csl, csm, crl, crm, count, size, files, local_du, repo_du, runtime, before, blocks,
 datastore, on_disk, passthrough, package, version, profile, fstype, mounts_at, trees_extra) = sys.argv[1:]
sl, sm, rl, rm, csl, csm, crl, crm = map(float, (sl, sm, rl, rm, csl, csm, crl, crm))
count, size, local_du, repo_du, runtime, before, blocks, datastore, on_disk = map(
    int, (count, size, local_du, repo_du, runtime, before, blocks, datastore, on_disk))
mb = size / 1e6
print(f"## Read benchmark: {package} {version} installed through the daemon (embedded Kubo, local files)\n")
print(f"{profile.capitalize()} builds; one run of scripts/bench-reads.sh. Tree: {mb:.1f} MB in {files} files; "
      f"the app's files/ read through: {fstype or 'nothing'} ({mounts_at} mount(s) there; not fuse: its local tree); "
      f"FUSE passthrough {'on' if int(passthrough) else 'OFF (reads served by the daemon)'} before the switch. "
      "Best of three rounds, sides alternated. Throughput through the mount / local (1.0 = the same).\n")
print("| measurement | mount | local disk | mount / local throughput |")
print("| --- | --- | --- | --- |")
print(f"| warm sequential read of every file | {sm:.3f} s, {mb / sm:.0f} MB/s | {sl:.3f} s, {mb / sl:.0f} MB/s | {sl / sm:.2f} |")
print(f"| warm random 4 KiB reads ({count}) | {rm:.3f} s, {count / rm / 1e3:.0f} k/s | {rl:.3f} s, {count / rl / 1e3:.0f} k/s | {rl / rm:.2f} |")
print(f"| cold sequential read of every file | {csm:.3f} s, {mb / csm:.0f} MB/s | {csl:.3f} s, {mb / csl:.0f} MB/s | {csl / csm:.2f} |")
print(f"| cold random 4 KiB reads ({count // 10}) | {crm:.3f} s, {count // 10 / crm / 1e3:.1f} k/s | {crl:.3f} s, {count // 10 / crl / 1e3:.1f} k/s | {crl / crm:.2f} |")
total = size + runtime
grown = repo_du - before
print(f"\nDisk (du): the client's local files and trees {local_du / 1e6:.1f} MB (the trees' own "
      f"blocks, beyond the hard links: {int(trees_extra) / 1e6:.1f} MB) plus its Kubo repository's growth "
      f"{grown / 1e6:.1f} MB (whole repository {repo_du / 1e6:.1f} MB: blocks {blocks / 1e6:.1f} MB, datastore "
      f"{datastore / 1e6:.1f} MB) for {total / 1e6:.1f} MB of installed files (app and runtime, apparent size): "
      f"{(local_du + grown) / total:.2f}× ({(local_du + repo_du) / total:.2f}× counting the whole repository); "
      f"against the same files' size on disk as plain files ({on_disk / 1e6:.1f} MB, 4 KiB blocks): "
      f"{(local_du + grown) / on_disk:.2f}×.")
PY
