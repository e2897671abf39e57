# Shared by the benchmark scripts (sourced, not run): sets up the machine,
# builds release binaries, and makes app trees from PyPI wheels.
# Defines: here, bin, kubo, package, cache, work, make_tree.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$here/scripts/setup.sh"
export PATH="$HOME/.cargo/bin:$PATH"
# Optimized binaries: the daemon is measured against Kubo, a release build.
# BENCH_PROFILE=debug uses debug builds instead (quicker to build; the fetch
# and publish work is Kubo's, a release build either way).
profile=${BENCH_PROFILE:-release}
if [ "$profile" = release ]; then
  (cd "$here" && cargo build --release --workspace --quiet)
else
  (cd "$here" && cargo build --workspace --quiet)
fi
bin="$here/target/$profile"
kubo=$(bash "$here/scripts/build-kubo.sh")
package=${BENCH_PACKAGE:-scipy}
cache="${FLATIPFS_CACHE:-$HOME/.cache/flatipfs}/bench/$package"
work=$(mktemp -d /tmp/flatipfs-bench.XXXXXX)
chmod 0755 "$work"   # polkitd (its own user) must reach the stack inside
mkdir -p "$cache"

# make_tree VERSION DIR: the wheel of $package VERSION (downloaded once into
# $cache) unpacked into an app deploy directory DIR.
make_tree() {
  local version=$1 tree=$2
  if ! ls "$cache"/*-"$version"-*.whl >/dev/null 2>&1; then
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
      --platform manylinux2014_x86_64 --dest "$cache" "$package==$version" >&2
  fi
  mkdir -p "$tree/files/lib/python3.11/site-packages"
  python3 -m zipfile -e "$(ls "$cache"/*-"$version"-*.whl | head -1)" "$tree/files/lib/python3.11/site-packages"
  : > "$tree/files/.ref"
  printf '[Application]\nname=org.bench.Package\nruntime=org.test.Platform/x86_64/master\ncommand=python3\n' > "$tree/metadata"
}
