/**
 * Regression tests for the live backend's failure modes on real maps: walks
 * over maps whose elements cannot be read, caller records and buffers that
 * lie about sizes, walks under churn, unbounded requests, dropped iterators
 * and the messages errnos print as.
 */

import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import type { EntryBatch } from "../src/accessor/types.ts";
import { mapLookupElem, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import { possibleCpuCount } from "../src/sys/cpus.ts";
import { BpfError } from "../src/sys/errors.ts";
import {
  MapArgumentError,
  MapChangedError,
  MapGoneError,
} from "../src/errors.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";
import {
  ensureBpffs,
  infoOf,
  readU32,
  u32,
  u64,
  uniqueName,
} from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();
const accessor = new BpfSyscallAccessor();

function entriesOf(
  batches: Iterable<EntryBatch>,
): { key: number; value: Uint8Array; error: string | null }[] {
  const out: { key: number; value: Uint8Array; error: string | null }[] = [];
  for (const batch of batches) {
    for (let i = 0; i < batch.count; i++) {
      out.push({
        key: readU32(batch.keys, i * batch.keySize),
        value: batch.values.slice(
          i * batch.valueStride,
          (i + 1) * batch.valueStride,
        ),
        error: batch.errors?.[i] ?? null,
      });
    }
  }
  return out;
}

for (
  const [type, label] of [
    [MapType.PERF_EVENT_ARRAY, "perf_event_array"],
    [MapType.CGROUP_ARRAY, "cgroup_array"],
  ] as const
) {
  Deno.test({
    name:
      `BpfSyscallAccessor.iterEntryBatches() lists every ${label} slot with its ENOTSUPP error instead of aborting`,
    ignore,
    fn(): void {
      using fd = BpfSyscallAccessor.createMap({
        type,
        keySize: 4,
        valueSize: 4,
        maxEntries: 5,
        name: uniqueName("hd_fdarr"),
      });
      const map = infoOf(fd);
      // The kernel itself refuses each element: the premise of the test.
      assert.throws(
        () => mapLookupElem(fd.fd, u32(0), new Uint8Array(4)),
        /ENOTSUPP/,
      );
      for (
        const walk of [
          () => accessor.iterEntryBatches(map),
          () => accessor.iterBatches(map, { batchSize: 2 }),
          () => accessor.iterBatches(map, { mode: "next-key" }),
        ]
      ) {
        const entries = entriesOf(walk());
        assert.deepEqual(entries.map((e) => e.key), [0, 1, 2, 3, 4]);
        for (const entry of entries) {
          assert.deepEqual(entry.value, new Uint8Array(4), "value bytes zero");
          assert.ok(entry.error, `slot ${entry.key} carries its error`);
          assert.doesNotMatch(entry.error, /\n/);
          assert.match(
            entry.error,
            new RegExp(
              `^BPF_MAP_LOOKUP_ELEM failed \\(map "${map.name}" \\(id ${map.id}\\), key 0x0${entry.key}000000\\): ENOTSUPP \\(operation not supported for this map type\\); the kernel does not show user space what a ${label} slot holds$`,
            ),
          );
        }
      }
    },
  });
}

Deno.test({
  name:
    "BpfSyscallAccessor.iterBatches() still skips empty prog_array slots (ENOENT) and lists nothing for an empty one",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.PROG_ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 3,
      name: uniqueName("hd_prog"),
    });
    const entries = entriesOf(accessor.iterBatches(infoOf(fd)));
    assert.deepEqual(entries, []);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.update() and delete() check key and value against the map's real sizes, whatever the record says",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: 4,
      name: uniqueName("hd_upd"),
    });
    const map = infoOf(fd);
    const lying = { ...map, keySize: 1, valueSize: 1 };
    for (const record of [map, lying]) {
      assert.throws(
        () => accessor.update(record, new Uint8Array([7]), u64(1n)),
        (error: unknown) =>
          error instanceof MapArgumentError && error.argument === "key" &&
          /key is 1 byte but the key size is 4 for map/.test(error.message),
      );
      assert.throws(
        () => accessor.update(record, u32(7), new Uint8Array(1)),
        /value is 1 byte but the value size is 8/,
      );
      assert.throws(
        () => accessor.delete(record, new Uint8Array(2)),
        /key is 2 bytes but the key size is 4/,
      );
    }
    // Nothing reached the map: no element from heap bytes past a short key.
    assert.deepEqual([...accessor.iterHashMap(map)], []);
    accessor.update(lying, u32(7), u64(99n));
    assert.deepEqual(
      [...accessor.iterHashMap(lying)].map((e) => [e.key, e.value]),
      [[u32(7), u64(99n)]],
      "a lying record still reads the real 4- and 8-byte sizes",
    );
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor sizes every read from the opened fd: a 64 KiB value read through a record claiming 1 byte",
  ignore,
  fn(): void {
    const valueSize = 64 * 1024;
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize,
      maxEntries: 2,
      name: uniqueName("hd_big"),
    });
    const value = new Uint8Array(valueSize);
    for (let i = 0; i < valueSize; i++) value[i] = (i * 7) & 0xff;
    mapUpdateElem(fd.fd, u32(0), value.slice().reverse());
    mapUpdateElem(fd.fd, u32(1), value);
    const map = infoOf(fd);
    const lying = { ...map, valueSize: 1, keySize: 1, maxEntries: 1 };
    assert.deepEqual(accessor.readArray(lying, 1), value);
    assert.deepEqual(
      accessor.readValue(lying, valueSize - 2, 2),
      value.slice(0, 2).reverse(),
    );
    const batches = entriesOf(accessor.iterEntryBatches(lying));
    assert.equal(batches.length, 2);
    assert.deepEqual(batches[1]!.value, value);
    assert.throws(
      () => accessor.writeValue(lying, valueSize - 1, new Uint8Array(2)),
      /offset 65535 with length 2 is outside the 65536-byte value/,
    );
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readTypeDump() hands the type readers the kernel's record, not the caller's",
  ignore,
  fn(): void {
    const valueSize = 64 * 1024;
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.QUEUE,
      keySize: 0,
      valueSize,
      maxEntries: 2,
      name: uniqueName("hd_queue"),
    });
    const map = infoOf(fd);
    const value = new Uint8Array(valueSize).fill(0x5a);
    accessor.update(map, new Uint8Array(0), value);
    // A record claiming a 1-byte value would have the kernel write 64 KiB
    // into a 1-byte buffer.
    const dump = accessor.readTypeDump({ ...map, valueSize: 1 });
    assert.ok(dump && "queue" in dump, JSON.stringify(Object.keys(dump ?? {})));
    assert.deepEqual(
      (dump as { queue: { head: Uint8Array | null } }).queue.head,
      value,
    );
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readPercpuArray() and iterPercpuHashMap() size per-CPU buffers from the real value size",
  ignore,
  fn(): void {
    const cpus = possibleCpuCount();
    using arrayFd = BpfSyscallAccessor.createMap({
      type: MapType.PERCPU_ARRAY,
      keySize: 4,
      valueSize: 20,
      maxEntries: 1,
      name: uniqueName("hd_pa"),
    });
    const stride = 24;
    const all = new Uint8Array(stride * cpus);
    for (let cpu = 0; cpu < cpus; cpu++) {
      all.fill(cpu + 1, cpu * stride, cpu * stride + 20);
    }
    const array = infoOf(arrayFd);
    accessor.update(array, u32(0), all);
    assert.throws(
      () => accessor.update(array, u32(0), new Uint8Array(20)),
      new RegExp(
        `value is 20 bytes but round_up\\(value_size 20, 8\\) x ${cpus} possible CPUs is ${
          stride * cpus
        }`,
      ),
    );
    const values = accessor.readPercpuArray({ ...array, valueSize: 1 }, 0);
    assert.deepEqual(
      values,
      Array.from(
        { length: cpus },
        (_, cpu) => new Uint8Array(20).fill(cpu + 1),
      ),
    );

    using hashFd = BpfSyscallAccessor.createMap({
      type: MapType.PERCPU_HASH,
      keySize: 4,
      valueSize: 20,
      maxEntries: 4,
      name: uniqueName("hd_ph"),
    });
    const hash = infoOf(hashFd);
    accessor.update(hash, u32(3), all);
    const entries = [
      ...accessor.iterPercpuHashMap({ ...hash, keySize: 1, valueSize: 1 }),
    ];
    assert.equal(entries.length, 1);
    assert.deepEqual(entries[0]!.key, u32(3));
    assert.deepEqual(entries[0]!.values[0], new Uint8Array(20).fill(1));
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor rejects CPU counts and batch sizes that would allocate without bound, before allocating",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.PERCPU_ARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 2,
      name: uniqueName("hd_val"),
    });
    const map = infoOf(fd);
    for (const numCpus of [2 ** 32, 0, -1, 1.5, Number.NaN]) {
      assert.throws(
        () => accessor.readPercpuArray(map, 0, numCpus),
        (error: unknown) =>
          error instanceof MapArgumentError && error.argument === "numCpus" &&
          error.message.includes(`numCpus is ${numCpus}`),
      );
    }
    for (
      const [option, value] of [
        ["batchSize", 1e9],
        ["batchSize", 0],
        ["maxBatchBytes", 2 ** 40],
        ["maxBatchBytes", -5],
      ] as const
    ) {
      const started = performance.now();
      assert.throws(
        () => accessor.iterBatches(map, { [option]: value }),
        (error: unknown) =>
          error instanceof MapArgumentError && error.argument === option,
      );
      assert.throws(
        () => accessor.iterEntryBatches(map, { [option]: value }),
        MapArgumentError,
      );
      assert.ok(performance.now() - started < 1000, "refused up front");
    }
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.iterBatches() grows a batch for a large bucket only within maxBatchBytes",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4096,
      name: uniqueName("hd_nospc"),
    });
    for (let i = 0; i < 4000; i++) mapUpdateElem(fd.fd, u32(i), u32(i));
    const map = infoOf(fd);
    // One 8-byte entry fits; any bucket of two does not.
    assert.throws(
      () => [...accessor.iterBatches(map, { batchSize: 1, maxBatchBytes: 8 })],
      (error: unknown) =>
        error instanceof MapArgumentError &&
        error.argument === "maxBatchBytes" &&
        /cannot hold one hash bucket/.test(error.message),
    );
    // With room for a few entries it grows as far as it needs and no further.
    let largest = 0;
    let total = 0;
    for (
      const batch of accessor.iterBatches(map, {
        batchSize: 1,
        maxBatchBytes: 64,
      })
    ) {
      largest = Math.max(largest, batch.count);
      total += batch.count;
    }
    assert.equal(total, 4000);
    assert.ok(largest >= 2 && largest <= 8, `largest batch ${largest}`);
  },
});

function lpmKey(prefixlen: number, address: number): Uint8Array {
  const key = new Uint8Array(8);
  const view = new DataView(key.buffer);
  view.setUint32(0, prefixlen, true);
  view.setUint32(4, address, false);
  return key;
}

for (const mode of ["next-key", "batch"] as const) {
  Deno.test({
    name:
      `BpfSyscallAccessor.iterBatches() (${mode}) lists each LPM-trie key once when the cursor key is deleted, and says the view may be torn`,
    ignore,
    fn(): void {
      using fd = BpfSyscallAccessor.createMap({
        type: MapType.LPM_TRIE,
        keySize: 8,
        valueSize: 8,
        maxEntries: 512,
        flags: MapFlag.NO_PREALLOC,
        name: uniqueName("hd_lpm"),
      });
      const total = 300;
      const all = new Set<string>();
      for (let i = 0; i < total; i++) {
        const key = lpmKey(32, 0x0a000000 + i * 256);
        mapUpdateElem(fd.fd, key, u64(BigInt(i)));
        all.add(key.join(","));
      }
      const local = new BpfSyscallAccessor();
      const map = infoOf(fd);
      const seen: string[] = [];
      let n = 0;
      for (const batch of local.iterBatches(map, { mode, batchSize: 3 })) {
        for (let i = 0; i < batch.count; i++) {
          seen.push(batch.keys.slice(i * 8, i * 8 + 8).join(","));
        }
        // Delete the last key handed out (the kernel's cursor) every other
        // batch: GET_NEXT_KEY then restarts from the first key.
        if (n++ % 2 === 0) {
          local.delete(
            map,
            batch.keys.slice((batch.count - 1) * 8, batch.count * 8),
          );
        }
      }
      assert.equal(new Set(seen).size, seen.length, "no key listed twice");
      assert.deepEqual(
        new Set(seen),
        all,
        "every key listed (all existed when reached)",
      );
      const torn = local.problems().filter((p) =>
        p.what === "element" && p.mapId === map.id
      );
      assert.equal(torn.length, 1, "one problem per walk");
      assert.match(
        torn[0]!.message,
        /restarted from the first key.*may be torn/,
      );
    },
  });
}

Deno.test({
  name:
    "BpfSyscallAccessor.iterBatches() (next-key) under continual replacement ends with MapChangedError, never loops",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.LPM_TRIE,
      keySize: 8,
      valueSize: 8,
      maxEntries: 64,
      flags: MapFlag.NO_PREALLOC,
      name: uniqueName("hd_lpmc"),
    });
    for (let i = 0; i < 64; i++) mapUpdateElem(fd.fd, lpmKey(32, i), u64(0n));
    const map = infoOf(fd);
    let fresh = 1000;
    let yielded = 0;
    assert.throws(() => {
      for (
        const batch of accessor.iterBatches(map, {
          mode: "next-key",
          batchSize: 1,
        })
      ) {
        yielded += batch.count;
        // A walk without a bound would run forever: fail instead of hanging.
        assert.ok(yielded <= 10_000, "the walk keeps going");
        accessor.delete(map, batch.keys.slice(0, 8));
        accessor.update(map, lpmKey(32, fresh++), u64(0n));
      }
    }, MapChangedError);
    assert.ok(yielded <= 65, `bounded by max_entries + 1 (${yielded})`);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor iterators end with MapGoneError when the map is freed between batches",
  ignore,
  fn(): void {
    const fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 256,
      name: uniqueName("hd_gone"),
    });
    for (let i = 0; i < 200; i++) mapUpdateElem(fd.fd, u32(i), u32(i));
    const map = infoOf(fd);
    const walk = accessor.iterBatches(map, { batchSize: 8 });
    assert.equal(walk.next().done, false);
    fd.close(); // the last reference: the kernel frees the map
    let error: unknown = null;
    const deadline = Date.now() + 5000;
    // The map is freed from a workqueue after the close: wait for its id to go.
    while (accessor.mapById(map.id) !== null && Date.now() < deadline) {
      // spin briefly
    }
    try {
      for (const _ of walk) { /* drain */ }
    } catch (caught) {
      error = caught;
    }
    assert.ok(error instanceof MapGoneError, String(error));
    assert.match(String(error), new RegExp(`id ${map.id}\\) was freed`));
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor: 1,000 iterators dropped mid-walk hold no fd, so the next call works under ulimit -n 1024",
  ignore,
  async fn(): Promise<void> {
    // A process of its own: the fd count must be ours alone, and the limit ours to lower.
    const script =
      new URL("./_support/abandoned_iterators.ts", import.meta.url).pathname;
    const result = await new Deno.Command("sh", {
      args: [
        "-c",
        `ulimit -n 1024 && exec "${Deno.execPath()}" run --allow-all --no-lock "${script}"`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(result.stderr);
    assert.ok(result.success, stderr);
    const report = JSON.parse(new TextDecoder().decode(result.stdout));
    assert.equal(report.limit, 1024);
    assert.equal(report.dropped, 1000 * report.kinds);
    assert.equal(report.after, report.before, JSON.stringify(report));
    assert.equal(report.nextCallWorked, true);
    // The control: one fd deliberately held shows in the count, so the count can fail.
    assert.equal(report.withHeldFd, report.before + 1);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.pin() outside bpffs says so instead of telling root to use sudo",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: uniqueName("hd_pin"),
    });
    const map = infoOf(fd);
    const dir = Deno.makeTempDirSync();
    try {
      assert.throws(
        () => accessor.pin(map, `${dir}/pinned`),
        (error: unknown) =>
          error instanceof BpfError && error.code === "EPERM" &&
          error.message.includes(
            `${dir}/pinned is not on a bpffs mount (it is on `,
          ) &&
          error.message.includes(
            "mount one with `mount -t bpf bpf /sys/fs/bpf`",
          ) &&
          !/sudo/.test(error.message),
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
    const bpffs = ensureBpffs();
    const long = `${bpffs}/${"x".repeat(300)}`;
    assert.throws(
      () => accessor.pin(map, long),
      /BPF_OBJ_PIN failed \(pin to .*\): ENAMETOOLONG \(file name too long\); a path component is longer than 255 bytes/,
    );
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.update() on a frozen map blames the freeze, not privileges",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: uniqueName("hd_frz"),
    });
    const map = infoOf(fd);
    accessor.freeze(map);
    assert.throws(
      () => accessor.update(map, u32(0), u32(1)),
      (error: unknown) =>
        error instanceof BpfError && error.code === "EPERM" &&
        /the map is frozen \(BPF_MAP_FREEZE\)/.test(error.message) &&
        !/sudo/.test(error.message),
    );
  },
});

Deno.test({
  name: "BpfError for EMFILE names the errno, its text and the limit to raise",
  ignore,
  async fn(): Promise<void> {
    const script = `
      import { BpfSyscallAccessor } from "${
      new URL("../src/accessor/syscall.ts", import.meta.url).href
    }";
      const held = [];
      try {
        for (;;) held.push(BpfSyscallAccessor.createMap({ type: 2, keySize: 4, valueSize: 4, maxEntries: 1 }));
      } catch (error) {
        console.log(error.message);
      }
      for (const fd of held) fd.close();
    `;
    const result = await new Deno.Command("sh", {
      args: [
        "-c",
        `ulimit -n 64 && exec "${Deno.execPath()}" eval --no-lock '${script}'`,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(result.stdout).trim();
    assert.ok(result.success, new TextDecoder().decode(result.stderr));
    assert.match(
      stdout,
      /^BPF_MAP_CREATE failed \(create map of type 2\): EMFILE \(too many open files\); this process has as many fds open as RLIMIT_NOFILE allows \(ulimit -n\)/,
    );
  },
});
