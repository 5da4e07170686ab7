/**
 * The guest kernel's own record of where its RAM is: the top-level
 * `System RAM` entries of `iomem_resource` (what `/proc/iomem` lists). It
 * tells apart RAM-file layouts that differ only in where the high part of
 * RAM sits (QEMU's `pc` and `q35` machines).
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import { hex } from "./errors.ts";
import type { GuestKernel } from "./kernel.ts";
import type { PhysRegion } from "./phys.ts";

/** One run of RAM, `start` to `end` inclusive (as the kernel's `struct resource` holds it). */
export interface RamRange {
  /** First byte. */
  start: bigint;
  /** Last byte. */
  end: bigint;
}

// the kernel's list holds a few dozen entries: more is a corrupt or hostile list
const MAX_TOP_LEVEL_RESOURCES = 4096;
const NAME_BYTES = 32;

/**
 * The `System RAM` ranges under `iomem_resource`, in list order.
 *
 * @throws {GuestMemoryError} when the list cannot be read (e.g. under a wrong layout)
 */
export function readSystemRam(kernel: GuestKernel, btf: Btf): RamRange[] {
  const at = (member: string) =>
    BigInt(btf.memberOffset("resource", member).offset);
  const start = at("start");
  const end = at("end");
  const name = at("name");
  const sibling = at("sibling");
  const child = at("child");
  const space = kernel.space;
  const ranges: RamRange[] = [];
  let node = space.mustU64(
    kernel.symbol("iomem_resource") + child,
    "iomem_resource.child",
  );
  for (let i = 0; node !== 0n; i++) {
    if (i === MAX_TOP_LEVEL_RESOURCES) {
      throw new RangeError(
        `iomem_resource has over ${MAX_TOP_LEVEL_RESOURCES} top-level entries (a cycle?) at ${
          hex(node)
        }`,
      );
    }
    const namePtr = space.mustU64(node + name, "resource.name");
    const text = namePtr === 0n ? null : space.read(namePtr, NAME_BYTES);
    if (text !== null) {
      const nul = text.indexOf(0);
      const label = new TextDecoder().decode(
        text.subarray(0, nul < 0 ? NAME_BYTES : nul),
      );
      if (label === "System RAM") {
        ranges.push({
          start: space.mustU64(node + start, "resource.start"),
          end: space.mustU64(node + end, "resource.end"),
        });
      }
    }
    node = space.mustU64(node + sibling, "resource.sibling");
  }
  return ranges;
}

/**
 * The first RAM range no region holds, or null when `regions` hold every
 * byte of RAM the kernel knows of (a layout that puts the file's bytes
 * elsewhere leaves some of it out).
 */
export function ramOutside(
  regions: readonly PhysRegion[],
  ram: readonly RamRange[],
): RamRange | null {
  for (const range of ram) {
    const holder = regions.find((r) =>
      r.gpa <= range.start && range.end < r.gpa + r.size
    );
    if (!holder) return range;
  }
  return null;
}
