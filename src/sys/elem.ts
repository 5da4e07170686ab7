/**
 * Element lookups that report the errno instead of throwing, for walks that
 * record a per-element error (a slot the kernel will not show) and go on,
 * the way bpftool does.
 *
 * @module
 */

import { ELEM_ATTR, put } from "./attr.ts";
import { BpfCommand } from "./constants.ts";
import { addressOf, strerror } from "./ffi.ts";
import { rawBpf } from "./bpf.ts";

const attr = new Uint8Array(ELEM_ATTR.size);
const view = new DataView(attr.buffer);

function elem(
  command: number,
  fd: number,
  key: Uint8Array | null,
  value: Uint8Array | null,
): number {
  const f = ELEM_ATTR.fields;
  attr.fill(0);
  put(view, f.map_fd, fd);
  put(view, f.key, key ? addressOf(key) : 0n);
  put(view, f.value, value ? addressOf(value) : 0n);
  const result = rawBpf(command, attr);
  return result < 0 ? -result : 0;
}

/** BPF_MAP_LOOKUP_ELEM into `value`: 0, or the errno (ENOENT for an empty slot). */
export function lookupErrno(
  fd: number,
  key: Uint8Array | null,
  value: Uint8Array,
): number {
  return elem(BpfCommand.MAP_LOOKUP_ELEM, fd, key, value);
}

/** BPF_MAP_GET_NEXT_KEY into `next`: 0, or the errno (ENOENT at the end). */
export function nextKeyErrno(
  fd: number,
  key: Uint8Array | null,
  next: Uint8Array,
): number {
  return elem(BpfCommand.MAP_GET_NEXT_KEY, fd, key, next);
}

/** libc's text for an errno, as bpftool prints it (`Unknown error 524` for ENOTSUPP). */
export function errnoText(errno: number): string {
  return strerror(errno);
}

/** The system page size, from the aux vector (4096 when it cannot be read). */
export function pageSize(): number {
  try {
    const auxv = Deno.readFileSync("/proc/self/auxv");
    const words = new DataView(auxv.buffer, auxv.byteOffset, auxv.byteLength);
    const AT_PAGESZ = 6n;
    for (let at = 0; at + 16 <= auxv.byteLength; at += 16) {
      if (words.getBigUint64(at, true) === AT_PAGESZ) {
        return Number(words.getBigUint64(at + 8, true));
      }
    }
  } catch {
    // No /proc: every architecture bpfmap runs on starts at 4 KiB pages.
  }
  return 4096;
}
