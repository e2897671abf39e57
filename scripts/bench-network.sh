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
#  3. bytes a check fetches: the store index document, for the test remote
#     and for a generated index of 3,000 apps (one of which changed).
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

# 3. Bytes per check.
index_cid=$(pub "$kubo" name resolve --offline --nocache "/ipns/${ipns#/ipns/}" | sed 's|/ipfs/||')
index_bytes=$(pub "$kubo" cat "$index_cid" | wc -c)
big_bytes=$(pub "$kubo" cat "$index_cid" | python3 -c '
import json, sys
index = json.load(sys.stdin)
entry = index["apps"]["org.test.Hello"]
for i in range(3000):
    e = dict(entry, history=[dict(release=entry["release"], sequence=1, version="1", published=0)] * 2)
    index["apps"][f"org.example.App{i:04d}"] = e
print(len(json.dumps(index, indent=2).encode()))')

report="## Network (private routed network, loopback; $(date -u +%F), machine shared)

| measure | value |
| --- | --- |
| publish (app v2, debug daemon) | ${publish_s} s |
| publish → client's node resolves the new index (DHT) | ${resolve_s} s |
| publish → client's daemon sees the new release (\`update --check\`; add the check interval for the scheduler) | ${seen_s} s |
| install found through routing alone (\`install --no-wait\`, after \`swarm disconnect\`) | ${install_s} s |
| client's \`findprovs\` of the index names the publisher | ${provs} |
| bytes a check fetches: the test remote's index | ${index_bytes} B |
| bytes a check fetches: an index of 3,000 apps (one changed) | ${big_bytes} B |
"
echo "$report" | tee "$here/target/bench-network.md"
