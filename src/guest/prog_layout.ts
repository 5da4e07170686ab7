/**
 * The struct offsets the guest program walker uses (`struct bpf_prog`,
 * `bpf_prog_aux`, `bpf_prog_stats`), read from the guest's own BTF. Kept
 * apart from `layout.ts` so maps and programs change independently; tests
 * fill it with synthetic offsets.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { GuestKernelError } from "./errors.ts";

/** A one-bit flag inside a bitfield word: byte offset and bit within that byte. */
export interface BitLocation {
  /** Byte offset in the struct. */
  byte: number;
  /** Bit (0 = least significant) within that byte. */
  bit: number;
}

/** Every offset `programs.ts` reads; optional parts are null when the kernel lacks them. */
export interface ProgramLayout {
  /** `bpf_prog.pages` (u16): memlock is `pages * PAGE_SIZE`. */
  pages: number;
  /** `bpf_prog.gpl_compatible` (1-bit bitfield). */
  gplCompatible: BitLocation;
  /** `bpf_prog.type` (enum, u32). */
  type: number;
  /** `bpf_prog.len`: instructions after the verifier (xlated bytes are 8 each). */
  len: number;
  /** `bpf_prog.jited_len`. */
  jitedLen: number;
  /** `bpf_prog.tag` (8 bytes). */
  tag: number;
  /** `bpf_prog.stats` (per-CPU pointer to `bpf_prog_stats`). */
  stats: number;
  /** `bpf_prog.aux` (pointer). */
  aux: number;
  /** `bpf_prog_aux.id`. */
  auxId: number;
  /** `bpf_prog_aux.name` (16 bytes). */
  auxName: number;
  /** `bpf_prog_aux.used_map_cnt` (u32). */
  usedMapCnt: number;
  /** `bpf_prog_aux.used_maps` (`struct bpf_map **`). */
  usedMaps: number;
  /** `bpf_prog_aux.btf` (pointer; its id at the map layout's `btfId`). */
  auxBtf: number;
  /**
   * `bpf_prog_aux.func_cnt` and `func` (`struct bpf_prog **`): a program
   * with subprograms reports the sum of their `jited_len`.
   */
  subprograms: { funcCnt: number; func: number } | null;
  /** `bpf_prog_aux.load_time` (u64, ns since boot). */
  loadTime: number;
  /** `bpf_prog_aux.verified_insns` (5.16+). */
  verifiedInsns: number | null;
  /** `bpf_prog_aux.user` and `user_struct.uid`, when both exist. */
  user: { pointer: number; uid: number } | null;
  /** `bpf_prog_stats.{cnt,nsecs,misses}` (u64 counters), when the struct exists. */
  counters: { cnt: number; nsecs: number; misses: number | null } | null;
  /** `static_key.enabled` (atomic_t), for `bpf_stats_enabled_key`. */
  staticKeyEnabled: number | null;
}

function bytes(btf: Btf, struct: string, path: string): number {
  const at = btf.memberOffset(struct, path);
  if (at.bitfieldSize !== 0 || at.bitOffset % 8 !== 0) {
    throw new GuestKernelError(
      `${struct}.${path} is a bitfield; bpfmap needs a byte-aligned member`,
    );
  }
  return at.offset;
}

function bit(btf: Btf, struct: string, path: string): BitLocation {
  const at = btf.memberOffset(struct, path);
  // A bool member (some kernels) is a whole byte whose bit 0 is the flag.
  if (at.bitfieldSize > 1) {
    throw new GuestKernelError(`${struct}.${path} is wider than one bit`);
  }
  return { byte: Math.floor(at.bitOffset / 8), bit: at.bitOffset % 8 };
}

function optional<T>(build: () => T): T | null {
  try {
    return build();
  } catch {
    return null;
  }
}

/**
 * Reads the program offsets from vmlinux BTF; throws GuestKernelError when
 * a required member is missing (the kernel is not one bpfmap knows).
 */
export function programLayoutFromBtf(btf: Btf): ProgramLayout {
  return {
    pages: bytes(btf, "bpf_prog", "pages"),
    gplCompatible: bit(btf, "bpf_prog", "gpl_compatible"),
    type: bytes(btf, "bpf_prog", "type"),
    len: bytes(btf, "bpf_prog", "len"),
    jitedLen: bytes(btf, "bpf_prog", "jited_len"),
    tag: bytes(btf, "bpf_prog", "tag"),
    stats: bytes(btf, "bpf_prog", "stats"),
    aux: bytes(btf, "bpf_prog", "aux"),
    auxId: bytes(btf, "bpf_prog_aux", "id"),
    auxName: bytes(btf, "bpf_prog_aux", "name"),
    usedMapCnt: bytes(btf, "bpf_prog_aux", "used_map_cnt"),
    usedMaps: bytes(btf, "bpf_prog_aux", "used_maps"),
    auxBtf: bytes(btf, "bpf_prog_aux", "btf"),
    subprograms: optional(() => ({
      funcCnt: bytes(btf, "bpf_prog_aux", "func_cnt"),
      func: bytes(btf, "bpf_prog_aux", "func"),
    })),
    loadTime: bytes(btf, "bpf_prog_aux", "load_time"),
    verifiedInsns: optional(() => bytes(btf, "bpf_prog_aux", "verified_insns")),
    user: optional(() => ({
      pointer: bytes(btf, "bpf_prog_aux", "user"),
      uid: bytes(btf, "user_struct", "uid"),
    })),
    counters: optional(() => ({
      cnt: bytes(btf, "bpf_prog_stats", "cnt"),
      nsecs: bytes(btf, "bpf_prog_stats", "nsecs"),
      misses: optional(() => bytes(btf, "bpf_prog_stats", "misses")),
    })),
    staticKeyEnabled: optional(() => bytes(btf, "static_key", "enabled")),
  };
}
