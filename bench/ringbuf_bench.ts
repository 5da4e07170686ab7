/**
 * Reading a full ring buffer without consuming it: a 64 MiB RINGBUF filled
 * by the kernel itself (a raw tracepoint program reserving and submitting
 * records under BPF_PROG_TEST_RUN until the ring is full), then read with
 * two ways. The figure is record bytes (headers included, i.e. the
 * pending span) per second, median of the runs; the target is 1 GB/s.
 * - `reader`: a held `RingbufReader` (fd and mapping kept, one copy buffer
 *   reused), each read copying the span and walking every header: how a
 *   monitor that polls the ring reads it.
 * - `one-shot`: `readRingbufLive`, each read also opening the map, mapping
 *   the two position pages and then only the pages the pending span covers
 *   (64 MiB + 1 page for a full ring), copying into fresh memory (page
 *   faults) and unmapping.
 *
 * Then the common case for a dump: a 64 MiB ring holding a few records.
 * The one-shot read maps a few pages; the line shows its median time next
 * to what mapping the whole ring twice (as a held reader does) costs alone.
 *
 * Usage: `deno run -A bench/ringbuf_bench.ts` (root). `BENCH_RING_MIB`
 * sets the ring size (default 64), `BENCH_RECORD_SIZES` the record data
 * sizes (default `4088,1016,248,56`), `BENCH_RUNS` the reads per size (5).
 *
 * @module
 */
// deno-lint-ignore-file no-console

import {
  readRingbufLive,
  RingbufReader,
  type RingbufSnapshot,
} from "../src/accessor/maptypes/ringbuf.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { MapType } from "../src/sys/constants.ts";
import { MappedBpfMap } from "../src/sys/mmap.ts";
import { mapGetFdById, mapGetInfo, OpenFlag } from "../src/sys/bpf.ts";
import { progTestRun } from "../src/sys/prog.ts";
import { loadRingbufReserveProgram } from "../tests/_support/bpf_prog.ts";

const MIB = 1 << 20;
const ringBytes = Number(Deno.env.get("BENCH_RING_MIB") ?? 64) * MIB;
const sizes = (Deno.env.get("BENCH_RECORD_SIZES") ?? "4088,1016,248,56")
  .split(",").map(Number);
const runs = Number(Deno.env.get("BENCH_RUNS") ?? 5);

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Bytes per second of the median held-reader read; fails loudly if a read loses records. */
export function benchRecordSize(dataSize: number): number {
  using ring = BpfSyscallAccessor.createMap({
    type: MapType.RINGBUF,
    keySize: 0,
    valueSize: 0,
    maxEntries: ringBytes,
    name: "bench_ring",
  });
  using producer = loadRingbufReserveProgram(
    "bench_rb_fill",
    ring.fd,
    dataSize,
    "submit",
  );
  const ctx = new Uint8Array(8);
  const ctxView = new DataView(ctx.buffer);
  let produced = 0;
  const fillStart = performance.now();
  for (;;) {
    ctxView.setBigUint64(0, BigInt(produced), true);
    if (progTestRun(producer.fd, { ctx }).retval !== 0) break;
    produced++;
  }
  const fillMs = performance.now() - fillStart;
  const map = new BpfSyscallAccessor().mapById(mapGetInfo(ring.fd).id)!;
  using reader = RingbufReader.open(map);
  const time = (read: () => RingbufSnapshot): number[] => {
    const rates: number[] = [];
    for (let run = 0; run < runs; run++) {
      const start = performance.now();
      const snapshot = read();
      const seconds = (performance.now() - start) / 1000;
      check(snapshot);
      rates.push(Number(snapshot.pendingBytes) / seconds);
    }
    return rates;
  };
  let pending = 0n;
  const check = (snapshot: RingbufSnapshot): void => {
    if (snapshot.count !== produced || snapshot.problems.length) {
      throw new Error(
        `read ${snapshot.count} of ${produced} records: ${
          snapshot.problems.join("; ")
        }`,
      );
    }
    const last = snapshot.record(produced - 1).data;
    if (
      new DataView(last.buffer, last.byteOffset, 8).getBigUint64(0, true) !==
        BigInt(produced - 1)
    ) {
      throw new Error("the last record does not hold its sequence number");
    }
    pending = snapshot.pendingBytes;
  };
  const held = time(() => reader.read());
  const oneShot = time(() => readRingbufLive(map));
  const show = (rates: number[]): string =>
    `${(median(rates) / 1e9).toFixed(2)} GB/s (${
      rates.map((r) => (r / 1e9).toFixed(2)).join(", ")
    })`;
  console.log(
    `records of ${String(dataSize).padStart(4)} B: ${
      String(produced).padStart(8)
    } records, ${(Number(pending) / MIB).toFixed(1)} MiB pending (filled in ${
      fillMs.toFixed(0)
    } ms)\n  reader   ${show(held)}\n  one-shot ${show(oneShot)}`,
  );
  return median(held);
}

/**
 * Milliseconds (median) of a one-shot read of a `ringBytes` ring holding
 * `records` records, and of mapping the whole ring twice and unmapping it.
 */
export function benchNearlyEmpty(
  records: number,
): { oneShot: number; wholeMapping: number } {
  using ring = BpfSyscallAccessor.createMap({
    type: MapType.RINGBUF,
    keySize: 0,
    valueSize: 0,
    maxEntries: ringBytes,
    name: "bench_ring_few",
  });
  using producer = loadRingbufReserveProgram(
    "bench_rb_few",
    ring.fd,
    248,
    "submit",
  );
  for (let i = 0; i < records; i++) {
    progTestRun(producer.fd, { ctx: new Uint8Array(8) });
  }
  const map = new BpfSyscallAccessor().mapById(mapGetInfo(ring.fd).id)!;
  const oneShot: number[] = [];
  const whole: number[] = [];
  for (let run = 0; run < Math.max(runs, 9); run++) {
    let start = performance.now();
    const snapshot = readRingbufLive(map);
    oneShot.push(performance.now() - start);
    if (snapshot.count !== records) {
      throw new Error(`read ${snapshot.count} of ${records} records`);
    }
    start = performance.now();
    {
      using fd = mapGetFdById(map.id, OpenFlag.READ_WRITE);
      using mapping = MappedBpfMap.map(fd.fd, 2 * ringBytes + 2 * 4096);
      mapping.bytes[0];
    }
    whole.push(performance.now() - start);
  }
  return { oneShot: median(oneShot), wholeMapping: median(whole) };
}

if (import.meta.main) {
  console.log(
    `ringbuf read without consuming, ${
      ringBytes / MIB
    } MiB ring, target >= 1 GB/s`,
  );
  for (const size of sizes) benchRecordSize(size);
  const few = benchNearlyEmpty(16);
  console.log(
    `16 records in a ${ringBytes / MIB} MiB ring: one-shot ${
      few.oneShot.toFixed(2)
    } ms; mapping the whole ring twice alone ${
      few.wholeMapping.toFixed(2)
    } ms (${(few.wholeMapping / few.oneShot).toFixed(0)}x)`,
  );
}
