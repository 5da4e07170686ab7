import assert from "node:assert/strict";
import {
  joinAddress,
  splitAddress,
  START_KERNEL_MAP,
  walkPageTables,
} from "../src/guest/paging.ts";
import { BytesMemory } from "../src/guest/phys.ts";
import { FakeRam, PageTables, x86Space } from "./guest_fixture.ts";

const VMALLOC = 0xffffc90000000000n;
const VMALLOC_L5 = 0xff5c800000000000n;

for (const levels of [4, 5] as const) {
  Deno.test(`walkPageTables maps a 4 KiB page through ${levels} levels`, () => {
    const ram = new FakeRam(4 << 20);
    const tables = new PageTables(ram, levels);
    const va = (levels === 5 ? VMALLOC_L5 : VMALLOC) + 0x123000n;
    tables.map(va, 0x3000n);
    const hit = walkPageTables(ram.memory(), tables.root, va + 0x456n, levels);
    assert.deepEqual(hit, { pa: 0x3456n, pageSize: 4096n });
    const next = walkPageTables(
      ram.memory(),
      tables.root,
      va + 0x1000n,
      levels,
    );
    assert.deepEqual(next, { pa: null, level: 1, span: 4096n });
  });

  Deno.test(`walkPageTables honours 2 MiB and 1 GiB pages with ${levels} levels`, () => {
    const ram = new FakeRam(4 << 20);
    const tables = new PageTables(ram, levels);
    const base = levels === 5 ? VMALLOC_L5 : VMALLOC;
    tables.map(base + (2n << 20n) * 5n, 0x40000000n, 2n << 20n);
    tables.map(base + (1n << 30n) * 3n, 0x80000000n, 1n << 30n);
    const memory = ram.memory();
    assert.deepEqual(
      walkPageTables(
        memory,
        tables.root,
        base + (2n << 20n) * 5n + 0x1abcden,
        levels,
      ),
      { pa: 0x40000000n + 0x1abcden, pageSize: 2n << 20n },
    );
    assert.deepEqual(
      walkPageTables(
        memory,
        tables.root,
        base + (1n << 30n) * 3n + 0x3456789n,
        levels,
      ),
      { pa: 0x80000000n + 0x3456789n, pageSize: 1n << 30n },
    );
  });
}

Deno.test("walkPageTables reports the level and span of the missing entry", () => {
  const ram = new FakeRam(4 << 20);
  const tables = new PageTables(ram, 5);
  const memory = ram.memory();
  assert.deepEqual(walkPageTables(memory, tables.root, VMALLOC_L5, 5), {
    pa: null,
    level: 5,
    span: 1n << 48n,
  });
  tables.map(VMALLOC_L5, 0x5000n);
  // same PML5 and P4D entry, different PUD slot
  assert.deepEqual(
    walkPageTables(memory, tables.root, VMALLOC_L5 + (1n << 30n), 5),
    {
      pa: null,
      level: 3,
      span: 1n << 30n,
    },
  );
  // the 4-level walk of a table outside the image reads as not present
  assert.deepEqual(walkPageTables(memory, 0x7fff000000n, VMALLOC, 4), {
    pa: null,
    level: 4,
    span: 1n << 39n,
  });
});

Deno.test("walkPageTables ignores entries without the present bit", () => {
  const ram = new FakeRam(4 << 20);
  const tables = new PageTables(ram, 4);
  tables.map(VMALLOC, 0x7000n);
  const memory = ram.memory();
  assert.equal(walkPageTables(memory, tables.root, VMALLOC, 4).pa, 0x7000n);
  // clear the present bit of the PGD entry
  const slot = tables.root + ((VMALLOC >> 39n) & 511n) * 8n;
  ram.u64(slot, memory.u64(slot)! & ~1n);
  assert.equal(walkPageTables(memory, tables.root, VMALLOC, 4).pa, null);
});

Deno.test("KernelAddressSpace uses direct-map and image arithmetic, and page walks elsewhere", () => {
  const ram = new FakeRam(8 << 20);
  const tables = new PageTables(ram, 4);
  const pageOffset = 0xffff888000000000n;
  const physBase = BigInt.asUintN(64, -0x100000n); // a "negative" phys_base, as KASLR produces
  const space = x86Space(ram.memory(), {
    physBase,
    rootPa: tables.root,
    levels: 4,
    pageOffset,
  });
  ram.u64(0x200008n, 0x1122334455667788n);
  assert.equal(space.u64(pageOffset + 0x200008n), 0x1122334455667788n);
  // image map: va - START_KERNEL_MAP + phys_base
  assert.equal(space.translate(START_KERNEL_MAP + 0x300000n), 0x200000n);
  assert.equal(space.u64(START_KERNEL_MAP + 0x300008n), 0x1122334455667788n);
  // beyond the image: null, not a wrapped read
  assert.equal(space.translate(pageOffset + (16n << 20n)), null);
  assert.equal(space.u64(VMALLOC), null);
});

Deno.test("KernelAddressSpace.read stitches pages that are not physically adjacent", () => {
  const ram = new FakeRam(8 << 20);
  const tables = new PageTables(ram, 5);
  tables.map(VMALLOC_L5, 0x400000n);
  tables.map(VMALLOC_L5 + 0x1000n, 0x200000n);
  ram.set(0x400ffcn, new Uint8Array([1, 2, 3, 4]));
  ram.set(0x200000n, new Uint8Array([5, 6, 7, 8]));
  const space = x86Space(ram.memory(), {
    physBase: 0n,
    rootPa: tables.root,
    levels: 5,
    pageOffset: 0xff11000000000000n,
  });
  assert.deepEqual(
    space.read(VMALLOC_L5 + 0xffcn, 8),
    new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
  );
  assert.equal(space.u64(VMALLOC_L5 + 0xffcn), 0x0807060504030201n);
  assert.equal(
    space.read(VMALLOC_L5 + 0x1ffcn, 8),
    null,
    "the third page is unmapped",
  );
  assert.throws(
    () => space.mustU64(VMALLOC_L5 + 0x2000n, "test.field"),
    /test\.field at 0xff5c800000002000: not mapped/,
  );
});

Deno.test("KernelAddressSpace.offsetAt agrees with translate for 4 KiB, 2 MiB and 1 GiB pages", () => {
  const ram = new FakeRam(8 << 20);
  const tables = new PageTables(ram, 4);
  tables.map(VMALLOC, 0x300000n);
  tables.map(VMALLOC + (2n << 20n), 0x400000n, 2n << 20n);
  tables.map(VMALLOC + (1n << 30n), 0x0n, 1n << 30n);
  const memory = ram.memory();
  const space = x86Space(memory, {
    physBase: 0n,
    rootPa: tables.root,
    levels: 4,
    pageOffset: 0xffff888000000000n,
  });
  const probes = [
    VMALLOC + 0x10n,
    VMALLOC + 0xff8n,
    // every 4 KiB piece of the 2 MiB page, each cached on its own
    ...[0n, 0x1000n, 0x5000n, 0x1ff000n].map((o) =>
      VMALLOC + (2n << 20n) + o + 0x123n
    ),
    VMALLOC + (1n << 30n) + 0x7f0008n,
    VMALLOC + (1n << 30n) + 0x10n,
  ];
  for (let round = 0; round < 2; round++) { // cold, then cached
    for (const va of probes) {
      const [hi, lo] = splitAddress(va);
      assert.equal(
        space.offsetAt(hi, lo, 8),
        Number(space.translate(va)),
        `${va.toString(16)} round ${round}`,
      );
    }
  }
  // a read that crosses a page, an unmapped page, a negative length: -1
  const [hi, lo] = splitAddress(VMALLOC + 0xffcn);
  assert.equal(space.offsetAt(hi, lo, 8), -1);
  const [uhi, ulo] = splitAddress(VMALLOC + 0x1000n);
  assert.equal(space.offsetAt(uhi, ulo, 8), -1);
  assert.equal(space.offsetAt(uhi, ulo, -1), -1);
  assert.equal(
    joinAddress(...splitAddress(VMALLOC + 0x123n)),
    VMALLOC + 0x123n,
  );
});

Deno.test("KernelAddressSpace's page cache is per address space, survives slot collisions and is dropped by clearCache", () => {
  const ram = new FakeRam(8 << 20);
  const a = new PageTables(ram, 4);
  const b = new PageTables(ram, 4);
  // pages 2^28 apart fall in the same cache slot
  const far = VMALLOC + (1n << 28n);
  a.map(VMALLOC, 0x300000n);
  a.map(far, 0x301000n);
  b.map(VMALLOC, 0x302000n);
  ram.u64(0x300000n, 1n);
  ram.u64(0x301000n, 2n);
  ram.u64(0x302000n, 3n);
  ram.u64(0x303000n, 4n);
  const memory = ram.memory();
  const params = { physBase: 0n, levels: 4 as const, pageOffset: null };
  const spaceA = x86Space(memory, { ...params, rootPa: a.root });
  const spaceB = x86Space(memory, { ...params, rootPa: b.root });
  for (let i = 0; i < 3; i++) {
    assert.equal(spaceA.u64(VMALLOC), 1n);
    assert.equal(spaceA.u64(far), 2n);
    assert.equal(spaceB.u64(VMALLOC), 3n);
    assert.equal(spaceB.u64(far), null);
  }
  // the guest ran and remapped the page: clearCache() sees the new mapping
  a.map(VMALLOC, 0x303000n);
  spaceA.clearCache();
  assert.equal(spaceA.u64(VMALLOC), 4n);
  assert.deepEqual(spaceA.read(VMALLOC, 2), new Uint8Array([4, 0]));
});

Deno.test("KernelAddressSpace does not cache a page split between image regions, and setPageOffset drops the cache", () => {
  // GPA [0, 0x1800) at file offset 0x4000, GPA [0x1800, 0x4000) at file offset 0
  const bytes = new Uint8Array(0x6000);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0x4000 + 0x1000, 0x1111n, true);
  view.setBigUint64(0x0, 0x2222n, true); // GPA 0x1800
  view.setBigUint64(0x800, 0x3333n, true); // GPA 0x2000
  const memory = new BytesMemory(bytes, [
    { gpa: 0n, size: 0x1800n, fileOffset: 0x4000 },
    { gpa: 0x1800n, size: 0x2800n, fileOffset: 0 },
  ]);
  const P = 0xffff888000000000n;
  const space = x86Space(memory, {
    physBase: 0n,
    rootPa: 0x100000n,
    levels: 4,
    pageOffset: P,
  });
  for (let i = 0; i < 2; i++) {
    const [hi, lo] = splitAddress(P + 0x1000n);
    assert.equal(space.offsetAt(hi, lo, 8), -1, "page 1 spans two regions");
    assert.equal(space.u64(P + 0x1000n), 0x1111n);
    assert.equal(space.u64(P + 0x1800n), 0x2222n);
    assert.equal(space.u64(P + 0x2000n), 0x3333n);
  }
  // moving the direct map forgets pages cached under the old base
  space.setPageOffset(P + 0x1000n);
  assert.equal(space.u64(P + 0x2000n), 0x1111n);
  assert.equal(space.u64(P), null);
});
