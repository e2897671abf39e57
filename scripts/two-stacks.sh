# Two private stacks, a publisher and a client (sourced, not run): each a
# system bus, polkitd, one Kubo node and flatipfsd, the client's node
# connected to (and peering with) the publisher's.
#
#   start_two_stacks DIR   # needs $bin (flatipfs-stack) and $kubo (ipfs)
#   pub CMD…               # CMD against the publisher's bus and node (IPFS_PATH set)
#   client CMD…            # the same for the client
#   carry_index            # the store index record $ipns, publisher -> client
#   stop_two_stacks DIR
start_two_stacks() {
  local dir=$1 id addr
  mkdir -p "$dir"; chmod 0755 "$dir"   # polkitd (its own user) must reach the sockets
  pub_env=$("$bin/flatipfs-stack" up "$dir/publisher" --kubo-nodes 1)
  client_env=$("$bin/flatipfs-stack" up "$dir/client" --kubo-nodes 1)
  id=$(pub "$kubo" id -f '<id>')
  addr=$(pub "$kubo" id -f '<addrs>' | grep '^/ip4/127.0.0.1/tcp/' | head -1)
  client "$kubo" swarm connect "${addr%/p2p/*}/p2p/$id" >/dev/null
  client "$kubo" swarm peering add "${addr%/p2p/*}/p2p/$id" >/dev/null
}
pub() { (eval "$pub_env"; export IPFS_PATH="$FLATIPFS_KUBO_PATH_1"; "$@"); }
client() { (eval "$client_env"; export IPFS_PATH="$FLATIPFS_KUBO_PATH_1"; "$@"); }
carry_index() {
  local record
  record=$(mktemp)
  pub "$kubo" name get "${ipns#/ipns/}" > "$record"
  client "$kubo" name put --force "${ipns#/ipns/}" "$record" >/dev/null
  rm -f "$record"
}
stop_two_stacks() {
  "$bin/flatipfs-stack" down "$1/client" >/dev/null 2>&1 || true
  "$bin/flatipfs-stack" down "$1/publisher" >/dev/null 2>&1 || true
}
