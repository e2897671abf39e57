#!/usr/bin/env bash
# Builds the Debian package of flatipfs with plain dpkg-deb (no extra tool):
#
#   scripts/package.sh [OUTDIR]     # prints the path of the .deb
#
# Release binaries (FLATIPFS_PACKAGE_PROFILE=debug for a quick test build,
# FLATIPFS_PACKAGE_BINARIES=DIR to take flatipfsd and flatipfsctl from DIR),
# the Kubo binary the daemon runs (scripts/build-kubo.sh), the systemd units
# (systemd/), the bus policy and activation file (dbus/), the polkit actions
# and, as an example only, the optional rules (polkit/), a commented default
# /etc/flatipfs/flatipfsd.toml and the installations.d entry
# (packaging/debian/), docs, man pages and completions generated from the
# CLI definitions, maintainer scripts (packaging/debian/). Then lintian, if
# installed, must report no error. OUTDIR defaults to target/debian.
# docs/packaging.md says what goes where and why.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export PATH="$HOME/.cargo/bin:/usr/local/go/bin:$PATH"
cd "$here"
pkg=packaging/debian
out=${1:-$here/target/debian}
profile=${FLATIPFS_PACKAGE_PROFILE:-release}

version=$(awk -F'"' '/^\[workspace\.package\]/ { w = 1 } w && /^version *=/ { print $2; exit }' Cargo.toml)
debversion="$version-1"
arch=$(dpkg --print-architecture)

if [ -n "${FLATIPFS_PACKAGE_BINARIES:-}" ]; then
  # Binaries built before (the integration test passes target/debug: it
  # runs inside `cargo test`, which holds the build directory's lock).
  bin=$FLATIPFS_PACKAGE_BINARIES
else
  echo "package: building flatipfsd and flatipfsctl ($profile)" >&2
  cargo build --quiet --profile "$( [ "$profile" = debug ] && echo dev || echo "$profile" )" -p flatipfsd -p flatipfsctl
  bin="$here/target/$profile"
fi
kubo=$(bash scripts/build-kubo.sh)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"

inst() { # MODE SOURCE DEST
  install -D -m "$1" "$2" "$root$3"
}

# Programs. The unit names them: ExecStart=/usr/libexec/flatipfsd,
# flatipfs-update.service /usr/bin/flatipfsctl.
inst 0755 "$bin/flatipfsd" /usr/libexec/flatipfsd
inst 0755 "$bin/flatipfsctl" /usr/bin/flatipfsctl
inst 0755 "$kubo" /usr/libexec/flatipfs/ipfs
strip --strip-unneeded --remove-section=.comment --remove-section=.note \
  "$root/usr/libexec/flatipfsd" "$root/usr/bin/flatipfsctl" "$root/usr/libexec/flatipfs/ipfs"
for unit in systemd/flatipfsd.service systemd/flatipfs-update.service systemd/flatipfs-update.timer; do
  { grep -Eo '^Exec[A-Za-z]*=[^ ]+' "$unit" || true; } | cut -d= -f2 | while read -r exe; do
    case "$exe" in
      /usr/bin/busctl) ;;  # from systemd
      *) [ -x "$root$exe" ] || { echo "package: $unit runs $exe, which the package does not install" >&2; exit 1; } ;;
    esac
  done
  inst 0644 "$unit" "/lib/systemd/system/$(basename "$unit")"
done

# Bus, polkit, configuration.
inst 0644 dbus/org.flatipfs.Manager1.conf /usr/share/dbus-1/system.d/org.flatipfs.Manager1.conf
inst 0644 dbus/org.flatipfs.Manager1.service /usr/share/dbus-1/system-services/org.flatipfs.Manager1.service
inst 0644 polkit/org.flatipfs.manager1.policy /usr/share/polkit-1/actions/org.flatipfs.manager1.policy
inst 0644 "$pkg/flatipfsd.toml" /etc/flatipfs/flatipfsd.toml
inst 0644 "$pkg/installations.d-flatipfs.conf" /etc/flatpak/installations.d/flatipfs.conf

# Documentation: the reference pages, the optional rules as an example.
doc=/usr/share/doc/flatipfs
for f in README.md docs/*.md; do
  inst 0644 "$f" "$doc/$(basename "$f")"
done
inst 0644 polkit/50-org.flatipfs.manager1.rules "$doc/examples/50-org.flatipfs.manager1.rules"
inst 0644 "$pkg/README.rules" "$doc/examples/README.rules"
inst 0644 "$pkg/copyright" "$doc/copyright"
mkdir -p "$work/gen"
sed -e "s/@VERSION@/$debversion/" -e "s/@DATE@/$(date -R -u -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" \
  "$pkg/changelog" | gzip -9n > "$work/gen/changelog.Debian.gz"
inst 0644 "$work/gen/changelog.Debian.gz" "$doc/changelog.Debian.gz"

# Man pages and completions, from the CLI definitions.
"$bin/flatipfsctl" --generate-docs "$work/gen"
"$bin/flatipfsd" --generate-man "$work/gen/man8"
bash scripts/config-man.sh "$version" > "$work/gen/flatipfsd.toml.5"
for page in "$work"/gen/man/*.1; do
  gzip -9n < "$page" > "$page.gz"; inst 0644 "$page.gz" "/usr/share/man/man1/$(basename "$page").gz"
done
for page in "$work"/gen/man8/*.8 "$work/gen/flatipfsd.toml.5"; do
  section=${page##*.}
  gzip -9n < "$page" > "$page.gz"; inst 0644 "$page.gz" "/usr/share/man/man$section/$(basename "$page").gz"
done
inst 0644 "$work/gen/completions/flatipfsctl.bash" /usr/share/bash-completion/completions/flatipfsctl
inst 0644 "$work/gen/completions/_flatipfsctl" /usr/share/zsh/vendor-completions/_flatipfsctl
inst 0644 "$work/gen/completions/flatipfsctl.fish" /usr/share/fish/vendor_completions.d/flatipfsctl.fish

# Control area.
mkdir -p "$root/DEBIAN" "$work/shlibs/debian"
for script in postinst prerm postrm; do
  install -m 0755 "$pkg/$script" "$root/DEBIAN/$script"
done
printf '%s\n' /etc/flatipfs/flatipfsd.toml /etc/flatpak/installations.d/flatipfs.conf > "$root/DEBIAN/conffiles"
printf 'Source: flatipfs\n\nPackage: flatipfs\nArchitecture: any\n' > "$work/shlibs/debian/control"
shlibs=$(cd "$work/shlibs" && dpkg-shlibdeps -O \
  "$root/usr/libexec/flatipfsd" "$root/usr/bin/flatipfsctl" "$root/usr/libexec/flatipfs/ipfs" 2>/dev/null \
  | sed -n 's/^shlibs:Depends=//p')
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debversion/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@SHLIBS@/$shlibs/" \
  "$pkg/control.in" > "$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z | xargs -0 md5sum) > "$root/DEBIAN/md5sums"

mkdir -p "$out"
deb="$out/flatipfs_${debversion}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null

if command -v lintian >/dev/null; then
  echo "package: lintian" >&2
  lintian --fail-on error "$deb" >&2
else
  echo "package: lintian is not installed (scripts/setup.sh installs it): not checked" >&2
fi
echo "$deb"
