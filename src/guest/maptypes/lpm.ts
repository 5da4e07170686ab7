/**
 * LPM_TRIE in guest memory: `lpm_trie.root` and `lpm_trie_node`s with two
 * children each. Intermediate nodes (flag bit 0) hold no entry. Entries
 * come out in post-order, child 0 first, the order `trie_get_next_key`
 * lists them, so both backends list a trie the same way.
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { LpmLayout } from "./layout.ts";

/** `LPM_TREE_NODE_FLAG_IM`: an intermediate node, not an entry. */
const FLAG_INTERMEDIATE = 1;

/** One entry: the key as bpf() shows it (u32 prefix length, then the data) and the value. */
export interface GuestLpmEntry {
  /** `prefixlen` (u32 LE) followed by `data_size` bytes. */
  key: Uint8Array;
  /** `value_size` bytes. */
  value: Uint8Array;
}

/**
 * Every entry of the trie, copied. The walk visits at most
 * `2 * max_entries + 1` nodes (every intermediate node has two children, so
 * a trie of n entries has fewer than n of them) and no node twice: a cycle
 * or an overfull trie is an error naming the node, never a hang.
 */
export function readGuestLpm(
  space: KernelAddressSpace,
  layout: LpmLayout,
  map: GuestMapRecord,
): GuestLpmEntry[] {
  const va = map.kernelAddress;
  const what = `map ${map.id} ("${map.name}")`;
  const dataSize = space.mustU64(
    va + BigInt(layout.dataSize),
    "lpm_trie.data_size",
  );
  if (dataSize !== BigInt(map.keySize - 4) || map.keySize < 5) {
    throw new GuestMemoryError(
      `use the trie of ${what}`,
      va,
      `data_size ${dataSize} does not match key_size ${map.keySize} - 4`,
    );
  }
  const data = Number(dataSize);
  const maxPrefix = data * 8;
  const nodeBytes = layout.data + data + map.valueSize;
  const limit = 2 * map.maxEntries + 1;
  const seen = new Set<bigint>();
  const entries: GuestLpmEntry[] = [];
  const fail = (node: bigint, reason: string): never => {
    throw new GuestMemoryError(`walk the trie of ${what}`, node, reason);
  };
  // explicit stack: a degenerate (list-shaped) trie is up to 8 * data deep
  // per path but a hostile one could be arbitrarily deep
  const stack: { node: bigint; bytes: Uint8Array; next: number }[] = [];
  const visit = (node: bigint): void => {
    if (seen.has(node)) fail(node, "node reached twice (a cycle)");
    if (seen.size >= limit) {
      fail(node, `more than ${limit} nodes for max_entries ${map.maxEntries}`);
    }
    seen.add(node);
    const bytes = space.mustRead(node, nodeBytes, `lpm_trie_node of ${what}`)
      .slice();
    stack.push({ node, bytes, next: 0 });
  };
  const root = space.mustU64(va + BigInt(layout.root), "lpm_trie.root");
  if (root !== 0n) visit(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const view = new DataView(top.bytes.buffer);
    if (top.next < 2) {
      const child = view.getBigUint64(layout.child + 8 * top.next, true);
      top.next++;
      if (child !== 0n) visit(child);
      continue;
    }
    stack.pop();
    const prefixlen = view.getUint32(layout.prefixlen, true);
    const flags = view.getUint32(layout.flags, true);
    if (prefixlen > maxPrefix) {
      fail(top.node, `prefixlen ${prefixlen} exceeds ${maxPrefix} bits`);
    }
    if ((flags & FLAG_INTERMEDIATE) !== 0) continue;
    if (entries.length >= map.maxEntries) {
      fail(top.node, `more than max_entries ${map.maxEntries} entries`);
    }
    const key = new Uint8Array(4 + data);
    new DataView(key.buffer).setUint32(0, prefixlen, true);
    key.set(top.bytes.subarray(layout.data, layout.data + data), 4);
    entries.push({
      key,
      value: top.bytes.slice(layout.data + data, nodeBytes),
    });
  }
  return entries;
}
