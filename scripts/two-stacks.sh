# Two private stacks, a publisher and a client (sourced, not run): each a
# system bus, polkitd, one Kubo node and flatipfsd, on a private IPFS network
# whose bootstrap node is a third stack's only node. The client's node knows
# only the bootstrap node: it finds the publisher's records and blocks
# through routing (the DHT), as between two machines.
#
#   start_two_stacks DIR   # needs $bin (flatipfs-stack) and $kubo (ipfs);
#                          # $client_stack_options replaces the client's
#                          # `--kubo-nodes 1` (e.g. `--kubo-nodes 0 --embedded-kubo`)
#   pub CMD…               # CMD against the publisher's bus and node (IPFS_PATH set)
#   client CMD…            # the same for the client
#   wait_for_index         # until the client's node resolves $ipns to what the publisher published
#   stop_two_stacks DIR
start_two_stacks() {
  local dir=$1 network_env bootstrap
  mkdir -p "$dir"; chmod 0755 "$dir"   # polkitd (its own user) must reach the sockets
  network_env=$("$bin/flatipfs-stack" up "$dir/network" --kubo-nodes 1 --network-only)
  bootstrap=$(eval "$network_env"; echo "$FLATIPFS_KUBO_PEER_1")
  pub_env=$("$bin/flatipfs-stack" up "$dir/publisher" --kubo-nodes 1 --bootstrap "$bootstrap")
  # shellcheck disable=SC2086 # options, split on purpose
  client_env=$("$bin/flatipfs-stack" up "$dir/client" ${client_stack_options:---kubo-nodes 1} --bootstrap "$bootstrap")
}
pub() { (eval "$pub_env"; export IPFS_PATH="$FLATIPFS_KUBO_PATH_1"; "$@"); }
client() { (eval "$client_env"; export IPFS_PATH="$FLATIPFS_KUBO_PATH_1"; "$@"); }
wait_for_index() {
  local name=${ipns#/ipns/} want got i
  want=$(pub "$kubo" name resolve --offline --nocache "/ipns/$name")
  for i in $(seq 1 600); do
    got=$(client "$kubo" --timeout=10s name resolve --nocache "/ipns/$name" 2>/dev/null || true)
    [ "$got" = "$want" ] && return 0
    sleep 0.1
  done
  echo "the client's node did not resolve /ipns/$name to $want through routing within a minute (last: ${got:-nothing})" >&2
  return 1
}
stop_two_stacks() {
  "$bin/flatipfs-stack" down "$1/client" >/dev/null 2>&1 || true
  "$bin/flatipfs-stack" down "$1/publisher" >/dev/null 2>&1 || true
  "$bin/flatipfs-stack" down "$1/network" >/dev/null 2>&1 || true
}
