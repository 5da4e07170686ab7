import assert from "node:assert/strict";
import {
  decodeKallsyms,
  decodeKallsymsChecked,
  type KallsymsTables,
} from "../src/guest/kallsyms.ts";

const BASE = 0xffffffff81000000n;

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
    relativeBase: BASE,
  };
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
