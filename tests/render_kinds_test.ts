import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import { BtfBuilder } from "./btf_builder.ts";
import { clangHasEnum64, loadFixture } from "./btf_fixture.ts";
import {
  Btf,
  BtfError,
  formatValue,
  loadBtfById,
  parseJsonExact,
  recoverFullMapName,
  type RenderedValue,
  renderPercpuValues,
  renderValue,
  toJson,
} from "../src/btf/mod.ts";
import { mapLookupElem, mapUpdateElem, objGet } from "../src/sys/bpf.ts";

function lookup(path: string, valueSize: number, key = 0): Uint8Array {
  using fd = objGet(path);
  const value = new Uint8Array(valueSize);
  ok(
    mapLookupElem(fd.fd, new Uint8Array(new Uint32Array([key]).buffer), value),
  );
  return value;
}

function vars(
  rendered: RenderedValue,
  section: string,
): Record<string, RenderedValue> {
  const list = (rendered as Record<string, RenderedValue[]>)[section];
  ok(Array.isArray(list), `${section} renders as an array`);
  return Object.assign({}, ...list as Record<string, RenderedValue>[]);
}

Deno.test({
  name:
    "renderValue() renders the fixture's global data as its C initializers say",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const info = fixture.info.get("kinds_data")!;
    const btf = loadBtfById(info.btfId);
    const data = vars(
      renderValue(
        btf,
        info.btfValueTypeId,
        lookup(fixture.pins.get("kinds_data")!, info.valueSize),
      ),
      ".data",
    );
    equal(data.g_int, -7);
    equal(data.g_u64, 0xfffffffffffffff0n);
    equal(data.g_name, "hello");
    deepEqual(data.g_binary, [1, 2, -1, 0]);
    equal(data.g_wide, "WIDE_BIG");
    equal(data.g_unknown_color, 7);
    equal(data.g_i128, -2n);
    equal(data.g_u128, (1n << 100n) + 5n);
    deepEqual(data.g_flags, {
      sf3: -3,
      uf5: 17,
      col: "BLUE",
      big40: -123456789012n,
      bit_bool: true,
    });
    deepEqual(data.g_matrix, [[1, 2, 3], [4, 5, 6]]);
    deepEqual(data.g_value, {
      counter: 18446744073709551615n,
      delta: -9007199254740993n,
      comm: "curl",
      raw: [1, 2, 3, 4],
      notstr: [97, 98, 99, 100],
      fl: { sf3: 3, uf5: 31, col: "NEG", big40: 5n, bit_bool: false },
      n: { u: 0xfffe0001, s: 1, bytes: [1, 0, 254, 255] },
      a: 7,
      b: 8,
      as_u32: 4294967295,
      as_s32: -1,
      c: "GREEN",
      w: "WIDE_SMALL",
      ok: true,
      matrix: [[-1, -2, -3], [10, 20, 30]],
      i128: -(1n << 70n),
      u128: 3n,
      fwd: 0n,
      rp: 0n,
      tagged: 0n,
      cv: 4000000000,
      small: 255,
      schar: -128,
      s16: -32768,
      tagged_member: 11,
    });
    const rodataInfo = fixture.info.get("kinds_rodata")!;
    deepEqual(
      vars(
        renderValue(
          btf,
          rodataInfo.btfValueTypeId,
          lookup(fixture.pins.get("kinds_rodata")!, rodataInfo.valueSize),
        ),
        ".rodata",
      ),
      { r_const: 42, r_str: "ro" },
    );
    const json = toJson(
      renderValue(
        btf,
        info.btfValueTypeId,
        lookup(fixture.pins.get("kinds_data")!, info.valueSize),
      ),
    );
    ok(json.includes('"counter":18446744073709551615'));
    ok(json.includes('"g_u128":1267650600228229401496703205381'));
  },
});

Deno.test({
  name: "renderValue() renders floats, where bpftool stops",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const sectionInfo = fixture.info.get("_data_floats")!;
    const btf = loadBtfById(sectionInfo.btfId);
    deepEqual(
      vars(
        renderValue(
          btf,
          sectionInfo.btfValueTypeId,
          lookup(fixture.pins.get("_data_floats")!, sectionInfo.valueSize),
        ),
        ".data.floats",
      ),
      { g_float: 1.5, g_double: -2.25 },
    );
    const info = fixture.info.get("kinds_floats")!;
    const bytes = new Uint8Array(info.valueSize);
    const view = new DataView(bytes.buffer);
    const f = btf.memberOffset(info.btfValueTypeId, "f").offset;
    view.setFloat32(f, 0.5, true);
    view.setFloat64(
      btf.memberOffset(info.btfValueTypeId, "d").offset,
      NaN,
      true,
    );
    view.setFloat32(
      btf.memberOffset(info.btfValueTypeId, "fa[0]").offset,
      Infinity,
      true,
    );
    view.setFloat32(
      btf.memberOffset(info.btfValueTypeId, "fa[1]").offset,
      -0,
      true,
    );
    view.setUint32(
      btf.memberOffset(info.btfValueTypeId, "after").offset,
      7,
      true,
    );
    {
      using fd = objGet(fixture.pins.get("kinds_floats")!);
      mapUpdateElem(fd.fd, new Uint8Array(4), bytes);
    }
    const rendered = renderValue(
      btf,
      info.btfValueTypeId,
      lookup(fixture.pins.get("kinds_floats")!, info.valueSize),
    );
    deepEqual(rendered, { f: 0.5, d: NaN, fa: [Infinity, -0], after: 7 });
    const json = toJson(rendered);
    equal(json, '{"f":0.5,"d":"NaN","fa":["Infinity",0],"after":7}');
    JSON.parse(json);
  },
});

Deno.test({
  name:
    "recoverFullMapName() recovers the fixture's long names and tells same-prefix maps apart",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const found = new Map<string, string | undefined>();
    for (const info of fixture.info.values()) {
      const btf = loadBtfById(info.btfId);
      found.set(info.name, undefined);
      const full = recoverFullMapName(
        btf,
        info.name,
        info.btfKeyTypeId,
        info.btfValueTypeId,
        {
          mapType: info.type,
          maxEntries: info.maxEntries,
        },
      );
      const withoutHints = recoverFullMapName(
        btf,
        info.name,
        info.btfKeyTypeId,
        info.btfValueTypeId,
      );
      equal(
        withoutHints,
        full,
        `${info.name}: key and value types alone decide`,
      );
      if (full) found.set(`${info.name}/${info.btfValueTypeId}`, full);
      if (full) ok(full.startsWith(info.name));
    }
    const longNames = [...found.entries()].filter(([k]) =>
      k.startsWith("kinds_array_wit/")
    ).map(([, v]) => v).sort();
    deepEqual(longNames, [
      "kinds_array_with_a_very_long_name",
      "kinds_array_with_a_very_long_other",
    ]);
    ok([...found.values()].includes("kinds_hash"));
    ok(
      ![...found.values()].some((v) => v?.includes(".data")),
      "global data maps are not in .maps",
    );
    const info = fixture.info.get("kinds_hash")!;
    equal(
      recoverFullMapName(
        loadBtfById(info.btfId),
        "kinds_hash",
        info.btfValueTypeId,
        info.btfKeyTypeId,
      ),
      undefined,
    );
  },
});

Deno.test({
  name: "renderPercpuValues() renders one value per present CPU",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const info = fixture.info.get("kinds_pcpu")!;
    const btf = loadBtfById(info.btfId);
    const cpu = (id: number): Uint8Array =>
      new Uint8Array(new Uint32Array([id, 0x10000 + id * 7 + 1]).buffer);
    deepEqual(
      renderPercpuValues(btf, info.btfValueTypeId, [cpu(1), null, cpu(3)]),
      [
        { cpu: 0, value: { id: 1, port: 8, pad: 1 } },
        { cpu: 2, value: { id: 3, port: 22, pad: 1 } },
      ],
    );
  },
});

Deno.test("renderValue() renders ENUM64, bool, char and legacy int bitfields from hand-built BTF", () => {
  const b = new BtfBuilder();
  const u64 = b.int("u64", 8);
  const e64 = b.enum64(
    "wide",
    [["BIG", 0xfedcba9876543210n], ["NEG", -2n]],
    true,
  );
  const bool = b.int("_Bool", 1, false, 8, 4);
  const ch = b.int("char", 1, true, 8, 2);
  const legacy = b.int("int", 4, true, 3, 0, 2);
  const half = b.float("_Float16", 2);
  const s = b.struct("s", 24, [
    { name: "e", type: e64, bitOffset: 0 },
    { name: "b", type: bool, bitOffset: 64 },
    { name: "c", type: ch, bitOffset: 72 },
    { name: "l", type: legacy, bitOffset: 96 },
    { name: "h", type: half, bitOffset: 128 },
    { name: "u", type: u64, bitOffset: 128 },
  ], true);
  const btf = Btf.parse(b.build());
  const bytes = new Uint8Array(24);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, 0xfffffffffffffffen, true);
  bytes[8] = 2;
  bytes[9] = 0x41;
  view.setUint32(12, 0b10100, true); // bits 2..4 = 0b101 = -3 as signed 3-bit
  view.setUint16(16, 0x3c00, true); // 1.0 in half precision
  deepEqual(renderValue(btf, s, bytes), {
    e: "NEG",
    b: true,
    c: "A",
    l: -3,
    h: 1,
    u: 0x3c00n,
  });
  view.setBigUint64(0, 5n, true);
  equal((renderValue(btf, s, bytes) as Record<string, RenderedValue>).e, 5n);
  deepEqual(renderValue(btf, s, bytes, { style: "bpftool" }), {
    e: 5n,
    b: true,
    c: "A",
    l: "0x5",
    h: 1,
    u: 0x3c00n,
  });
  throws(() => renderValue(btf, s, bytes.subarray(0, 10)), RangeError);
});

Deno.test("renderValue() bounds corrupt and cyclic types with a BtfError", () => {
  const b = new BtfBuilder();
  const int = b.int("int", 4, true);
  // A struct whose member lies past its own size.
  const outside = b.struct("outside", 4, [{
    name: "x",
    type: int,
    bitOffset: 64,
  }]);
  // A struct that contains itself (id 3 is this struct).
  const self = b.struct("self", 4, [{ name: "me", type: 3, bitOffset: 0 }]);
  // 65535 members all at offset 0 nested 3 deep: exponential without a budget.
  const wide = b.struct(
    "wide",
    4,
    Array.from(
      { length: 2000 },
      (_, i) => ({ name: `m${i}`, type: int, bitOffset: 0 }),
    ),
  );
  const wider = b.struct(
    "wider",
    4,
    Array.from(
      { length: 2000 },
      (_, i) => ({ name: `w${i}`, type: wide, bitOffset: 0 }),
    ),
  );
  const btf = Btf.parse(b.build());
  throws(() => renderValue(btf, outside, new Uint8Array(4)), BtfError);
  throws(() => renderValue(btf, self, new Uint8Array(4)), BtfError);
  throws(() => renderValue(btf, wider, new Uint8Array(4)), BtfError);
});

Deno.test("toJson() writes bigint exactly and always valid JSON", () => {
  const value = {
    u64: 18446744073709551615n,
    s64: -9223372036854775808n,
    u128: (1n << 127n) + 1n,
    nan: NaN,
    inf: -Infinity,
    negZero: -0,
    text: 'quote " and \u0001',
    skipped: undefined,
    list: [1, undefined, null, true],
  };
  const text = toJson(value);
  equal(
    text,
    '{"u64":18446744073709551615,"s64":-9223372036854775808,"u128":170141183460469231731687303715884105729,' +
      '"nan":"NaN","inf":"-Infinity","negZero":0,"text":"quote \\" and \\u0001","list":[1,null,null,true]}',
  );
  const back = parseJsonExact(text) as Record<string, unknown>;
  equal(back.u64, 18446744073709551615n);
  equal(back.u128, (1n << 127n) + 1n);
  equal(back.negZero, 0);
  equal(
    toJson({ a: [1, { b: 2n }] }, { indent: 2 }),
    '{\n  "a": [\n    1,\n    {\n      "b": 2\n    }\n  ]\n}',
  );
  deepEqual(JSON.parse(toJson({ a: [1, { b: 2n }] }, { indent: 2 })), {
    a: [1, { b: 2 }],
  });
});

Deno.test("formatValue() prints short values on one line and long ones indented", () => {
  equal(
    formatValue({ pid: 1, comm: "init", bytes: 5n, list: [1, 2] }),
    '{pid = 1, comm = "init", bytes = 5, list = [1, 2]}',
  );
  const long = formatValue({ a: "x".repeat(60), b: { c: "y".repeat(60) } }, {
    width: 80,
  });
  equal(
    long,
    `{\n  a = "${"x".repeat(60)}",\n  b = {c = "${"y".repeat(60)}"}\n}`,
  );
  equal(formatValue({ "": 1, ".bss": [] }), '{"" = 1, .bss = []}');
});

Deno.test({
  name:
    "clang in this environment emits ENUM64 (the fixture's enum64 coverage depends on it)",
  ignore: ignoreUnless("clang"),
  fn(): void {
    ok(
      clangHasEnum64(),
      "install clang-16 (apt-get install -y clang-16) for ENUM64 fixtures",
    );
  },
});
