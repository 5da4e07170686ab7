#!/bin/sh
# Prepares the aarch64 guest for the VM tests, idempotently (called by setup.sh; run as root):
#   * qemu-system-arm (it provides qemu-system-aarch64)
#   * dpkg's arm64 foreign architecture, so `apt-get download` can fetch arm64 packages
# Everything lands under .vm-cache/arm64/, out of reach of scans of .vm-cache/*/vmlinuz (older
# branches' QEMU probes boot the first such kernel with qemu-system-x86_64):
#   * .vm-cache/arm64/a612/    newest linux-image-6.12.*+deb12-cloud-arm64-unsigned (4K pages),
#                        `vmlinuz` is the uncompressed arm64 Image QEMU's -kernel loads
#   * .vm-cache/arm64/a612k16/ newest linux-image-6.12.*+deb12-arm64-16k-unsigned (16K pages), same layout
#   * .vm-cache/arm64/a73/     newest trixie-backports linux-binary-7.3.*+deb13-cloud-arm64 (4K pages)
#   * .vm-cache/arm64/root/ the guest's userland: Deno for arm64 from npm (@deno/linux-arm64-glibc,
#                        the host deno's version or the newest of its minor), busybox-static:arm64 and the glibc libraries
#                        (libc6:arm64, libgcc-s1:arm64) Deno links, as a sysroot for build_initramfs.sh
# Kernels come from bookworm-backports (setup.sh's apt source); nothing arm64 is installed on the host.
set -eu

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CACHE="$ROOT/.vm-cache/arm64"
mkdir -p "$CACHE"

command -v qemu-system-aarch64 >/dev/null 2>&1 \
  || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm qemu-system-arm >/dev/null
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  rm -f "$CACHE/.apt-updated"
fi
if [ ! -f "$CACHE/.apt-updated" ]; then
  apt-get update -qq
  touch "$CACHE/.apt-updated"
fi

newest_arm64() { # flavour-regex
  apt-cache pkgnames linux-image-6.12 | grep -E "^linux-image-6\.12\.[0-9.+a-z~-]*deb12-$1-unsigned\$" \
    | while read -r p; do printf '%s %s\n' "$(apt-cache show "$p:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -1)" "$p"; done \
    | grep -v '^ ' | sort -V | tail -1 | cut -d' ' -f2
}

fetch_arm64() { # dir flavour
  dir="$CACHE/$1"
  [ -e "$dir/vmlinuz" ] && return 0
  pkg=$(newest_arm64 "$2")
  if [ -z "$pkg" ]; then echo "setup_arm64.sh: no linux-image-6.12.*+deb12-$2-unsigned:arm64 in apt" >&2; exit 1; fi
  echo "setup_arm64.sh: $1 <- $pkg:arm64"
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:arm64")
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  dpkg -x "$tmp"/*.deb "$dir.tmp"
  echo "$pkg" >"$dir.tmp/PACKAGE"
  image=$(cd "$dir.tmp" && ls boot/vmlinuz-* | head -1)
  # Debian's arm64 vmlinuz is a gzipped Image; unpacked, any QEMU loads it without guessing
  if gzip -t "$dir.tmp/$image" 2>/dev/null; then
    gzip -dc "$dir.tmp/$image" >"$dir.tmp/Image"
    ln -sf Image "$dir.tmp/vmlinuz"
  else
    ln -sf "$image" "$dir.tmp/vmlinuz"
  fi
  rm -rf "$tmp" "$dir" && mv "$dir.tmp" "$dir"
}

fetch_arm64 a612 "cloud-arm64"
fetch_arm64 a612k16 "arm64-16k"

# 7.3 (trixie-backports, setup.sh's apt source): the kallsyms layout without kallsyms_relative_base, and
# sched_ext, on arm64. The image is in linux-binary-* (linux-image-* is only a meta package).
A73="$CACHE/a73"
if [ ! -e "$A73/vmlinuz" ]; then
  pkg=$(apt-cache pkgnames linux-binary-7.3 | grep -E '^linux-binary-7\.3\.[0-9]+[+]deb13-cloud-arm64$' \
    | while read -r p; do printf '%s %s\n' "$(apt-cache show "$p:arm64" 2>/dev/null | sed -n 's/^Version: //p' | head -1)" "$p"; done \
    | grep -v '^ ' | sort -V | tail -1 | cut -d' ' -f2)
  if [ -z "$pkg" ]; then echo "setup_arm64.sh: no linux-binary-7.3.*+deb13-cloud-arm64:arm64 in apt (trixie-backports missing from sources?)" >&2; exit 1; fi
  abi=${pkg#linux-binary-}
  echo "setup_arm64.sh: a73 <- $pkg:arm64"
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg:arm64") \
    || { echo "setup_arm64.sh: apt-get download of $pkg:arm64 failed" >&2; exit 1; }
  rm -rf "$A73.tmp" && mkdir -p "$A73.tmp"
  dpkg -x "$tmp"/*.deb "$A73.tmp"
  echo "$pkg" >"$A73.tmp/PACKAGE"
  image="usr/lib/modules/$abi/vmlinuz"
  if gzip -t "$A73.tmp/$image" 2>/dev/null; then
    gzip -dc "$A73.tmp/$image" >"$A73.tmp/Image"
    ln -sf Image "$A73.tmp/vmlinuz"
  else
    ln -sf "$image" "$A73.tmp/vmlinuz"
  fi
  rm -rf "$tmp" "$A73" && mv "$A73.tmp" "$A73"
fi

SYSROOT="$CACHE/root"
if [ ! -x "$SYSROOT/bin/deno" ] || [ ! -x "$SYSROOT/bin/busybox" ] || [ ! -e "$SYSROOT/lib/ld-linux-aarch64.so.1" ]; then
  version=$(deno --version | sed -n 's/^deno \([0-9.]*\).*/\1/p')
  echo "setup_arm64.sh: arm64/root <- @deno/linux-arm64-glibc@$version busybox-static libc6 libgcc-s1 (arm64)"
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  # the host's version when npm has it for arm64, else the newest of the same minor
  (cd "$tmp" && { npm pack --silent "@deno/linux-arm64-glibc@$version" || npm pack --silent "@deno/linux-arm64-glibc@~${version%.*}.0"; } >/dev/null 2>&1) \
    || { echo "setup_arm64.sh: npm pack @deno/linux-arm64-glibc@$version (or ~${version%.*}.0) failed" >&2; exit 1; }
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root -t bookworm \
    busybox-static:arm64 libc6:arm64 libgcc-s1:arm64) \
    || { echo "setup_arm64.sh: apt-get download of arm64 busybox-static/libc6/libgcc-s1 failed" >&2; exit 1; }
  rm -rf "$SYSROOT.tmp" && mkdir -p "$SYSROOT.tmp/bin" "$SYSROOT.tmp/deb"
  for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$SYSROOT.tmp/deb"; done
  tar -xzf "$tmp"/deno-linux-arm64-glibc-*.tgz -C "$tmp"
  cp "$(find "$tmp/package" -name deno -type f | head -1)" "$SYSROOT.tmp/bin/deno"
  cp "$SYSROOT.tmp/deb/bin/busybox" "$SYSROOT.tmp/bin/busybox"
  # Debian's own /lib tree (loader symlink, lib/aarch64-linux-gnu/): Deno's interpreter and search paths
  cp -a "$SYSROOT.tmp/deb/lib" "$SYSROOT.tmp/lib"
  sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$tmp/package/package.json" >"$SYSROOT.tmp/DENO_VERSION"
  chmod +x "$SYSROOT.tmp/bin/"*
  rm -rf "$SYSROOT.tmp/deb" "$tmp" "$SYSROOT" && mv "$SYSROOT.tmp" "$SYSROOT"
fi

echo "setup_arm64.sh: ready: $(cat "$CACHE/a612/PACKAGE") $(cat "$CACHE/a612k16/PACKAGE") $(cat "$A73/PACKAGE") + arm64 deno $(cat "$SYSROOT/DENO_VERSION"), busybox, glibc"
