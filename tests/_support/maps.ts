/**
 * Helpers the kernel tests share: unique names, little-endian keys, a tiny
 * BTF blob for maps that demand BTF, and fd counting.
 *
 * @module
 */

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import type { BpfMapInfo } from "../../src/accessor/types.ts";
import { btfLoad, mapGetInfo } from "../../src/sys/bpf.ts";
import type { OwnedFd } from "../../src/sys/fd.ts";

let counter = 0;

/** A map name unique to this test process, at most 15 characters. */
export function uniqueName(prefix: string): string {
  counter++;
  // Test files run as isolates of one process under --parallel: the pid
  // alone does not tell them apart.
  const tag = `${(Deno.pid % 1296).toString(36)}${
    Math.floor(Math.random() * 1296).toString(36)
  }${counter.toString(36)}`;
  return `${prefix.slice(0, 14 - tag.length)}_${tag}`;
}

/** A little-endian u32 key. */
export function u32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value, true);
  return bytes;
}

/** A little-endian u64 value. */
export function u64(value: bigint): Uint8Array {
  const bytes = new Uint8Array(8);
  new DataView(bytes.buffer).setBigUint64(0, value, true);
  return bytes;
}

/** Reads a little-endian u32. */
export function readU32(bytes: Uint8Array, offset = 0): number {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .getUint32(offset, true);
}

/** Reads a little-endian u64. */
export function readU64(bytes: Uint8Array, offset = 0): bigint {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .getBigUint64(offset, true);
}

/**
 * A BTF blob with `[1] INT "int" size 4 signed` and `[2] INT "long long" size 8 signed`:
 * enough for local-storage maps, which require an int key and BTF.
 */
export function intBtfBlob(): Uint8Array {
  const strings = new TextEncoder().encode("\0int\0long long\0");
  const types = new Uint8Array(32);
  const view = new DataView(types.buffer);
  // [1] int: name_off 1, info kind INT (1) << 24, size 4, encoding SIGNED | 32 bits
  view.setUint32(0, 1, true);
  view.setUint32(4, 1 << 24, true);
  view.setUint32(8, 4, true);
  view.setUint32(12, (1 << 24) | 32, true);
  // [2] long long: name_off 5, size 8, SIGNED | 64 bits
  view.setUint32(16, 5, true);
  view.setUint32(20, 1 << 24, true);
  view.setUint32(24, 8, true);
  view.setUint32(28, (1 << 24) | 64, true);
  const header = new Uint8Array(24);
  const h = new DataView(header.buffer);
  h.setUint16(0, 0xeb9f, true);
  h.setUint8(2, 1);
  h.setUint32(4, 24, true);
  h.setUint32(8, 0, true);
  h.setUint32(12, types.length, true);
  h.setUint32(16, types.length, true);
  h.setUint32(20, strings.length, true);
  const blob = new Uint8Array(24 + types.length + strings.length);
  blob.set(header);
  blob.set(types, 24);
  blob.set(strings, 24 + types.length);
  return blob;
}

/** Loads {@linkcode intBtfBlob} into the kernel. */
export function loadIntBtf(): OwnedFd {
  return btfLoad(intBtfBlob());
}

/** How many fds this process has open. */
export function openFdCount(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

/** Runs bpftool and parses its JSON output. */
export function bpftoolJson(...args: string[]): unknown {
  const result = new Deno.Command("bpftool", { args: ["-j", ...args] })
    .outputSync();
  const text = new TextDecoder().decode(result.stdout);
  if (!result.success) {
    throw new Error(
      `bpftool ${args.join(" ")} failed: ${text} ${
        new TextDecoder().decode(result.stderr)
      }`,
    );
  }
  return JSON.parse(text);
}

/** Mounts bpffs at /sys/fs/bpf when it is not mounted; returns the mount point. */
export function ensureBpffs(): string {
  const mounts = Deno.readTextFileSync("/proc/mounts");
  if (!/ \/sys\/fs\/bpf bpf /.test(mounts)) {
    const result = new Deno.Command("mount", {
      args: ["-t", "bpf", "bpf", "/sys/fs/bpf"],
    }).outputSync();
    if (!result.success) {
      throw new Error(
        `Cannot mount bpffs: ${new TextDecoder().decode(result.stderr)}`,
      );
    }
  }
  return "/sys/fs/bpf";
}

/** The live record of a map this test holds (it must be listed: we hold it). */
export function infoOf(fd: OwnedFd): BpfMapInfo {
  const info = new BpfSyscallAccessor().mapById(mapGetInfo(fd.fd).id);
  if (info === null) throw new Error("a map we hold must be visible");
  return info;
}
