import assert from "node:assert/strict";
import type { XarrayLayout } from "../src/guest/layout.ts";
import { walkIdr, walkXarray, type XarrayReader } from "../src/guest/xarray.ts";

const LAYOUT: XarrayLayout = {
  idrHead: 8,
  idrBase: 16,
  nodeShift: 0,
  nodeSlots: 40,
  chunkSize: 64,
};
const NODE_A = 0xffff888000010000n;
const NODE_B = 0xffff888000020000n;
const NODE_C = 0xffff888000030000n;

class Mem implements XarrayReader {
  readonly words = new Map<bigint, bigint>();
  readonly bytes = new Map<bigint, number>();
  u64(va: bigint): bigint | null {
    return this.words.get(va) ?? (this.mapped(va) ? 0n : null);
  }
  u8(va: bigint): number | null {
    return this.bytes.get(va) ?? (this.mapped(va) ? 0 : null);
  }
  mapped(va: bigint): boolean {
    return [NODE_A, NODE_B, NODE_C, 0xffff888000000000n].some((n) =>
      va >= n && va < n + 0x1000n
    );
  }
  node(at: bigint, shift: number): void {
    this.bytes.set(at + BigInt(LAYOUT.nodeShift), shift);
  }
  slot(node: bigint, slot: number, value: bigint): void {
    this.words.set(node + BigInt(LAYOUT.nodeSlots + slot * 8), value);
  }
}

const leaf = (n: number): bigint => 0xffff888100000000n + BigInt(n) * 0x1000n;
const internal = (node: bigint): bigint => node | 2n;

Deno.test("walkXarray returns nothing for an empty head and index 0 for a single entry", () => {
  const mem = new Mem();
  assert.deepEqual([...walkXarray(mem, 0n, LAYOUT)], []);
  assert.deepEqual([...walkXarray(mem, leaf(1), LAYOUT)], [{
    index: 0n,
    entry: leaf(1),
  }]);
});

Deno.test("walkXarray walks one node in slot order", () => {
  const mem = new Mem();
  mem.node(NODE_A, 0);
  mem.slot(NODE_A, 63, leaf(63));
  mem.slot(NODE_A, 1, leaf(1));
  mem.slot(NODE_A, 5, leaf(5));
  assert.deepEqual(
    [...walkXarray(mem, internal(NODE_A), LAYOUT)].map((
      e,
    ) => [e.index, e.entry]),
    [
      [1n, leaf(1)],
      [5n, leaf(5)],
      [63n, leaf(63)],
    ],
  );
});

Deno.test("walkXarray descends two levels and computes indexes from the shifts", () => {
  const mem = new Mem();
  mem.node(NODE_A, 6);
  mem.node(NODE_B, 0);
  mem.node(NODE_C, 0);
  mem.slot(NODE_A, 0, internal(NODE_B));
  mem.slot(NODE_A, 3, internal(NODE_C));
  mem.slot(NODE_B, 7, leaf(7));
  mem.slot(NODE_C, 2, leaf(194));
  mem.slot(NODE_C, 4, (1n << 2n) | 2n); // a sibling entry: skipped
  assert.deepEqual(
    [...walkXarray(mem, internal(NODE_A), LAYOUT)].map((e) => e.index),
    [7n, 3n * 64n + 2n],
  );
});

Deno.test("walkXarray stops at a cycle and reports it", () => {
  const mem = new Mem();
  mem.node(NODE_A, 6);
  mem.node(NODE_B, 0);
  mem.slot(NODE_A, 0, internal(NODE_B));
  mem.slot(NODE_A, 1, internal(NODE_A)); // points back at the root
  mem.slot(NODE_B, 0, leaf(0));
  mem.slot(NODE_B, 1, internal(NODE_A)); // node pointer at shift 0
  const problems: string[] = [];
  const entries = [
    ...walkXarray(mem, internal(NODE_A), LAYOUT, {
      onProblem: (m) => problems.push(m),
    }),
  ];
  assert.deepEqual(entries.map((e) => e.index), [0n]);
  assert.equal(problems.length, 2);
  assert.match(problems.join("\n"), /shift 0 but slot 1 holds node pointer/);
  assert.match(problems.join("\n"), /reachable twice/);
});

Deno.test("walkXarray skips children with the wrong shift or outside memory", () => {
  const mem = new Mem();
  mem.node(NODE_A, 12);
  mem.node(NODE_B, 0); // expected 6
  mem.slot(NODE_A, 0, internal(NODE_B));
  mem.slot(NODE_A, 1, internal(0xffff888777770000n)); // unmapped
  mem.slot(NODE_A, 2, leaf(2)); // a leaf at shift 12: index 2 << 12
  const problems: string[] = [];
  const entries = [
    ...walkXarray(mem, internal(NODE_A), LAYOUT, {
      onProblem: (m) => problems.push(m),
    }),
  ];
  assert.deepEqual(entries.map((e) => e.index), [2n << 12n]);
  assert.match(problems[0]!, /has shift 0, expected 6/);
  assert.match(problems[1]!, /0xffff888777770000.*not mapped/);
});

Deno.test("walkXarray rejects a root with an impossible shift and truncates at maxEntries", () => {
  const mem = new Mem();
  mem.node(NODE_A, 7);
  const problems: string[] = [];
  assert.deepEqual([
    ...walkXarray(mem, internal(NODE_A), LAYOUT, {
      onProblem: (m) => problems.push(m),
    }),
  ], []);
  assert.match(problems[0]!, /shift 7/);
  mem.node(NODE_A, 0);
  for (let i = 0; i < 64; i++) mem.slot(NODE_A, i, leaf(i));
  const few = [
    ...walkXarray(mem, internal(NODE_A), LAYOUT, {
      maxEntries: 10,
      onProblem: (m) => problems.push(m),
    }),
  ];
  assert.equal(few.length, 10);
  assert.match(problems.at(-1)!, /more than 10 entries/);
});

Deno.test("walkIdr adds idr_base to every index", () => {
  const mem = new Mem();
  const idr = 0xffff888000000100n;
  mem.words.set(idr + 8n, internal(NODE_A));
  mem.words.set(idr + 16n, 1n);
  mem.node(NODE_A, 0);
  mem.slot(NODE_A, 0, leaf(1));
  mem.slot(NODE_A, 4, leaf(5));
  assert.deepEqual([...walkIdr(mem, idr, LAYOUT)].map((e) => e.index), [
    1n,
    5n,
  ]);
  assert.throws(
    () => [...walkIdr(mem, 0xffff999000000000n, LAYOUT)],
    /IDR head at 0xffff999000000000/,
  );
});
