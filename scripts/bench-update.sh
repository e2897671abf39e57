#!/usr/bin/env bash
# Update benchmark: ratios taken side by side in one run, through the daemon.
#
# A publisher stack and a client stack (as bench-install.sh). The app is a
# scipy wheel unpacked into files/ (version BENCH_OLD, then BENCH_NEW) on
# the test runtime. The client installs the old release completely; the
# publisher publishes the new one; then the client:
#
#  1. downloads the update (`update --download-only`): bytes its Kubo node
#     received over bitswap, against the new release's bytes the old one does
#     not share (`dag/stat` on the publisher, reported by `publish`);
#  2. applies it (`update --cached-only`, no network): time, against the
#     time the download took;
#  3. rolls back (`rollback`, no network): time.
#
#   scripts/bench-update.sh   # prints Markdown (also target/bench-update.md)
source "$(dirname "$0")/bench-common.sh"
old=${BENCH_OLD:-1.14.0}
new=${BENCH_NEW:-1.14.1}
source "$here/scripts/two-stacks.sh"
trap 'stop_two_stacks "$work"; rm -rf "$work"' EXIT
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")

app_tree() { # VERSION DIR
  make_tree "$1" "$2"
  mkdir -p "$2/files/bin"
  printf '#!/bin/sh\necho "bench app %s"\n' "$1" > "$2/files/bin/start.sh"
  chmod 0755 "$2/files/bin/start.sh"
  printf '[Application]\nname=org.bench.Package\nruntime=org.test.Platform/%s/master\ncommand=start.sh\n' "$arch" > "$2/metadata"
}
app_tree "$old" "$work/old"
app_tree "$new" "$work/new"

start_two_stacks "$work"
ctl="$bin/flatipfsctl"
field() { python3 -c "import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])" "$1"; }

ipns=$(pub "$ctl" --json remote create bench | field name)
pub "$ctl" --json publish --remote bench --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
pub "$ctl" --json publish --remote bench --version "$old" "$work/old" >/dev/null
wait_for_index
client "$ctl" remote add bench "$ipns" >/dev/null
client "$ctl" policy none >/dev/null
client "$ctl" --json install bench org.bench.Package >/dev/null
published=$(pub "$ctl" --json publish --remote bench --version "$new" "$work/new")
new_bytes=$(echo "$published" | field new_bytes)
release_bytes=$(echo "$published" | field release_bytes)
wait_for_index

received() { client "$kubo" stats bitswap --enc=json | python3 -c 'import json, sys; print(json.load(sys.stdin)["DataReceived"])'; }
now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }

before=$(received)
t0=$(now); client "$ctl" --json update --download-only org.bench.Package >/dev/null; t_download=$(since "$t0")
got=$(( $(received) - before ))
t0=$(now); client "$ctl" --json update --cached-only org.bench.Package >/dev/null; t_apply=$(since "$t0")
client flatpak run org.bench.Package | grep -q "bench app $new"
t0=$(now); client "$ctl" --json rollback org.bench.Package >/dev/null; t_rollback=$(since "$t0")
client flatpak run org.bench.Package | grep -q "bench app $old"

python3 - "$got" "$new_bytes" "$release_bytes" "$t_download" "$t_apply" "$t_rollback" "$package" "$old" "$new" <<'PY' | tee "$here/target/bench-update.md"
import sys
got, new, total, td, ta, tr = map(float, sys.argv[1:7])
package, old, new_v = sys.argv[7:]
print(f"## Update benchmark: {package} {old} -> {new_v} as an app, through the daemon\n")
print("Release builds; one run of scripts/bench-update.sh; publisher and client stacks over loopback.\n")
print("| measurement | value | against | ratio |")
print("| --- | --- | --- | --- |")
print(f"| bytes the client's Kubo received (bitswap) for the update | {got / 1e6:.1f} MB | new release's bytes not shared with the old (`dag/stat`) {new / 1e6:.1f} MB | {got / new:.2f} |")
print(f"| new release's unshared bytes | {new / 1e6:.1f} MB | whole new release {total / 1e6:.1f} MB | {new / total:.2f} |")
print(f"| apply an already downloaded update (`update --cached-only`) | {ta:.2f} s | its download (`update --download-only`) {td:.2f} s | {ta / td:.2f} |")
print(f"| roll back (`rollback`, no network) | {tr:.2f} s | the download {td:.2f} s | {tr / td:.2f} |")
PY
