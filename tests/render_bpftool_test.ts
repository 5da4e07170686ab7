import { equal, ok } from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import {
  bpftoolJson,
  firstDifference,
  hexBytes,
  loadFixture,
  prng,
  randomBytes,
} from "./btf_fixture.ts";
import {
  type Btf,
  BtfKind,
  loadBtfById,
  parseJsonExact,
  type RenderedValue,
  renderPercpuValues,
  renderValue,
  toJson,
} from "../src/btf/mod.ts";
import { mapUpdateElem, objGet } from "../src/sys/bpf.ts";
import { PERCPU_MAP_TYPES } from "../src/sys/constants.ts";

function possibleCpus(): number {
  const text = Deno.readTextFileSync("/sys/devices/system/cpu/possible").trim();
  let count = 0;
  for (const part of text.split(",")) {
    const [lo, hi] = part.split("-").map(Number);
    count = Math.max(count, (hi ?? lo!) + 1);
  }
  return count;
}

function containsFloat(btf: Btf, id: number, depth = 0): boolean {
  if (depth > 32) return false;
  const t = btf.type(btf.resolve(id));
  switch (t.kind) {
    case BtfKind.FLOAT:
      return true;
    case BtfKind.ARRAY:
    case BtfKind.VAR:
      return containsFloat(btf, t.type, depth + 1);
    case BtfKind.STRUCT:
    case BtfKind.UNION:
      return t.members.some((m) => containsFloat(btf, m.type, depth + 1));
    case BtfKind.DATASEC:
      return t.vars.some((v) => containsFloat(btf, v.type, depth + 1));
    default:
      return false;
  }
}

function sameAs(ours: unknown, theirs: unknown, what: string): void {
  const diff = firstDifference(ours, theirs);
  equal(diff, undefined, `${what} differs from bpftool at ${diff}`);
}

/** Both sides through the same exact JSON reader, so only content differs. */
function normalize(value: RenderedValue): unknown {
  return parseJsonExact(toJson(value));
}

interface BpftoolElement {
  key: string[];
  value?: string[];
  values?: { cpu: number; value: string[] }[];
  formatted: {
    key?: unknown;
    value?: unknown;
    values?: { cpu: number; value: unknown }[];
  };
}

Deno.test({
  name:
    "renderValue() in bpftool style matches bpftool -j map dump on every float-free fixture map",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const next = prng(0x5eed);
    const ncpu = possibleCpus();
    // Random contents exercise signs, unknown enum values and bitfields.
    for (const [pin, info] of fixture.info) {
      if (pin.endsWith("rodata")) continue;
      using fd = objGet(fixture.pins.get(pin)!);
      const stride = Math.ceil(info.valueSize / 8) * 8;
      const perCpu = PERCPU_MAP_TYPES.has(info.type);
      const count = Math.min(info.maxEntries, 4);
      for (let i = 0; i < count; i++) {
        const key = info.type === 2 || info.type === 6 // ARRAY, PERCPU_ARRAY
          ? new Uint8Array(new Uint32Array([i]).buffer)
          : randomBytes(next, info.keySize);
        const value = perCpu
          ? randomBytes(next, stride * ncpu)
          : randomBytes(next, info.valueSize);
        mapUpdateElem(fd.fd, key, value);
      }
    }
    let compared = 0;
    for (const [pin, info] of fixture.info) {
      ok(info.btfId > 0, `${pin} has BTF`);
      const btf = loadBtfById(info.btfId);
      if (containsFloat(btf, info.btfValueTypeId)) continue;
      const elements = parseJsonExact(
        bpftoolJson(["map", "dump", "pinned", fixture.pins.get(pin)!]),
      ) as BpftoolElement[];
      ok(elements.length > 0, `${pin} has elements`);
      for (const element of elements) {
        const key = hexBytes(element.key);
        if (info.btfKeyTypeId !== 0) {
          sameAs(
            normalize(
              renderValue(btf, info.btfKeyTypeId, key, { style: "bpftool" }),
            ),
            element.formatted.key,
            `${pin} key`,
          );
        }
        if (element.values) {
          const values = element.values.map((v) => hexBytes(v.value));
          sameAs(
            normalize(
              renderPercpuValues(btf, info.btfValueTypeId, values, {
                style: "bpftool",
              }) as unknown as RenderedValue,
            ),
            element.formatted.values,
            `${pin} per-CPU values`,
          );
        } else {
          sameAs(
            normalize(
              renderValue(
                btf,
                info.btfValueTypeId,
                hexBytes(element.value!),
                {
                  style: "bpftool",
                },
              ),
            ),
            element.formatted.value,
            `${pin} value`,
          );
        }
        compared++;
      }
    }
    ok(compared >= 10, `compared ${compared} elements`);
  },
});
