#!/usr/bin/env bash
# Publishing benchmark: every number is a ratio taken side by side in one run.
#
#  1. Throughput: `flatipfsctl publish` of a tree through the daemon (node 1)
#     against a plain `ipfs add -r` of the same tree (node 2, its own repo).
#  2. Update size: two consecutive releases of a real, sizeable piece of
#     software (two versions of a wheel from PyPI, unpacked into an app's
#     files/): bytes of the new release that the old one lacks, under buzhash
#     (what flatipfs publishes), fixed 256 KiB chunks, and whole-file dedup.
#
#   scripts/bench-publish.sh            # scipy 1.14.0 -> 1.14.1
#   BENCH_PACKAGE=numpy BENCH_OLD=2.1.2 BENCH_NEW=2.1.3 scripts/bench-publish.sh
#
# Prints a Markdown report (also written to target/bench-publish.md).
source "$(dirname "$0")/bench-common.sh"
old=${BENCH_OLD:-1.14.0}
new=${BENCH_NEW:-1.14.1}
trap '"$bin/flatipfs-stack" down "$work/stack" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

# --- the trees ---------------------------------------------------------------
make_tree "$old" "$work/$old"
make_tree "$new" "$work/$new"

# --- the stack ---------------------------------------------------------------
env_lines=$("$bin/flatipfs-stack" up "$work/stack")
eval "$env_lines"
ctl() { "$bin/flatipfsctl" "$@"; }
node2() { IPFS_PATH="$FLATIPFS_KUBO_PATH_2" "$kubo" "$@"; }
now() { date +%s.%N; }
ctl remote create bench >/dev/null

tree_bytes=$(du -sb --apparent-size "$work/$old/files" | cut -f1)
t0=$(now); ctl publish --json --remote bench --version "$old" "$work/$old" > "$work/pub-old.json"; t1=$(now)
t2=$(now); node2 add -r -Q --cid-version=1 --chunker=buzhash --pin=false "$work/$old" > /dev/null; t3=$(now)
ctl publish --json --remote bench --version "$new" "$work/$new" > "$work/pub-new.json"

add_root() { node2 add -r -Q --cid-version=1 --chunker="$1" --pin=false "$2"; }
shared_new() { # CHUNKER -> "release_bytes new_bytes"
  local a b
  a=$(add_root "$1" "$work/$old"); b=$(add_root "$1" "$work/$new")
  node2 dag stat --progress=false --offline --enc=json "$a" "$b" | python3 -c '
import json, sys
d = json.load(sys.stdin)
size = d["DagStats"][1]["Size"]
print(size, size - d.get("SharedSize", 0))'
}
read -r buz_total buz_new < <(shared_new buzhash)
read -r fix_total fix_new < <(shared_new size-262144)

python3 - "$work" "$old" "$new" "$tree_bytes" "$t0" "$t1" "$t2" "$t3" "$buz_total" "$buz_new" "$fix_total" "$fix_new" "$package" <<'PY' | tee "$here/target/bench-publish.md"
import hashlib, json, os, sys
work, old, new, tree_bytes, t0, t1, t2, t3, buz_total, buz_new, fix_total, fix_new, package = sys.argv[1:]
tree_bytes = int(tree_bytes)
publish_s, add_s = float(t1) - float(t0), float(t3) - float(t2)

def files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if os.path.isfile(p) and not os.path.islink(p):
                with open(p, "rb") as f:
                    out[os.path.relpath(p, root)] = (hashlib.sha256(f.read()).hexdigest(), os.path.getsize(p))
    return out
a, b = files(os.path.join(work, old)), files(os.path.join(work, new))
old_hashes = {h for h, _ in a.values()}
new_total = sum(s for _, s in b.values())
whole_new = sum(s for h, s in b.values() if h not in old_hashes)
changed = sum(1 for p, (h, _) in b.items() if a.get(p, (None,))[0] != h)

pub = json.loads(open(os.path.join(work, "pub-new.json")).read().strip().splitlines()[-1])
mb = lambda n: f"{n / 1e6:.1f} MB"
pct = lambda n, d: f"{100 * n / d:.1f} %"
print(f"## Publishing benchmark: {package} {old} -> {new}\n")
print("Release builds; one run of scripts/bench-publish.sh on this machine.\n")
print(f"Tree: {mb(tree_bytes)} in {len(a)} files ({old}); {mb(new_total)} in {len(b)} files ({new}), {changed} of them new or changed.\n")
print("| measurement | value |")
print("| --- | --- |")
print(f"| `flatipfsctl publish` ({old}) | {publish_s:.2f} s, {tree_bytes / publish_s / 1e6:.1f} MB/s |")
print(f"| plain `ipfs add -r` (buzhash, same tree, other node) | {add_s:.2f} s, {tree_bytes / add_s / 1e6:.1f} MB/s |")
print(f"| publish time / plain add time | {publish_s / add_s:.2f} |")
print()
print(f"Bytes of the {new} release that a holder of {old} lacks:\n")
print("| method | new bytes | of the new release |")
print("| --- | --- | --- |")
print(f"| flatipfs publish (buzhash, via daemon `dag/stat`) | {mb(pub['new_bytes'])} | {pct(pub['new_bytes'], pub['release_bytes'])} |")
print(f"| buzhash, plain add | {mb(int(buz_new))} | {pct(int(buz_new), int(buz_total))} |")
print(f"| fixed 256 KiB chunks | {mb(int(fix_new))} | {pct(int(fix_new), int(fix_total))} |")
print(f"| whole-file dedup | {mb(whole_new)} | {pct(whole_new, new_total)} |")
PY
