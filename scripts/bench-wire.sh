#!/usr/bin/env bash
# Wire benchmark (issue 10): bytes a client really moves to install and to
# update an app, flatipfs (packs and deltas) against Flatpak's static deltas
# on the same trees, side by side in one run.
#
# Two real update pairs from Debian, each unpacked into a Flatpak app tree
# (the package's /usr as files/):
#   - rebuild:       libreoffice-core 4:7.4.7-1+deb12u13 -> +deb12u14
#   - major version: firefox-esr 140.12.0esr -> 153.8.0esr
# (override with BENCH_PAIRS="name:package:old:new ...").
#
# Flatpak: both trees committed to one repo with `flatpak build-export`,
# `flatpak build-update-repo --generate-static-deltas`, and `ostree
# static-delta show`'s "Total Size" (fallback objects included) of the
# update delta and of the new commit's from-scratch delta.
#
# flatipfs: a publisher and a client stack. The old release is published
# and installed; the new one published (pack and deltas made); the client
# updates; bytes = the client Kubo's bitswap DataReceived. Then the app is
# uninstalled, the client's node garbage-collected and the new release
# installed from nothing (the pack). Publish time with encodings is compared
# to a publication of the same tree without them (--no-pack --no-deltas, to
# another remote, first, so it pays the cold add).
#
#   scripts/bench-wire.sh   # prints Markdown (also target/bench-wire.md)
#   BENCH_LEVEL=19          # zstd level of the publisher (default: its config, 19)
source "$(dirname "$0")/bench-common.sh"
pairs=${BENCH_PAIRS:-"rebuild:libreoffice-core:4:7.4.7-1+deb12u13:4:7.4.7-1+deb12u14 major:firefox-esr:140.12.0esr-1~deb12u1:153.8.0esr-1~deb12u1"}
debs="${FLATIPFS_CACHE:-$HOME/.cache/flatipfs}/bench/debs"
mkdir -p "$debs"
# The binaries measured, copied: later builds in the tree do not touch them.
mkdir -p "$work/bin"
cp "$bin/flatipfsd" "$bin/flatipfsctl" "$bin/flatipfs-stack" "$work/bin/"
bin="$work/bin"
export FLATIPFS_BIN_DIR="$bin"
source "$here/scripts/two-stacks.sh"
trap 'stop_two_stacks "$work"; rm -rf "$work"' EXIT
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")

# deb PACKAGE VERSION: the .deb, downloaded once into $debs.
deb() {
  local file
  file=$(ls "$debs/$1_"*"$(echo "$2" | sed 's/^[0-9]*://')"_*.deb 2>/dev/null | head -1 || true)
  if [ -z "$file" ]; then
    (cd "$debs" && apt-get download -q "$1=$2" >&2)
    file=$(ls "$debs/$1_"*"$(echo "$2" | sed 's/^[0-9]*://')"_*.deb | head -1)
  fi
  echo "$file"
}

# app_tree PACKAGE VERSION ID DIR: the package's /usr as a finished Flatpak
# build directory of app ID.
app_tree() {
  local unpacked="$4.unpacked"
  mkdir -p "$unpacked" "$4"
  dpkg-deb -x "$(deb "$1" "$2")" "$unpacked"
  mv "$unpacked/usr" "$4/files"
  rm -rf "$unpacked"
  printf '[Application]\nname=%s\nruntime=org.test.Platform/%s/master\ncommand=true\n' "$3" "$arch" > "$4/metadata"
  flatpak build-finish "$4" >/dev/null
  : > "$4/files/.ref"
}

now() { date +%s.%N; }
since() { python3 -c "print($(now) - $1)"; }
field() { python3 -c "import json, sys; v = json.loads(sys.stdin.read().strip().splitlines()[-1])
for k in sys.argv[1].split('.'): v = v[k]
print(v)" "$1"; }
received() { client "$kubo" stats bitswap --enc=json | python3 -c 'import json, sys; print(json.load(sys.stdin)["DataReceived"])'; }
delta_size() { ostree --repo="$1" static-delta show "$2" | sed -n 's/^Total Size: \([0-9]*\).*/\1/p'; }

start_two_stacks "$work"
if [ -n "${BENCH_LEVEL:-}" ]; then
  echo "note: BENCH_LEVEL is applied through the publisher's [publish] level" >&2
  printf '\n[publish]\nlevel = %s\n' "$BENCH_LEVEL" >> "$work/publisher/flatipfsd.toml"
  pub "$bin/flatipfsctl" reload-config >/dev/null || true
fi
ctl="$bin/flatipfsctl"
ipns=$(pub "$ctl" --json remote create bench | field name)
pub "$ctl" --json remote create plain >/dev/null
pub "$ctl" --json publish --remote bench --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
wait_for_index
client "$ctl" remote add bench "$ipns" >/dev/null
client "$ctl" policy none >/dev/null

results="$work/results"
: > "$results"
for spec in $pairs; do
  IFS=: read -r name package o1 o2 n1 n2 <<<"$spec"
  # Versions may hold an epoch ("4:7.4.7-1"): the spec splits on ':'.
  if [ -n "$n2" ]; then old="$o1:$o2"; new="$n1:$n2"; else old="$o1"; new="$o2"; fi
  id="org.bench.${name^}"
  echo "== $name: $package $old -> $new" >&2
  app_tree "$package" "$old" "$id" "$work/$name-old"
  app_tree "$package" "$new" "$id" "$work/$name-new"
  tree_old=$(du -sb "$work/$name-old/files" | cut -f1)
  tree_new=$(du -sb "$work/$name-new/files" | cut -f1)

  # Flatpak.
  repo="$work/$name-flatpak"
  ostree --repo="$repo" init --mode=archive-z2
  flatpak build-export "$repo" "$work/$name-old" master >/dev/null
  flatpak build-export "$repo" "$work/$name-new" master >/dev/null
  ref="app/$id/$arch/master"
  to=$(ostree --repo="$repo" rev-parse "$ref")
  from=$(ostree --repo="$repo" rev-parse "$ref^")
  t0=$(now); flatpak build-update-repo --generate-static-deltas "$repo" >/dev/null; t_flatpak=$(since "$t0")
  fp_update=$(delta_size "$repo" "$from-$to")
  fp_scratch=$(delta_size "$repo" "$to")

  # flatipfs: publish the old release, install it completely.
  pub "$ctl" --json publish --remote bench --version 1 "$work/$name-old" >/dev/null
  wait_for_index
  client "$ctl" --json install bench "$id" >/dev/null
  # The new release: without encodings first (today's cost), then with.
  t0=$(now); pub "$ctl" --json publish --remote plain --version 2 --no-pack --no-deltas "$work/$name-new" >/dev/null; t_plain=$(since "$t0")
  t0=$(now); published=$(pub "$ctl" --json publish --remote bench --version 2 "$work/$name-new"); t_enc=$(since "$t0")
  wait_for_index
  before=$(received)
  updated=$(client "$ctl" --json update "$id")
  got_update=$(( $(received) - before ))
  # A first install of the new release: no base, so the pack.
  client "$ctl" --json uninstall "$id" >/dev/null
  client "$kubo" repo gc >/dev/null
  before=$(received)
  client "$ctl" --json install bench "$id" >/dev/null
  got_install=$(( $(received) - before ))
  echo "$name $package $old $new $tree_old $tree_new $fp_update $fp_scratch $t_flatpak $got_update $got_install $t_plain $t_enc $(echo "$published" | field encodings.pack_bytes) $(echo "$published" | field encodings.delta_bytes) $(echo "$published" | field encodings.seconds) $(echo "$updated" | field bytes.delta) $(echo "$updated" | field bytes.pack) $(echo "$updated" | field bytes.plain) $(echo "$published" | field new_bytes)" >> "$results"
  rm -rf "$work/$name-old" "$work/$name-new" "$repo"
done

python3 - "$results" <<'PY' | tee "$here/target/bench-wire.md"
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
mb = lambda b: f"{float(b) / 1e6:.1f} MB"
print("## Wire benchmark: bytes a client moves, flatipfs against Flatpak\n")
print("One run of scripts/bench-wire.sh; publisher and client stacks over loopback; "
      "the machine was shared (times are indicative, byte counts are exact).\n")
print("| pair | tree old → new | Flatpak static delta (update) | flatipfs update (bitswap) | ratio (target) | Flatpak from-scratch delta | flatipfs install (bitswap) | ratio (target ≤ 0.85) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    name, package, old, new, told, tnew, fpu, fps, tfp, gu, gi, tplain, tenc, pack, deltas, tencode, ud, up, upl, newb = r
    target = "≤ 0.5" if name == "rebuild" else "≤ 0.8"
    print(f"| {name}: {package} {old} → {new} | {mb(told)} → {mb(tnew)} | {mb(fpu)} | {mb(gu)} | {int(gu) / int(fpu):.2f} ({target}) | {mb(fps)} | {mb(gi)} | {int(gi) / int(fps):.2f} |")
print()
print("| pair | update as deltas / pack / plain blocks (daemon's count) | flatipfs without encodings would move (unshared blocks) | pack | deltas | publish with encodings / without | encodings made in | Flatpak's delta generation |")
print("| --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    name, package, old, new, told, tnew, fpu, fps, tfp, gu, gi, tplain, tenc, pack, deltas, tencode, ud, up, upl, newb = r
    print(f"| {name} | {mb(ud)} / {mb(up)} / {mb(upl)} | {mb(newb)} | {mb(pack)} | {mb(deltas)} | {float(tenc):.0f} s / {float(tplain):.0f} s = {float(tenc) / float(tplain):.1f}× | {float(tencode):.0f} s | {float(tfp):.0f} s |")
PY
