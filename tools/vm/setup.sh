#!/bin/sh
# Prepares everything the guest-memory VM tests need, from nothing, idempotently:
#   * host packages: qemu-system-x86, busybox-static, cpio
#   * three Debian cloud kernels unpacked under .vm-cache/:
#       .vm-cache/k61/   newest bookworm linux-image-6.1.*-cloud-amd64-unsigned
#       .vm-cache/k612/  newest trixie   linux-image-6.12.*-cloud-amd64-unsigned
#       .vm-cache/k73/   newest trixie-backports linux-binary-7.3.*+deb13-cloud-amd64 (sched_ext
#                        built in) with its config (linux-base-*) and its BTF (vmlinux.btf)
#     each with a `vmlinuz` symlink to its image.
#   * the 7.3 kernel's own tools/sched_ext schedulers (scx_simple, scx_qmap, scx_sdt, ...), built
#     by the kernel's Makefile from linux-source-7.3 into .vm-cache/scx73/build/bin/ with clang-22
#     (scx_qmap's arena code passes the 7.3 verifier only when built by clang 22).
#   * the aarch64 guests (tools/vm/setup_arm64.sh)
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
# building the sched_ext schedulers (libbpf, bpftool, the loaders) and unpacking the 7.3 image
for p in make gcc libc6-dev libelf-dev zlib1g-dev pkg-config zstd xz-utils binutils llvm-16; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs="$need_pkgs $p"
done
# clang 22 is only in bookworm-security (and trixie, which must not touch the host)
need_clang=""
command -v clang-22 >/dev/null 2>&1 || need_clang=clang-22

SRC=/etc/apt/sources.list.d/bpfmap-vm.sources
SOURCES='Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports trixie trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
# Never let trixie(-backports) packages replace the host's own (only `apt-get download` uses them).
PREFS='Package: *
Pin: release n=trixie
Pin-Priority: 100

Package: *
Pin: release n=trixie-backports
Pin-Priority: 100'
stale_sources=""
if [ "$(cat "$SRC" 2>/dev/null)" != "$SOURCES" ] || [ "$(cat /etc/apt/preferences.d/bpfmap-vm 2>/dev/null)" != "$PREFS" ]; then
  printf '%s\n' "$SOURCES" >"$SRC"
  printf '%s\n' "$PREFS" >/etc/apt/preferences.d/bpfmap-vm
  stale_sources=1
fi

if [ -n "$need_pkgs$need_clang$stale_sources" ] || ! apt-cache show 'linux-source-7.3' >/dev/null 2>&1 || [ ! -f "$CACHE/.apt-updated" ]; then
  apt-get update -qq
  touch "$CACHE/.apt-updated"
fi
if [ -n "$need_pkgs" ]; then
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm $need_pkgs >/dev/null
fi
if [ -n "$need_clang" ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -t bookworm-security clang-22 >/dev/null \
    || { echo "setup.sh: cannot install clang-22 from bookworm-security (scx_qmap needs clang 22)" >&2; exit 1; }
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

# --- 7.3: image, config, BTF, and the kernel's own sched_ext schedulers ---------------------------
K73="$CACHE/k73"
if [ ! -e "$K73/vmlinuz" ] || [ ! -s "$K73/vmlinux.btf" ] || [ ! -f "$CACHE/linux-7.3-src/tools/sched_ext/Makefile" ]; then
  # the image is in linux-binary-*; linux-image-* is only a meta package
  pkg=$(apt-cache pkgnames linux-binary-7.3 | grep -E '^linux-binary-7\.3\.[0-9]+[+]deb13-cloud-amd64$' \
    | while read -r p; do printf '%s %s\n' "$(apt-cache show "$p" | sed -n 's/^Version: //p' | head -1)" "$p"; done \
    | sort -V | tail -1 | cut -d' ' -f2)
  if [ -z "$pkg" ]; then echo "setup.sh: no linux-binary-7.3.*+deb13-cloud-amd64 in apt (trixie-backports missing from sources?)" >&2; exit 1; fi
  abi=${pkg#linux-binary-}
  echo "setup.sh: k73 <- $pkg linux-base-$abi linux-source-7.3"
  tmp=$(mktemp -d) && chmod 755 "$tmp"
  (cd "$tmp" && apt-get download -qq -o APT::Sandbox::User=root "$pkg" "linux-base-$abi" linux-source-7.3) \
    || { echo "setup.sh: apt-get download of $pkg, linux-base-$abi or linux-source-7.3 failed" >&2; exit 1; }
  rm -rf "$K73.tmp" "$CACHE/linux-7.3-src" && mkdir -p "$K73.tmp" "$CACHE/linux-7.3-src"
  dpkg -x "$tmp/$pkg"_*.deb "$K73.tmp"
  dpkg -x "$tmp/linux-base-$abi"_*.deb "$K73.tmp"
  ln -sf "usr/lib/modules/$abi/vmlinuz" "$K73.tmp/vmlinuz"
  ln -sf "usr/lib/modules/$abi/config" "$K73.tmp/config"
  echo "$pkg" >"$K73.tmp/PACKAGE"
  echo "$abi" >"$K73.tmp/RELEASE"
  # only what tools/sched_ext's Makefile (libbpf, bpftool, the schedulers) and extract-vmlinux read
  dpkg --fsys-tarfile "$tmp"/linux-source-7.3_*.deb | tar -xO ./usr/src/linux-source-7.3.tar.xz | xz -dc -T0 \
    | tar -x -C "$CACHE/linux-7.3-src" --strip-components=1 linux-source-7.3/tools linux-source-7.3/scripts \
      linux-source-7.3/include linux-source-7.3/arch/x86/include linux-source-7.3/kernel linux-source-7.3/Makefile
  rm -rf "$tmp"
  vmlinux=$(mktemp)
  sh "$CACHE/linux-7.3-src/scripts/extract-vmlinux" "$K73.tmp/vmlinuz" >"$vmlinux" 2>/dev/null \
    || { echo "setup.sh: extract-vmlinux could not unpack $K73.tmp/vmlinuz" >&2; rm -f "$vmlinux"; exit 1; }
  # the same bytes as the guest's /sys/kernel/btf/vmlinux
  objcopy -O binary --only-section=.BTF "$vmlinux" "$K73.tmp/vmlinux.btf"
  rm -f "$vmlinux"
  rm -rf "$K73" "$CACHE/scx73" && mv "$K73.tmp" "$K73"
fi

SCX="$CACHE/scx73"
SCHEDULERS="scx_simple scx_qmap scx_sdt scx_central scx_flatcg scx_cpu0 scx_pair scx_userland"
built=1
for s in $SCHEDULERS; do [ -x "$SCX/build/bin/$s" ] || built=""; done
if [ -z "$built" ]; then
  echo "setup.sh: building the 7.3 kernel's tools/sched_ext schedulers with clang-22"
  mkdir -p "$SCX"
  make -s -C "$CACHE/linux-7.3-src/tools/sched_ext" -j"$(nproc)" O="$SCX" CLANG=clang-22 LLVM_STRIP=llvm-strip-16 \
    feature-llvm=0 VMLINUX_BTF="$K73/vmlinux.btf" all >"$SCX/build.log" 2>&1 \
    || { echo "setup.sh: building tools/sched_ext failed; see $SCX/build.log" >&2; tail -5 "$SCX/build.log" >&2; exit 1; }
  for s in $SCHEDULERS; do
    [ -x "$SCX/build/bin/$s" ] || { echo "setup.sh: $s was not built; see $SCX/build.log" >&2; exit 1; }
  done
fi

# aarch64 guests: qemu-system-aarch64, Debian's arm64 6.12 kernels (4K, 16K), arm64 Deno + glibc
sh "$ROOT/tools/vm/setup_arm64.sh"

echo "setup.sh: ready: $(cat "$CACHE/k61/PACKAGE") $(cat "$CACHE/k612/PACKAGE") $(cat "$K73/PACKAGE") + $(echo $SCHEDULERS | wc -w) sched_ext schedulers"
