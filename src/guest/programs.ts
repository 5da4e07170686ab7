/**
 * BPF programs read out of a guest kernel's memory: `prog_idr` walked with
 * the same bounded xarray walker as `map_idr`, each `struct bpf_prog` and its
 * `bpf_prog_aux` read at offsets from the guest's BTF. A record that cannot
 * be read is skipped and recorded; nothing here follows a count or pointer
 * from guest memory without a bound.
 *
 * @module
 */

import { GuestMemoryError, hex } from "./errors.ts";
import type { BpfMapLayout, XarrayLayout } from "./layout.ts";
import type { KernelAddressSpace } from "./paging.ts";
import type { ProblemLog } from "./problems.ts";
import type { BitLocation, ProgramLayout } from "./prog_layout.ts";
import { walkIdr } from "./xarray.ts";

/** A `struct bpf_prog` as read from guest memory. */
export interface GuestProgramRecord {
  /** `aux->id`. */
  id: number;
  /** `type`. */
  type: number;
  /** `aux->name`, cut at the first NUL. */
  name: string;
  /** `tag`, as 16 hex digits. */
  tag: string;
  /** `aux->used_maps[i]->id`. */
  mapIds: number[];
  /** `aux->btf->id`, 0 without BTF. */
  btfId: number;
  /** The `gpl_compatible` bit. */
  gplCompatible: boolean;
  /** `len`: instructions after the verifier. */
  len: number;
  /**
   * Bytes of machine code as bpf() reports them: `jited_len`, or for a
   * program with subprograms the sum of theirs.
   */
  jitedLen: number;
  /** `pages`. */
  pages: number;
  /** `aux->load_time`. */
  loadTime: bigint;
  /** `aux->user->uid`, when the layout has it. */
  uid?: number;
  /** `aux->verified_insns`, when the layout has it. */
  verifiedInsns?: number;
  /** Sums over CPUs of `stats`, or null with `statsNote`. */
  stats: { runTimeNs: bigint; runCnt: bigint; recursionMisses: bigint } | null;
  /** Why `stats` is null. */
  statsNote?: string;
  /** Kernel virtual address of the `struct bpf_prog`. */
  kernelAddress: bigint;
}

/** What the program walker needs. */
export interface ProgramReadContext {
  /** The guest kernel's address space. */
  space: KernelAddressSpace;
  /** `struct bpf_prog` / `bpf_prog_aux` offsets. */
  layout: ProgramLayout;
  /** The map layout: `bpf_map.id` and `btf.id` are read through it. */
  mapLayout: BpfMapLayout;
  /** The IDR layout. */
  xarray: XarrayLayout;
  /** `__per_cpu_offset[0..nr_cpu_ids)`. */
  perCpuOffsets: readonly bigint[];
  /** Where skipped programs are recorded. */
  problems: ProblemLog;
  /** Most programs listed; default 65,536. */
  maxPrograms?: number;
}

const NAME_LEN = 16;
const TAG_LEN = 8;
// The verifier allows MAX_USED_MAPS (64) and bpf_prog_bind_map adds a few:
// a count far past that is a corrupt or freed record, not a program.
const MAX_USED_MAPS = 4096;
// BPF_MAX_SUBPROGS.
const MAX_SUBPROGS = 256;

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

function flag(
  space: KernelAddressSpace,
  va: bigint,
  at: BitLocation,
  what: string,
): boolean {
  return ((space.mustU8(va + BigInt(at.byte), what) >> at.bit) & 1) === 1;
}

/**
 * Whether `bpf_stats_enabled_key` is on: true/false, or null when the key
 * is not known (no symbol, no layout, unmapped).
 */
export function guestStatsEnabled(
  space: KernelAddressSpace,
  layout: ProgramLayout,
  key: bigint | undefined,
): boolean | null {
  if (key === undefined || layout.staticKeyEnabled === null) return null;
  const bytes = space.read(key + BigInt(layout.staticKeyEnabled), 4);
  if (bytes === null) return null;
  // atomic_t: a count of enablers, so any positive value is on
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getInt32(0, true) > 0;
}

function sumStats(
  context: ProgramReadContext,
  statsVa: bigint,
): { runTimeNs: bigint; runCnt: bigint; recursionMisses: bigint } {
  const { space, layout } = context;
  const counters = layout.counters!;
  let runTimeNs = 0n;
  let runCnt = 0n;
  let recursionMisses = 0n;
  context.perCpuOffsets.forEach((offset, cpu) => {
    const at = BigInt.asUintN(64, statsVa + offset);
    const what = (field: string): string =>
      `bpf_prog_stats.${field} of CPU ${cpu}`;
    runCnt += space.mustU64(at + BigInt(counters.cnt), what("cnt"));
    runTimeNs += space.mustU64(at + BigInt(counters.nsecs), what("nsecs"));
    if (counters.misses !== null) {
      recursionMisses += space.mustU64(
        at + BigInt(counters.misses),
        what("misses"),
      );
    }
  });
  // The kernel sums these u64 counters the same way: wrapping at 2^64.
  return {
    runTimeNs: BigInt.asUintN(64, runTimeNs),
    runCnt: BigInt.asUintN(64, runCnt),
    recursionMisses: BigInt.asUintN(64, recursionMisses),
  };
}

/** `bpf_prog_get_info_by_fd`'s `jited_prog_len`: the subprograms' sum when there are any. */
function jitedLength(
  context: ProgramReadContext,
  va: bigint,
  aux: bigint,
  id: number,
): number {
  const { space, layout: p } = context;
  const own = space.mustU32(va + BigInt(p.jitedLen), "bpf_prog.jited_len");
  if (p.subprograms === null) return own;
  const count = space.mustU32(
    aux + BigInt(p.subprograms.funcCnt),
    "bpf_prog_aux.func_cnt",
  );
  if (count === 0) return own;
  if (count > MAX_SUBPROGS) {
    throw new GuestMemoryError(
      `use program ${id}`,
      aux,
      `func_cnt ${count} is past ${MAX_SUBPROGS}: not a live program`,
    );
  }
  const array = space.mustU64(
    aux + BigInt(p.subprograms.func),
    "bpf_prog_aux.func",
  );
  const pointers = space.mustRead(array, count * 8, `func of program ${id}`)
    .slice();
  const view = new DataView(pointers.buffer);
  let total = 0;
  for (let i = 0; i < count; i++) {
    total += space.mustU32(
      view.getBigUint64(i * 8, true) + BigInt(p.jitedLen),
      `jited_len of subprogram ${i}`,
    );
  }
  // the kernel adds these in a u32
  return total >>> 0;
}

/** Reads the `struct bpf_prog` at `va`; throws GuestMemoryError on an unreadable part. */
export function readProgramRecord(
  context: ProgramReadContext,
  va: bigint,
  statsEnabled: boolean | null,
): GuestProgramRecord {
  const { space, layout: p, mapLayout } = context;
  const at = (off: number): bigint => va + BigInt(off);
  const aux = space.mustU64(at(p.aux), "bpf_prog.aux");
  const inAux = (off: number): bigint => aux + BigInt(off);
  const id = space.mustU32(inAux(p.auxId), "bpf_prog_aux.id");
  const usedMapCnt = space.mustU32(
    inAux(p.usedMapCnt),
    "bpf_prog_aux.used_map_cnt",
  );
  if (usedMapCnt > MAX_USED_MAPS) {
    throw new GuestMemoryError(
      `use program ${id}`,
      aux,
      `used_map_cnt ${usedMapCnt} is past ${MAX_USED_MAPS}: not a live program`,
    );
  }
  const mapIds: number[] = [];
  if (usedMapCnt > 0) {
    const array = space.mustU64(inAux(p.usedMaps), "bpf_prog_aux.used_maps");
    const pointers = space.mustRead(
      array,
      usedMapCnt * 8,
      `used_maps of program ${id}`,
    ).slice();
    const view = new DataView(pointers.buffer);
    for (let i = 0; i < usedMapCnt; i++) {
      const map = view.getBigUint64(i * 8, true);
      mapIds.push(
        space.mustU32(
          map + BigInt(mapLayout.id),
          `bpf_map.id of used_maps[${i}]`,
        ),
      );
    }
  }
  const btf = space.mustU64(inAux(p.auxBtf), "bpf_prog_aux.btf");
  const record: GuestProgramRecord = {
    id,
    type: space.mustU32(at(p.type), "bpf_prog.type"),
    name: cString(
      space.mustRead(inAux(p.auxName), NAME_LEN, "bpf_prog_aux.name"),
    ),
    tag: Array.from(
      space.mustRead(at(p.tag), TAG_LEN, "bpf_prog.tag"),
      (b) => b.toString(16).padStart(2, "0"),
    ).join(""),
    mapIds,
    btfId: btf === 0n
      ? 0
      : space.mustU32(btf + BigInt(mapLayout.btfId), "btf.id of the program"),
    gplCompatible: flag(space, va, p.gplCompatible, "bpf_prog.gpl_compatible"),
    len: space.mustU32(at(p.len), "bpf_prog.len"),
    jitedLen: jitedLength(context, va, aux, id),
    pages: space.mustRead(at(p.pages), 2, "bpf_prog.pages").reduce(
      (sum, b, i) => sum + (b << (8 * i)),
      0,
    ),
    loadTime: space.mustU64(inAux(p.loadTime), "bpf_prog_aux.load_time"),
    stats: null,
    kernelAddress: va,
  };
  if (p.verifiedInsns !== null) {
    record.verifiedInsns = space.mustU32(
      inAux(p.verifiedInsns),
      "bpf_prog_aux.verified_insns",
    );
  }
  if (p.user !== null) {
    const user = space.u64(inAux(p.user.pointer));
    const uid = user ? space.read(user + BigInt(p.user.uid), 4) : null;
    // the uid is a nicety: an unreadable user_struct leaves it out
    if (uid) {
      record.uid = new DataView(uid.buffer, uid.byteOffset).getUint32(0, true);
    }
  }
  if (p.counters === null) {
    record.statsNote = "this kernel's BTF has no struct bpf_prog_stats";
  } else {
    try {
      const stats = sumStats(
        context,
        space.mustU64(at(p.stats), "bpf_prog.stats"),
      );
      if (
        statsEnabled === true || stats.runTimeNs !== 0n || stats.runCnt !== 0n
      ) {
        record.stats = stats;
      } else {
        record.statsNote = statsEnabled === false
          ? "kernel.bpf_stats_enabled is 0"
          : "bpf_stats_enabled_key cannot be read and nothing was counted";
      }
    } catch (error) {
      record.statsNote = `per-CPU bpf_prog_stats unreadable: ${
        (error as Error).message
      }`;
    }
  }
  return record;
}

/**
 * Every program in `prog_idr`, in id order. Entries whose record cannot be
 * read are skipped and recorded in `context.problems`.
 */
export function listPrograms(
  context: ProgramReadContext,
  progIdr: bigint,
  statsEnabled: boolean | null,
): GuestProgramRecord[] {
  const { space, problems } = context;
  const records: GuestProgramRecord[] = [];
  for (
    const { index, entry } of walkIdr(space, progIdr, context.xarray, {
      maxEntries: context.maxPrograms ?? 65_536,
      onProblem: (message) =>
        problems.add({ what: "program", message: `prog_idr: ${message}` }),
    })
  ) {
    if (entry & 3n) continue; // value or internal entry: not a program pointer
    const id = Number(index);
    try {
      const record = readProgramRecord(context, entry, statsEnabled);
      if (record.id !== id) {
        problems.add({
          what: "program",
          address: entry,
          message: `prog_idr: entry ${id} points at ${
            hex(entry)
          } whose id is ${record.id}`,
        });
      }
      records.push(record);
    } catch (error) {
      problems.add({
        what: "program",
        address: entry,
        message: `prog_idr: entry ${id} (struct bpf_prog at ${
          hex(entry)
        }) is unreadable: ${(error as Error).message}`,
      });
    }
  }
  return records;
}
