/**
 * Enumerates an xarray (the store behind an IDR such as `map_idr`) in a
 * guest's memory, bounded against corrupt images: node shifts must step
 * down by 6, nodes are visited once, and the total is capped.
 *
 * @module
 */

import { GuestMemoryError, hex } from "./errors.ts";
import type { XarrayLayout } from "./layout.ts";

/** What the walker needs to read guest memory. */
export interface XarrayReader {
  /** u64 at a kernel virtual address, or null when unmapped. */
  u64(va: bigint): bigint | null;
  /** u8 at a kernel virtual address, or null when unmapped. */
  u8(va: bigint): number | null;
}

/** One leaf entry. */
export interface XarrayEntry {
  /** Index in the xarray (for an IDR: id - idr_base). */
  index: bigint;
  /** The stored pointer. */
  entry: bigint;
}

/** Limits and what went wrong during a walk. */
export interface XarrayWalkOptions {
  /** Stop after this many entries; default 1,000,000. */
  maxEntries?: number;
  /** Stop after visiting this many nodes; default 100,000. */
  maxNodes?: number;
  /** Receives a message for each part of the tree that had to be skipped. */
  onProblem?: (message: string) => void;
}

const MAX_SHIFT = 60;

function isInternal(entry: bigint): boolean {
  return (entry & 3n) === 2n;
}

/**
 * Every present leaf of the xarray whose `xa_head` is `head`, in index order.
 * Value entries (bit 0 set) are returned as-is; sibling, retry and zero
 * entries are skipped. Unreadable or inconsistent nodes are reported to
 * `onProblem` and skipped, never followed blindly.
 *
 * @example
 * ```ts
 * import { walkXarray } from "./xarray.ts";
 * const mem = new Map<bigint, bigint>();
 * const reader = { u64: (va: bigint) => mem.get(va) ?? null, u8: () => 0 };
 * const layout = { idrHead: 8, idrBase: 16, nodeShift: 0, nodeSlots: 40, chunkSize: 64 };
 * console.log([...walkXarray(reader, 0xffff888000001000n, layout)]); // [{ index: 0n, entry: ... }]
 * ```
 */
export function* walkXarray(
  reader: XarrayReader,
  head: bigint,
  layout: XarrayLayout,
  options: XarrayWalkOptions = {},
): Generator<XarrayEntry> {
  const maxEntries = options.maxEntries ?? 1_000_000;
  const maxNodes = options.maxNodes ?? 100_000;
  const problem = options.onProblem ?? (() => {});
  if (head === 0n) return;
  if (!isInternal(head)) {
    yield { index: 0n, entry: head };
    return;
  }
  if (head <= 4096n) return; // retry/zero entry at the root
  const chunkBits = BigInt(Math.round(Math.log2(layout.chunkSize)));
  const seen = new Set<bigint>();
  let entries = 0;
  type Frame = { node: bigint; shift: number; base: bigint; slot: number };
  const rootNode = head & ~3n;
  const rootShift = reader.u8(rootNode + BigInt(layout.nodeShift));
  if (rootShift === null) {
    problem(`xa_node at ${hex(rootNode)} is not mapped`);
    return;
  }
  if (rootShift > MAX_SHIFT || rootShift % Number(chunkBits) !== 0) {
    problem(
      `xa_node at ${
        hex(rootNode)
      } has shift ${rootShift}, not a multiple of ${chunkBits} up to ${MAX_SHIFT}`,
    );
    return;
  }
  seen.add(rootNode);
  const stack: Frame[] = [{
    node: rootNode,
    shift: rootShift,
    base: 0n,
    slot: 0,
  }];
  while (stack.length > 0) {
    const frame = stack[stack.length - 1]!;
    if (frame.slot >= layout.chunkSize) {
      stack.pop();
      continue;
    }
    const slot = frame.slot++;
    const slotVa = frame.node + BigInt(layout.nodeSlots + slot * 8);
    const entry = reader.u64(slotVa);
    if (entry === null) {
      problem(
        `slot ${slot} of xa_node ${hex(frame.node)} at ${
          hex(slotVa)
        } is not mapped`,
      );
      stack.pop();
      continue;
    }
    if (entry === 0n) continue;
    const index = frame.base + (BigInt(slot) << BigInt(frame.shift));
    if (isInternal(entry)) {
      if (entry <= 4096n) continue; // sibling, retry or zero entry
      if (frame.shift === 0) {
        problem(
          `xa_node ${
            hex(frame.node)
          } has shift 0 but slot ${slot} holds node pointer ${hex(entry)}`,
        );
        continue;
      }
      const child = entry & ~3n;
      if (seen.has(child)) {
        problem(
          `xa_node ${
            hex(child)
          } is reachable twice (cycle or shared node); not followed again`,
        );
        continue;
      }
      if (seen.size >= maxNodes) {
        problem(`more than ${maxNodes} xa_nodes; walk truncated`);
        return;
      }
      const shift = reader.u8(child + BigInt(layout.nodeShift));
      const expected = frame.shift - Number(chunkBits);
      if (shift === null) {
        problem(
          `xa_node ${hex(child)} (slot ${slot} of ${
            hex(frame.node)
          }) is not mapped`,
        );
        continue;
      }
      if (shift !== expected) {
        problem(
          `xa_node ${
            hex(child)
          } has shift ${shift}, expected ${expected}; skipped`,
        );
        continue;
      }
      seen.add(child);
      stack.push({ node: child, shift, base: index, slot: 0 });
      continue;
    }
    yield { index, entry };
    if (++entries >= maxEntries) {
      problem(`more than ${maxEntries} entries; walk truncated`);
      return;
    }
  }
}

/**
 * Reads an IDR's head and base at `idrVa` and walks it.
 *
 * @example
 * ```ts ignore
 * for (const { index, entry } of walkIdr(space, kernel.symbol("map_idr"), layout.xarray)) {
 *   console.log(index, entry);
 * }
 * ```
 */
export function* walkIdr(
  reader: XarrayReader,
  idrVa: bigint,
  layout: XarrayLayout,
  options: XarrayWalkOptions = {},
): Generator<XarrayEntry> {
  const head = reader.u64(idrVa + BigInt(layout.idrHead));
  const base = reader.u64(idrVa + BigInt(layout.idrBase));
  if (head === null || base === null) {
    throw new GuestMemoryError("read the IDR head", idrVa, "not mapped");
  }
  const idrBase = base & 0xffffffffn;
  for (const { index, entry } of walkXarray(reader, head, layout, options)) {
    yield { index: index + idrBase, entry };
  }
}
