import { equal, ok } from "node:assert/strict";
import { ignoreUnlessCommands } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import {
  compileFixture,
  loadFixture,
  prng,
  randomBytes,
} from "./btf_fixture.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type { BpfMapInfo } from "../src/accessor/types.ts";
import { btfFromElf, elfSection } from "../src/btf/mod.ts";
import { btfLoad, mapGetInfo, mapUpdateElem, objGet } from "../src/sys/bpf.ts";
import { MapType, PERCPU_MAP_TYPES } from "../src/sys/constants.ts";
import { possibleCpuCount } from "../src/sys/cpus.ts";
import { writeMapDump } from "../src/cli/dump.ts";
import { btfRenderer } from "../src/cli/render.ts";
import { MemorySink, OutputWriter } from "../src/cli/writer.ts";

const cpus = possibleCpuCount();

/** The dump through the plans and through the renderer, element by element. */
function bothWays(
  accessor: BpfSyscallAccessor,
  map: BpfMapInfo,
  json: boolean,
  chunkSize?: number,
  maxEntries?: number,
): { planned: string; rendered: string; hadPlans: boolean } {
  const renderer = btfRenderer(accessor, map, (m) => {
    throw new Error(m);
  })!;
  const dump = (plans: boolean): string => {
    const sink = new MemorySink();
    const out = new OutputWriter(sink, chunkSize);
    writeMapDump(out, accessor, map, {
      json,
      cpus,
      renderer: plans ? renderer : { ...renderer, plans: undefined },
      batchSize: 64,
      ...(maxEntries === undefined ? {} : { maxEntries }),
    });
    out.flush();
    return sink.text();
  };
  return {
    planned: dump(true),
    rendered: dump(false),
    hadPlans: renderer.plans !== undefined,
  };
}

function fill(
  accessor: BpfSyscallAccessor,
  map: BpfMapInfo,
  count: number,
  seed: number,
): void {
  const next = prng(seed);
  const stride = PERCPU_MAP_TYPES.has(map.type)
    ? Math.ceil(map.valueSize / 8) * 8 * cpus
    : map.valueSize;
  for (let i = 0; i < count; i++) {
    const key = map.type === MapType.ARRAY ||
        map.type === MapType.PERCPU_ARRAY
      ? new Uint8Array(new Uint32Array([i % map.maxEntries]).buffer)
      : randomBytes(next, map.keySize);
    // Half the values readable text and zeros (strings, known enum values).
    const value = randomBytes(next, stride);
    if (i % 2) {
      for (let j = 0; j < value.length; j++) {
        value[j] = value[j]! < 128 ? 0 : 0x20 + (value[j]! % 0x5f);
      }
    }
    accessor.update(map, key, value);
  }
}

Deno.test({
  name:
    "dump writes through compiled plans exactly what the renderer writes, JSON and text, on kernel maps typed by clang BTF",
  ignore: ignoreUnlessCommands("clang"),
  fn(): void {
    const dir = Deno.makeTempDirSync({ prefix: "bpfmap-typed-" });
    try {
      const elf = Deno.readFileSync(compileFixture("typed_bench", dir));
      const btf = btfFromElf(elf);
      using btfFd = btfLoad(elfSection(elf, ".BTF")!);
      const u32 = btf.findByName("__u32")!.id;
      const accessor = new BpfSyscallAccessor();
      const shapes: [number, string, number][] = [
        [MapType.HASH, "bench_record", 300],
        [MapType.HASH, "bench_rich", 300],
        [MapType.PERCPU_HASH, "bench_rich", 50],
        [MapType.ARRAY, "bench_record", 40],
        [MapType.PERCPU_ARRAY, "bench_record", 20],
      ];
      for (const [type, struct, count] of shapes) {
        const value = btf.findByName(struct)!.id;
        using fd = BpfSyscallAccessor.createMap({
          type,
          keySize: 4,
          valueSize: btf.sizeOf(value),
          maxEntries: count,
          name: uniqueName("typed"),
          btfFd: btfFd.fd,
          btfKeyTypeId: u32,
          btfValueTypeId: value,
        });
        const map = accessor.mapById(mapGetInfo(fd.fd).id)!;
        fill(accessor, map, count, type * 100 + count);
        for (const json of [true, false]) {
          const { planned, rendered, hadPlans } = bothWays(
            accessor,
            map,
            json,
          );
          ok(hadPlans, `${struct} has plans`);
          ok(planned.length > count * 20, "the dump is not empty");
          equal(
            planned,
            rendered,
            `${struct} in map type ${type}, json ${json}`,
          );
        }
        // A tiny output buffer: every element flushes on its own.
        const small = bothWays(accessor, map, true, 4096);
        equal(small.planned, small.rendered);
        // A limit inside a batch: planned batches, then element by element.
        for (const json of [true, false]) {
          const limited = bothWays(accessor, map, json, undefined, 150);
          equal(limited.planned, limited.rendered);
          if (!json && count > 150) {
            ok(limited.planned.includes("more not shown)"), "limit applied");
          }
        }
      }
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "dump through plans equals the renderer's on every map of the kinds fixture",
  ignore: ignoreUnlessCommands("clang", "bpftool"),
  fn(): void {
    using fixture = loadFixture("kinds");
    const accessor = new BpfSyscallAccessor();
    let planned = 0;
    for (const [pin, info] of fixture.info) {
      if (info.btfValueTypeId === 0) continue;
      using fd = objGet(fixture.pins.get(pin)!);
      const map = accessor.mapById(info.id)!;
      if (map.type === MapType.HASH) {
        const next = prng(info.id);
        for (let i = 0; i < map.maxEntries; i++) {
          mapUpdateElem(
            fd.fd,
            randomBytes(next, map.keySize),
            randomBytes(next, map.valueSize),
          );
        }
      }
      for (const json of [true, false]) {
        const both = bothWays(accessor, map, json);
        if (both.hadPlans) planned++;
        equal(both.planned, both.rendered, `${pin}, json ${json}`);
      }
    }
    ok(planned >= 6, `${planned} dumps went through plans`);
  },
});
