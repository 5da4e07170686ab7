import assert from "node:assert/strict";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import {
  mapGetInfo,
  mapUpdateBatch,
  mapUpdateElem,
  openReadOnly,
  pidfdOpen,
} from "../src/sys/bpf.ts";
import { cgroup2Mounts } from "../src/accessor/local_storage.ts";
import { MapFlag, MapType } from "../src/sys/constants.ts";
import { possibleCpuCount } from "../src/sys/cpus.ts";
import { MappedBpfMap } from "../src/sys/mmap.ts";
import { findArenaMappings, presentPages } from "../src/accessor/arena.ts";
import { ignoreUnlessRoot } from "./_support/env.ts";
import {
  MapArgumentError,
  MapChangedError,
  MapTypeError,
} from "../src/errors.ts";
import {
  infoOf,
  loadIntBtf,
  readU32,
  readU64,
  u32,
  u64,
  uniqueName,
} from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();
const accessor = new BpfSyscallAccessor();

function percpuValue(
  cpus: number,
  valueSize: number,
  fill: (cpu: number) => number,
): Uint8Array {
  const stride = Math.ceil(valueSize / 8) * 8;
  const bytes = new Uint8Array(stride * cpus);
  for (let cpu = 0; cpu < cpus; cpu++) {
    bytes.fill(fill(cpu), cpu * stride, cpu * stride + valueSize);
  }
  return bytes;
}

Deno.test({
  name:
    "BpfSyscallAccessor.maps() lists created maps in id order with their info",
  ignore,
  fn(): void {
    const name = uniqueName("acc_list");
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 12,
      maxEntries: 33,
      name,
      flags: MapFlag.NO_PREALLOC,
    });
    const maps = accessor.maps();
    const ids = maps.map((m) => m.id);
    assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
    const mine = maps.find((m) => m.id === mapGetInfo(fd.fd).id);
    assert.ok(mine);
    assert.equal(mine.name, name);
    assert.equal(mine.type, MapType.HASH);
    assert.equal(mine.keySize, 4);
    assert.equal(mine.valueSize, 12);
    assert.equal(mine.maxEntries, 33);
    assert.equal(mine.flags, MapFlag.NO_PREALLOC);
    assert.equal(mine.frozen, false);
    assert.ok(mine.memlock > 0n, "memlock comes from fdinfo");
    assert.equal(accessor.findMap(name.slice(3))?.id, mine.id);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readArray() and readValue() read ARRAY values; out of range is null",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 12,
      maxEntries: 3,
      name: uniqueName("acc_arr"),
    });
    mapUpdateElem(
      fd.fd,
      u32(0),
      new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    );
    mapUpdateElem(fd.fd, u32(2), new Uint8Array(12).fill(0xee));
    const map = infoOf(fd);
    assert.deepEqual(
      accessor.readArray(map, 0),
      new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]),
    );
    assert.deepEqual(accessor.readArray(map, 1), new Uint8Array(12));
    assert.deepEqual(accessor.readArray(map, 2), new Uint8Array(12).fill(0xee));
    for (const index of [3, -1, 0.5, 2 ** 32]) {
      assert.throws(
        () => accessor.readArray(map, index),
        (error: unknown) =>
          error instanceof MapArgumentError && error.argument === "key" &&
          error.message.includes(`key ${index} is out of range`),
      );
    }
    assert.deepEqual(accessor.readValue(map, 4, 3), new Uint8Array([5, 6, 7]));
    assert.throws(
      () => accessor.readValue(map, 10, 3),
      /offset 10 with length 3 is outside the 12-byte value/,
    );
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readValue() and readArray() raise MapTypeError for types without indexed values",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 2,
      name: uniqueName("acc_rv"),
    });
    const map = infoOf(fd);
    assert.throws(() => accessor.readValue(map, 0, 4), MapTypeError);
    assert.throws(() => accessor.readArray(map, 0), MapTypeError);
    // The kernel's record decides, not the caller's: calling it an array does not help.
    assert.throws(
      () => accessor.readArray({ ...map, type: MapType.ARRAY }, 0),
      /is not an ARRAY map \(its type is 1\)/,
    );
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readPercpuArray() splits slots by round_up(value_size, 8) and nulls CPUs past the kernel's",
  ignore,
  fn(): void {
    const cpus = possibleCpuCount();
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.PERCPU_ARRAY,
      keySize: 4,
      valueSize: 12,
      maxEntries: 4,
      name: uniqueName("acc_pa"),
    });
    mapUpdateElem(fd.fd, u32(1), percpuValue(cpus, 12, (cpu) => 0x10 + cpu));
    const map = infoOf(fd);
    const values = accessor.readPercpuArray(map, 1, cpus + 2);
    assert.ok(values);
    assert.equal(values.length, cpus + 2);
    for (let cpu = 0; cpu < cpus; cpu++) {
      assert.deepEqual(values[cpu], new Uint8Array(12).fill(0x10 + cpu));
    }
    assert.equal(
      values[cpus],
      null,
      "a CPU the kernel lacks is null, not CPU 0 again",
    );
    assert.equal(values[cpus + 1], null);
    assert.throws(
      () => accessor.readPercpuArray(map, 4, cpus),
      MapArgumentError,
    );
  },
});

for (const type of [MapType.HASH, MapType.LRU_HASH]) {
  Deno.test({
    name: `BpfSyscallAccessor.iterHashMap() returns every entry of a ${
      type === MapType.HASH ? "HASH" : "LRU_HASH"
    } map`,
    ignore,
    fn(): void {
      using fd = BpfSyscallAccessor.createMap({
        type,
        keySize: 4,
        valueSize: 8,
        maxEntries: 5000,
        name: uniqueName("acc_h"),
      });
      const count = 3000;
      for (let i = 0; i < count; i++) {
        mapUpdateElem(fd.fd, u32(i), u64(BigInt(i) * 1_000_000_007n));
      }
      const seen = new Map<number, bigint>();
      for (const { key, value } of accessor.iterHashMap(infoOf(fd))) {
        assert.equal(seen.has(readU32(key)), false, "no key twice");
        seen.set(readU32(key), readU64(value));
      }
      assert.equal(seen.size, count);
      for (let i = 0; i < count; i++) {
        assert.equal(seen.get(i), BigInt(i) * 1_000_000_007n);
      }
    },
  });
}

Deno.test({
  name:
    "BpfSyscallAccessor.iterBatches() grows the batch on ENOSPC instead of failing",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4096,
      name: uniqueName("acc_nospc"),
    });
    for (let i = 0; i < 4000; i++) mapUpdateElem(fd.fd, u32(i), u32(i));
    // A batch of one element cannot hold a bucket with two: the kernel says
    // ENOSPC and the walk must retry with a bigger batch.
    let total = 0;
    let largest = 0;
    for (const batch of accessor.iterBatches(infoOf(fd), { batchSize: 1 })) {
      total += batch.count;
      largest = Math.max(largest, batch.count);
    }
    assert.equal(total, 4000);
    assert.ok(largest >= 2, "some batch had to grow past one entry");
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.iterPercpuHashMap() returns a value per CPU for PERCPU_HASH and LRU_PERCPU_HASH",
  ignore,
  fn(): void {
    const cpus = possibleCpuCount();
    for (const type of [MapType.PERCPU_HASH, MapType.LRU_PERCPU_HASH]) {
      using fd = BpfSyscallAccessor.createMap({
        type,
        keySize: 8,
        valueSize: 4,
        maxEntries: 128,
        name: uniqueName("acc_ph"),
      });
      for (let i = 0; i < 100; i++) {
        mapUpdateElem(
          fd.fd,
          u64(BigInt(i)),
          percpuValue(cpus, 4, (cpu) => (i + cpu) & 0xff),
        );
      }
      let n = 0;
      for (
        const { key, values } of accessor.iterPercpuHashMap(
          infoOf(fd),
          cpus + 1,
        )
      ) {
        const i = Number(readU64(key));
        assert.equal(values.length, cpus + 1);
        for (let cpu = 0; cpu < cpus; cpu++) {
          assert.deepEqual(
            values[cpu],
            new Uint8Array(4).fill((i + cpu) & 0xff),
          );
        }
        assert.equal(values[cpus], null);
        n++;
      }
      assert.equal(n, 100);
    }
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.iterBatches() falls back to GET_NEXT_KEY for maps without batch support",
  ignore,
  fn(): void {
    // DEVMAP has no LOOKUP_BATCH (ENOTSUPP); its values are ifindexes.
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.DEVMAP,
      keySize: 4,
      valueSize: 4,
      maxEntries: 4,
      name: uniqueName("acc_dev"),
    });
    mapUpdateElem(fd.fd, u32(2), u32(1));
    const entries: [number, number][] = [];
    for (const batch of accessor.iterBatches(infoOf(fd))) {
      for (let i = 0; i < batch.count; i++) {
        entries.push([
          readU32(batch.keys, i * 4),
          readU32(batch.values, i * 4),
        ]);
      }
    }
    assert.deepEqual(entries, [[2, 1]]);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.iterBatches() never loops forever on a map mutated during the walk",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 64,
      name: uniqueName("acc_mut"),
    });
    for (let i = 0; i < 64; i++) mapUpdateElem(fd.fd, u32(i), u32(i));
    const map = infoOf(fd);
    for (const mode of ["batch", "next-key"] as const) {
      let next = 1000;
      let yielded = 0;
      let stoppedWith: unknown = null;
      try {
        for (const batch of accessor.iterBatches(map, { mode, batchSize: 8 })) {
          // Delete what we were just given and add a fresh key: a naive
          // GET_NEXT_KEY walk restarts from the first bucket every time.
          for (let i = 0; i < batch.count; i++) {
            const key = batch.keys.slice(i * 4, i * 4 + 4);
            accessor.delete(map, key);
            accessor.update(map, u32(next++), u32(0));
            yielded++;
          }
          assert.ok(yielded <= 10_000, `${mode}: the walk keeps going`);
        }
      } catch (error) {
        stoppedWith = error;
      }
      if (stoppedWith !== null) {
        assert.ok(stoppedWith instanceof MapChangedError, String(stoppedWith));
        assert.match(String(stoppedWith), /changed during the walk/);
      }
      assert.ok(
        yielded <= map.maxEntries * 2 + 1,
        `${mode}: bounded (${yielded})`,
      );
    }
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.iterTaskStorage() finds this thread's storage through a pidfd",
  ignore,
  fn(): void {
    using btf = loadIntBtf();
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.TASK_STORAGE,
      keySize: 4,
      valueSize: 8,
      maxEntries: 0,
      flags: MapFlag.NO_PREALLOC,
      name: uniqueName("acc_task"),
      btfFd: btf.fd,
      btfKeyTypeId: 1,
      btfValueTypeId: 2,
    });
    {
      using self = pidfdOpen(Deno.pid);
      mapUpdateElem(fd.fd, u32(self.fd), u64(0x1122334455667788n));
    }
    const entries = [...accessor.iterTaskStorage(infoOf(fd))];
    assert.equal(entries.length, 1);
    assert.equal(entries[0]!.owner, String(Deno.pid));
    assert.equal(readU64(entries[0]!.value), 0x1122334455667788n);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.iterTaskStorage() finds cgroup storage by walking cgroup directories",
  ignore,
  fn(): void {
    using btf = loadIntBtf();
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.CGRP_STORAGE,
      keySize: 4,
      valueSize: 8,
      maxEntries: 0,
      flags: MapFlag.NO_PREALLOC,
      name: uniqueName("acc_cg"),
      btfFd: btf.fd,
      btfKeyTypeId: 1,
      btfValueTypeId: 2,
    });
    const root = cgroup2Mounts()[0];
    assert.ok(root, "cgroup v2 is mounted");
    const child = `${root}/${uniqueName("bpfmap_test")}`;
    Deno.mkdirSync(child);
    try {
      for (const [path, value] of [[root, 42n], [child, 43n]] as const) {
        using dirFd = openReadOnly(path, true);
        mapUpdateElem(fd.fd, u32(dirFd.fd), u64(value));
      }
      const entries = [...accessor.iterTaskStorage(infoOf(fd))];
      assert.deepEqual(entries.map((e) => [e.owner, readU64(e.value)]), [
        ["/", 42n],
        [child.slice(root.length), 43n],
      ]);
    } finally {
      Deno.removeSync(child);
    }
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readArenaPages() reads present pages and allocates none",
  ignore,
  fn(): void {
    // Mappings are attributed by size (every BPF mapping shares one anon
    // inode): a size no other test in this process maps keeps ours unambiguous.
    const pages = 13;
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: pages,
      flags: MapFlag.MMAPABLE,
      name: uniqueName("acc_arena"),
    });
    using mapping = MappedBpfMap.map(fd.fd, pages * 4096, { writable: true });
    mapping.bytes[0] = 0xaa;
    mapping.bytes[5 * 4096 + 7] = 0xbb;
    const map = infoOf(fd);
    const [own] = findArenaMappings(map.id);
    assert.ok(own, "our own mapping is found");
    assert.deepEqual(presentPages(own), [0, 5]);

    const result = accessor.readArenaPages(map);
    assert.equal(result.totalPages, pages);
    assert.deepEqual(result.pages.map((p) => p.index), [0, 5]);
    assert.equal(result.pages[0]!.bytes[0], 0xaa);
    assert.equal(result.pages[1]!.bytes[7], 0xbb);
    assert.equal(result.pages[1]!.userAddress, mapping.address + 5n * 4096n);
    assert.deepEqual(presentPages(own), [0, 5], "reading allocated no page");

    // The control: touching an absent page does allocate it, so the check above can fail.
    assert.equal(mapping.bytes[3 * 4096], 0);
    assert.deepEqual(presentPages(own), [0, 3, 5]);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.readArenaPages() says so when no process has the arena mapped",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: 2,
      flags: MapFlag.MMAPABLE,
      name: uniqueName("acc_arena0"),
    });
    const result = accessor.readArenaPages(infoOf(fd));
    assert.deepEqual(result.pages, []);
    assert.match(result.notes.join(" "), /has it mapped/);
  },
});

Deno.test({
  name: "BpfSyscallAccessor keeps the fd count flat over 10,000 operations",
  ignore,
  async fn(): Promise<void> {
    // Test files share one process under --parallel, so count in a process of its own.
    const result = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--no-lock",
        new URL("./_support/fd_churn.ts", import.meta.url).pathname,
      ],
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(result.success, new TextDecoder().decode(result.stderr));
    const { before, after, operations } = JSON.parse(
      new TextDecoder().decode(result.stdout),
    );
    assert.ok(operations >= 10_000, `${operations} operations`);
    assert.equal(after, before);
  },
});

Deno.test({
  name:
    "BpfSyscallAccessor.freeze() makes the map read-only for user space and shows as frozen",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name: uniqueName("acc_frz"),
    });
    const map = infoOf(fd);
    accessor.writeValue(map, 1, new Uint8Array([9, 9]));
    assert.deepEqual(accessor.readArray(map, 0), new Uint8Array([0, 9, 9, 0]));
    accessor.freeze(map);
    assert.equal(accessor.mapById(map.id)?.frozen, true);
    assert.throws(() => accessor.update(map, u32(0), u32(1)), /EPERM/);
  },
});

Deno.test({
  name: "mapUpdateBatch() writes many entries in one call",
  ignore,
  fn(): void {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: 1000,
      name: uniqueName("acc_ub"),
    });
    const keys = new Uint8Array(1000 * 4);
    const values = new Uint8Array(1000 * 8);
    for (let i = 0; i < 1000; i++) {
      keys.set(u32(i), i * 4);
      values.set(u64(BigInt(i) << 40n), i * 8);
    }
    assert.equal(mapUpdateBatch(fd.fd, keys, values, 1000), 1000);
    const seen = [...accessor.iterHashMap(infoOf(fd))];
    assert.equal(seen.length, 1000);
    assert.ok(
      seen.every(({ key, value }) =>
        readU64(value) === BigInt(readU32(key)) << 40n
      ),
    );
  },
});
