#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite:
# formatting, clippy, unit tests and the integration tests against real
# components (dbus-daemon, polkitd, Kubo, FUSE, flatpak, systemd-analyze).
# Must run as root.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
bash "$here/scripts/setup.sh"
cd "$here"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== cargo test"
cargo test --workspace
