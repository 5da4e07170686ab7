import assert from "node:assert/strict";
import {
  decodeKallsyms,
  decodeKallsymsChecked,
  KALLSYMS_MODES,
  type KallsymsMode,
  type KallsymsTables,
} from "../src/guest/kallsyms.ts";

const BASE = 0xffffffff81000000n;
const OFFSETS_VA = 0xffffffff82a3c5e8n;

/**
 * Encodes symbols the way scripts/kallsyms does, minus compression: token i
 * (for i < 128) is the single character i; tokens 200..202 are multi-char.
 */
function encode(symbols: { text: string; offset: number }[]): KallsymsTables {
  const tokens: string[] = [];
  for (let i = 0; i < 256; i++) {
    tokens.push(i < 128 ? String.fromCharCode(i) : `t${i}`);
  }
  tokens[200] = "map_";
  tokens[201] = "idr";
  const table: number[] = [];
  const index = new Uint8Array(512);
  const indexView = new DataView(index.buffer);
  tokens.forEach((t, i) => {
    indexView.setUint16(i * 2, table.length, true);
    for (const c of t) table.push(c.charCodeAt(0));
    table.push(0);
  });
  const names: number[] = [];
  for (const { text } of symbols) {
    const codes: number[] = [];
    let rest = text;
    while (rest.length > 0) {
      if (rest.startsWith("map_")) {
        codes.push(200);
        rest = rest.slice(4);
      } else if (rest.startsWith("idr")) {
        codes.push(201);
        rest = rest.slice(3);
      } else {
        codes.push(rest.charCodeAt(0));
        rest = rest.slice(1);
      }
    }
    if (codes.length >= 0x80) {
      names.push((codes.length & 0x7f) | 0x80, codes.length >> 7);
    } else names.push(codes.length);
    names.push(...codes);
  }
  const offsets = new Uint8Array(symbols.length * 4);
  symbols.forEach((s, i) =>
    new DataView(offsets.buffer).setInt32(i * 4, s.offset, true)
  );
  return {
    numSyms: symbols.length,
    names: new Uint8Array(names),
    tokenTable: new Uint8Array(table),
    tokenIndex: index,
    offsets,
    offsetsAddress: OFFSETS_VA,
    relativeBase: BASE,
  };
}

/**
 * The `kallsyms_offsets` entry scripts/kallsyms writes for `address` at
 * index `i` in each layout (absolute-percpu: `percpu` symbols keep their
 * value; the others are `-(address - base) - 1`).
 */
function entryFor(
  mode: KallsymsMode,
  address: bigint,
  i: number,
  percpu: boolean,
): number {
  switch (mode) {
    case "absolute-percpu":
      return percpu ? Number(address) : Number(-(address - BASE) - 1n);
    case "relative":
      return Number(BigInt.asIntN(32, address - BASE));
    case "pc-relative":
      return Number(address - (OFFSETS_VA + BigInt(i * 4)));
  }
}

const LONG = "x".repeat(200);
const SYMBOLS = [
  { text: "Tstartup_64", offset: -1 }, // absolute-percpu: base - 1 - (-1) = base
  { text: "dfixed_percpu_data", offset: 0 }, // per-CPU symbol: absolute 0
  { text: "bmap_idr", offset: -0x1234561 },
  { text: "T" + LONG, offset: -0x101 },
];

Deno.test("decodeKallsyms expands tokens and two-byte lengths, absolute-percpu mode", () => {
  const symbols = decodeKallsyms(encode(SYMBOLS), "absolute-percpu");
  assert.deepEqual(symbols.map((s) => [s.type, s.name, s.address]), [
    ["T", "startup_64", BASE],
    ["d", "fixed_percpu_data", 0n],
    ["b", "map_idr", BASE + 0x1234560n],
    ["T", LONG, BASE + 0x100n],
  ]);
});

Deno.test("decodeKallsyms relative mode adds the u32 offset to the base", () => {
  const symbols = decodeKallsyms(
    encode([{ text: "Tx", offset: 0x10 }, { text: "Ty", offset: -1 }]),
    "relative",
  );
  assert.deepEqual(symbols.map((s) => s.address), [
    BASE + 0x10n,
    BigInt.asUintN(64, BASE + 0xffffffffn),
  ]);
});

Deno.test("decodeKallsymsChecked keeps the mode that agrees with VMCOREINFO", () => {
  const tables = encode([
    ...SYMBOLS,
    { text: "Da", offset: -0x11 },
    { text: "Db", offset: -0x21 },
  ]);
  const known = new Map([
    ["startup_64", BASE],
    ["map_idr", BASE + 0x1234560n],
    ["a", BASE + 0x10n],
    ["b", BASE + 0x20n],
    ["mem_section", 0xff11000012345678n], // a value, not an address: tolerated
  ]);
  const { table, mode } = decodeKallsymsChecked(tables, known);
  assert.equal(mode, "absolute-percpu");
  assert.equal(table.get("map_idr"), BASE + 0x1234560n);
  assert.equal(table.must("b"), BASE + 0x20n);
  assert.throws(() => table.must("nope"), /Symbol nope not found/);
  const wrong = new Map([["startup_64", 1n], ["map_idr", 2n], ["a", 3n]]);
  assert.throws(
    () => decodeKallsymsChecked(tables, wrong),
    /does not agree with VMCOREINFO/,
  );
});

Deno.test("decodeKallsyms rejects corrupt tables instead of running off", () => {
  const tables = encode(SYMBOLS);
  assert.throws(
    () => decodeKallsyms({ ...tables, numSyms: 0x7fffffff }, "relative"),
    /not a plausible symbol count/,
  );
  assert.throws(
    () => decodeKallsyms({ ...tables, numSyms: 50_000 }, "relative"),
    /shorter than kallsyms_num_syms/,
  );
  const offsets = new Uint8Array(50_000 * 4);
  assert.throws(
    () => decodeKallsyms({ ...tables, numSyms: 50_000, offsets }, "relative"),
    /ends before symbol 4/,
  );
  const names = tables.names.slice();
  names[0] = 0x7f; // first symbol claims 127 tokens
  assert.throws(
    () => decodeKallsyms({ ...tables, names }, "relative"),
    /runs past the names table/,
  );
  const tokenIndex = tables.tokenIndex.slice();
  new DataView(tokenIndex.buffer).setUint16(0, 0xffff, true);
  assert.throws(
    () => decodeKallsyms({ ...tables, tokenIndex }, "relative"),
    /token 0 at offset 65535/,
  );
});

/** A table as 6.1 (x86-64 absolute per-CPU), 6.15+ (relative) and 7.x (pc-relative, no relative_base) kernels store it. */
const LAYOUT_SYMBOLS = [
  { text: "Tstartup_64", address: BASE, percpu: false },
  { text: "Dfixed_percpu_data", address: 0x1000n, percpu: true },
  { text: "bmap_idr", address: BASE + 0x2a3c5e0n, percpu: false },
  { text: "Tlate", address: BASE + 0x3eff0000n, percpu: false },
  { text: "Dbefore_offsets", address: OFFSETS_VA - 0x10n, percpu: false },
];

for (const mode of KALLSYMS_MODES) {
  Deno.test(`decodeKallsymsChecked recognises the ${mode} layout and no other`, () => {
    const symbols = mode === "absolute-percpu"
      ? LAYOUT_SYMBOLS
      : LAYOUT_SYMBOLS.filter((s) => !s.percpu);
    const tables = encode(symbols.map((s, i) => ({
      text: s.text,
      offset: entryFor(mode, s.address, i, s.percpu),
    })));
    if (mode === "pc-relative") tables.relativeBase = null;
    const decoded = decodeKallsyms(tables, mode);
    assert.deepEqual(
      decoded.map((s) => [s.name, s.address]),
      symbols.map((s) => [s.text.slice(1), s.address]),
    );
    const known = new Map(
      symbols.filter((s) => !s.percpu).map((s) => [s.text.slice(1), s.address]),
    );
    const checked = decodeKallsymsChecked(tables, known);
    assert.equal(checked.mode, mode);
    assert.equal(checked.table.get("map_idr"), BASE + 0x2a3c5e0n);
    for (const other of KALLSYMS_MODES) {
      if (other === mode || (other !== "pc-relative" && !tables.relativeBase)) {
        continue;
      }
      const wrong = decodeKallsyms(tables, other);
      assert.notDeepEqual(
        wrong.map((s) => s.address),
        decoded.map((s) => s.address),
        `${other} decodes a ${mode} table the same way`,
      );
    }
  });
}

Deno.test("without kallsyms_relative_base only pc-relative is tried, and a mismatch names each mode", () => {
  const tables = {
    ...encode([
      { text: "Ta", offset: 0x100 },
      { text: "Tb", offset: 0x200 },
      { text: "Tc", offset: -8 },
    ]),
    relativeBase: null,
  };
  assert.throws(
    () => decodeKallsyms(tables, "relative"),
    /needs kallsyms_relative_base, which this kernel lacks/,
  );
  assert.throws(
    () =>
      decodeKallsymsChecked(
        tables,
        new Map([["a", 1n], ["b", 2n], ["c", 3n]]),
      ),
    /absolute-percpu: no kallsyms_relative_base; relative: no kallsyms_relative_base; pc-relative: 0\/3/,
  );
  const { mode, table } = decodeKallsymsChecked(
    tables,
    new Map([
      ["a", OFFSETS_VA + 0x100n],
      ["b", OFFSETS_VA + 0x204n],
      ["c", OFFSETS_VA],
    ]),
  );
  assert.equal(mode, "pc-relative");
  assert.equal(table.get("b"), OFFSETS_VA + 0x204n);
});
