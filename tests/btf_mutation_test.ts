import { equal, ok } from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import { BtfBuilder } from "./btf_builder.ts";
import { compileFixture, prng } from "./btf_fixture.ts";
import {
  Btf,
  BtfError,
  btfFromElf,
  BtfKind,
  BtfNotFoundError,
  elfSection,
  loadKernelBtf,
  renderValue,
} from "../src/btf/mod.ts";

/** Re-encodes the type closure of `root` (at most `cap` types) as a self-contained blob. */
function slice(btf: Btf, root: number, cap: number): Uint8Array {
  const order: number[] = [];
  const newId = new Map<number, number>();
  const queue = [root];
  const refsOf = (id: number): number[] => {
    const t = btf.type(id);
    switch (t.kind) {
      case BtfKind.PTR:
      case BtfKind.TYPEDEF:
      case BtfKind.VOLATILE:
      case BtfKind.CONST:
      case BtfKind.RESTRICT:
      case BtfKind.TYPE_TAG:
      case BtfKind.FUNC:
      case BtfKind.VAR:
      case BtfKind.DECL_TAG:
        return [t.type];
      case BtfKind.ARRAY:
        return [t.type, t.indexType];
      case BtfKind.STRUCT:
      case BtfKind.UNION:
        return t.members.map((m) => m.type);
      case BtfKind.FUNC_PROTO:
        return [t.returnType, ...t.params.map((p) => p.type)];
      case BtfKind.DATASEC:
        return t.vars.map((v) => v.type);
      default:
        return [];
    }
  };
  while (queue.length > 0 && order.length < cap) {
    const id = queue.shift()!;
    if (id === 0 || newId.has(id)) continue;
    newId.set(id, order.length + 1);
    order.push(id);
    queue.push(...refsOf(id));
  }
  const map = (id: number): number => newId.get(id) ?? 0;
  const b = new BtfBuilder();
  for (const id of order) {
    const t = btf.type(id);
    switch (t.kind) {
      case BtfKind.INT:
        b.int(
          t.name,
          t.size,
          t.signed,
          t.bits,
          (t.char ? 2 : 0) | (t.bool ? 4 : 0),
          t.bitOffset,
        );
        break;
      case BtfKind.PTR:
        b.ptr(map(t.type));
        break;
      case BtfKind.ARRAY:
        b.array(map(t.type), t.nelems, map(t.indexType));
        break;
      case BtfKind.STRUCT:
      case BtfKind.UNION:
        b.struct(
          t.name,
          t.size,
          t.members.map((m) => ({ ...m, type: map(m.type) })),
          t.kind === BtfKind.UNION,
        );
        break;
      case BtfKind.ENUM:
        b.enum(
          t.name,
          t.size,
          t.values.map((v) => [v.name, Number(BigInt.asIntN(32, v.value))]),
          t.signed,
        );
        break;
      case BtfKind.ENUM64:
        b.enum64(t.name, t.values.map((v) => [v.name, v.value]), t.signed);
        break;
      case BtfKind.FWD:
        b.fwd(t.name, t.union);
        break;
      case BtfKind.TYPEDEF:
      case BtfKind.VOLATILE:
      case BtfKind.CONST:
      case BtfKind.RESTRICT:
      case BtfKind.TYPE_TAG:
        b.ref(t.kind, map(t.type), t.name);
        break;
      case BtfKind.FUNC:
        b.func(t.name, map(t.type), t.linkage);
        break;
      case BtfKind.FUNC_PROTO:
        b.funcProto(
          map(t.returnType),
          t.params.map((p) => ({ name: p.name, type: map(p.type) })),
        );
        break;
      case BtfKind.VAR:
        b.variable(t.name, map(t.type), t.linkage);
        break;
      case BtfKind.DATASEC:
        b.datasec(
          t.name,
          t.size,
          t.vars.map((v) => ({ ...v, type: map(v.type) })),
        );
        break;
      case BtfKind.FLOAT:
        b.float(t.name, t.size);
        break;
      case BtfKind.DECL_TAG:
        b.declTag(t.name, map(t.type), t.componentIdx);
        break;
    }
  }
  return b.build();
}

/** Everything a reader does with a blob; only BtfError/BtfNotFoundError may escape. */
function exercise(bytes: Uint8Array): void {
  const btf = Btf.parse(bytes);
  for (let id = 1; id < btf.typeCount; id++) {
    const t = btf.type(id);
    btf.resolve(id);
    let size = -1;
    try {
      size = btf.sizeOf(id);
    } catch (error) {
      if (!(error instanceof BtfError)) throw error;
    }
    if (t.name) btf.findByName(t.name, t.kind);
    if (size >= 0 && size <= 1 << 16) {
      try {
        renderValue(btf, id, new Uint8Array(size).fill(0xa5));
      } catch (error) {
        if (!(error instanceof BtfError)) throw error;
      }
    }
    if (
      (t.kind === BtfKind.STRUCT || t.kind === BtfKind.UNION) &&
      t.members[0]?.name
    ) {
      try {
        btf.memberOffset(id, t.members[0].name);
      } catch (error) {
        if (
          !(error instanceof BtfNotFoundError) && !(error instanceof BtfError)
        ) throw error;
      }
    }
  }
}

function mutate(seed: Uint8Array, next: () => number): Uint8Array {
  const bytes = seed.slice();
  const view = new DataView(bytes.buffer);
  const pick = (n: number): number => Math.floor(next() * n);
  switch (pick(5)) {
    case 0: // bit flips
      for (let i = 0, n = 1 + pick(8); i < n; i++) {
        bytes[pick(bytes.length)]! ^= 1 << pick(8);
      }
      return bytes;
    case 1: // truncation
      return bytes.subarray(0, pick(bytes.length));
    case 2: // a header length or offset
      view.setUint32(
        4 + 4 * pick(5),
        next() < 0.5 ? pick(bytes.length * 2) : pick(2 ** 32),
        true,
      );
      return bytes;
    case 3: { // a type-section word: name_off, info (kind/vlen/kind_flag), size/type or body
      const at = 24 + 4 * pick(Math.max(1, (bytes.length - 24) >> 2));
      if (at + 4 <= bytes.length) {
        const choices = [
          pick(2 ** 32),
          pick(64),
          (pick(32) << 24 | pick(0x10000)) >>> 0,
          0xffffffff,
        ];
        view.setUint32(at, choices[pick(choices.length)]!, true);
      }
      return bytes;
    }
    default: { // kind_flag or vlen of some word
      const at = 24 + 4 * pick(Math.max(1, (bytes.length - 24) >> 2));
      if (at + 4 <= bytes.length) {
        view.setUint32(at, view.getUint32(at, true) ^ (1 << pick(32)), true);
      }
      return bytes;
    }
  }
}

function run(
  seeds: Uint8Array[],
  count: number,
  seed: number,
): { ok: number; rejected: number } {
  const next = prng(seed);
  let accepted = 0;
  let rejected = 0;
  for (let i = 0; i < count; i++) {
    const mutant = mutate(seeds[i % seeds.length]!, next);
    try {
      exercise(mutant);
      accepted++;
    } catch (error) {
      if (!(error instanceof BtfError)) {
        throw new Error(
          `Mutant ${i} (seed ${seed}) escaped with ${String(error)}`,
          { cause: error },
        );
      }
      rejected++;
    }
  }
  return { ok: accepted, rejected };
}

Deno.test("Btf.parse() and every query survive 10000 corrupted vmlinux slices with only BtfError", () => {
  const vmlinux = loadKernelBtf();
  const seeds = ["bpf_map", "task_struct", "bpf_attr", "sk_buff"].map((name) =>
    slice(vmlinux, vmlinux.findByName(name)!.id, 150)
  );
  for (const seed of seeds) exercise(seed);
  const started = performance.now();
  const result = run(seeds, 10_000, 1);
  equal(result.ok + result.rejected, 10_000);
  ok(result.rejected > 1000, `most mutants are rejected (${result.rejected})`);
  ok(result.ok > 100, `some mutants still parse (${result.ok})`);
  ok(performance.now() - started < 20_000, "fast");
});

Deno.test({
  name:
    "btfFromElf() and the reader survive 3000 corrupted fixture objects and BTF sections with only BtfError",
  ignore: ignoreUnless("clang"),
  fn(): void {
    const dir = Deno.makeTempDirSync({ prefix: "bpfmap-btf-mut-" });
    try {
      const object = Deno.readFileSync(compileFixture("kinds", dir));
      const section = elfSection(object, ".BTF")!.slice();
      exercise(section);
      const result = run([section], 2000, 2);
      ok(result.rejected > 200 && result.ok > 50);
      const next = prng(3);
      for (let i = 0; i < 1000; i++) {
        const mutant = object.slice();
        const view = new DataView(mutant.buffer);
        // Section header table fields, or random bytes.
        if (i % 2) {
          view.setUint32(
            0x28 + 4 * Math.floor(next() * 6),
            Math.floor(next() * 2 ** 32),
            true,
          );
        } else {mutant[Math.floor(next() * mutant.length)]! ^= 1 <<
            Math.floor(next() * 8);}
        try {
          btfFromElf(mutant);
        } catch (error) {
          if (!(error instanceof BtfError)) throw error;
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});
