import { deepEqual, equal, ok, throws } from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import { BtfBuilder } from "./btf_builder.ts";
import { compileFixture } from "./btf_fixture.ts";
import {
  Btf,
  BtfError,
  btfFromElf,
  BtfKind,
  btfKindName,
  BtfNotFoundError,
  loadBtfById,
  loadKernelBtf,
} from "../src/btf/mod.ts";

function everyKindBlob(): { bytes: Uint8Array; ids: Record<string, number> } {
  const b = new BtfBuilder();
  const ids: Record<string, number> = {};
  ids.int = b.int("int", 4, true);
  ids.u8 = b.int("unsigned char", 1);
  ids.char = b.int("char", 1, true, 8, 2);
  ids.bool = b.int("_Bool", 1, false, 8, 4);
  ids.ptr = b.ptr(ids.int);
  ids.array = b.array(ids.int, 3, ids.int);
  ids.inner = b.struct("", 8, [
    { name: "x", type: ids.int, bitOffset: 0 },
    { name: "y", type: ids.int, bitOffset: 32 },
  ]);
  ids.union = b.struct("", 4, [
    { name: "u", type: ids.int, bitOffset: 0 },
    { name: "v", type: ids.u8, bitOffset: 0 },
  ], true);
  ids.flags = b.struct("flags", 4, [
    { name: "lo", type: ids.int, bitOffset: 0, bitfieldSize: 3 },
    { name: "hi", type: ids.int, bitOffset: 3, bitfieldSize: 5 },
  ]);
  ids.outer = b.struct("outer", 32, [
    { name: "head", type: ids.int, bitOffset: 0 },
    { name: "", type: ids.inner, bitOffset: 32 },
    { name: "", type: ids.union, bitOffset: 96 },
    { name: "arr", type: ids.array, bitOffset: 128 },
  ]);
  ids.enum = b.enum("color", 4, [["RED", 0], ["NEG", -5]], true);
  ids.fwd = b.fwd("later", true);
  ids.typedef = b.ref(8, ids.int, "int_t");
  ids.volatile = b.ref(9, ids.typedef);
  ids.const = b.ref(10, ids.volatile);
  ids.restrict = b.ref(11, ids.ptr);
  ids.proto = b.funcProto(ids.int, [{ name: "a", type: ids.int }]);
  ids.func = b.func("f", ids.proto);
  ids.var = b.variable("g", ids.int);
  ids.datasec = b.datasec(".data", 4, [{ type: ids.var, offset: 0, size: 4 }]);
  ids.float = b.float("double", 8);
  ids.declTag = b.declTag("tag", ids.outer, 1);
  ids.typeTag = b.ref(18, ids.int, "user");
  ids.enum64 = b.enum64("wide", [["BIG", 0xfedcba9876543210n]]);
  return { bytes: b.build(), ids };
}

Deno.test("Btf.parse() decodes every kind", () => {
  const { bytes, ids } = everyKindBlob();
  const btf = Btf.parse(bytes);
  equal(btf.typeCount, Object.keys(ids).length + 1);
  deepEqual(btf.type(ids.char!), {
    id: ids.char,
    name: "char",
    kind: BtfKind.INT,
    size: 1,
    signed: true,
    char: true,
    bool: false,
    bitOffset: 0,
    bits: 8,
  });
  const flags = btf.type(ids.flags!);
  ok(flags.kind === BtfKind.STRUCT);
  deepEqual(flags.members.map((m) => [m.name, m.bitOffset, m.bitfieldSize]), [
    ["lo", 0, 3],
    ["hi", 3, 5],
  ]);
  const e = btf.type(ids.enum!);
  ok(e.kind === BtfKind.ENUM);
  deepEqual(e.values, [{ name: "RED", value: 0n }, {
    name: "NEG",
    value: -5n,
  }]);
  const e64 = btf.type(ids.enum64!);
  ok(e64.kind === BtfKind.ENUM64);
  equal(e64.values[0]!.value, 0xfedcba9876543210n);
  const fwd = btf.type(ids.fwd!);
  ok(fwd.kind === BtfKind.FWD && fwd.union);
  const proto = btf.type(ids.proto!);
  ok(proto.kind === BtfKind.FUNC_PROTO);
  deepEqual(proto.params, [{ name: "a", type: ids.int }]);
  const sec = btf.type(ids.datasec!);
  ok(sec.kind === BtfKind.DATASEC);
  deepEqual(sec.vars, [{ type: ids.var, offset: 0, size: 4 }]);
  const tag = btf.type(ids.declTag!);
  ok(tag.kind === BtfKind.DECL_TAG && tag.componentIdx === 1);
  equal(btf.type(ids.typeTag!).kind, BtfKind.TYPE_TAG);
  equal(btf.type(ids.float!).kind, BtfKind.FLOAT);
  equal(btf.type(0).kind, BtfKind.VOID);
  for (let id = 1; id < btf.typeCount; id++) {
    ok(!btfKindName(btf.kindOf(id)).startsWith("UNKNOWN"));
  }
});

Deno.test("Btf.resolve() skips typedefs, qualifiers and type tags", () => {
  const { bytes, ids } = everyKindBlob();
  const btf = Btf.parse(bytes);
  equal(btf.resolve(ids.const!), ids.int);
  equal(btf.resolve(ids.typeTag!), ids.int);
  equal(btf.resolve(ids.restrict!), ids.ptr);
  equal(btf.resolve(ids.outer!), ids.outer);
});

Deno.test("Btf.sizeOf() follows arrays and references and rejects unsized kinds", () => {
  const { bytes, ids } = everyKindBlob();
  const btf = Btf.parse(bytes);
  equal(btf.sizeOf(ids.array!), 12);
  equal(btf.sizeOf(ids.const!), 4);
  equal(btf.sizeOf(ids.restrict!), 8);
  equal(btf.sizeOf(ids.var!), 4);
  equal(btf.sizeOf(ids.outer!), 32);
  throws(() => btf.sizeOf(ids.fwd!), BtfError);
  throws(() => btf.sizeOf(ids.func!), BtfError);
  throws(() => btf.sizeOf(99), RangeError);
});

Deno.test("Btf.memberOffset() looks through anonymous structs and unions and indexes arrays", () => {
  const { bytes } = everyKindBlob();
  const btf = Btf.parse(bytes);
  deepEqual(btf.memberOffset("outer", "y"), {
    offset: 8,
    bitOffset: 64,
    bitfieldSize: 0,
    type: btf.findByName("int")!.id,
  });
  equal(btf.memberOffset("outer", "v").offset, 12);
  equal(btf.memberOffset("outer", "arr[2]").offset, 24);
  deepEqual(
    [
      btf.memberOffset("flags", "hi").bitOffset,
      btf.memberOffset("flags", "hi").bitfieldSize,
    ],
    [3, 5],
  );
  throws(() => btf.memberOffset("outer", "nope"), BtfNotFoundError);
  throws(() => btf.memberOffset("outer", "arr[3]"), BtfNotFoundError);
  throws(() => btf.memberOffset("missing", "x"), BtfNotFoundError);
});

Deno.test("Btf.findByName() and findAllByName() filter by kind", () => {
  const b = new BtfBuilder();
  const s = b.struct("dup", 0, []);
  const t = b.ref(8, s, "dup");
  const btf = Btf.parse(b.build());
  deepEqual(btf.findAllByName("dup"), [s, t]);
  equal(btf.findByName("dup", BtfKind.TYPEDEF)?.id, t);
  equal(btf.findByName("absent"), undefined);
});

Deno.test("Btf.datasecVariables() and enumValueName() name variables and enumerators", () => {
  const { bytes, ids } = everyKindBlob();
  const btf = Btf.parse(bytes);
  deepEqual(btf.datasecVariables(".data"), [
    { name: "g", varId: ids.var, type: ids.int, offset: 0, size: 4 },
  ]);
  equal(btf.enumValueName(ids.enum!, -5), "NEG");
  equal(btf.enumValueName(ids.enum!, 0xfffffffb), "NEG");
  equal(btf.enumValueName(ids.enum!, 3), undefined);
  equal(btf.enumValueName(ids.enum64!, 0xfedcba9876543210n), "BIG");
  throws(() => btf.datasecVariables(".bss"), BtfNotFoundError);
});

Deno.test("Btf.parse() continues ids and string offsets of a base for split BTF", () => {
  const base = Btf.parse(everyKindBlob().bytes);
  const intId = base.findByName("int")!.id;
  const b = new BtfBuilder(base.typeCount, base.stringsLength);
  const ptr = b.ptr(intId);
  const s = b.struct("split_thing", 8, [{
    name: "p",
    type: ptr,
    bitOffset: 0,
  }]);
  const split = Btf.parse(b.build(), { base });
  equal(ptr, base.typeCount);
  equal(split.firstTypeId, base.typeCount);
  equal(split.typeCount, base.typeCount + 2);
  equal(split.type(intId).name, "int");
  equal(split.findByName("split_thing")?.id, s);
  equal(split.memberOffset("split_thing", "p").type, ptr);
  equal(split.sizeOf(s), 8);
  equal(split.findByName("outer")?.id, base.findByName("outer")?.id);
  throws(
    () => Btf.parse(b.build()),
    BtfError,
    "a split blob without its base is invalid",
  );
});

Deno.test("Btf.parse() rejects malformed blobs with a BtfError naming the byte offset", () => {
  const good = everyKindBlob().bytes;
  const cases: [string, (b: Uint8Array) => Uint8Array, number][] = [
    ["short", (b) => b.subarray(0, 10), 0],
    ["bad magic", (b) => (b[0] = 0, b), 0],
    ["bad version", (b) => (b[2] = 2, b), 2],
    [
      "huge header",
      (b) => (new DataView(b.buffer).setUint32(4, 1 << 30, true), b),
      4,
    ],
    [
      "type section too long",
      (b) => (new DataView(b.buffer).setUint32(12, 1 << 30, true), b),
      12,
    ],
    [
      "string section too long",
      (b) => (new DataView(b.buffer).setUint32(20, 1 << 30, true), b),
      20,
    ],
    ["unknown kind", (b) => (b[24 + 7] = 31, b), 28],
    [
      "name past strings",
      (b) => (new DataView(b.buffer).setUint32(24, 1 << 30, true), b),
      24,
    ],
  ];
  for (const [what, corrupt, offset] of cases) {
    throws(
      () => Btf.parse(corrupt(good.slice())),
      (error: unknown) =>
        error instanceof BtfError && error.offset === offset &&
        error.message.includes(`byte ${offset}`),
      what,
    );
  }
});

Deno.test("Btf.resolve() and sizeOf() stop on reference cycles with a BtfError", () => {
  const b = new BtfBuilder();
  // typedef a -> typedef b -> typedef a; array of itself.
  const a = b.ref(8, 2, "a");
  b.ref(8, a, "b");
  const self = b.array(3, 2);
  const btf = Btf.parse(b.build());
  throws(() => btf.resolve(a), BtfError);
  throws(() => btf.sizeOf(a), BtfError);
  throws(() => btf.sizeOf(self), BtfError);
});

Deno.test("loadKernelBtf() finds bpf_map members through the anonymous unions", () => {
  const btf = loadKernelBtf();
  const map = btf.findByName("bpf_map", BtfKind.STRUCT);
  ok(map && map.kind === BtfKind.STRUCT);
  const name = btf.memberOffset("bpf_map", "name");
  const direct = map.members.find((m) => m.name === "name");
  ok(direct);
  equal(name.bitOffset, direct.bitOffset);
  equal(btf.sizeOf(btf.resolve(name.type)), 16);
});

function parseBpftoolRaw(
  text: string,
): Map<number, { kind: string; name: string; members: string[] }> {
  const types = new Map<
    number,
    { kind: string; name: string; members: string[] }
  >();
  let current: { kind: string; name: string; members: string[] } | undefined;
  for (const line of text.split("\n")) {
    const head = /^\[(\d+)\] (\w+) '([^']*)'/.exec(line);
    if (head) {
      current = {
        kind: head[2]!,
        name: head[3] === "(anon)" ? "" : head[3]!,
        members: [],
      };
      types.set(Number(head[1]), current);
      continue;
    }
    const member =
      /^\t'([^']*)' type_id=(\d+) bits_offset=(\d+)(?: bitfield_size=(\d+))?/
        .exec(line);
    if (member && current) {
      current.members.push(
        `${member[1] === "(anon)" ? "" : member[1]}:${member[2]}:${member[3]}:${
          member[4] ?? 0
        }`,
      );
    }
  }
  return types;
}

Deno.test({
  name:
    "Btf.parse() agrees with bpftool btf dump on every vmlinux type, member and bpf_map offset",
  ignore: ignoreUnless("bpf", "bpftool"),
  fn(): void {
    const out = new Deno.Command("bpftool", {
      args: ["btf", "dump", "file", "/sys/kernel/btf/vmlinux"],
      stdout: "piped",
    }).outputSync();
    ok(out.success);
    const theirs = parseBpftoolRaw(new TextDecoder().decode(out.stdout));
    const btf = loadKernelBtf();
    equal(theirs.size, btf.typeCount - 1);
    let members = 0;
    for (const [id, t] of theirs) {
      const ours = btf.type(id);
      equal(btfKindName(ours.kind), t.kind, `kind of ${id}`);
      equal(ours.name, t.name, `name of ${id}`);
      if (ours.kind === BtfKind.STRUCT || ours.kind === BtfKind.UNION) {
        deepEqual(
          ours.members.map((m) =>
            `${m.name}:${m.type}:${m.bitOffset}:${m.bitfieldSize}`
          ),
          t.members,
          `members of ${id}`,
        );
        members += ours.members.length;
      }
    }
    ok(members > 10000);
    const bpfMapId = btf.findByName("bpf_map", BtfKind.STRUCT)!.id;
    for (const line of theirs.get(bpfMapId)!.members) {
      const [name, type, bits] = line.split(":");
      if (!name) continue;
      const location = btf.memberOffset("bpf_map", name);
      equal(location.bitOffset, Number(bits));
      equal(location.type, Number(type));
    }
  },
});

Deno.test({
  name: "btfFromElf() reads a compiled fixture's .BTF like bpftool does",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    const dir = Deno.makeTempDirSync({ prefix: "bpfmap-btf-elf-" });
    try {
      const object = compileFixture("kinds", dir);
      const btf = btfFromElf(Deno.readFileSync(object));
      const out = new Deno.Command("bpftool", {
        args: ["btf", "dump", "file", object],
        stdout: "piped",
      }).outputSync();
      const theirs = parseBpftoolRaw(new TextDecoder().decode(out.stdout));
      equal(theirs.size, btf.typeCount - 1);
      for (const [id, t] of theirs) {
        equal(btf.type(id).name, t.name);
        equal(btfKindName(btf.kindOf(id)), t.kind);
      }
      ok(
        btf.datasecVariables(".maps").some((v) =>
          v.name === "kinds_array_with_a_very_long_name"
        ),
      );
      throws(() => btfFromElf(new Uint8Array(64)), BtfError);
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "loadBtfById() fetches vmlinux (id 1) identical to sysfs",
  ignore: ignoreUnless("bpf", "bpftool"),
  fn(): void {
    const byId = loadBtfById(1);
    const sysfs = loadKernelBtf();
    equal(byId.typeCount, sysfs.typeCount);
    equal(
      byId.memberOffset("bpf_map", "name").offset,
      sysfs.memberOffset("bpf_map", "name").offset,
    );
  },
});
