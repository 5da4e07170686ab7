#!/bin/sh
# Prepares everything the guest-memory VM tests need, from nothing, idempotently:
#   * host packages: qemu-system-x86, busybox-static, cpio
#   * two Debian cloud kernels unpacked under .vm-cache/:
#       .vm-cache/k61/   newest bookworm linux-image-6.1.*-cloud-amd64-unsigned
#       .vm-cache/k612/  newest trixie   linux-image-6.12.*-cloud-amd64-unsigned
#     each with a `vmlinuz` symlink to its boot/vmlinuz-* image.
# Run as root (CI: `sh tools/vm/setup.sh`). Safe to re-run: finished steps are skipped.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE="$ROOT/.vm-cache"
mkdir -p "$CACHE"

need_pkgs=""
command -v qemu-system-x86_64 >/dev/null 2>&1 || need_pkgs="$need_pkgs qemu-system-x86"
[ -x /bin/busybox ] && /bin/busybox --list >/dev/null 2>&1 && ldd /bin/busybox 2>&1 | grep -q "not a dynamic" \
  || need_pkgs="$need_pkgs busybox-static"
command -v cpio >/dev/null 2>&1 || need_pkgs="$need_pkgs cpio"

SRC=/etc/apt/sources.list.d/bpfmap-vm.sources
if [ ! -f "$SRC" ]; then
  cat >"$SRC" <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # Never let trixie packages replace the host's own (only `apt-get download` uses them).
  cat >/etc/apt/preferences.d/bpfmap-vm <<'PREFS'
Package: *
Pin: release n=trixie
Pin-Priority: 100
PREFS
  updated=""
else
  updated=""
fi

if [ -n "$need_pkgs" ] || ! apt-cache show 'linux-image-6.12*' >/dev/null 2>&1 || [ ! -f "$CACHE/.apt-updated" ]; then
  apt-get update -qq
  touch "$CACHE/.apt-updated"
  updated=1
fi
if [ -n "$need_pkgs" ]; then
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm $need_pkgs >/dev/null
fi

# newest package name matching a version prefix, by Debian version order
newest() { # version-regex suffix-regex
  apt-cache pkgnames linux-image- | grep -E "^linux-image-$1[.0-9+a-z~-]*$2-cloud-amd64-unsigned\$" \
    | while read -r p; do printf '%s %s\n' "$(apt-cache show "$p" | sed -n 's/^Version: //p' | head -1)" "$p"; done \
    | sort -V | tail -1 | cut -d' ' -f2
}

fetch() { # dir version-regex suffix-regex
  dir="$CACHE/$1"
  if [ -e "$dir/vmlinuz" ]; then return 0; fi
  pkg=$(newest "$2" "$3")
  if [ -z "$pkg" ]; then echo "setup.sh: no linux-image-$2*-cloud-amd64-unsigned in apt" >&2; exit 1; fi
  echo "setup.sh: $1 <- $pkg"
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg")
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  dpkg -x "$tmp"/*.deb "$dir.tmp"
  echo "$pkg" >"$dir.tmp/PACKAGE"
  ln -sf "$(cd "$dir.tmp" && ls boot/vmlinuz-* | head -1)" "$dir.tmp/vmlinuz"
  rm -rf "$tmp" "$dir" && mv "$dir.tmp" "$dir"
}

fetch k61 "6\\.1\\." ""
fetch k612 "6\\.12\\." "[+]deb13"
echo "setup.sh: ready: $(cat "$CACHE/k61/PACKAGE") $(cat "$CACHE/k612/PACKAGE")"
