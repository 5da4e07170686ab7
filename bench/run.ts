/**
 * `deno task bench`: bpfmap against bpftool and a C LOOKUP_BATCH baseline,
 * measured side by side in one run on this machine.
 *
 * Prints wall time and peak RSS of each command (Deno start-up included for
 * bpfmap), and the ratios the performance targets are stated in. Sizes:
 * BENCH_ENTRIES (default 1,000,000) for the hash and array maps, a tenth of
 * it for the per-CPU hash and the RSS comparison point; BENCH_RUNS (default
 * 3) runs per command, the median reported. Needs root, bpftool, clang (or
 * cc) and python3 (for the children's peak RSS).
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { type Btf, btfFromElf, elfSection } from "../src/btf/mod.ts";
import { parseJsonExact, toJson } from "../src/btf/json.ts";
import { renderValue } from "../src/btf/render.ts";
import { btfLoad, mapGetInfo, mapUpdateBatch } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { possibleCpuCount } from "../src/sys/cpus.ts";
import type { OwnedFd } from "../src/sys/fd.ts";

const ENTRIES = Number(Deno.env.get("BENCH_ENTRIES") ?? 1_000_000);
const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 3);
const root = new URL("..", import.meta.url).pathname;
const cli = `${root}cli.ts`;
const deno = Deno.execPath();

interface Measurement {
  seconds: number;
  maxRssKiB: number;
}

// stdout goes to /dev/null opened write-only: bpfmap takes a read-write
// /dev/null (subprocess.DEVNULL) for a closed stdout, which Deno's runtime
// reopens that way.
const MEASURE = `
import os, resource, subprocess, sys, time
start = time.perf_counter()
with open(os.devnull, "wb") as sink:
    code = subprocess.run(sys.argv[1:], stdout=sink).returncode
elapsed = time.perf_counter() - start
print(elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, code)
`;

function measureOnce(command: string[]): Measurement {
  const result = new Deno.Command("python3", {
    args: ["-c", MEASURE, ...command],
    stdout: "piped",
    stderr: "inherit",
  }).outputSync();
  const [seconds, rss, code] = new TextDecoder().decode(result.stdout).trim()
    .split(" ");
  if (code !== "0") throw new Error(`${command.join(" ")} exited ${code}`);
  return { seconds: Number(seconds), maxRssKiB: Number(rss) };
}

function measure(command: string[]): Measurement {
  return summarize(Array.from({ length: RUNS }, () => measureOnce(command)));
}

/**
 * Runs the commands in turn, RUNS rounds: on a shared machine the load
 * drifts, and a ratio means something only when both sides saw the same.
 */
function measureTogether(...commands: string[][]): Measurement[] {
  const runs: Measurement[][] = commands.map(() => []);
  for (let run = 0; run < RUNS; run++) {
    commands.forEach((command, i) => runs[i]!.push(measureOnce(command)));
  }
  return runs.map(summarize);
}

function summarize(runs: Measurement[]): Measurement {
  runs.sort((a, b) => a.seconds - b.seconds);
  const median = runs[Math.floor(runs.length / 2)]!;
  return {
    seconds: median.seconds,
    maxRssKiB: Math.max(...runs.map((r) => r.maxRssKiB)),
  };
}

function fill(
  fd: OwnedFd,
  count: number,
  keySize: number,
  valueStride: number,
): void {
  const chunk = 65536;
  const keys = new Uint8Array(chunk * keySize);
  const values = new Uint8Array(chunk * valueStride);
  const keyView = new DataView(keys.buffer);
  const valueView = new DataView(values.buffer);
  for (let base = 0; base < count; base += chunk) {
    const n = Math.min(chunk, count - base);
    for (let i = 0; i < n; i++) {
      keyView.setUint32(i * keySize, base + i, true);
      for (let off = 0; off + 8 <= valueStride; off += 8) {
        valueView.setBigUint64(
          i * valueStride + off,
          BigInt(base + i) * 2654435761n,
          true,
        );
      }
    }
    mapUpdateBatch(
      fd.fd,
      keys.subarray(0, n * keySize),
      values.subarray(0, n * valueStride),
      n,
    );
  }
}

function createFilled(
  type: number,
  count: number,
  name: string,
): { fd: OwnedFd; id: number } {
  const fd = BpfSyscallAccessor.createMap({
    type,
    keySize: 4,
    valueSize: 8,
    maxEntries: count,
    name,
  });
  const stride = type === MapType.PERCPU_HASH ? 8 * possibleCpuCount() : 8;
  fill(fd, count, 4, stride);
  return { fd, id: mapGetInfo(fd.fd).id };
}

function buildBaseline(): string {
  const output = `${
    Deno.makeTempDirSync({ prefix: "bpfmap-bench-" })
  }/batch_baseline`;
  for (const compiler of ["clang", "cc"]) {
    try {
      const result = new Deno.Command(compiler, {
        args: ["-O2", "-o", output, `${root}bench/batch_baseline.c`],
      }).outputSync();
      if (result.success) return output;
    } catch {
      // try the next compiler
    }
  }
  throw new Error("Cannot build bench/batch_baseline.c: install clang or gcc");
}

function bpfmapDump(id: number, json = true): string[] {
  return [
    deno,
    "run",
    "--allow-all",
    "--no-lock",
    cli,
    "dump",
    "--id",
    String(id),
    ...(json ? ["--json"] : []),
  ];
}

function bpftoolDump(id: number, json = true): string[] {
  return ["bpftool", "map", "dump", "id", String(id), ...(json ? ["-j"] : [])];
}

/**
 * The typed maps' BTF: fixtures/bpf/typed_bench.bpf.c compiled now, its
 * .BTF loaded into the kernel as the maps' BTF object.
 */
function typedBtf(): { btf: Btf; fd: OwnedFd } {
  const dir = Deno.makeTempDirSync({ prefix: "bpfmap-bench-btf-" });
  const object = `${dir}/typed_bench.o`;
  const arch = Deno.build.arch === "aarch64" ? "aarch64" : "x86_64";
  let built = false;
  for (const compiler of ["clang-16", "clang"]) {
    try {
      built = new Deno.Command(compiler, {
        args: [
          "-O2",
          "-g",
          "-target",
          "bpf",
          "-I/usr/include",
          `-I/usr/include/${arch}-linux-gnu`,
          "-c",
          `${root}fixtures/bpf/typed_bench.bpf.c`,
          "-o",
          object,
        ],
      }).outputSync().success;
    } catch {
      // try the next compiler
    }
    if (built) break;
  }
  if (!built) throw new Error("Cannot compile fixtures/bpf/typed_bench.bpf.c");
  const elf = Deno.readFileSync(object);
  Deno.removeSync(dir, { recursive: true });
  return { btf: btfFromElf(elf), fd: btfLoad(elfSection(elf, ".BTF")!) };
}

/** Plausible contents: small counters, names, a few enum states, fractions. */
function typedValue(
  btf: Btf,
  struct: string,
): (view: DataView, at: number, i: number) => void {
  const id = btf.findByName(struct)!.id;
  const off = (path: string): number => btf.memberOffset(id, path).offset;
  if (struct === "bench_record") {
    const [bytes, pid, delta, level, comm, hist, total] = [
      "bytes",
      "pid",
      "delta",
      "level",
      "comm",
      "hist",
      "total",
    ].map(off) as number[];
    const names = ["nginx", "sshd", "curl", "postgres", "kworker"];
    const encoded = names.map((n) => new TextEncoder().encode(n));
    return (view, at, i) => {
      view.setBigUint64(at + bytes!, BigInt(i) * 1_048_573n, true);
      view.setUint32(at + pid!, 1000 + (i % 40000), true);
      view.setInt16(at + delta!, (i % 2001) - 1000, true);
      // level (3 bits) and trend (5 bits, signed) share the byte at `level`.
      view.setUint8(at + level!, (i * 37) & 0xff);
      const name = encoded[i % encoded.length]!;
      for (let c = 0; c < 8; c++) {
        view.setUint8(at + comm! + c, name[c] ?? 0);
      }
      view.setBigUint64(at + hist!, BigInt(i % 977), true);
      view.setBigUint64(at + hist! + 8, BigInt(i % 131), true);
      view.setBigUint64(at + total!, BigInt(i) * 2654435761n, true);
    };
  }
  const [x, y, state, on, ratio, mean, count] = [
    "at.x",
    "at.y",
    "state",
    "on",
    "ratio",
    "mean",
    "count",
  ].map(off) as number[];
  return (view, at, i) => {
    view.setUint32(at + x!, i, true);
    view.setInt32(at + y!, -(i % 5000), true);
    view.setUint32(at + state!, i % 3, true);
    view.setUint8(at + on!, i & 1);
    view.setFloat32(at + ratio!, (i % 1000) / 8, true);
    view.setFloat64(at + mean!, i / 3, true);
    view.setBigUint64(at + count!, BigInt(i) * 7n, true);
  };
}

function createTyped(
  typed: { btf: Btf; fd: OwnedFd },
  struct: string,
  count: number,
  name: string,
): { fd: OwnedFd; id: number; keyType: number; valueType: number } {
  const { btf } = typed;
  const valueType = btf.findByName(struct)!.id;
  const valueSize = btf.sizeOf(valueType);
  const fd = BpfSyscallAccessor.createMap({
    type: MapType.HASH,
    keySize: 4,
    valueSize,
    maxEntries: count,
    name,
    btfFd: typed.fd.fd,
    btfKeyTypeId: btf.findByName("__u32")!.id,
    btfValueTypeId: valueType,
  });
  const write = typedValue(btf, struct);
  const chunk = 65536;
  const keys = new Uint8Array(chunk * 4);
  const values = new Uint8Array(chunk * valueSize);
  const keyView = new DataView(keys.buffer);
  const valueView = new DataView(values.buffer);
  for (let base = 0; base < count; base += chunk) {
    const n = Math.min(chunk, count - base);
    values.fill(0);
    for (let i = 0; i < n; i++) {
      keyView.setUint32(i * 4, base + i, true);
      write(valueView, i * valueSize, base + i);
    }
    mapUpdateBatch(
      fd.fd,
      keys.subarray(0, n * 4),
      values.subarray(0, n * valueSize),
      n,
    );
  }
  return {
    fd,
    id: mapGetInfo(fd.fd).id,
    keyType: btf.findByName("__u32")!.id,
    valueType,
  };
}

/**
 * The typed dump is valid JSON, complete, and its "formatted" values equal
 * the general renderer's for the same bytes.
 */
function checkTypedDump(
  btf: Btf,
  map: { id: number; keyType: number; valueType: number },
  count: number,
): void {
  const id = map.id;
  const result = new Deno.Command(deno, {
    args: bpfmapDump(id).slice(1),
    stdout: "piped",
  }).outputSync();
  if (!result.success) throw new Error(`bpfmap dump --id ${id} failed`);
  const elements = parseJsonExact(new TextDecoder().decode(result.stdout)) as {
    key: string[];
    value: string[];
    formatted: { key: unknown; value: unknown };
  }[];
  if (elements.length !== count) {
    throw new Error(`typed dump has ${elements.length} elements, not ${count}`);
  }
  const bytes = (hex: string[]): Uint8Array =>
    Uint8Array.from(hex, (h) => parseInt(h, 16));
  const same = (a: unknown, b: unknown): boolean =>
    JSON.stringify(a, (_k, v) => typeof v === "bigint" ? `${v}n` : v) ===
      JSON.stringify(b, (_k, v) => typeof v === "bigint" ? `${v}n` : v);
  for (const element of elements) {
    const key = parseJsonExact(
      toJson(renderValue(btf, map.keyType, bytes(element.key))),
    );
    const value = parseJsonExact(
      toJson(renderValue(btf, map.valueType, bytes(element.value))),
    );
    if (
      !same(key, element.formatted.key) || !same(value, element.formatted.value)
    ) {
      throw new Error(
        `typed dump of map ${id} differs from the renderer at key ${element.key}`,
      );
    }
  }
}

function row(label: string, m: Measurement): void {
  console.log(
    `  ${label.padEnd(44)} ${m.seconds.toFixed(3).padStart(8)} s  ${
      (m.maxRssKiB / 1024).toFixed(1).padStart(7)
    } MiB`,
  );
}

// The targets are stated for 1M entries; at small sizes Deno's start-up
// dominates and a verdict would mean nothing.
const JUDGED = ENTRIES >= 1_000_000;

function verdict(ok: boolean): string {
  if (!JUDGED) return "not judged below 1M entries";
  return ok ? "meets target" : "MISSES target";
}

const cpus = possibleCpuCount();
console.log(
  `bpfmap bench: ${ENTRIES} entries, ${RUNS} runs each (median), ${cpus} possible CPUs, kernel ${Deno.osRelease()}`,
);
console.log(
  `  ${"command".padEnd(44)} ${"time".padStart(10)}  ${
    "peak RSS".padStart(11)
  }`,
);

const small = Math.max(1, Math.floor(ENTRIES / 10));
const hash = createFilled(MapType.HASH, ENTRIES, "bench_hash");
const hashSmall = createFilled(MapType.HASH, small, "bench_hash_s");
const percpu = createFilled(MapType.PERCPU_HASH, small, "bench_pcpu");
const array = createFilled(MapType.ARRAY, ENTRIES, "bench_array");
const typed = typedBtf();
const typedMaps = [
  { struct: "bench_record", label: "typed HASH u32->record" },
  { struct: "bench_rich", label: "typed HASH u32->rich" },
].map(({ struct, label }) => ({
  label,
  large: createTyped(typed, struct, ENTRIES, `b_${struct.slice(6, 10)}`),
  small: createTyped(typed, struct, small, `b_${struct.slice(6, 10)}_s`),
}));
try {
  for (const map of typedMaps) checkTypedDump(typed.btf, map.small, small);
  // The raw dump, bpftool, the C loop and the library walk in turn.
  const baseline = buildBaseline();
  const cTimes: number[] = [];
  const libTimes: number[] = [];
  const accessor = new BpfSyscallAccessor();
  const info = accessor.mapById(hash.id)!;
  const oursRuns: Measurement[] = [];
  const theirsRuns: Measurement[] = [];
  for (let run = 0; run < RUNS; run++) {
    oursRuns.push(measureOnce(bpfmapDump(hash.id)));
    const result = new Deno.Command(baseline, { args: [String(hash.id), "8"] })
      .outputSync();
    const [count, seconds] = new TextDecoder().decode(result.stdout).trim()
      .split(" ");
    if (Number(count) !== ENTRIES) {
      throw new Error(`C baseline saw ${count} entries, expected ${ENTRIES}`);
    }
    cTimes.push(Number(seconds));
    const start = performance.now();
    let walked = 0;
    for (const _entry of accessor.iterHashMap(info)) walked++;
    libTimes.push((performance.now() - start) / 1000);
    if (walked !== ENTRIES) {
      throw new Error(`iterHashMap saw ${walked} entries, expected ${ENTRIES}`);
    }
    theirsRuns.push(measureOnce(bpftoolDump(hash.id)));
  }
  const ours = summarize(oursRuns);
  const theirs = summarize(theirsRuns);
  row(`bpfmap dump --json, HASH ${ENTRIES}`, ours);
  row(`bpftool map dump -j, HASH ${ENTRIES}`, theirs);
  const oursSmall = measure(bpfmapDump(hashSmall.id));
  row(`bpfmap dump --json, HASH ${small}`, oursSmall);
  const [pOurs, pTheirs] = measureTogether(
    bpfmapDump(percpu.id),
    bpftoolDump(percpu.id),
  ) as [Measurement, Measurement];
  row(`bpfmap dump --json, PERCPU_HASH ${small}`, pOurs);
  row(`bpftool map dump -j, PERCPU_HASH ${small}`, pTheirs);
  const [aOurs, aTheirs] = measureTogether(
    bpfmapDump(array.id),
    bpftoolDump(array.id),
  ) as [Measurement, Measurement];
  row(`bpfmap dump --json, ARRAY ${ENTRIES}`, aOurs);
  row(`bpftool map dump -j, ARRAY ${ENTRIES}`, aTheirs);
  interface TypedRow {
    what: string;
    speedup: number;
    rss: number;
  }
  const typedRows: TypedRow[] = [];
  for (const map of typedMaps) {
    for (const json of [true, false]) {
      const how = json ? "dump --json" : "dump (text)";
      const tool = json ? "map dump -j" : "map dump";
      const [tOurs, tTheirs, tSmall] = measureTogether(
        bpfmapDump(map.large.id, json),
        bpftoolDump(map.large.id, json),
        bpfmapDump(map.small.id, json),
      ) as [Measurement, Measurement, Measurement];
      row(`bpfmap ${how}, ${map.label} ${ENTRIES}`, tOurs);
      row(`bpftool ${tool}, ${map.label} ${ENTRIES}`, tTheirs);
      row(`bpfmap ${how}, ${map.label} ${small}`, tSmall);
      typedRows.push({
        what: `${how} ${map.label}`,
        speedup: tTheirs.seconds / tOurs.seconds,
        rss: tOurs.maxRssKiB / tSmall.maxRssKiB,
      });
    }
  }

  // Library iteration against the C floor, both in-process timings.
  const median = (xs: number[]): number =>
    [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const cSeconds = median(cTimes);
  const libSeconds = median(libTimes);
  console.log(
    `  ${"C LOOKUP_BATCH loop (in-process)".padEnd(44)} ${
      cSeconds.toFixed(3).padStart(8)
    } s`,
  );
  console.log(
    `  ${"BpfSyscallAccessor.iterHashMap (in-process)".padEnd(44)} ${
      libSeconds.toFixed(3).padStart(8)
    } s`,
  );

  const speedup = theirs.seconds / ours.seconds;
  const pSpeedup = pTheirs.seconds / pOurs.seconds;
  const aSpeedup = aTheirs.seconds / aOurs.seconds;
  const libRatio = libSeconds / cSeconds;
  const rssRatio = ours.maxRssKiB / oursSmall.maxRssKiB;
  const wallRatio = ours.seconds / cSeconds;
  console.log("ratios:");
  console.log(
    `  dump HASH vs bpftool:         ${
      speedup.toFixed(2)
    }x faster (target >= 4x): ${verdict(speedup >= 4)}`,
  );
  console.log(
    `  dump PERCPU_HASH vs bpftool:  ${
      pSpeedup.toFixed(2)
    }x faster (target >= 3x): ${verdict(pSpeedup >= 3)}`,
  );
  console.log(
    `  dump ARRAY vs bpftool:        ${
      aSpeedup.toFixed(2)
    }x faster (target >= 3x): ${verdict(aSpeedup >= 3)}`,
  );
  console.log(
    `  iterHashMap vs C batch:       ${
      libRatio.toFixed(2)
    }x the C time (target <= 2x): ${verdict(libRatio <= 2)}`,
  );
  console.log(
    `  dump HASH (process) vs C batch: ${
      wallRatio.toFixed(2)
    }x the C time, Deno start-up included (target <= 1.3x): ${
      verdict(wallRatio <= 1.3)
    }`,
  );
  console.log(
    `  peak RSS ${ENTRIES} vs ${small}:  ${
      rssRatio.toFixed(2)
    }x (target <= 1.3x): ${verdict(rssRatio <= 1.3)}`,
  );
  for (const t of typedRows) {
    console.log(
      `  ${t.what} vs bpftool: ${
        t.speedup.toFixed(2)
      }x faster (target >= 5x): ${
        verdict(t.speedup >= 5)
      }; peak RSS ${ENTRIES} vs ${small}: ${
        t.rss.toFixed(2)
      }x (target <= 1.3x): ${verdict(t.rss <= 1.3)}`,
    );
  }
} finally {
  for (const map of [hash, hashSmall, percpu, array]) map.fd.close();
  for (const map of typedMaps) {
    map.large.fd.close();
    map.small.fd.close();
  }
  typed.fd.close();
}
