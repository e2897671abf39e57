#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite:
# formatting, clippy, unit tests and the integration tests against real
# components (dbus-daemon, polkitd, Kubo, FUSE, flatpak, systemd-analyze).
# Must run as root. Then every fuzz target runs for a bounded time
# (scripts/fuzz.sh; FUZZ_SECONDS per target, default 15).
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
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace 2>&1 | tee "$log"
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
echo "== fuzz"
bash "$here/scripts/fuzz.sh" "${FUZZ_SECONDS:-15}"
