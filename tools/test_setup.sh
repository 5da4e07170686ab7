#!/bin/sh
# Makes this machine able to run every bpfmap test, idempotently: Debian
# packages (clang-16 for ENUM64 fixtures, bpftool as the oracle, libbpf
# headers, QEMU and busybox for the VM tests), the bpffs mount, and the guest
# kernels (tools/vm/setup.sh). `deno task test` runs it before the tests.
#
# As root with apt it installs what is missing. Otherwise it prints ONE line
# naming what is missing and the tests that need it are skipped; with
# BPFMAP_REQUIRE_PRIVILEGED=1 (CI) that line is an error (exit 1).
set -eu
cd "$(dirname "$0")/.."

missing_pkgs=""
for pair in clang:clang clang-16:clang-16 llc:llvm bpftool:bpftool \
  qemu-system-x86_64:qemu-system-x86 qemu-system-aarch64:qemu-system-arm cpio:cpio setpriv:util-linux; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing_pkgs="$missing_pkgs ${pair#*:}"
done
[ -f /usr/include/bpf/bpf_helpers.h ] || missing_pkgs="$missing_pkgs libbpf-dev"
[ -x /bin/busybox ] || missing_pkgs="$missing_pkgs busybox-static"

bpffs_mounted() { grep -q ' /sys/fs/bpf bpf ' /proc/mounts; }
kernels_ready() { [ -n "$(ls .vm-cache/*/vmlinuz 2>/dev/null)" ]; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if [ -n "$missing_pkgs" ]; then
    echo "test setup: installing$missing_pkgs" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq $missing_pkgs >/dev/null
  fi
  bpffs_mounted || mount -t bpf bpf /sys/fs/bpf
  # setup.sh knows which kernels the VM tests want and skips what it has.
  sh tools/vm/setup.sh >&2
  exit 0
fi

# Cannot install: say what is missing, once.
missing="$missing_pkgs"
bpffs_mounted || missing="$missing bpffs-mount"
kernels_ready || missing="$missing VM-kernels(sh tools/vm/setup.sh)"
[ "$(id -u)" = 0 ] || missing="$missing root"
command -v apt-get >/dev/null 2>&1 || missing="$missing apt-get"
[ -n "$missing" ] || exit 0
if [ "${BPFMAP_REQUIRE_PRIVILEGED:-}" = 1 ]; then
  echo "test setup: error: cannot set up, missing:$missing (run as root on Debian)" >&2
  exit 1
fi
echo "test setup: missing:$missing; tests that need them are skipped (run as root on Debian to install)" >&2
