#!/bin/sh
# Builds an uncompressed initramfs for the guest-memory VM tests:
#   busybox-static, the host's deno binary and the glibc libraries ldd lists,
#   bpfmap's sources under /bpfmap (mod.ts, src/), the guest agent as
#   /bpfmap/tests/vm/agent.ts (so it imports ../../mod.ts), and an /init that mounts proc/sys/dev/bpffs and runs the agent.
# Usage: build_initramfs.sh OUT.cpio AGENT.ts
# BPFMAP_GUEST_BINARIES="a b ...": more dynamically linked programs (e.g. sched_ext loaders), put in
#   /scx/ with the libraries ldd lists.
# BPFMAP_GUEST_SYSROOT=DIR: a foreign-architecture guest (setup_arm64.sh's .vm-cache/arm64/root): DIR/bin/deno,
#   DIR/bin/busybox and DIR/lib/ (its glibc) replace the host's, since ldd cannot read their binaries.
# The agent runs as `deno run -A --no-config /bpfmap/tests/vm/agent.ts ARGS`
# where the args come from the kernel command line (`bpfmap.args=...`).
set -eu
OUT=$1
AGENT=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
SYSROOT=${BPFMAP_GUEST_SYSROOT:-}
DENO=$(readlink -f "$(command -v deno)")
BUSYBOX=/bin/busybox
if [ -n "$SYSROOT" ]; then DENO="$SYSROOT/bin/deno" BUSYBOX="$SYSROOT/bin/busybox"; fi
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/bin" "$W/proc" "$W/sys" "$W/dev" "$W/tmp" "$W/bpfmap" "$W/etc"
cp "$BUSYBOX" "$W/bin/busybox"
cp "$DENO" "$W/bin/deno"
copy_libs() { # binary
  for lib in $(ldd "$1" | sed -n 's/.*=> \(\/[^ ]*\).*/\1/p; s/^[[:space:]]*\(\/[^ ]*\) .*/\1/p'); do
    [ -e "$W$lib" ] && continue
    mkdir -p "$W$(dirname "$lib")"
    cp -L "$lib" "$W$lib"
  done
}
if [ -n "$SYSROOT" ]; then cp -a "$SYSROOT/lib" "$W/lib"; else copy_libs "$DENO"; fi
for bin in ${BPFMAP_GUEST_BINARIES:-}; do
  mkdir -p "$W/scx"
  cp "$bin" "$W/scx/"
  copy_libs "$bin"
done
# ld.so is looked up at /lib64 by the binary's interpreter path
[ -n "$SYSROOT" ] || [ -e "$W/lib64/ld-linux-x86-64.so.2" ] || { mkdir -p "$W/lib64"; cp -L /lib64/ld-linux-x86-64.so.2 "$W/lib64/"; }
[ -f "$ROOT/mod.ts" ] && cp "$ROOT/mod.ts" "$W/bpfmap/"
cp -r "$ROOT/src" "$W/bpfmap/src"
mkdir -p "$W/bpfmap/tests/vm"
# the contract agent runs the contract test files and their helpers in the guest
cp -r "$ROOT/tests/contract" "$ROOT/tests/_support" "$W/bpfmap/tests/"
cp "$AGENT" "$W/bpfmap/tests/vm/agent.ts"
# what the agents import besides src/: the type-dump serialiser and the test programs
cp "$ROOT/tests/vm/type_dump_plain.ts" "$W/bpfmap/tests/vm/"
mkdir -p "$W/bpfmap/tests/_support"
cp "$ROOT/tests/_support/bpf_prog.ts" "$W/bpfmap/tests/_support/"
echo "root:x:0:0:root:/tmp:/bin/sh" >"$W/etc/passwd"
cat >"$W/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t bpf bpf /sys/fs/bpf
export HOME=/tmp DENO_DIR=/tmp/deno NO_COLOR=1 PATH=/bin
args=$(sed -n 's/.*bpfmap\.args=\([^ ]*\).*/\1/p' /proc/cmdline | tr ',' ' ')
echo "BPFMAP-GUEST: starting agent ($(uname -r)) args=$args"
# shellcheck disable=SC2086
/bin/deno run -A --no-config /bpfmap/tests/vm/agent.ts $args
echo "BPFMAP-GUEST: agent exited $?"
while true; do sleep 3600; done
INIT
chmod +x "$W/init"
(cd "$W" && find . | cpio -o -H newc --quiet) >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
