/**
 * Walking a large hash map from a frozen guest's RAM, next to the live bpf()
 * path, in one run:
 *
 * 1. boots the 6.12 test guest, whose agent fills an N-entry HASH (8-byte
 *    keys and values) and times its own live walk (BpfSyscallAccessor,
 *    LOOKUP_BATCH) inside the guest (TCG, so slow);
 * 2. freezes the guest and times GuestMemMapAccessor walking the same map
 *    from the RAM file on the host (checking count and value sum);
 * 3. fills an N-entry HASH on the host kernel and times the live path there.
 *
 * Usage: `deno run -A bench/guest_hash_bench.ts` (root; after
 * `sh tools/vm/setup.sh`). `BENCH_ENTRIES` sets N (default 1,000,000).
 *
 * @module
 */
// deno-lint-ignore-file no-console

import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapCreate, mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { agentLine } from "../tests/vm/compare.ts";
import { bootUntil, ROOT } from "../tests/vm/harness.ts";

function walkSum(
  entries: Iterable<{ value: Uint8Array }>,
): { count: number; sum: bigint } {
  let count = 0;
  let sum = 0n;
  for (const e of entries) {
    count++;
    sum += new DataView(e.value.buffer, e.value.byteOffset, 8).getBigUint64(
      0,
      true,
    );
  }
  return { count, sum };
}

function time<T>(fn: () => T): { ms: number; result: T } {
  const started = performance.now();
  const result = fn();
  return { ms: performance.now() - started, result };
}

/** Runs the benchmark and prints one line per path. */
export async function main(entries: number): Promise<void> {
  const expectedSum = BigInt(entries) * BigInt(entries - 1) / 2n;
  const boot = performance.now();
  await using guest = await bootUntil(
    {
      kernel: "k612",
      agent: `${ROOT}/tests/vm/guest_agent.ts`,
      agentArgs: [`bench=${entries}`],
    },
    /BPFMAP-AGENT-(READY|ERROR)/,
    30 * 60_000,
  );
  const fill = performance.now() - boot;
  const inGuest = agentLine(guest.console(), "BENCH") as {
    id: number;
    entries: number;
    sum: string;
    liveMs: number;
  };
  await guest.qmp.stop();

  const open = time(() => GuestMemMapAccessor.openRamFile(guest.ramPath));
  using memory = open.result;
  const map = memory.maps().find((m) => m.id === inGuest.id)!;
  const cold = time(() => walkSum(memory.iterHashMap(map)));
  const warm = time(() => walkSum(memory.iterHashMap(map)));
  for (const r of [cold.result, warm.result]) {
    if (
      r.count !== entries || r.sum !== expectedSum ||
      String(r.sum) !== inGuest.sum
    ) {
      throw new Error(
        `guest-memory walk saw ${r.count} entries, sum ${r.sum}; expected ${entries}, ${expectedSum}`,
      );
    }
  }

  // the live path on the host kernel, same shape
  using fd = mapCreate({
    type: MapType.HASH,
    keySize: 8,
    valueSize: 8,
    maxEntries: entries,
    name: "bench_hash",
  });
  const key = new Uint8Array(8);
  const value = new Uint8Array(8);
  for (let i = 0; i < entries; i++) {
    new DataView(key.buffer).setBigUint64(
      0,
      BigInt(i) * 0x9e3779b97f4a7c15n & 0xffffffffffffffffn,
      true,
    );
    new DataView(value.buffer).setBigUint64(0, BigInt(i), true);
    mapUpdateElem(fd.fd, key, value);
  }
  const live = new BpfSyscallAccessor();
  const hostMap = live.mapById(mapGetInfo(fd.fd).id)!;
  const hostLive = time(() => walkSum(live.iterHashMap(hostMap)));
  if (
    hostLive.result.count !== entries || hostLive.result.sum !== expectedSum
  ) {
    throw new Error(`host live walk saw ${hostLive.result.count} entries`);
  }

  const rate = (ms: number): string =>
    `${(ms * 1e6 / entries).toFixed(0)} ns/entry`;
  console.log(
    `hash walk, ${entries} entries (8-byte keys and values), guest ${memory.release}`,
  );
  console.log(
    `  guest boot + fill (TCG)               ${(fill / 1000).toFixed(1)} s`,
  );
  console.log(
    `  locate kernel in RAM (VMCOREINFO, kallsyms, BTF)  ${
      open.ms.toFixed(0)
    } ms`,
  );
  console.log(
    `  guest memory walk, first              ${cold.ms.toFixed(0)} ms  (${
      rate(cold.ms)
    })`,
  );
  console.log(
    `  guest memory walk, again              ${warm.ms.toFixed(0)} ms  (${
      rate(warm.ms)
    })`,
  );
  console.log(
    `  live bpf() walk inside the guest (TCG) ${
      inGuest.liveMs.toFixed(0)
    } ms  (${rate(inGuest.liveMs)})`,
  );
  console.log(
    `  live bpf() walk on the host kernel    ${hostLive.ms.toFixed(0)} ms  (${
      rate(hostLive.ms)
    })`,
  );
}

if (import.meta.main) {
  await main(Number(Deno.env.get("BENCH_ENTRIES") ?? 1_000_000));
}
