#!/usr/bin/env bash
# Install benchmark: ratios taken side by side in one run, through the daemon.
#
# A publisher stack and a client stack (each its own bus, polkitd, Kubo node
# and flatipfsd; on a private IPFS network, found through routing). The app is
# a scipy wheel unpacked into files/ (the tree of bench-publish.sh) plus a
# start script, on the test runtime. The client installs the runtime first,
# then the app with `flatipfsctl install --no-wait`, and measures:
#
#  1. time until `flatpak run` of the app succeeds, against time until the
#     whole release is fetched (the app's State turns `installed`);
#  2. a find+stat walk of the mounted tree while the fetch runs and after it,
#     against the same walk on local disk;
#  3. a sequential read of every file through the mount, fully fetched,
#     against the same read from local disk.
#
#   scripts/bench-install.sh   # prints Markdown (also target/bench-install.md)
source "$(dirname "$0")/bench-common.sh"
version=${BENCH_OLD:-1.14.0}
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

start_two_stacks "$work"

ipns=$(pub "$bin/flatipfsctl" --json remote create bench | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')
pub "$bin/flatipfsctl" --json publish --remote bench --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
pub "$bin/flatipfsctl" --json publish --remote bench "$tree" >/dev/null
wait_for_index
client "$bin/flatipfsctl" remote add bench "$ipns" >/dev/null
client "$bin/flatipfsctl" --json install bench org.test.Platform >/dev/null

now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }
walk() { local t0; t0=$(now); find "$1" -exec stat --format=%s {} + >/dev/null; since "$t0"; }
readall() { local t0; t0=$(now); find "$1" -type f -exec cat {} + >/dev/null; since "$t0"; }
state() { client "$bin/flatipfsctl" --json info org.bench.Package | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])'; }

t0=$(now)
client "$bin/flatipfsctl" install --no-wait bench org.bench.Package >/dev/null
t_runnable=$(since "$t0")
until client flatpak run org.bench.Package >/dev/null 2>&1; do sleep 0.05; done
t_run=$(since "$t0")
mnt=$(client "$bin/flatipfsctl" --json info org.bench.Package | python3 -c 'import json, sys; print(json.load(sys.stdin)["mount_point"])')
walk_during=$(walk "$mnt")
until [ "$(state)" = installed ]; do sleep 0.1; done
t_full=$(since "$t0")
walk_local=$(walk "$tree/files")
walk_after=$(walk "$mnt")
read_local=$(readall "$tree/files")
read_mnt=$(readall "$mnt")
bytes=$(du -sb --apparent-size "$tree/files" | cut -f1)
files=$(find "$tree/files" -type f | wc -l)

python3 - "$t_runnable" "$t_run" "$t_full" "$walk_local" "$walk_during" "$walk_after" "$read_local" "$read_mnt" "$bytes" "$files" "$package" "$version" <<'PY' | tee "$here/target/bench-install.md"
import sys
tr, trun, tfull, wl, wd, wa, rl, rm, size, files, package, version = sys.argv[1:]
tr, trun, tfull, wl, wd, wa, rl, rm, size = map(float, (tr, trun, tfull, wl, wd, wa, rl, rm, size))
print(f"## Install benchmark: {package} {version} as an app, installed through the daemon\n")
print(f"Release builds; one run of scripts/bench-install.sh. Tree: {size / 1e6:.1f} MB in {files} files, published by one stack and installed by another over loopback. The local tree was just written, so its reads come from the page cache.\n")
print("| measurement | value | against | ratio |")
print("| --- | --- | --- | --- |")
print(f"| `install --no-wait` returns (app mounted and active) | {tr:.2f} s | whole fetch done {tfull:.2f} s | {tr / tfull:.2f} |")
print(f"| first successful `flatpak run` | {trun:.2f} s | whole fetch done {tfull:.2f} s | {trun / tfull:.2f} |")
print(f"| find+stat walk of the mount while the fetch runs | {wd:.3f} s | local {wl:.3f} s | {wd / wl:.1f} |")
print(f"| find+stat walk of the mount after the fetch | {wa:.3f} s | local {wl:.3f} s | {wa / wl:.1f} |")
print(f"| sequential read of every file through the mount, fully fetched | {rm:.2f} s, {size / rm / 1e6:.0f} MB/s | local {rl:.2f} s, {size / rl / 1e6:.0f} MB/s | {rm / rl:.1f} |")
PY
