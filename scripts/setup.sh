#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine for flatipfs, as root, idempotently:
# installs every Debian package the project and its tests need, creates the
# system user the embedded Kubo node runs as (flatipfs-kubo), builds Kubo at
# the pinned version (cached outside the tree) and builds the Rust workspace.
#
# Prerequisites not from Debian: Rust (rustup, stable) and Go >= 1.26.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"

packages=(
  dbus dbus-bin dbus-daemon   # the private system bus of the stack
  polkitd                     # real polkit authority (pkaction, pkcheck too)
  fuse3                       # /dev/fuse tooling, fusermount3
  flatpak bubblewrap          # the real flatpak binary
  ostree zstd                 # bench-wire.sh: `ostree static-delta show`, zstd for tests
  systemd                     # systemd-analyze (not as PID 1)
  libxml2-utils               # xmllint: policy validation against polkit's DTD
  util-linux passwd procps    # setpriv, findmnt, useradd, ps
  libglib2.0-bin              # gdbus, for poking at the API by hand
  pkexec tmux                 # pkttyagent (flatipfsctl's password prompt) and a terminal to drive it
  dpkg-dev lintian            # scripts/package.sh: dpkg-shlibdeps, the package's lint
  debootstrap systemd-container  # the booted-container test of the package (systemd-nspawn)
  ca-certificates
  # Flatpak's deploy triggers, run by the daemon after each install/update/uninstall
  desktop-file-utils shared-mime-info gtk-update-icon-cache hicolor-icon-theme
  # the GNOME Software plugin (gnome-software/) and its headless tests
  gnome-software gnome-software-dev gcc make pkg-config
  xvfb xauth dbus-x11 imagemagick xdotool
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs Debian packages, and the stack starts polkitd and FUSE mounts)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The embedded Kubo node runs as its own unprivileged user (kubo.user).
if ! getent passwd flatipfs-kubo >/dev/null; then
  echo "setup: creating the system user flatipfs-kubo" >&2
  useradd --system --no-create-home --shell /usr/sbin/nologin flatipfs-kubo
fi

for tool in cargo go; do
  command -v "$tool" >/dev/null || { echo "setup: '$tool' not found: install Rust (rustup) and Go >= 1.26 first" >&2; exit 1; }
done

kubo=$(bash "$here/scripts/build-kubo.sh")
echo "setup: Kubo at $kubo ($("$kubo" version))" >&2

# cargo-fuzz (scripts/fuzz.sh), built from crates.io into a cache outside the tree.
fuzz_root="$HOME/.cache/flatipfs/cargo-fuzz"
if [ ! -x "$fuzz_root/bin/cargo-fuzz" ]; then
  echo "setup: installing cargo-fuzz into $fuzz_root" >&2
  cargo install cargo-fuzz --locked --quiet --root "$fuzz_root"
fi

# The GNOME Software plugin, into GNOME Software's plugin directory.
make -s -C "$here/gnome-software" install
echo "setup: GNOME Software plugin installed in $(pkg-config --variable=plugindir gnome-software)" >&2

(cd "$here" && cargo build --workspace --all-targets --quiet)
echo "setup: workspace built in $here/target/debug" >&2
