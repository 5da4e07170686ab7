/**
 * Starts 1,000 walks of each kind, takes one step of each and keeps every
 * iterator referenced (so no collector can tidy up after them), then prints
 * the open-fd count before and after as JSON, whether one more call still
 * works, and a control count with one fd deliberately held. Spawned by
 * `syscall_hardening_test.ts` under `ulimit -n 1024`.
 *
 * @module
 */

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import {
  btfLoad,
  mapGetInfo,
  mapUpdateElem,
  pidfdOpen,
} from "../../src/sys/bpf.ts";
import { MapFlag, MapType } from "../../src/sys/constants.ts";
import { intBtfBlob, openFdCount, u32, u64, uniqueName } from "./maps.ts";

const limit = Number(
  new TextDecoder().decode(
    new Deno.Command("sh", { args: ["-c", "ulimit -n"] }).outputSync().stdout,
  ).trim(),
);
const accessor = new BpfSyscallAccessor();
using hashFd = BpfSyscallAccessor.createMap({
  type: MapType.HASH,
  keySize: 4,
  valueSize: 8,
  maxEntries: 64,
  name: uniqueName("ab_hash"),
});
using percpuFd = BpfSyscallAccessor.createMap({
  type: MapType.PERCPU_HASH,
  keySize: 4,
  valueSize: 8,
  maxEntries: 64,
  name: uniqueName("ab_pcpu"),
});
using devFd = BpfSyscallAccessor.createMap({
  type: MapType.PERF_EVENT_ARRAY,
  keySize: 4,
  valueSize: 4,
  maxEntries: 64,
  name: uniqueName("ab_perf"),
});
using btf = btfLoad(intBtfBlob());
using taskFd = BpfSyscallAccessor.createMap({
  type: MapType.TASK_STORAGE,
  keySize: 4,
  valueSize: 8,
  maxEntries: 0,
  flags: MapFlag.NO_PREALLOC,
  name: uniqueName("ab_task"),
  btfFd: btf.fd,
  btfKeyTypeId: 1,
  btfValueTypeId: 2,
});
const cpus = accessor.possibleCpus;
for (let i = 0; i < 64; i++) {
  mapUpdateElem(hashFd.fd, u32(i), u64(BigInt(i)));
  mapUpdateElem(percpuFd.fd, u32(i), new Uint8Array(8 * cpus));
}
{
  using self = pidfdOpen(Deno.pid);
  mapUpdateElem(taskFd.fd, u32(self.fd), u64(1n));
}
const info = (fd: { fd: number }) => accessor.mapById(mapGetInfo(fd.fd).id)!;
const hash = info(hashFd);
const percpu = info(percpuFd);
const perf = info(devFd);
const task = info(taskFd);

const starts: (() => Iterator<unknown>)[] = [
  () => accessor.iterHashMap(hash),
  () => accessor.iterBatches(hash, { batchSize: 4 }),
  () => accessor.iterEntryBatches(percpu, { batchSize: 4 })[Symbol.iterator](),
  () => accessor.iterPercpuHashMap(percpu),
  () => accessor.iterBatches(perf, { batchSize: 4 }),
  () => accessor.iterBatches(hash, { mode: "next-key", batchSize: 4 }),
  () => accessor.iterTaskStorage(task)[Symbol.iterator](),
];

const before = openFdCount();
const kept: Iterator<unknown>[] = [];
for (let i = 0; i < 1000; i++) {
  for (const start of starts) {
    const iterator = start();
    const step = iterator.next();
    if (step.done) throw new Error("every walk has something to yield");
    kept.push(iterator);
  }
}
const after = openFdCount();
let nextCallWorked = false;
using another = BpfSyscallAccessor.createMap({
  type: MapType.ARRAY,
  keySize: 4,
  valueSize: 4,
  maxEntries: 1,
});
nextCallWorked = [...accessor.iterHashMap(hash)].length === 64;
const held = accessor.open(hash);
const withHeldFd = openFdCount() - 1; // the `another` map's fd
held.close();
console.log(JSON.stringify({
  limit,
  kinds: starts.length,
  dropped: kept.length,
  before,
  after,
  nextCallWorked: nextCallWorked && another.fd > 0,
  withHeldFd,
}));
