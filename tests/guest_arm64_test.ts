import assert from "node:assert/strict";
import {
  AARCH64,
  Arm64Addressing,
  type Arm64Granule,
  arm64Levels,
  type Arm64PaFormat,
  QEMU_VIRT_RAM_BASE,
  qemuVirtLayout,
  walkArm64,
} from "../src/guest/arch/aarch64.ts";
import { detectArch } from "../src/guest/arch/mod.ts";
import { GuestKernelError } from "../src/guest/errors.ts";
import {
  joinAddress,
  KernelAddressSpace,
  splitAddress,
} from "../src/guest/paging.ts";
import { parseVmcoreinfo } from "../src/guest/vmcoreinfo.ts";
import { FakeRam } from "./guest_fixture.ts";

/** Access flag: the kernel sets it on every live mapping. */
const AF = 1n << 10n;
/** Inner shareable: bits [9:8] = 0b11 on a 48-bit-PA kernel, which must not leak into addresses. */
const SH_INNER = 3n << 8n;

/** Builds arm64 TTBR1 tables in a FakeRam, encoding addresses the way each PA format does. */
class Arm64Tables {
  readonly root: bigint;
  readonly #ram: FakeRam;
  readonly #shift: number;
  readonly #levels: number;
  readonly #vaBits: number;
  readonly #format: Arm64PaFormat;

  constructor(
    ram: FakeRam,
    pageSize: Arm64Granule,
    vaBits: number,
    format: Arm64PaFormat = "pa48",
  ) {
    this.#ram = ram;
    this.#shift = Math.log2(pageSize);
    this.#levels = arm64Levels(pageSize, vaBits);
    this.#vaBits = vaBits;
    this.#format = format;
    this.root = this.#table();
  }

  #table(): bigint {
    const size = 1 << this.#shift;
    const raw = this.#ram.alloc(size * 2);
    return (raw + BigInt(size - 1)) & ~BigInt(size - 1);
  }

  encode(pa: bigint, type: bigint): bigint {
    const attrs = type | AF | (this.#format === "lpa2" ? 0n : SH_INNER);
    switch (this.#format) {
      case "pa48":
        return pa | attrs;
      case "lpa64k":
        return (pa & ((1n << 48n) - 1n)) | (((pa >> 48n) & 0xfn) << 12n) |
          attrs;
      case "lpa2":
        return (pa & ((1n << 50n) - 1n)) | (((pa >> 50n) & 3n) << 8n) | attrs;
    }
  }

  #decode(entry: bigint): bigint {
    const low = ~((1n << BigInt(this.#shift)) - 1n);
    if (this.#format === "lpa2") {
      return (entry & ((1n << 50n) - 1n) & low) |
        (((entry >> 8n) & 3n) << 50n);
    }
    return entry & ((1n << 48n) - 1n) & low;
  }

  /** The slot of `va` at walk step `i` (0 = root) under `table`. */
  slot(table: bigint, va: bigint, i: number): bigint {
    const per = this.#shift - 3;
    const levelShift = this.#shift + per * (this.#levels - 1 - i);
    const bits = i === 0 ? this.#vaBits - levelShift : per;
    return table +
      ((va >> BigInt(levelShift)) & ((1n << BigInt(bits)) - 1n)) * 8n;
  }

  /** Maps `va` to `pa` with a leaf at walk step `leaf` (default: the last, a page). */
  map(va: bigint, pa: bigint, leaf = this.#levels - 1): bigint {
    let table = this.root;
    for (let i = 0; i < leaf; i++) {
      const slot = this.slot(table, va, i);
      let entry = this.#ram.bytes.length > Number(slot)
        ? new DataView(this.#ram.bytes.buffer).getBigUint64(Number(slot), true)
        : 0n;
      if ((entry & 1n) === 0n) {
        entry = this.encode(this.#table(), 3n);
        this.#ram.u64(slot, entry);
      }
      table = this.#decode(entry);
    }
    const slot = this.slot(table, va, leaf);
    this.#ram.u64(
      slot,
      this.encode(pa, leaf === this.#levels - 1 ? 3n : 1n),
    );
    return slot;
  }
}

interface Shape {
  pageSize: Arm64Granule;
  vaBits: number;
  format: Arm64PaFormat;
  levels: number;
}

// the shapes arm64 Linux configures (ARM64_HW_PGTABLE_LEVELS), including
// both Debian 6.12 flavours: 4K and 16K with 52-bit VA and LPA2
const SHAPES: Shape[] = [
  { pageSize: 4096, vaBits: 39, format: "pa48", levels: 3 },
  { pageSize: 4096, vaBits: 48, format: "pa48", levels: 4 },
  { pageSize: 4096, vaBits: 52, format: "lpa2", levels: 5 },
  { pageSize: 16384, vaBits: 36, format: "pa48", levels: 2 },
  { pageSize: 16384, vaBits: 47, format: "pa48", levels: 3 },
  { pageSize: 16384, vaBits: 48, format: "pa48", levels: 4 },
  { pageSize: 16384, vaBits: 52, format: "lpa2", levels: 4 },
  { pageSize: 65536, vaBits: 42, format: "lpa64k", levels: 2 },
  { pageSize: 65536, vaBits: 48, format: "lpa64k", levels: 3 },
  { pageSize: 65536, vaBits: 52, format: "lpa64k", levels: 3 },
];

/** A kernel (TTBR1) address well inside a `vaBits` space. */
function kernelVa(vaBits: number, offset: bigint): bigint {
  return BigInt.asUintN(64, -(1n << BigInt(vaBits - 1))) + offset;
}

for (const shape of SHAPES) {
  const { pageSize, vaBits, format, levels } = shape;
  const label = `${pageSize / 1024}K granule, ${vaBits}-bit VA (${format})`;
  const page = BigInt(pageSize);
  const params = { pageSize, vaBits, paFormat: format };

  Deno.test(`walkArm64 maps a page through ${levels} levels: ${label}`, () => {
    assert.equal(arm64Levels(pageSize, vaBits), levels);
    const ram = new FakeRam(16 << 20);
    const tables = new Arm64Tables(ram, pageSize, vaBits, format);
    const va = kernelVa(vaBits, 0x12345n * page);
    tables.map(va, 0x3n * page);
    const memory = ram.memory();
    assert.deepEqual(walkArm64(memory, tables.root, va + 0x1a8n, params), {
      pa: 3n * page + 0x1a8n,
      pageSize: page,
    });
    // the next page shares every table but has no entry in the last one
    assert.deepEqual(walkArm64(memory, tables.root, va + page, params), {
      pa: null,
      level: 3,
      span: page,
    });
    // nothing mapped in the lowest kernel addresses: their first-level
    // entry (another one than the mapped page's) misses
    const top = BigInt.asUintN(64, -(1n << BigInt(vaBits))) + page;
    const first = walkArm64(memory, tables.root, top, params);
    assert.equal(first.pa, null);
    assert.equal(first.pa === null && first.level, 4 - levels);
    // a user (TTBR0) address is not translated by swapper_pg_dir
    assert.equal(
      walkArm64(memory, tables.root, 0x12345n * page, params).pa,
      null,
    );
  });

  Deno.test(`walkArm64 ends at block descriptors: ${label}`, () => {
    const ram = new FakeRam(16 << 20);
    const tables = new Arm64Tables(ram, pageSize, vaBits, format);
    const memory = ram.memory();
    const shift = Math.log2(pageSize);
    // a block one level above the pages (2M / 32M / 512M: lookup level 2),
    // and with 4K one more level up (1G: level 1)
    const blockSteps = levels >= 3 && pageSize === 4096 ? [1, 2] : [1];
    let n = 1n;
    for (const up of blockSteps) {
      const span = 1n << BigInt(shift + (shift - 3) * up);
      const va = kernelVa(vaBits, span * (n + 7n));
      const pa = span * (n + 2n);
      tables.map(va, pa, levels - 1 - up);
      const inside = (span >> 1n) + 0x18n;
      assert.deepEqual(walkArm64(memory, tables.root, va + inside, params), {
        pa: pa + inside,
        pageSize: span,
      }, `${span} block`);
      n++;
    }
  });
}

Deno.test("walkArm64 decodes the high PA bits of LPA2 and 64K LPA descriptors, and none from a 48-bit one", () => {
  const high = (0xan << 48n) | 0x5123456000n; // PA bits 48..51 set
  for (
    const [pageSize, vaBits, format, expected] of [
      [4096, 52, "lpa2", high],
      [16384, 52, "lpa2", high & ~0x3fffn],
      [65536, 48, "lpa64k", high & ~0xffffn],
      // bits [9:8] are shareability here: the address stays below 2^48
      [4096, 48, "pa48", high & ((1n << 48n) - 1n)],
    ] as const
  ) {
    const ram = new FakeRam(16 << 20);
    const tables = new Arm64Tables(ram, pageSize, vaBits, format);
    const va = kernelVa(vaBits, 0x40n * BigInt(pageSize));
    tables.map(va, expected);
    assert.deepEqual(
      walkArm64(ram.memory(), tables.root, va + 8n, {
        pageSize,
        vaBits,
        paFormat: format,
      }),
      { pa: expected + 8n, pageSize: BigInt(pageSize) },
      `${pageSize} ${format}`,
    );
  }
});

Deno.test("walkArm64 treats invalid, reserved and level-0 block descriptors as absent", () => {
  const ram = new FakeRam(16 << 20);
  const tables = new Arm64Tables(ram, 4096, 48, "pa48");
  const memory = ram.memory();
  const params = { pageSize: 4096, vaBits: 48 } as const;
  const va = kernelVa(48, 0x1234000n);
  const leaf = tables.map(va, 0x5000n);
  assert.equal(walkArm64(memory, tables.root, va, params).pa, 0x5000n);
  // 0b01 at the last level is reserved
  ram.u64(leaf, 0x5000n | AF | 1n);
  assert.equal(walkArm64(memory, tables.root, va, params).pa, null);
  // the valid bit clear
  ram.u64(leaf, 0x5000n | AF | 2n);
  assert.equal(walkArm64(memory, tables.root, va, params).pa, null);
  // a block at level 0 (512G) does not exist with 4K pages and 48-bit PAs
  const root = tables.slot(tables.root, va, 0);
  ram.u64(root, 0n | AF | 1n);
  assert.deepEqual(walkArm64(memory, tables.root, va, params), {
    pa: null,
    level: 0,
    span: 1n << 39n,
  });
  // a table pointer outside RAM reads as absent, never as a wrapped read
  ram.u64(root, (0x7fff000000n) | AF | 3n);
  assert.equal(walkArm64(memory, tables.root, va, params).pa, null);
});

/** What the real 6.12.117+deb12-cloud-arm64 guest wrote (KASLR on, 52-bit VA, LPA2). */
const REAL_4K = `OSRELEASE=6.12.117+deb12-cloud-arm64
PAGESIZE=4096
SYMBOL(init_uts_ns)=ffffb13e12eed698
SYMBOL(node_online_map)=ffffb13e12c9f930
SYMBOL(swapper_pg_dir)=ffffb13e12679000
SYMBOL(_stext)=ffffb13e10e10000
NUMBER(VMALLOC_START)=0xffff800080000000
SYMBOL(vmemmap)=ffffc1ffbf000000
SYMBOL(mem_section)=fff000003fcfadc0
NUMBER(MAX_PHYSMEM_BITS)=52
SYMBOL(prb)=ffffb13e12cc9ac0
SYMBOL(clear_seq)=ffffb13e12f62710
SYMBOL(kallsyms_names)=ffffb13e11db3f80
NUMBER(VA_BITS)=52
NUMBER(MODULES_VADDR)=0xffff800000000000
NUMBER(MODULES_END)=0xffff800080000000
NUMBER(VMALLOC_END)=0xffffc1ffbf800000
NUMBER(kimage_voffset)=0xffffb13dd0c00000
NUMBER(PHYS_OFFSET)=0x40000000
NUMBER(TCR_EL1_T1SZ)=0xc
KERNELOFFSET=313d90e00000
NUMBER(KERNELPACMASK)=0xfff0000000000000
`;

Deno.test("AARCH64 builds translation from arm64 VMCOREINFO: PAGE_OFFSET from VA_BITS, image by kimage_voffset, levels from T1SZ", () => {
  const info = parseVmcoreinfo(REAL_4K);
  assert.equal(detectArch(info).name, "aarch64");
  const arm = AARCH64.addressing(info);
  assert.equal(arm.pageSize, 4096);
  assert.equal(arm.rootPa, 0xffffb13e12679000n - 0xffffb13dd0c00000n);
  assert.equal(arm.defaultPageOffset, 0xfff0000000000000n);
  assert.equal(arm.pageOffsetSymbol, null);
  // the linear map: PAGE_OFFSET .. PAGE_END (VA_BITS_MIN 48)
  assert.equal(
    arm.linearToPhys(0xfff0000000001000n, arm.defaultPageOffset),
    0x40001000n,
  );
  assert.equal(
    arm.linearToPhys(0xffff800000000000n, arm.defaultPageOffset),
    null,
  );
  assert.equal(arm.pageEnd, 0xffff800000000000n);
  // the image: from _stext's page to the end of the page of the highest
  // image symbol (clear_seq, in .bss); vmemmap and mem_section are SYMBOL()s
  // too but hold pointers elsewhere, and must not stretch the window
  assert.equal(arm.imageToPhys(0xffffb13e10e10000n), 0x40210000n);
  assert.equal(arm.imageToPhys(0xffffb13e10e0fff8n), null, "before _stext");
  assert.equal(
    arm.imageToPhys(0xffffb13e12f62ff8n),
    0xffffb13e12f62ff8n - 0xffffb13dd0c00000n,
  );
  assert.equal(
    arm.imageToPhys(0xffffb13e12f63000n),
    null,
    "past the window: walk",
  );
  assert.equal(arm.imageToPhys(0xffffc1ffbf000000n), null, "vmemmap");

  // 48-bit VA on a 52-bit build (no LPA2 in the CPU): 4 levels, same PAGE_OFFSET
  const fallback = AARCH64.addressing(
    parseVmcoreinfo(REAL_4K.replace("TCR_EL1_T1SZ)=0xc", "TCR_EL1_T1SZ)=0x10")),
  );
  assert.equal(fallback.defaultPageOffset, 0xfff0000000000000n);
  // 16K, 47 bits: PAGE_END is -(1 << 46)
  const k16 = AARCH64.addressing(
    parseVmcoreinfo(
      REAL_4K.replace("PAGESIZE=4096", "PAGESIZE=16384")
        .replace("VA_BITS)=52", "VA_BITS)=47")
        .replace("TCR_EL1_T1SZ)=0xc", "TCR_EL1_T1SZ)=0x11")
        .replace(
          "swapper_pg_dir)=ffffb13e12679000",
          "swapper_pg_dir)=ffffb13e12678000",
        ),
    ),
  );
  assert.equal(k16.defaultPageOffset, 0xffff800000000000n);
  assert.equal(k16.pageEnd, 0xffffc00000000000n);
});

Deno.test("AARCH64 refuses unknown granules and missing keys in one line naming what VMCOREINFO said", () => {
  const oneLine = (pattern: RegExp) => (e: unknown) =>
    e instanceof GuestKernelError && !e.message.includes("\n") &&
    pattern.test(e.message);
  assert.throws(
    () =>
      AARCH64.addressing(
        parseVmcoreinfo(REAL_4K.replace("PAGESIZE=4096", "PAGESIZE=8192")),
      ),
    oneLine(
      /^PAGESIZE=8192 in arm64 VMCOREINFO: bpfmap walks the 4K, 16K and 64K granules only$/,
    ),
  );
  assert.throws(
    () =>
      AARCH64.addressing(
        parseVmcoreinfo(
          REAL_4K.replace(/NUMBER\(PHYS_OFFSET\).*\n/, "").replace(
            /SYMBOL\(swapper_pg_dir\).*\n/,
            "",
          ),
        ),
      ),
    oneLine(
      /^arm64 VMCOREINFO lacks NUMBER\(PHYS_OFFSET\), SYMBOL\(swapper_pg_dir\)$/,
    ),
  );
  assert.throws(
    () =>
      AARCH64.addressing(
        parseVmcoreinfo(REAL_4K.replace("VA_BITS)=52", "VA_BITS)=64")),
      ),
    oneLine(/VA_BITS=64 TCR_EL1_T1SZ=12: not a kernel VA size/),
  );
});

Deno.test("qemuVirtLayout puts a RAM file at 1 GiB, as QEMU's virt machine does", () => {
  assert.deepEqual(qemuVirtLayout(1n << 30n), [
    { gpa: QEMU_VIRT_RAM_BASE, size: 1n << 30n, fileOffset: 0 },
  ]);
  assert.equal(
    AARCH64.ramFileLayouts(2n << 30n)[0]!.regions[0]!.gpa,
    0x40000000n,
  );
});

Deno.test("KernelAddressSpace over arm64 16K tables: linear, image and walked reads agree, pages stitch", () => {
  const ram = new FakeRam(32 << 20);
  const pageSize = 16384;
  const tables = new Arm64Tables(ram, pageSize, 47, "pa48");
  const pageOffset = 0xffff800000000000n;
  const vmalloc = 0xffffc00080000000n;
  const arm = new Arm64Addressing({
    pageSize,
    vaBits: 47,
    configVaBits: 47,
    physOffset: 0n,
    kimageVoffset: 0xffffc00008000000n - 0x400000n,
    rootPa: tables.root,
    imageStart: 0xffffc00008000000n,
    imageEnd: 0xffffc00008100000n,
  });
  const space = new KernelAddressSpace(
    ram.memory(),
    arm,
    arm.defaultPageOffset,
  );
  ram.u64(0x400010n, 0x1122334455667788n);
  assert.equal(space.u64(pageOffset + 0x400010n), 0x1122334455667788n);
  assert.equal(space.u64(0xffffc00008000010n), 0x1122334455667788n);
  // two 16K pages, not physically adjacent: reads across the seam stitch
  tables.map(vmalloc, 0x800000n);
  tables.map(vmalloc + 0x4000n, 0x600000n);
  ram.set(0x803ffcn, new Uint8Array([1, 2, 3, 4]));
  ram.set(0x600000n, new Uint8Array([5, 6, 7, 8]));
  assert.deepEqual(
    space.read(vmalloc + 0x3ffcn, 8),
    new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
  );
  assert.equal(space.u64(vmalloc + 0x3ffcn), 0x0807060504030201n);
  // every 4 KiB piece of a 16K page is cached on its own and agrees with translate
  for (const off of [0n, 0x1000n, 0x2ff8n, 0x3ff0n, 0x4008n]) {
    const [hi, lo] = splitAddress(vmalloc + off);
    assert.equal(
      space.offsetAt(hi, lo, 8),
      Number(space.translate(vmalloc + off)),
    );
    assert.equal(joinAddress(hi, lo), vmalloc + off);
  }
  assert.equal(
    space.read(vmalloc + 0x7ffcn, 8),
    null,
    "the third page is unmapped",
  );
});
