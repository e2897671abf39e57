#!/usr/bin/env bash
# Startup benchmark: first successful start against the whole fetch, with a
# recorded startup set, taken side by side in one run, through the daemon.
#
# The app is real Debian packages: LibreOffice (core, common, writer, calc,
# impress, draw) and every library package libreoffice-core depends on
# (recursively), downloaded with `apt-get download` (once, into the cache) and unpacked with
# `dpkg-deb -x` into files/, on the test runtime. Its start script does what
# a real start does first, with the runtime's tools: the dynamic loader maps
# soffice.bin and every library it links (`ld.so --list`: ELF headers, the
# dynamic sections, each segment mapped), and reads the configuration
# registry and the UNO type library. LibreOffice itself cannot run in the
# test runtime (no X11, no fonts), so the loader stands in for it.
#
#  1. release 1 (no startup set) is installed with `install --no-wait`: time
#     until `flatpak run` succeeds, time until the whole release is local;
#  2. its startup set is recorded (`flatipfsctl startup-set record`) and
#     release 2, the same tree, published with it;
#  3. the app is uninstalled and the client's blocks collected (`repo gc`),
#     then release 2 installed the same way: the same two times.
#
#   scripts/bench-startup.sh   # prints Markdown (also target/bench-startup.md; the
#                              # recorded list in target/bench-startup.list)
#   BENCH_DEBS=/tmp/debs scripts/bench-startup.sh   # where the .deb files go
BENCH_PACKAGE=libreoffice source "$(dirname "$0")/bench-common.sh"
source "$here/scripts/two-stacks.sh"
# The daemons' logs are kept in target/bench-startup-logs/ (the client's
# lines saying where the time went: `install timing`, `deploy timing`,
# `startup set`, `fetch timing`).
trap 'mkdir -p "$here/target/bench-startup-logs"; cp "$work/client/logs/flatipfsd.log" "$here/target/bench-startup-logs/client.log" 2>/dev/null; cp "$work/publisher/logs/flatipfsd.log" "$here/target/bench-startup-logs/publisher.log" 2>/dev/null; stop_two_stacks "$work"; rm -rf "$work"' EXIT
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")
id=org.bench.Startup

# --- the app tree ------------------------------------------------------------
packages="libreoffice-core libreoffice-common libreoffice-writer libreoffice-calc libreoffice-impress libreoffice-draw"
# Every library package libreoffice-core needs, recursively (libc6 too: the
# test runtime has only what its few tools link).
deps=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
  --no-replaces --no-enhances libreoffice-core \
  | awk '/^[a-z]/ { print $1 } / Depends:/ && $2 !~ /^</ { print $2 }' | grep -E '^(lib|ure$|uno-|zlib1g$)' | sort -u)
debs=${BENCH_DEBS:-$cache/debs}   # about 150 MB of .deb files, kept for the next run
mkdir -p "$debs"
missing=$(for p in $packages $deps; do ls "$debs/$p"_*.deb >/dev/null 2>&1 || echo "$p"; done)
[ -z "$missing" ] || (cd "$debs" && apt-get download $missing >/dev/null 2>&1) \
  || { echo "bench-startup: apt-get download failed for: $missing" >&2; exit 1; }
tree="$work/tree"
mkdir -p "$tree/files/bin"
for deb in "$debs"/*.deb; do dpkg-deb -x "$deb" "$tree/files"; done
rm -rf "$tree/files/usr/share/doc" "$tree/files/usr/share/man"
cat > "$tree/files/bin/start.sh" <<'SH'
#!/bin/sh
# What a LibreOffice start reads first: the loader maps soffice.bin and its
# libraries; then the configuration registry and the UNO types.
p=/app/usr/lib/libreoffice/program
export LD_LIBRARY_PATH=$p:/app/usr/lib/x86_64-linux-gnu:/app/lib/x86_64-linux-gnu
/usr/lib/ld-linux-x86-64.so.2 --list $p/soffice.bin > /dev/null || true
cat /app/usr/lib/libreoffice/share/.registry/main.xcd $p/types.rdb $p/types/offapi.rdb > /dev/null
echo "bench app started"
SH
chmod 0755 "$tree/files/bin/start.sh"
printf '[Application]\nname=%s\nruntime=org.test.Platform/%s/master\ncommand=start.sh\n' "$id" "$arch" > "$tree/metadata"
bytes=$(du -sb --apparent-size "$tree/files" | cut -f1)
files=$(find "$tree/files" -type f | wc -l)

# --- stacks --------------------------------------------------------------------
start_two_stacks "$work"
ipns=$(pub "$bin/flatipfsctl" --json remote create bench | python3 -c 'import json, sys; print(json.load(sys.stdin)["name"])')
pub "$bin/flatipfsctl" --json publish --remote bench --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
pub "$bin/flatipfsctl" --json publish --remote bench --version 1 "$tree" >/dev/null
wait_for_index
client "$bin/flatipfsctl" remote add bench "$ipns" >/dev/null
client "$bin/flatipfsctl" --json install bench org.test.Platform >/dev/null

now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }
state() { client "$bin/flatipfsctl" --json info $id | python3 -c 'import json, sys; print(json.load(sys.stdin)["state"])'; }
# measure: prints "RUNNABLE FIRST_START WHOLE_FETCH" for an install of the
# newest release (RUNNABLE: `install --no-wait` returned).
measure() {
  local t0 t_ready t_run
  t0=$(now)
  client "$bin/flatipfsctl" install --no-wait bench $id >/dev/null
  t_ready=$(since "$t0")
  until client flatpak run $id >/dev/null 2>&1; do sleep 0.05; done
  t_run=$(since "$t0")
  until [ "$(state)" = installed ]; do sleep 0.1; done
  echo "$t_ready $t_run $(since "$t0")"
}

read -r ready1 run1 full1 < <(measure)
client "$bin/flatipfsctl" startup-set record $id --seconds 60 --output "$work/startup.list" >/dev/null
cp "$work/startup.list" "$here/target/bench-startup.list"
ranges=$(grep -vc '^#' "$work/startup.list")
startup_bytes=$(awk -F'\t' '!/^#/ { s += $3 } END { print s + 0 }' "$work/startup.list")
pub "$bin/flatipfsctl" --json publish --remote bench --version 2 --startup-set "$work/startup.list" "$tree" >/dev/null
wait_for_index
client "$bin/flatipfsctl" --json uninstall $id >/dev/null
client "$kubo" repo gc >/dev/null
read -r ready2 run2 full2 < <(measure)

python3 - "$ready1" "$run1" "$full1" "$ready2" "$run2" "$full2" "$bytes" "$files" "$ranges" "$startup_bytes" <<'PY' | tee "$here/target/bench-startup.md"
import sys
ready1, run1, full1, ready2, run2, full2, size, files, ranges, sbytes = map(float, sys.argv[1:])
print("## Startup benchmark: LibreOffice from Debian packages as an app, first start against whole fetch\n")
print(f"Release builds; one run of scripts/bench-startup.sh. Tree: {size / 1e6:.0f} MB in {files:.0f} files "
      "(LibreOffice core, common, writer, calc, impress, draw and the libraries libreoffice-core depends on, "
      "unpacked from their .deb), published by one stack and installed by another over loopback. "
      f"Recorded startup set: {ranges:.0f} ranges, {sbytes / 1e6:.1f} MB ({100 * sbytes / size:.1f} % of the tree).\n")
print("| release | `install --no-wait` returns | first successful `flatpak run` | whole fetch done | first run / whole fetch |")
print("| --- | --- | --- | --- | --- |")
print(f"| 1: no startup set | {ready1:.2f} s | {run1:.2f} s | {full1:.2f} s | {run1 / full1:.3f} |")
print(f"| 2: recorded startup set, fetched first | {ready2:.2f} s | {run2:.2f} s | {full2:.2f} s | {run2 / full2:.3f} |")
PY
