#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, see fuzz/README.md) for a
# bounded time each: `scripts/fuzz.sh [SECONDS]` (default 20 per target).
# Each starts from the committed seeds in fuzz/corpus/<target>/; what it
# finds on the way goes to a scratch corpus, not into the tree. A crash fails
# the script and prints the crashing input's path (under fuzz/artifacts/).
#
# cargo-fuzz is installed by scripts/setup.sh. It needs nightly features:
# the nightly toolchain when rustup has one, else stable with
# RUSTC_BOOTSTRAP=1.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
seconds=${1:-20}
export PATH="$HOME/.cache/flatipfs/cargo-fuzz/bin:$HOME/.cargo/bin:$PATH"

command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz not found: run scripts/setup.sh" >&2; exit 1; }
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  fuzz=(cargo +nightly fuzz)
else
  export RUSTC_BOOTSTRAP=1
  fuzz=(cargo fuzz)
fi

cd "$here/fuzz"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"${fuzz[@]}" build 2>&1 | tail -n 3 >&2
failed=0
for target in $("${fuzz[@]}" list); do
  mkdir -p "$scratch/$target" "corpus/$target" "artifacts/$target"
  log="$scratch/$target.log"
  echo "== fuzz $target (${seconds}s)" >&2
  if "${fuzz[@]}" run "$target" "$scratch/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    grep -E '^(stat::number_of_executed_units|Done )' "$log" >&2 || true
  else
    failed=1
    tail -n 40 "$log" >&2
    crash=$(grep -oE '(Test unit written to|artifact_prefix=.*; Test unit written to) [^ ]+' "$log" | awk '{print $NF}' | tail -n 1)
    echo "fuzz: $target FAILED; crashing input: ${crash:-see the log above} (replay: cd fuzz && ${fuzz[*]} run $target ${crash:-INPUT})" >&2
  fi
done
exit "$failed"
