/**
 * A synthetic guest image for field-write tests: a `.bss` ARRAY (one 8 KiB
 * value, so one variable straddles a page) and a frozen `.rodata`, with
 * program BTF in guest memory, plus a HASH without BTF.
 *
 * @module
 */

import type { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { START_KERNEL_MAP } from "../../src/guest/paging.ts";
import { MapType } from "../../src/sys/constants.ts";
import { BtfBuilder } from "../btf_builder.ts";
import { GUEST_LAYOUT, PAGE_OFFSET } from "../contract/guest_image.ts";
import { FakeRam, PageTables } from "../guest_fixture.ts";

/** Size of the `.bss` value. */
export const BSS_SIZE = 8192;
// The value starts at +128 of a page-aligned bpf_array: this variable's
// bytes run from value offset 3964 to 3972, across the page at 3968.
export const STRADDLE_OFFSET = 3964;

function programBtf(): { blob: Uint8Array; bss: number; rodata: number } {
  const b = new BtfBuilder();
  const u8 = b.int("unsigned char", 1, false, 8, 2);
  const u32 = b.int("unsigned int", 4);
  const s32 = b.int("int", 4, true);
  const u64 = b.int("unsigned long long", 8);
  const boolT = b.int("_Bool", 1, false, 8, 4);
  const char = b.int("char", 1, true, 8, 2);
  const mode = b.enum("mode", 4, [["MODE_FIFO", 0], ["MODE_VTIME", 1], [
    "MODE_RR",
    2,
  ]]);
  const name = b.array(char, 8, u32);
  const lockT = b.struct("bpf_spin_lock", 4, [{
    name: "val",
    type: u32,
    bitOffset: 0,
  }]);
  const cfg = b.struct("cfg", 24, [
    { name: "slice_ns", type: u64, bitOffset: 0 },
    { name: "mode", type: mode, bitOffset: 64 },
    { name: "level", type: u32, bitOffset: 96, bitfieldSize: 3 },
    { name: "boost", type: s32, bitOffset: 99, bitfieldSize: 5 },
    { name: "on", type: boolT, bitOffset: 104 },
    { name: "tag", type: u8, bitOffset: 112 },
    { name: "lock", type: lockT, bitOffset: 128 },
  ]);
  const vCfg = b.variable("cfg", cfg);
  const vName = b.variable("sched_name", name);
  const vNr = b.variable("nr_dispatched", u64);
  const vStraddle = b.variable("straddle", u64);
  const bssSec = b.datasec(".bss", BSS_SIZE, [
    { type: vCfg, offset: 0, size: 24 },
    { type: vName, offset: 24, size: 8 },
    { type: vNr, offset: 32, size: 8 },
    { type: vStraddle, offset: STRADDLE_OFFSET, size: 8 },
  ]);
  const vKnob = b.variable("knob", u32);
  const rodataSec = b.datasec(".rodata", 4, [{
    type: vKnob,
    offset: 0,
    size: 4,
  }]);
  return { blob: b.build(), bss: bssSec, rodata: rodataSec };
}

/** A synthetic guest image for write tests. */
export interface Image {
  ram: FakeRam;
  /** Physical address of the `.bss` value. */
  bssPa: bigint;
  /** Physical address of the `.rodata` value. */
  rodataPa: bigint;
  /** What `GuestMemMapAccessor.fromMemory` needs to open it. */
  options: Parameters<typeof GuestMemMapAccessor.fromMemory>[1];
}

/** The synthetic image (shared with the CLI test). */
export function buildWriteImage(): Image {
  const ram = new FakeRam(4 << 20, 0x100000n);
  const tables = new PageTables(ram, 4);
  const va = (pa: bigint): bigint => PAGE_OFFSET + pa;
  const m = GUEST_LAYOUT.map;
  const idr = 0x1000n;
  const xaNode = 0x2000n;
  ram.u64(idr + BigInt(GUEST_LAYOUT.xarray.idrHead), va(xaNode) | 2n);
  const symbolsPa = 0x3000n;
  ram.u32(symbolsPa, 1); // nr_cpu_ids
  ram.u64(symbolsPa + 8n, 0x600000n);
  ram.u64(symbolsPa + 0x20n, PAGE_OFFSET); // page_offset_base
  const btf = programBtf();
  const btfData = ram.alloc(btf.blob.length);
  ram.set(btfData, btf.blob);
  const btfStruct = ram.alloc();
  ram.u64(btfStruct + BigInt(m.btfData), va(btfData));
  ram.u32(btfStruct + BigInt(m.btfDataSize), btf.blob.length);
  ram.u32(btfStruct + BigInt(m.btfId), 9);
  const pas: bigint[] = [];
  const maps = [
    { id: 1, name: "t.bss", valueSize: BSS_SIZE, type: btf.bss, frozen: 0 },
    { id: 2, name: "t.rodata", valueSize: 4, type: btf.rodata, frozen: 1 },
    { id: 3, name: "t_hash", valueSize: 8, type: 0, frozen: 0 },
  ];
  for (const map of maps) {
    const stride = (map.valueSize + 7) & ~7;
    const at = ram.alloc(GUEST_LAYOUT.array.value + stride + 4096);
    ram.u64(xaNode + 40n + BigInt(map.id * 8), va(at));
    const type = map.id === 3 ? MapType.HASH : MapType.ARRAY;
    ram.u32(at + BigInt(m.type), type);
    ram.u32(at + BigInt(m.keySize), 4);
    ram.u32(at + BigInt(m.valueSize), map.valueSize);
    ram.u32(at + BigInt(m.maxEntries), map.id === 3 ? 4 : 1);
    ram.u32(at + BigInt(m.id), map.id);
    ram.set(at + BigInt(m.name), new TextEncoder().encode(map.name));
    ram.u8(at + BigInt(m.frozen), map.frozen);
    if (map.type !== 0) {
      ram.u64(at + BigInt(m.btf), va(btfStruct));
      ram.u32(at + BigInt(m.btfKeyTypeId), 0);
      ram.u32(at + BigInt(m.btfValueTypeId), map.type);
    }
    if (type === MapType.ARRAY) {
      ram.u32(at + BigInt(GUEST_LAYOUT.array.elemSize), stride);
      // What follows the value (padding, then the next page) is a pattern
      // a write past the element would break.
      const value = at + BigInt(GUEST_LAYOUT.array.value);
      ram.bytes.fill(
        0xa5,
        Number(value) + map.valueSize,
        Number(value) + map.valueSize + 64,
      );
    }
    pas.push(at + BigInt(GUEST_LAYOUT.array.value));
  }
  ram.u32(pas[1]!, 100); // knob = 100
  const vmcoreinfo = [
    "OSRELEASE=6.99.0-write",
    "PAGESIZE=4096",
    "NUMBER(phys_base)=0",
    `SYMBOL(init_top_pgt)=${(START_KERNEL_MAP + tables.root).toString(16)}`,
    "",
  ].join("\n");
  return {
    ram,
    bssPa: pas[0]!,
    rodataPa: pas[1]!,
    options: {
      vmcoreinfo,
      symbols: new Map([
        ["map_idr", va(idr)],
        ["nr_cpu_ids", va(symbolsPa)],
        ["__per_cpu_offset", va(symbolsPa + 8n)],
        ["page_offset_base", START_KERNEL_MAP + symbolsPa + 0x20n],
      ]),
      symbolsRelocated: true,
      layout: GUEST_LAYOUT,
    },
  };
}
