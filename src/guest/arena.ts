/**
 * ARENA maps: the kernel maps an arena's pages at
 * `kern_vm->addr + GUARD_SZ/2 + (u32)user_address`; pages never touched have
 * no page-table entry, so probing the tables finds the ones that exist
 * without allocating any.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import { GuestKernelError, hex } from "./errors.ts";
import {
  checkType,
  type GuestMapRecord,
  type MapReadContext,
} from "./map_records.ts";

/** One present arena page. */
export interface GuestArenaPage {
  /** Page index in the arena. */
  index: number;
  /** Address user space sees the page at. */
  userAddress: bigint;
  /** The page's bytes (a copy). */
  bytes: Uint8Array;
}

/**
 * The arena's present pages; pages the page tables do not map are absent
 * (never allocated). A page mapped outside the image is recorded as a
 * problem and in `notes`.
 */
export function readArena(
  context: MapReadContext,
  map: GuestMapRecord,
): { pages: GuestArenaPage[]; userVmStart: bigint; notes: string[] } {
  checkType(map, MapType.ARENA, "an ARENA map");
  const a = context.layout.arena;
  if (!a) {
    throw new GuestKernelError(
      "The guest's BTF has no struct bpf_arena (kernel older than 6.9)",
    );
  }
  const { space, problems } = context;
  const pageSize = space.addressing.pageSize;
  const base = map.kernelAddress;
  const userVmStart = space.mustU64(
    base + BigInt(a.userVmStart),
    "bpf_arena.user_vm_start",
  );
  const kernVm = space.mustU64(base + BigInt(a.kernVm), "bpf_arena.kern_vm");
  const notes: string[] = [];
  if (kernVm === 0n) {
    return { pages: [], userVmStart, notes: ["arena has no kernel VM area"] };
  }
  const kernStart = space.mustU64(
    kernVm + BigInt(a.vmAddr),
    "vm_struct.addr of the arena",
  ) + BigInt(a.guardSize / 2);
  const total = Math.min(map.maxEntries, context.limits.maxArenaPages);
  if (total < map.maxEntries) {
    notes.push(
      `only the first ${total} of ${map.maxEntries} pages were probed`,
    );
  }
  const pages: GuestArenaPage[] = [];
  const page = BigInt(pageSize);
  let index = 0;
  while (index < total) {
    const userAddress = userVmStart + BigInt(index) * page;
    const va = kernStart + (userAddress & 0xffffffffn);
    const walked = space.walk(va);
    if (walked.pa === null) {
      // skip the whole unmapped span of the missing table entry
      const spanPages = Number(walked.span / page);
      const inSpan = Number((va % walked.span) / page);
      index += Math.max(1, spanPages - inSpan);
      continue;
    }
    const bytes = space.memory.read(walked.pa & ~(page - 1n), pageSize);
    if (bytes) pages.push({ index, userAddress, bytes: bytes.slice() });
    else {
      const message = `page ${index} maps to ${
        hex(walked.pa)
      }, outside the image`;
      notes.push(message);
      problems.add({
        what: "page",
        mapId: map.id,
        address: va,
        message: `map ${map.id} ("${map.name}"): arena ${message}`,
      });
    }
    index++;
  }
  return { pages, userVmStart, notes };
}
