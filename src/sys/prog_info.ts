/**
 * Listing programs: BPF_PROG_GET_NEXT_ID and the whole of `struct
 * bpf_prog_info` bpfmap shows, map ids included. Kept apart from `prog.ts`
 * (loading and test runs) so the two can change independently.
 *
 * @module
 */

import {
  ENABLE_STATS_ATTR,
  getU32,
  getU64,
  ID_ATTR,
  INFO_ATTR,
  PROG_INFO,
  put,
} from "./attr.ts";
import { OwnedFd } from "./fd.ts";
import { Errno } from "./constants.ts";
import { BpfError } from "./errors.ts";
import { addressOf } from "./ffi.ts";
import { rawBpf } from "./bpf.ts";
import { ProgCommand } from "./prog.ts";

/** `struct bpf_prog_info` as the kernel filled it, map ids read in full. */
export interface RawProgInfo {
  /** Program id. */
  id: number;
  /** `enum bpf_prog_type`. */
  type: number;
  /** Kernel-visible name (at most 15 characters). */
  name: string;
  /** The 8-byte tag, as 16 hex digits. */
  tag: string;
  /** `jited_prog_len`: bytes of machine code, 0 when not JITed. */
  jitedLen: number;
  /** `xlated_prog_len`: bytes of the verifier-rewritten instructions. */
  xlatedLen: number;
  /** `load_time`: nanoseconds since boot (CLOCK_BOOTTIME). */
  loadTime: bigint;
  /** `created_by_uid`. */
  uid: number;
  /** Ids of the maps the program uses, in the kernel's order. */
  mapIds: number[];
  /** BTF object id, 0 without BTF. */
  btfId: number;
  /** `run_time_ns`: total run time while `kernel.bpf_stats_enabled` was 1. */
  runTimeNs: bigint;
  /** `run_cnt`. */
  runCnt: bigint;
  /** `recursion_misses`. */
  recursionMisses: bigint;
  /** `verified_insns`. */
  verifiedInsns: number;
  /** The `gpl_compatible` bit. */
  gplCompatible: boolean;
  /** `ifindex` of an offloaded program, else 0. */
  ifindex: number;
}

/** BPF_PROG_GET_NEXT_ID: the next program id after `startId`, or null at the end. */
export function progGetNextId(startId: number): number | null {
  const attr = new Uint8Array(ID_ATTR.size);
  const view = new DataView(attr.buffer);
  put(view, ID_ATTR.fields.start_id, startId);
  const result = rawBpf(ProgCommand.PROG_GET_NEXT_ID, attr);
  if (result === -Errno.ENOENT) return null;
  if (result < 0) {
    throw new BpfError(-1, -result, {
      action: `BPF_PROG_GET_NEXT_ID (after id ${startId})`,
    });
  }
  return getU32(view, ID_ATTR.fields.next_id);
}

function getInfo(fd: number, info: Uint8Array): void {
  const attr = new Uint8Array(INFO_ATTR.size);
  const view = new DataView(attr.buffer);
  put(view, INFO_ATTR.fields.bpf_fd, fd);
  put(view, INFO_ATTR.fields.info_len, info.byteLength);
  put(view, INFO_ATTR.fields.info, addressOf(info));
  const result = rawBpf(ProgCommand.OBJ_GET_INFO_BY_FD, attr);
  if (result < 0) {
    throw new BpfError(-1, -result, {
      action: `BPF_OBJ_GET_INFO_BY_FD (prog fd ${fd})`,
    });
  }
}

// A program's maps are bounded by MAX_USED_MAPS (64), and bpf_prog_bind_map
// can add more later: this many rounds is far past what a live race needs.
const MAP_ID_ROUNDS = 4;

/**
 * BPF_OBJ_GET_INFO_BY_FD for a program: the fixed fields in one call, then
 * its map ids in a second with a buffer as large as the first said (again
 * if a map was bound in between).
 */
export function progGetFullInfo(fd: number): RawProgInfo {
  const p = PROG_INFO.fields;
  const info = new Uint8Array(PROG_INFO.size);
  getInfo(fd, info);
  const view = new DataView(info.buffer);
  let count = getU32(view, p.nr_map_ids);
  let mapIds: number[] = [];
  for (let round = 0; count > 0 && round < MAP_ID_ROUNDS; round++) {
    const ids = new Uint32Array(count);
    // Only the array is asked for: every other pointer and length stays zero.
    const second = new Uint8Array(PROG_INFO.size);
    const secondView = new DataView(second.buffer);
    put(secondView, p.nr_map_ids, count);
    put(secondView, p.map_ids, addressOf(new Uint8Array(ids.buffer)));
    getInfo(fd, second);
    const now = getU32(secondView, p.nr_map_ids);
    mapIds = Array.from(ids.subarray(0, Math.min(now, count)));
    if (now <= count) break;
    count = now;
  }
  const nameBytes = info.subarray(p.name.offset, p.name.offset + p.name.size);
  const end = nameBytes.indexOf(0);
  return {
    id: getU32(view, p.id),
    type: getU32(view, p.type),
    name: new TextDecoder().decode(
      end < 0 ? nameBytes : nameBytes.subarray(0, end),
    ),
    tag: Array.from(
      info.subarray(p.tag.offset, p.tag.offset + p.tag.size),
      (b) => b.toString(16).padStart(2, "0"),
    ).join(""),
    jitedLen: getU32(view, p.jited_prog_len),
    xlatedLen: getU32(view, p.xlated_prog_len),
    loadTime: getU64(view, p.load_time),
    uid: getU32(view, p.created_by_uid),
    mapIds,
    btfId: getU32(view, p.btf_id),
    runTimeNs: getU64(view, p.run_time_ns),
    runCnt: getU64(view, p.run_cnt),
    recursionMisses: getU64(view, p.recursion_misses),
    verifiedInsns: getU32(view, p.verified_insns),
    gplCompatible: (view.getUint32(p.ifindex.offset + 4, true) & 1) !== 0,
    ifindex: getU32(view, p.ifindex),
  };
}

/**
 * `kernel.bpf_stats_enabled`: true or false, null when the sysctl cannot be
 * read (no procfs, or a kernel before 5.1).
 */
export function bpfStatsEnabled(): boolean | null {
  try {
    return Deno.readTextFileSync("/proc/sys/kernel/bpf_stats_enabled")
      .trim() !== "0";
  } catch {
    return null;
  }
}

const ENABLE_STATS = 32;
const BPF_STATS_RUN_TIME = 0;

/**
 * BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run time and count are collected
 * for every program while the returned fd is open, and stop when the last
 * such fd (and the sysctl) lets go: scoped, unlike writing the sysctl.
 */
export function enableRunTimeStats(): OwnedFd {
  const attr = new Uint8Array(ENABLE_STATS_ATTR.size);
  put(
    new DataView(attr.buffer),
    ENABLE_STATS_ATTR.fields["enable_stats.type"],
    BPF_STATS_RUN_TIME,
  );
  const result = rawBpf(ENABLE_STATS, attr);
  if (result < 0) {
    throw new BpfError(-1, -result, {
      action: "BPF_ENABLE_STATS (BPF_STATS_RUN_TIME)",
    });
  }
  return new OwnedFd(result);
}
