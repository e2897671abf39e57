#!/usr/bin/env bash
# Network benchmark: a publisher and a client on the private IPFS network of
# scripts/two-stacks.sh (a bootstrap node; the client's node knows only it),
# nothing carried by hand. Measures, in one run:
#
#  1. publish → the client's node resolves the new store index (DHT), and
#     publish → the client's daemon sees the new release (`update --check`,
#     what its scheduler runs; the check interval is not included);
#  2. an install found only through routing: the client's node is first
#     disconnected from the publisher's (`swarm disconnect`, so the blocks
#     must be found through the DHT), then `install --no-wait` (runnable);
#  3. bytes a check fetches (the client node's bitswap data received) for a
#     generated remote of 3,000 apps, in the old one-document layout and in
#     the sharded one: a first check, and a check after one app changed.
#
#   BENCH_PROFILE=debug scripts/bench-network.sh   # prints Markdown (also target/bench-network.md)
source "$(dirname "$0")/bench-common.sh"
source "$here/scripts/two-stacks.sh"
trap 'stop_two_stacks "$work"; rm -rf "$work"' EXIT
apps="$here/target/test-apps"
bash "$here/tests/fixtures/make-test-apps.sh" "$apps"
arch=$(cat "$apps/arch")
start_two_stacks "$work"
ctl="$bin/flatipfsctl"
field() { python3 -c "import json, sys; print(json.loads(sys.stdin.read().strip().splitlines()[-1])[sys.argv[1]])" "$1"; }
now() { date +%s.%N; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$1" "$2"; }

ipns=$(pub "$ctl" --json remote create main | field name)
client "$ctl" remote add main "$ipns" >/dev/null
pub "$ctl" publish --remote main --repo "$apps/repo-v1" "runtime/org.test.Platform/$arch/master" >/dev/null
pub "$ctl" publish --remote main --repo "$apps/repo-v1" "app/org.test.Hello/$arch/master" >/dev/null
wait_for_index

# 2. Install through routing alone.
pub_id=$(pub "$kubo" id -f '<id>')
client "$kubo" swarm disconnect "$(client "$kubo" swarm peers | grep "$pub_id" | head -1)" >/dev/null 2>&1 || true
t0=$(now)
client "$ctl" install --no-wait main org.test.Hello >/dev/null
t1=$(now)
install_s=$(secs "$t0" "$t1")
provs=$(client "$kubo" routing findprovs --num-providers=3 "$(pub "$kubo" name resolve --offline --nocache "/ipns/${ipns#/ipns/}" | sed 's|/ipfs/||')" | grep -c "$pub_id" || true)

# 1. Publish → seen.
t0=$(now)
pub "$ctl" publish --remote main --version 2 --repo "$apps/repo-v2" "app/org.test.Hello/$arch/master" >/dev/null
t1=$(now)
wait_for_index
t2=$(now)
until client "$ctl" --json update --check org.test.Hello 2>/dev/null | grep -q '"2"'; do sleep 0.1; done
t3=$(now)
resolve_s=$(secs "$t1" "$t2")
seen_s=$(secs "$t1" "$t3")
publish_s=$(secs "$t0" "$t1")

# 3. Bytes per check, as the client's node counts them (bitswap's data
# received around one `update --check`, the check the scheduler runs), for
# a generated remote of 3,000 apps (the test remote's entries and 3,000
# made from its app's), published under the remote's key in each layout:
# the first check (nothing of it seen before) and a check after one app
# changed. The test remote's own sharded index, for scale.
(cd "$here" && cargo build $([ "$profile" = release ] && echo --release) -p flatipfs-format --example shard_index --quiet)
shard_index="$here/target/$profile/examples/shard_index"
received() { client "$kubo" stats bitswap --enc=json | python3 -c 'import json, sys; print(json.load(sys.stdin)["DataReceived"])'; }
settle() { local a b; a=$(received); while sleep 3; b=$(received); [ "$a" != "$b" ]; do a=$b; done; }
check_bytes() {
  local before after
  settle
  before=$(received)
  client "$ctl" --json update --check org.test.Hello >/dev/null
  after=$(received)
  echo $((after - before))
}
publish_index() {  # publish_index DIR-OR-FILE: added as the daemon adds, signed with the remote's key
  local cid
  cid=$(pub "$kubo" add -Q -r --cid-version=1 --raw-leaves --chunker=buzhash "$1" | tail -1)
  pub "$kubo" name publish --key=flatipfs-remote-main --allow-offline --lifetime=48h --ttl=1m "/ipfs/$cid" >/dev/null
  wait_for_index
}
index_cid=$(pub "$kubo" name resolve --offline --nocache "/ipns/${ipns#/ipns/}" | sed 's|/ipfs/||')
index_bytes=$(( $(pub "$kubo" cat "$index_cid/index.json" | wc -c) + $(for s in $(pub "$kubo" ls "$index_cid/shards" | awk '{print $1}'); do pub "$kubo" cat "$s"; done | wc -c) ))
sequence=$(pub "$kubo" cat "$index_cid/index.json" | python3 -c 'import json, sys; print(json.load(sys.stdin)["sequence"])')
# generate N: the whole index (schema 1) at sequence +N, app 1234 changed from N=2 on.
generate() {
  python3 - "$work/whole.json" "$1" "$sequence" "$work/index-$1.json" <<'PY'
import json, sys
whole, n, sequence, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
index = json.load(open(whole))
index["sequence"] = sequence + n
entry = index["apps"]["org.test.Hello"]
s = entry["sequence"]
past = [dict(release=entry["release"], sequence=p, version=str(p), published=0) for p in (s - 1, s - 2) if p > 0]
for i in range(3000):
    index["apps"][f"org.example.App{i:04d}"] = dict(entry, history=past)
if n % 2 == 0:
    index["apps"]["org.example.App1234"] = dict(entry, sequence=sequence + n, version=str(sequence + n), history=past)
json.dump(index, open(out, "w"), indent=2)
PY
}
client "$ctl" --json update --check org.test.Hello >/dev/null
# The test remote's index as one schema 1 document, the base of the generated ones.
mkdir -p "$work/current"
pub "$kubo" cat "$index_cid/index.json" > "$work/current/root"
for s in $(pub "$kubo" ls "$index_cid/shards" | awk '{print $1}'); do pub "$kubo" cat "$s" > "$work/current/$s"; done
python3 - "$work/current" > "$work/whole.json" <<'PY'
import json, os, sys
root = json.load(open(os.path.join(sys.argv[1], "root")))
apps = {}
for name in os.listdir(sys.argv[1]):
    if name != "root":
        apps.update(json.load(open(os.path.join(sys.argv[1], name))).get("apps", {}))
index = dict(schema=1, remote=root["remote"], sequence=root["sequence"], apps=apps, peers=root.get("peers", []))
if "appstream" in root:
    index["appstream"] = root["appstream"]
print(json.dumps(index))
PY
for n in 1 2 3 4; do generate $n; done
whole_bytes=$(wc -c < "$work/index-2.json")
# Schema 1, one document: first check, then one app changed.
publish_index "$work/index-1.json"; old_first=$(check_bytes)
publish_index "$work/index-2.json"; old_one=$(check_bytes)
# Sharded: first check, then one app changed.
for n in 3 4; do mkdir -p "$work/sharded-$n"; "$shard_index" "$work/index-$n.json" "$work/sharded-$n"; done
shards=$(ls "$work/sharded-3/shards" | wc -l)
publish_index "$work/sharded-3"; new_first=$(check_bytes)
publish_index "$work/sharded-4"; new_one=$(check_bytes)

report="## Network (private routed network, loopback; $(date -u +%F), machine shared)

| measure | value |
| --- | --- |
| publish (app v2, debug daemon) | ${publish_s} s |
| publish → client's node resolves the new index (DHT) | ${resolve_s} s |
| publish → client's daemon sees the new release (\`update --check\`; add the check interval for the scheduler) | ${seen_s} s |
| install found through routing alone (\`install --no-wait\`, after \`swarm disconnect\`) | ${install_s} s |
| client's \`findprovs\` of the index names the publisher | ${provs} |
| the test remote's sharded index (root and shards, 2 apps) | ${index_bytes} B |
| a remote of 3,000 apps: its index as one schema 1 document | ${whole_bytes} B |
| 3,000 apps, schema 1 (one document): bytes the client's node received for the first check | ${old_first} B |
| 3,000 apps, schema 1 (one document): bytes received for a check after one app changed | ${old_one} B |
| 3,000 apps, sharded (${shards} shard documents): bytes received for the first check | ${new_first} B |
| 3,000 apps, sharded: bytes received for a check after one app changed | ${new_one} B |
"
echo "$report" | tee "$here/target/bench-network.md"
