import assert from "node:assert/strict";
import { detectArch } from "../src/guest/arch/mod.ts";
import { X86_64 } from "../src/guest/arch/x86_64.ts";
import { GuestKernelError } from "../src/guest/errors.ts";
import { BytesMemory, qemuX86Layout } from "../src/guest/phys.ts";
import { parseElfCore } from "../src/guest/source.ts";
import { findVmcoreinfo, parseVmcoreinfo } from "../src/guest/vmcoreinfo.ts";
import { elfCore } from "./guest_fixture.ts";

const TEXT = [
  "OSRELEASE=6.12.107+deb13-cloud-amd64",
  "BUILD-ID=e1b6c81f",
  "PAGESIZE=4096",
  "SYMBOL(init_top_pgt)=ffffffffab222000",
  "SYMBOL(kallsyms_names)=ffffffffaa750ce8",
  "NUMBER(phys_base)=-115343360",
  "NUMBER(pgtable_l5_enabled)=1",
  "NUMBER(VMALLOC_START)=0xff7577f8c0000000",
  "KERNELOFFSET=28600000",
  "",
].join("\n");

Deno.test("parseVmcoreinfo wraps negative NUMBERs and reads hex SYMBOLs", () => {
  const info = parseVmcoreinfo(TEXT);
  assert.equal(info.osRelease, "6.12.107+deb13-cloud-amd64");
  assert.equal(info.pageSize, 4096);
  assert.equal(info.numbers.get("phys_base"), BigInt.asUintN(64, -115343360n));
  assert.equal(info.numbers.get("VMALLOC_START"), 0xff7577f8c0000000n);
  assert.equal(info.symbols.get("init_top_pgt"), 0xffffffffab222000n);
  assert.equal(info.kernelOffset, 0x28600000n);
  assert.throws(
    () => parseVmcoreinfo("SYMBOL(x)=1\n"),
    /lacks OSRELEASE or PAGESIZE/,
  );
});

Deno.test("qemuX86Layout puts RAM above 3 GiB at 4 GiB", () => {
  assert.deepEqual(qemuX86Layout(1n << 30n), [{
    gpa: 0n,
    size: 1n << 30n,
    fileOffset: 0,
  }]);
  assert.deepEqual(qemuX86Layout(5n << 30n), [
    { gpa: 0n, size: 3n << 30n, fileOffset: 0 },
    { gpa: 4n << 30n, size: 2n << 30n, fileOffset: 3 * 2 ** 30 },
  ]);
});

/** VMCOREINFO as `update_vmcoreinfo_note` writes it: an ELF note at a page start. */
function note(text: string): Uint8Array {
  const desc = new TextEncoder().encode(text);
  const out = new Uint8Array(24 + desc.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 11, true);
  view.setUint32(4, desc.length, true);
  out.set(new TextEncoder().encode("VMCOREINFO\0"), 12);
  out.set(desc, 24);
  return out;
}

Deno.test("findVmcoreinfo looks at page starts from the top down and skips decoys", () => {
  const enc = new TextEncoder();
  const bytes = new Uint8Array(5 * 4096);
  // region A (GPA 0x1000, file page 0): a copy without SYMBOL lines, a decoy
  bytes.set(enc.encode("OSRELEASE=6.1.0\nPAGESIZE=4096\n"), 0);
  // region B (GPA 0x100000.., file pages 1-4)
  bytes.set(enc.encode(TEXT), 4096); // vmcoreinfo_data at GPA 0x100000
  bytes.set(note(TEXT.replace("deb13", "note")), 2 * 4096); // the note copy at 0x101000
  bytes.set(enc.encode(TEXT.replace("deb13", "mid")), 3 * 4096 + 8); // not at a page start
  const memory = new BytesMemory(bytes, [
    { gpa: 0x1000n, size: 4096n, fileOffset: 0 },
    { gpa: 0x100000n, size: 4n * 4096n, fileOffset: 4096 },
  ]);
  const info = findVmcoreinfo(memory);
  // the highest page start holding a complete copy wins: the note's text
  assert.equal(info?.foundAt, 0x101000n + 24n);
  assert.equal(info?.osRelease, "6.12.107+note-cloud-amd64");
  assert.equal(info?.numbers.get("pgtable_l5_enabled"), 1n);
  // without the note, the data page below it
  bytes.fill(0, 2 * 4096, 3 * 4096);
  assert.equal(findVmcoreinfo(memory)?.foundAt, 0x100000n);
  // the decoy alone is not VMCOREINFO; text off a page start is never read
  bytes.fill(0, 4096, 2 * 4096);
  assert.equal(findVmcoreinfo(memory), null);
  assert.equal(
    findVmcoreinfo(
      new BytesMemory(new Uint8Array(4096), qemuX86Layout(4096n)),
    ),
    null,
  );
});

Deno.test("findVmcoreinfo prefers a copy an architecture recognises, else returns the first well-formed one", () => {
  const enc = new TextEncoder();
  const arm =
    "OSRELEASE=6.12.0-arm64\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffff800081000000\nNUMBER(kimage_voffset)=0xffff7fff80000000\n";
  const bytes = new Uint8Array(3 * 4096);
  bytes.set(enc.encode(TEXT), 0);
  bytes.set(enc.encode(arm), 2 * 4096);
  const memory = new BytesMemory(bytes, [
    { gpa: 0n, size: 3n * 4096n, fileOffset: 0 },
  ]);
  assert.equal(findVmcoreinfo(memory)?.osRelease, "6.12.0-arm64");
  const x86 = findVmcoreinfo(memory, {
    recognized: (info) => info.symbols.has("init_top_pgt"),
  });
  assert.equal(x86?.foundAt, 0n);
  bytes.fill(0, 0, 4096);
  assert.equal(
    findVmcoreinfo(memory, { recognized: () => false })?.osRelease,
    "6.12.0-arm64",
  );
});

Deno.test("parseElfCore maps PT_LOAD segments by physical address and finds the VMCOREINFO note", () => {
  const low = new Uint8Array(4096).fill(0x11);
  const high = new Uint8Array(8192).fill(0x22);
  const core = elfCore([{ paddr: 0x100000000n, data: high }, {
    paddr: 0n,
    data: low,
  }], TEXT);
  const layout = parseElfCore(core);
  assert.equal(layout.vmcoreinfo, TEXT);
  const memory = new BytesMemory(core, layout.regions);
  assert.deepEqual(memory.regions.map((r) => r.gpa), [0n, 0x100000000n]);
  assert.equal(memory.u8(0xfffn), 0x11);
  assert.equal(memory.u8(0x100001fffn), 0x22);
  assert.equal(memory.u8(0x1000n), null);
  assert.equal(
    parseElfCore(elfCore([{ paddr: 0n, data: low }], null)).vmcoreinfo,
    null,
  );
});

Deno.test("parseElfCore rejects files that are not ELF64 cores", () => {
  assert.throws(
    () => parseElfCore(new Uint8Array(100)),
    /not a little-endian ELF64/,
  );
  const core = elfCore([{ paddr: 0n, data: new Uint8Array(16) }], null);
  new DataView(core.buffer).setUint16(16, 2, true); // ET_EXEC
  assert.throws(() => parseElfCore(core), /not a core/);
  const huge = elfCore([{ paddr: 0n, data: new Uint8Array(16) }], null);
  new DataView(huge.buffer).setUint16(56, 0xfff0, true);
  assert.throws(() => parseElfCore(huge), /program headers/);
  const wide = elfCore([{ paddr: 0n, data: new Uint8Array(16) }], null);
  new DataView(wide.buffer).setUint16(54, 0xffff, true); // e_phentsize
  assert.throws(() => parseElfCore(wide), /65535 at 64\) are implausible/);
});

Deno.test("detectArch names x86-64 by init_top_pgt, arm64 by kimage_voffset, and refuses others in one line quoting VMCOREINFO", () => {
  assert.equal(detectArch(parseVmcoreinfo(TEXT)).name, "x86_64");
  const arm = parseVmcoreinfo(
    "OSRELEASE=6.12.0-arm64\nPAGESIZE=16384\nSYMBOL(swapper_pg_dir)=ffff800081000000\nNUMBER(VA_BITS)=48\nNUMBER(kimage_voffset)=0xffff7fff80000000\nKERNELPACMASK=0xffff800000000000\n",
  );
  assert.equal(detectArch(arm).name, "aarch64");
  // riscv64 writes swapper_pg_dir and VA_BITS too, but no kimage_voffset
  const riscv = parseVmcoreinfo(
    "OSRELEASE=6.12.0-riscv64\nPAGESIZE=4096\nSYMBOL(swapper_pg_dir)=ffffffff81a00000\nNUMBER(VA_BITS)=57\nNUMBER(phys_ram_base)=0x80000000\n",
  );
  assert.throws(
    () => detectArch(riscv),
    (e) =>
      e instanceof GuestKernelError && !e.message.includes("\n") &&
      e.message ===
        "VMCOREINFO of OSRELEASE=6.12.0-riscv64 (PAGESIZE=4096) is from an architecture bpfmap cannot read (it has SYMBOL(swapper_pg_dir), NUMBER(VA_BITS)); supported: x86_64, aarch64 (recognised by their VMCOREINFO keys)",
  );
  // x86-64 without phys_base cannot translate its image map
  assert.throws(
    () =>
      X86_64.addressing(
        parseVmcoreinfo(TEXT.replace(/NUMBER\(phys_base\)=.*\n/, "")),
      ),
    /lacks NUMBER\(phys_base\) or SYMBOL\(init_top_pgt\)/,
  );
  const x86 = X86_64.addressing(parseVmcoreinfo(TEXT));
  assert.equal(
    x86.rootPa,
    0xffffffffab222000n - 0xffffffff80000000n +
        BigInt.asUintN(64, -115343360n) & 0xffffffffffffffffn,
  );
  assert.equal(x86.defaultPageOffset, 0xff11000000000000n, "5-level");
});
