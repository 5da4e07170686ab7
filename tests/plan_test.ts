import { equal, ok } from "node:assert/strict";
import { BtfBuilder } from "./btf_builder.ts";
import { compileFixture, prng } from "./btf_fixture.ts";
import {
  Btf,
  btfFromElf,
  BtfKind,
  formatValue,
  renderValue,
  toJson,
} from "../src/btf/mod.ts";
import { compileValuePlan, type ValuePlan } from "../src/btf/plan.ts";

const decoder = new TextDecoder();

/** Bytes that hit every path: zeros, printable text (char arrays as strings), anything. */
function valueBytes(next: () => number, size: number): Uint8Array {
  const style = next();
  return Uint8Array.from({ length: size }, () => {
    const r = next();
    if (style < 0.2) return 0;
    if (style < 0.5) {
      return r < 0.15 ? 0 : 0x20 + Math.floor(next() * 0x5f);
    }
    if (style < 0.6) return r < 0.5 ? 0xff : 0;
    return Math.floor(r * 256);
  });
}

/** Runs the plan on `bytes` placed at an offset inside a larger buffer. */
function run(
  write: ValuePlan["json"],
  max: number,
  bytes: Uint8Array,
): string {
  const source = new Uint8Array(bytes.length + 13);
  source.set(bytes, 7);
  const out = new Uint8Array(max + 16);
  const end = write(source, 7, out, 3);
  ok(end - 3 <= max, `wrote ${end - 3} bytes, more than the maximum ${max}`);
  return decoder.decode(out.subarray(3, end));
}

/** Checks the plan against the renderer on `rounds` random values; returns whether a plan existed. */
function agree(
  btf: Btf,
  id: number,
  next: () => number,
  rounds: number,
): boolean {
  const size = btf.sizeOf(id);
  const plan = compileValuePlan(btf, id, size);
  if (!plan) return false;
  for (let round = 0; round < rounds; round++) {
    const bytes = valueBytes(next, size);
    const rendered = renderValue(btf, id, bytes);
    const where = `type ${id} on ${Array.from(bytes).join(",")}`;
    equal(run(plan.json, plan.jsonMax, bytes), toJson(rendered), where);
    if (plan.text) {
      equal(run(plan.text, plan.textMax, bytes), formatValue(rendered), where);
    }
  }
  return true;
}

function valueTypes(btf: Btf): number[] {
  const ids: number[] = [];
  for (let id = btf.firstTypeId; id < btf.typeCount; id++) {
    const kind = btf.kindOf(id);
    if (
      kind === BtfKind.FUNC || kind === BtfKind.FUNC_PROTO ||
      kind === BtfKind.DECL_TAG || kind === BtfKind.FWD ||
      kind === BtfKind.VAR || kind === BtfKind.DATASEC
    ) continue;
    try {
      if (btf.sizeOf(id) > 0) ids.push(id);
    } catch {
      // types without a size are not values
    }
  }
  return ids;
}

Deno.test({
  name:
    "compileValuePlan() writes what the renderer does for every type of the clang-compiled fixtures",
  ignore: !new Deno.Command("sh", { args: ["-c", "command -v clang"] })
    .outputSync().success,
  fn(): void {
    const dir = Deno.makeTempDirSync({ prefix: "bpfmap-plan-" });
    try {
      for (const fixture of ["kinds", "typed_bench"]) {
        const btf = btfFromElf(
          Deno.readFileSync(compileFixture(fixture, dir)),
        );
        const next = prng(0x9a7 + fixture.length);
        const ids = valueTypes(btf);
        ok(ids.length > 10, `${fixture}: ${ids.length} value types`);
        for (const id of ids) {
          const kind = btf.kindOf(btf.resolve(id));
          ok(agree(btf, id, next, 200), `${fixture}: type ${id} has a plan`);
          if (kind === BtfKind.STRUCT) {
            ok(
              compileValuePlan(btf, id, btf.sizeOf(id))!.text,
              `${fixture}: type ${id} has a text plan`,
            );
          }
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test("compileValuePlan() agrees with the renderer on hand-built kinds clang never emits", () => {
  const b = new BtfBuilder();
  const u64 = b.int("u64", 8);
  const u32 = b.int("u32", 4);
  const e64 = b.enum64(
    "wide",
    [["BIG", 0xfedcba9876543210n], ["NEG", -2n]],
    true,
  );
  const e8 = b.enum("tiny", 1, [["A", 1], ["B", 0xff]]);
  const e16 = b.enum("mid", 2, [["M", 0x8000]], true);
  const bool = b.int("_Bool", 1, false, 8, 4);
  const ch = b.int("char", 1, true, 8, 2);
  const legacy = b.int("int", 4, true, 3, 0, 2);
  const half = b.float("_Float16", 2);
  const ld = b.float("long double", 16);
  const s128 = b.int("__int128", 16, true);
  const chars = b.array(ch, 5, u32);
  const inner = b.struct("", 8, [
    { name: "", type: u32, bitOffset: 0 },
    { name: "x", type: u32, bitOffset: 32 },
  ]);
  const s = b.struct("s", 96, [
    { name: "e", type: e64, bitOffset: 0 },
    { name: "b", type: bool, bitOffset: 64 },
    { name: "c", type: ch, bitOffset: 72 },
    { name: "t", type: e8, bitOffset: 80 },
    { name: "m", type: e16, bitOffset: 88, bitfieldSize: 13 },
    { name: "l", type: legacy, bitOffset: 128 },
    { name: "h", type: half, bitOffset: 160 },
    { name: "bb", type: bool, bitOffset: 176, bitfieldSize: 1 },
    { name: "wide", type: u64, bitOffset: 177, bitfieldSize: 50 },
    { name: "ew", type: e64, bitOffset: 227, bitfieldSize: 36 },
    { name: "", type: inner, bitOffset: 320 },
    { name: "", type: u64, bitOffset: 384 },
    { name: "ld", type: ld, bitOffset: 448 },
    { name: "i", type: s128, bitOffset: 576 },
    { name: "chars", type: chars, bitOffset: 704 },
  ]);
  const u = b.struct("u", 16, [
    { name: "a", type: u64, bitOffset: 0 },
    { name: "h", type: half, bitOffset: 0 },
    { name: "s", type: chars, bitOffset: 0 },
  ], true);
  const matrix = b.array(b.array(u, 2, u32), 3, u32);
  const btf = Btf.parse(b.build());
  const next = prng(17);
  for (const id of [s, u, matrix, e64, e8, ch, chars, inner]) {
    ok(agree(btf, id, next, 500), `type ${id} has a plan`);
  }
  ok(
    !compileValuePlan(btf, s, btf.sizeOf(s))!.text,
    "char scalars: no text plan",
  );
});

Deno.test("compileValuePlan() declines what it does not cover, and never writes other output", () => {
  const b = new BtfBuilder();
  const int = b.int("int", 4, true);
  const dup = b.struct("dup", 8, [
    { name: "x", type: int, bitOffset: 0 },
    { name: "x", type: int, bitOffset: 32 },
  ]);
  // A plain (not bitfield) member off a byte boundary.
  const skewed = b.struct("skewed", 8, [
    { name: "s", type: int, bitOffset: 4 },
  ]);
  const outside = b.struct("outside", 4, [
    { name: "x", type: int, bitOffset: 64 },
  ]);
  const v = b.variable("g", int);
  const sec = b.datasec(".data", 4, [{ type: v, offset: 0, size: 4 }]);
  const btf = Btf.parse(b.build());
  equal(compileValuePlan(btf, dup, 8), undefined);
  equal(compileValuePlan(btf, skewed, 8), undefined);
  equal(compileValuePlan(btf, outside, 4), undefined);
  equal(compileValuePlan(btf, sec, 4), undefined);
  equal(compileValuePlan(btf, int, 2), undefined, "shorter than the type");
});

Deno.test("compileValuePlan() breaks text lines exactly where formatValue does", () => {
  const b = new BtfBuilder();
  const u32 = b.int("u32", 4);
  const ch = b.int("char", 1, true);
  const text = b.array(ch, 120, u32);
  const one = b.struct("one", 120, [{ name: "s", type: text, bitOffset: 0 }]);
  const outer = b.struct("outer", 124, [
    { name: "n", type: u32, bitOffset: 0 },
    { name: "in", type: one, bitOffset: 32 },
  ]);
  const btf = Btf.parse(b.build());
  // `{s = "..."}` is 8 + n characters: 100 fits the width, 101 does not.
  for (const n of [90, 91, 92, 93, 94, 93, 92, 91, 94, 90]) {
    const bytes = new Uint8Array(124);
    bytes.fill(0x61, 4, 4 + n);
    for (const [id, at] of [[one, 4], [outer, 0]] as const) {
      const plan = compileValuePlan(btf, id, btf.sizeOf(id))!;
      const value = bytes.subarray(at);
      equal(
        run(plan.text!, plan.textMax, value),
        formatValue(renderValue(btf, id, value)),
        `type ${id}, ${n} characters`,
      );
    }
  }
});

Deno.test("compileValuePlan() writes 64-bit integers exactly at every digit count and around 2^32, 2^53, 2^63", () => {
  const b = new BtfBuilder();
  const u64 = b.int("u64", 8);
  const s64 = b.int("s64", 8, true);
  const pair = b.struct("pair", 16, [
    { name: "u", type: u64, bitOffset: 0 },
    { name: "s", type: s64, bitOffset: 64 },
  ]);
  const btf = Btf.parse(b.build());
  const plan = compileValuePlan(btf, pair, 16)!;
  const values: bigint[] = [0n, 1n, 2n ** 64n - 1n, 2n ** 63n, 2n ** 63n - 1n];
  for (let digits = 1; digits <= 20; digits++) {
    const ten = 10n ** BigInt(digits - 1);
    values.push(ten, ten - 1n, ten + 1n, 10n * ten - 1n);
  }
  for (const pivot of [2n ** 32n, 2n ** 53n, 2n ** 21n << 32n]) {
    for (let d = -3n; d <= 3n; d++) values.push(pivot + d);
  }
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  for (const value of values) {
    const u = BigInt.asUintN(64, value);
    view.setBigUint64(0, u, true);
    view.setBigUint64(8, u, true);
    const expected = `{"u":${u},"s":${BigInt.asIntN(64, u)}}`;
    equal(run(plan.json, plan.jsonMax, bytes), expected);
    equal(toJson(renderValue(btf, pair, bytes)), expected);
  }
});

Deno.test("compileValuePlan() writes floats as String() does, short decimals included", () => {
  const b = new BtfBuilder();
  const f32 = b.float("float", 4);
  const f64 = b.float("double", 8);
  const pair = b.struct("pair", 16, [
    { name: "f", type: f32, bitOffset: 0 },
    { name: "d", type: f64, bitOffset: 64 },
  ]);
  const btf = Btf.parse(b.build());
  const plan = compileValuePlan(btf, pair, 16)!;
  const values = [
    0.1,
    0.2,
    0.1 + 0.2,
    1.5,
    -2.25,
    1e-6,
    1.5e-6,
    9.999999e-7,
    123.456,
    999999999.5,
    1e9 + 0.5,
    1e9 - 0.25,
    0.000123,
    4503599627370495.5,
    1 / 3,
    -0,
    5e-324,
    1.7976931348623157e308,
    1e21,
    1e-7,
    0.5,
    100.01,
    7.0000001,
  ];
  for (let i = -2000; i <= 2000; i++) {
    values.push(i / 8, i / 100, i / 1000, i / 3, i * 1.1, i / 1e6, i / 7e5);
  }
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  for (const value of values) {
    view.setFloat32(0, value, true);
    view.setFloat64(8, value, true);
    const rendered = renderValue(btf, pair, bytes);
    equal(run(plan.json, plan.jsonMax, bytes), toJson(rendered), `${value}`);
    equal(
      run(plan.text!, plan.textMax, bytes),
      formatValue(rendered),
      `${value}`,
    );
  }
});
