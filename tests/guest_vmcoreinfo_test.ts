import assert from "node:assert/strict";
import { PhysicalMemory, qemuX86Layout } from "../src/guest/phys.ts";
import { parseElfCore } from "../src/guest/source.ts";
import { findVmcoreinfo, parseVmcoreinfo } from "../src/guest/vmcoreinfo.ts";

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

Deno.test("findVmcoreinfo skips incomplete copies and reports the GPA of the real one", () => {
  const bytes = new Uint8Array(3 * 4096);
  const enc = new TextEncoder();
  bytes.set(enc.encode("OSRELEASE=6.1.0\nPAGESIZE=4096\n"), 100); // no init_top_pgt: a decoy
  bytes.set(enc.encode(TEXT), 4096 + 8);
  // the image holds GPA 0x1000..0x2000 at file offset 0 and GPA 0x100000.. at 4096
  const memory = new PhysicalMemory(bytes, [
    { gpa: 0x1000n, size: 4096n, fileOffset: 0 },
    { gpa: 0x100000n, size: 8192n, fileOffset: 4096 },
  ]);
  const info = findVmcoreinfo(memory);
  assert.equal(info?.foundAt, 0x100008n);
  assert.equal(info?.numbers.get("pgtable_l5_enabled"), 1n);
  assert.equal(
    findVmcoreinfo(
      new PhysicalMemory(new Uint8Array(4096), qemuX86Layout(4096n)),
    ),
    null,
  );
});

function elfCore(
  loads: { paddr: bigint; data: Uint8Array }[],
  note: string | null,
): Uint8Array {
  const phnum = loads.length + (note === null ? 0 : 1);
  const noteBytes = (() => {
    if (note === null) return new Uint8Array(0);
    const name = new TextEncoder().encode("VMCOREINFO\0");
    const desc = new TextEncoder().encode(note);
    const pad = (n: number): number => (n + 3) & ~3;
    // a leading "CORE" note first, as QEMU writes
    const core = new Uint8Array(12 + 8 + 8);
    new DataView(core.buffer).setUint32(0, 5, true);
    new DataView(core.buffer).setUint32(4, 8, true);
    core.set(new TextEncoder().encode("CORE\0"), 12);
    const out = new Uint8Array(
      core.length + 12 + pad(name.length) + pad(desc.length),
    );
    out.set(core);
    const view = new DataView(out.buffer, core.length);
    view.setUint32(0, name.length, true);
    view.setUint32(4, desc.length, true);
    view.setUint32(8, 0, true);
    out.set(name, core.length + 12);
    out.set(desc, core.length + 12 + pad(name.length));
    return out;
  })();
  const headerSize = 64 + phnum * 56;
  let offset = headerSize + noteBytes.length;
  const total = offset + loads.reduce((n, l) => n + l.data.length, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  out.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  view.setUint16(16, 4, true); // ET_CORE
  view.setUint16(18, 62, true);
  view.setBigUint64(32, 64n, true);
  view.setUint16(52, 64, true);
  view.setUint16(54, 56, true);
  view.setUint16(56, phnum, true);
  let ph = 64;
  if (note !== null) {
    view.setUint32(ph, 4, true);
    view.setBigUint64(ph + 8, BigInt(headerSize), true);
    view.setBigUint64(ph + 32, BigInt(noteBytes.length), true);
    out.set(noteBytes, headerSize);
    ph += 56;
  }
  for (const load of loads) {
    view.setUint32(ph, 1, true);
    view.setBigUint64(ph + 8, BigInt(offset), true);
    view.setBigUint64(ph + 24, load.paddr, true);
    view.setBigUint64(ph + 32, BigInt(load.data.length), true);
    view.setBigUint64(ph + 40, BigInt(load.data.length), true);
    out.set(load.data, offset);
    offset += load.data.length;
    ph += 56;
  }
  return out;
}

Deno.test("parseElfCore maps PT_LOAD segments by physical address and finds the VMCOREINFO note", () => {
  const low = new Uint8Array(4096).fill(0x11);
  const high = new Uint8Array(8192).fill(0x22);
  const core = elfCore([{ paddr: 0x100000000n, data: high }, {
    paddr: 0n,
    data: low,
  }], TEXT);
  const layout = parseElfCore(core);
  assert.equal(layout.vmcoreinfo, TEXT);
  const memory = new PhysicalMemory(core, layout.regions);
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
    /Not a little-endian ELF64/,
  );
  const core = elfCore([{ paddr: 0n, data: new Uint8Array(16) }], null);
  new DataView(core.buffer).setUint16(16, 2, true); // ET_EXEC
  assert.throws(() => parseElfCore(core), /not a core/);
  const huge = elfCore([{ paddr: 0n, data: new Uint8Array(16) }], null);
  new DataView(huge.buffer).setUint16(56, 0xfff0, true);
  assert.throws(() => parseElfCore(huge), /program headers/);
});
