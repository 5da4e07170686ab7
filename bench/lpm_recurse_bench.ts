/**
 * Two targets of issue 13, measured in one run with their ratios:
 *
 * 1. `bpfmap dump` of an LPM trie of 1,000,000 prefixes against
 *    `bpftool map dump` of the same map (text and JSON, stdout to
 *    /dev/null, Deno start-up included); target: at least 2x faster.
 * 2. `bpfmap dump --recurse --json` of an ARRAY_OF_MAPS holding 1,000 inner
 *    maps (each an 8-entry array); target: under 1 s.
 *
 * Needs root and bpftool. BENCH_LPM (default 1,000,000) sizes the trie,
 * BENCH_RUNS (default 3) runs per command, the median reported.
 *
 * @module
 */

// deno-lint-ignore-file no-console
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo, mapUpdateBatch, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";

const PREFIXES = Number(Deno.env.get("BENCH_LPM") ?? 1_000_000);
const RUNS = Number(Deno.env.get("BENCH_RUNS") ?? 3);
const cli = new URL("../cli.ts", import.meta.url).pathname;
const deno = Deno.execPath();

function seconds(command: string[]): number {
  const times: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const started = performance.now();
    const result = new Deno.Command(command[0]!, {
      args: command.slice(1),
      stdout: "null",
      stderr: "piped",
    }).outputSync();
    const elapsed = (performance.now() - started) / 1000;
    if (!result.success) {
      throw new Error(
        `${command.join(" ")} failed: ${
          new TextDecoder().decode(result.stderr)
        }`,
      );
    }
    times.push(elapsed);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

function u32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, value, true);
  return out;
}

// 1. The trie: /24 prefixes spread over the IPv4 space, plus one /16 above
// every 256 of them so the trie also has entries on inner nodes.
using trie = BpfSyscallAccessor.createMap({
  type: MapType.LPM_TRIE,
  keySize: 8,
  valueSize: 8,
  maxEntries: PREFIXES + (PREFIXES >> 8) + 1,
  flags: MapFlag.NO_PREALLOC,
  name: "bench_lpm",
});
{
  const started = performance.now();
  const chunk = 65_536;
  let filled = 0;
  const keys = new Uint8Array(chunk * 8);
  const values = new Uint8Array(chunk * 8);
  const kv = new DataView(keys.buffer);
  const vv = new DataView(values.buffer);
  const put = (count: number): void => {
    try {
      mapUpdateBatch(
        trie.fd,
        keys.subarray(0, count * 8),
        values.subarray(0, count * 8),
        count,
      );
    } catch {
      // kernels without LPM batch updates: one element at a time
      for (let i = 0; i < count; i++) {
        mapUpdateElem(
          trie.fd,
          keys.subarray(i * 8, i * 8 + 8),
          values.subarray(i * 8, i * 8 + 8),
        );
      }
    }
  };
  for (let first = 0; first < PREFIXES; first += chunk) {
    const count = Math.min(chunk, PREFIXES - first);
    for (let i = 0; i < count; i++) {
      const n = first + i;
      kv.setUint32(i * 8, 24, true);
      // big-endian address bytes: the trie compares bits from the first byte
      kv.setUint32(i * 8 + 4, (n * 2654435761) >>> 0 & 0xffffff00, false);
      vv.setBigUint64(i * 8, BigInt(n), true);
    }
    put(count);
    filled += count;
  }
  for (let n = 0; n < PREFIXES >> 8; n++) {
    kv.setUint32(0, 16, true);
    kv.setUint32(4, (n << 16) >>> 0, false);
    vv.setBigUint64(0, BigInt(n), true);
    mapUpdateElem(trie.fd, keys.subarray(0, 8), values.subarray(0, 8));
  }
  console.log(
    `LPM trie: ${filled} /24 prefixes (+${PREFIXES >> 8} /16) in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s`,
  );
}
const trieId = String(mapGetInfo(trie.fd).id);
{
  // a fast dump that left entries out would be no result: count both sides once
  const count = (command: string[]): number => {
    const out = new Deno.Command(command[0]!, {
      args: command.slice(1),
      stdout: "piped",
    }).outputSync();
    return (new TextDecoder().decode(out.stdout).match(/"key"/g) ?? []).length;
  };
  const ours = count([
    deno,
    "run",
    "--allow-all",
    cli,
    "dump",
    "--id",
    trieId,
    "--json",
  ]);
  const theirs = count(["bpftool", "-j", "map", "dump", "id", trieId]);
  if (ours !== theirs || ours === 0) {
    throw new Error(`bpfmap listed ${ours} entries, bpftool ${theirs}`);
  }
  console.log(`both list ${ours} entries`);
}
const rows: [string, number, number][] = [];
for (const json of [false, true]) {
  const ours = seconds([
    deno,
    "run",
    "--allow-all",
    cli,
    "dump",
    "--id",
    trieId,
    ...(json ? ["--json"] : ["--hex"]),
  ]);
  const theirs = seconds([
    "bpftool",
    ...(json ? ["-j"] : []),
    "map",
    "dump",
    "id",
    trieId,
  ]);
  rows.push([json ? "JSON" : "text", ours, theirs]);
}
for (const [format, ours, theirs] of rows) {
  console.log(
    `LPM ${PREFIXES} prefixes, ${format}: bpfmap ${
      ours.toFixed(2)
    } s, bpftool ${theirs.toFixed(2)} s: ${
      (theirs / ours).toFixed(2)
    }x (target >= 2x)`,
  );
}

// 2. 1,000 inner maps behind one ARRAY_OF_MAPS.
const inners = [];
for (let i = 0; i < 1000; i++) {
  const inner = BpfSyscallAccessor.createMap({
    type: MapType.ARRAY,
    keySize: 4,
    valueSize: 8,
    maxEntries: 8,
    name: `bench_in${i}`,
  });
  mapUpdateElem(inner.fd, u32(3), new Uint8Array(8).fill(i & 0xff));
  inners.push(inner);
}
using outer = BpfSyscallAccessor.createMap({
  type: MapType.ARRAY_OF_MAPS,
  keySize: 4,
  valueSize: 4,
  maxEntries: 1000,
  name: "bench_outer",
  innerMapFd: inners[0]!.fd,
});
inners.forEach((inner, i) => mapUpdateElem(outer.fd, u32(i), u32(inner.fd)));
const outerId = String(mapGetInfo(outer.fd).id);
const recurse = seconds([
  deno,
  "run",
  "--allow-all",
  cli,
  "dump",
  "--id",
  outerId,
  "--recurse",
  "--json",
]);
console.log(
  `--recurse over 1,000 inner maps: ${
    recurse.toFixed(2)
  } s (target < 1 s, Deno start-up included)`,
);
for (const inner of inners) inner.close();
