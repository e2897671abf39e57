#!/usr/bin/env bash
# A daemon that holds 100 apps: figures taken in one run, through the daemon.
#
# A publisher stack and a client stack (as bench-update.sh). BENCH_APPS
# (default 100) tiny generated apps on the test runtime (org.bench.AppN: a
# start script, a few files), each published twice (versions 1 and 2). The
# client installs every app at version 1, then updates each to version 2, so
# that each keeps one previous release. Then, on the client's flatipfsd:
#
#  - resident memory (VmRSS) and threads (/proc/PID/status);
#  - mounts below the stack (mountinfo: FUSE ones, bind mounts of local
#    trees, once every current release is on its tree) and releases kept;
#  - ListApps latency: median of 50 calls (busctl, the bare method), and of
#    10 `flatipfsctl --json list` (ListApps and every app's properties);
#  - restart: time from SIGTERM to a new daemon whose ListApps shows every
#    app with a mount point and whose `flatpak run` of the last app works.
#
#   scripts/bench-100-apps.sh   # prints Markdown (also target/bench-100-apps.md)
#   BENCH_BIN=target/debug scripts/bench-100-apps.sh   # no release build
#   BENCH_KEEP=1 …   # keeps the stacks' directory (logs) after the run
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
if [ -n "${BENCH_BIN:-}" ]; then
  bin=$(cd "$BENCH_BIN" && pwd)
else
  (cd "$here" && cargo build --release --workspace --quiet)
  bin="$here/target/release"
fi
kubo=$(bash "$here/scripts/build-kubo.sh")
n=${BENCH_APPS:-100}
work=$(mktemp -d /tmp/flatipfs-bench.XXXXXX)
chmod 0755 "$work"   # polkitd (its own user) must reach the stack inside
source "$here/scripts/two-stacks.sh"
trap 'stop_two_stacks "$work"; [ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"' EXIT
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")

app_tree() { # ID VERSION DIR
  local id=$1 version=$2 dir=$3
  mkdir -p "$dir/files/bin" "$dir/files/share/$id"
  printf '#!/bin/sh\necho "%s version %s"\n' "$id" "$version" > "$dir/files/bin/start.sh"
  chmod 0755 "$dir/files/bin/start.sh"
  head -c 20000 /dev/urandom > "$dir/files/share/$id/data"
  : > "$dir/files/.ref"
  printf '[Application]\nname=%s\nruntime=org.test.Platform/%s/master\ncommand=start.sh\n' "$id" "$arch" > "$dir/metadata"
}
now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }
field() { python3 -c "import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])" "$1"; }
ids=(); for i in $(seq 1 "$n"); do ids+=("org.bench.App$i"); done

# The client's daemon runs its embedded Kubo node, as a user's does: once a
# release is fetched its files are local and its files/ a bind mount of its
# local tree (trees.rs), and a restart mounts those without FUSE.
client_stack_options="--kubo-nodes 0 --embedded-kubo" start_two_stacks "$work"
ctl="$bin/flatipfsctl"
ipns=$(pub "$ctl" --json remote create bench | field name)
pub "$ctl" --json publish --remote bench --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
for id in "${ids[@]}"; do
  app_tree "$id" 1 "$work/trees/$id-1"
  pub "$ctl" --json publish --remote bench --version 1 "$work/trees/$id-1" >/dev/null
done
wait_for_index
client "$ctl" remote add bench "$ipns" >/dev/null
client "$ctl" policy none >/dev/null
t0=$(now)
for id in "${ids[@]}"; do client "$ctl" --json install bench "$id" >/dev/null; done
t_install=$(since "$t0")
for id in "${ids[@]}"; do
  app_tree "$id" 2 "$work/trees/$id-2"
  pub "$ctl" --json publish --remote bench --version 2 "$work/trees/$id-2" >/dev/null
done
wait_for_index
t0=$(now)
for id in "${ids[@]}"; do client "$ctl" --json update "$id" >/dev/null; done
t_update=$(since "$t0")
client flatpak run "${ids[-1]}" | grep -q "version 2"
sleep 8   # the daemon's sweep unmounts what no job or sandbox uses (every 3 s)
# Every release kept is made local and gets its local tree, which replaces
# its FUSE mount (trees.rs): wait until no deploy is mounted through FUSE.
fuse_deploys() { awk -v d="$work/client/state/installation/" 'index($5, d) == 1 && / - fuse/' /proc/self/mountinfo | wc -l; }
t0=$(now)
for _ in $(seq 3000); do [ "$(fuse_deploys)" = 0 ] && break; sleep 0.1; done
t_local=$(since "$t0")

measure() { # prints: rss_kB threads fuse_mounts other_mounts
  local pid
  pid=$("$bin/flatipfs-stack" daemon-pid "$work/client")
  awk '/^VmRSS/ { r = $2 } /^Threads/ { t = $2 } END { printf "%s %s ", r, t }' "/proc/$pid/status"
  awk -v d="$work/client/" 'index($5, d) == 1 { if (/ - fuse/) f++; else o++ } END { printf "%d %d\n", f, o }' /proc/self/mountinfo
}
kept=$(client "$ctl" --json list | python3 -c '
import json, sys
apps = json.load(sys.stdin)["apps"]
print(sum(len(a.get("deployments", [])) for a in apps))')
read -r rss threads mounts tmounts < <(measure)

listapps() { client busctl --system call org.flatipfs.Manager1 /org/flatipfs/Manager1 org.flatipfs.Manager1 ListApps >/dev/null; }
median() { python3 -c "import statistics, sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
times=(); for _ in $(seq 1 50); do t0=$(now); listapps; times+=("$(since "$t0")"); done
t_listapps=$(median "${times[@]}")
times=(); for _ in $(seq 1 10); do t0=$(now); client "$ctl" --json list >/dev/null; times+=("$(since "$t0")"); done
t_list=$(median "${times[@]}")

mounted_apps() {
  client "$ctl" --json list 2>/dev/null | python3 -c '
import json, sys
apps = json.load(sys.stdin)["apps"]
print(sum(1 for a in apps if a["kind"] == "app" and a.get("mount_point")))' 2>/dev/null || echo 0
}
t0=$(now)
"$bin/flatipfs-stack" restart-daemon "$work/client" >/dev/null
until [ "$(mounted_apps)" -ge "$n" ]; do sleep 0.05; done
client flatpak run "${ids[-1]}" | grep -q "version 2"
t_restart=$(since "$t0")
sleep 4
read -r rss2 threads2 mounts2 tmounts2 < <(measure)

python3 - "$n" "$rss" "$threads" "$mounts" "$kept" "$t_listapps" "$t_list" "$t_restart" "$rss2" "$threads2" "$mounts2" "$t_install" "$t_update" "$(basename "$bin")" "$tmounts" "$tmounts2" "$t_local" <<'PY' | tee "$here/target/bench-100-apps.md"
import sys
n, rss, threads, mounts, kept = (int(x) for x in sys.argv[1:6])
t_listapps, t_list, t_restart = (float(x) for x in sys.argv[6:9])
rss2, threads2, mounts2 = (int(x) for x in sys.argv[9:12])
t_install, t_update = (float(x) for x in sys.argv[12:14])
profile = sys.argv[14]
tmounts, tmounts2 = int(sys.argv[15]), int(sys.argv[16])
t_local = float(sys.argv[17])
print(f"## {n} apps, one previous release each, on one daemon\n")
print(f"`{profile}` binaries; one run of scripts/bench-100-apps.sh; publisher and client stacks over loopback.\n")
print("| measurement | value | target |")
print("| --- | --- | --- |")
print(f"| releases kept (installed + previous) | {kept} | |")
print(f"| daemon resident memory (VmRSS) | {rss / 1024:.1f} MB | ≤ 50 MB |")
print(f"| daemon threads | {threads} | ≤ 64 |")
print(f"| mounts below the stack: FUSE (the pool's own, releases not local yet), bind mounts of local trees | {mounts} FUSE, {tmounts} trees | |")
print(f"| `ListApps` (median of 50 `busctl` calls) | {t_listapps * 1000:.1f} ms | reported |")
print(f"| `flatipfsctl --json list` ({n} apps' properties; median of 10) | {t_list * 1000:.0f} ms | reported |")
print(f"| restart: SIGTERM to all {n} runnable again (mount points set, `flatpak run` works) | {t_restart:.2f} s | ≤ 5 s |")
print(f"| after the restart: memory, threads, mounts | {rss2 / 1024:.1f} MB, {threads2}, {mounts2} FUSE + {tmounts2} trees | |")
print(f"| (setup) {n} installs, {n} updates, one at a time | {t_install:.0f} s, {t_update:.0f} s | |")
print(f"| (setup) then until every current release is on its local tree | {t_local:.1f} s | |")
PY
