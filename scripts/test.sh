#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs the whole test suite:
# formatting, clippy, unit tests and the integration tests against real
# components (dbus-daemon, polkitd, Kubo, FUSE, flatpak, systemd-analyze, tmux
# and pkttyagent, a Debian 12 container booted with systemd-nspawn).
# Must run as root. Then every fuzz target runs for a bounded time
# (scripts/fuzz.sh; FUZZ_SECONDS per target, default 25: four targets, 100 s in all; keep the total within 2 minutes).
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
# Every test binary runs even when one fails, so one failure hides no other.
status=0
cargo test --workspace --no-fail-fast 2>&1 | tee "$log" || status=$?
# One closing line over every test binary (cargo prints one per binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i-1); if ($i ~ /^failed;?$/) f += $(i-1) } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
if [ "$status" -ne 0 ]; then
  grep -E '^    [a-z_0-9]+$|^test .* FAILED$' "$log" | sort -u >&2 || true
  echo "cargo test failed (exit $status)" >&2
  exit "$status"
fi
echo "== fuzz"
bash "$here/scripts/fuzz.sh" "${FUZZ_SECONDS:-25}"
