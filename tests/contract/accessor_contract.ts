/**
 * The `BpfMapAccessor` contract: one conformance suite that every backend
 * runs over the same fixture (`spec.ts`). It checks every method on every
 * map type the fixture holds, and the documented errors: MapTypeError for a
 * map of the wrong type on every method, MapArgumentError for indexes, CPU
 * counts and batch sizes out of range, null for what is absent.
 *
 * A backend that does not meet a check yet lists the check's id in
 * `knownGaps`: the check still runs and must still fail (so a fix is noticed
 * and the id removed); it never changes what another backend must do. Only a
 * gap whose failure would exhaust the machine (an unbounded allocation) is
 * not run, and shows as an ignored step.
 *
 * @module
 */

import assert from "node:assert/strict";
import type {
  BpfMapAccessor,
  BpfMapInfo,
  EntryBatch,
} from "../../src/accessor/types.ts";
import {
  MapArgumentError,
  MapGoneError,
  MapTypeError,
} from "../../src/errors.ts";
import {
  ARENA_PAGES,
  CONTRACT_SPEC,
  keyBytes,
  percpuValue,
  type Role,
  ROLES,
  TASK_VALUE,
  valueOf,
} from "./spec.ts";
import {
  kernelTags,
  PROGRAM_ROLES,
  PROGRAM_SPEC,
  type ProgramRole,
} from "./program_spec.ts";

/** One task-storage element a backend must list. */
export interface ExpectedTaskEntry {
  /** The backend's owner string (tid, or the task's kernel address). */
  owner: string;
  /** The key's length: 4 (an fd) live, 8 (an address) in a guest. */
  keyLength: number;
  /** The exact key bytes, when the backend's key means something after the call. */
  key?: Uint8Array;
}

/** A backend built with the contract fixture. */
export interface ContractSubject extends Disposable {
  /** The accessor under test. */
  accessor: BpfMapAccessor;
  /** The kernel-visible name of each fixture map. */
  names: Readonly<Record<Role, string>>;
  /** The possible-CPU count the fixture was written with. */
  cpus: number;
  /** The task-storage elements the backend must list (value: `TASK_VALUE`). */
  taskEntries: readonly ExpectedTaskEntry[];
  /** The arena's kernel-visible name when the backend holds one with `ARENA_PAGES`, else null. */
  arenaName: string | null;
  /** The BTF blob the task-storage map was created with (maps without BTF read null). */
  taskBtf: Uint8Array;
  /** An id no map has. */
  missingId: number;
  /** The kernel-visible name of each fixture program (`program_spec.ts`); no program has `missingId`. */
  programNames: Readonly<Record<ProgramRole, string>>;
  /**
   * Check ids this backend is known to fail (see the module doc):
   * `"fails"` runs the check and requires it to fail; `"unsafe"` does not run
   * it, because failing it exhausts memory or time (the step shows as ignored).
   */
  knownGaps: ReadonlyMap<string, "fails" | "unsafe">;
}

type Check = (s: ContractSubject, maps: Record<Role, BpfMapInfo>) => void;
const CHECKS: [string, Check][] = [];

function check(id: string, fn: Check): void {
  CHECKS.push([id, fn]);
}

/** Every check id of the contract, for backends listing their gaps. */
export function checkIds(): string[] {
  return CHECKS.map(([id]) => id);
}

/**
 * Calls `fn` (running a returned iterable to its end: generators may check
 * lazily) and asserts it throws an instance of `errorClass`; returns it.
 */
function throwsError<E extends Error>(
  fn: () => unknown,
  errorClass: new (...args: never[]) => E,
  what: string,
): E {
  let caught: unknown = null;
  try {
    const result = fn();
    if (result && typeof result === "object" && Symbol.iterator in result) {
      [...(result as Iterable<unknown>)];
    }
  } catch (error) {
    caught = error;
  }
  assert.ok(
    caught instanceof errorClass,
    `${what}: expected ${errorClass.name}, got ${caught ?? "no error"}`,
  );
  return caught;
}

function throwsType(fn: () => unknown, what: string): void {
  throwsError(fn, MapTypeError, what);
}

function throwsArgument(
  fn: () => unknown,
  argument: string,
  what: string,
): void {
  assert.equal(
    throwsError(fn, MapArgumentError, what).argument,
    argument,
    what,
  );
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** key hex -> value hex of a hash role, as the spec writes it. */
function expectedHash(role: Role): Map<string, string> {
  return new Map(
    CONTRACT_SPEC[role].keys.map((
      k,
    ) => [hex(keyBytes(k)), hex(valueOf(role, k))]),
  );
}

function batchesToMap(batches: Iterable<EntryBatch>): Map<string, string> {
  const out = new Map<string, string>();
  for (const batch of batches) {
    assert.equal(batch.keys.length, batch.count * batch.keySize);
    assert.equal(batch.values.length, batch.count * batch.valueStride);
    for (let i = 0; i < batch.count; i++) {
      assert.equal(batch.errors?.[i] ?? null, null, "no per-entry error");
      const key = hex(
        batch.keys.subarray(i * batch.keySize, (i + 1) * batch.keySize),
      );
      assert.ok(!out.has(key), `key ${key} listed once`);
      out.set(
        key,
        hex(
          batch.values.subarray(
            i * batch.valueStride,
            (i + 1) * batch.valueStride,
          ),
        ),
      );
    }
  }
  return out;
}

// --- the catalogue -------------------------------------------------------

check("facts", (s) => {
  assert.equal(typeof s.accessor.kernelRelease, "string");
  assert.ok(s.accessor.kernelRelease.length > 0);
  assert.equal(s.accessor.possibleCpus, s.cpus);
});

check("maps.listed", (s, maps) => {
  for (const role of ROLES) {
    const spec = CONTRACT_SPEC[role];
    const map = maps[role];
    assert.equal(map.name, s.names[role]);
    assert.deepEqual(
      [map.type, map.keySize, map.valueSize, map.maxEntries],
      [spec.type, spec.keySize, spec.valueSize, spec.maxEntries],
      role,
    );
  }
  const ids = s.accessor.maps().map((m) => m.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "id order");
});

check("mapById", (s, maps) => {
  for (const role of ROLES) {
    const byId = s.accessor.mapById(maps[role].id);
    assert.ok(byId, role);
    assert.deepEqual(
      [
        byId.id,
        byId.name,
        byId.type,
        byId.keySize,
        byId.valueSize,
        byId.maxEntries,
      ],
      [
        maps[role].id,
        maps[role].name,
        maps[role].type,
        maps[role].keySize,
        maps[role].valueSize,
        maps[role].maxEntries,
      ],
    );
  }
  assert.equal(s.accessor.mapById(s.missingId), null);
});

check("findMap", (s, maps) => {
  assert.equal(s.accessor.findMap(s.names.hash)?.id, maps.hash.id);
  assert.equal(s.accessor.findMap("no_such_map_suffix_at_all"), null);
});

check("readValue.bytes", (s, maps) => {
  const value = valueOf("global", 0);
  assert.deepEqual(s.accessor.readValue(maps.global, 0, 24), value);
  assert.deepEqual(s.accessor.readValue(maps.global, 5, 7), value.slice(5, 12));
  assert.deepEqual(s.accessor.readValue(maps.global, 24, 0), new Uint8Array(0));
});

check("readValue.range", (s, maps) => {
  throwsArgument(
    () => s.accessor.readValue(maps.global, 20, 8),
    "offset",
    "past the end",
  );
  throwsArgument(
    () => s.accessor.readValue(maps.global, -1, 2),
    "offset",
    "negative",
  );
});

check("readValue.type", (s, maps) => {
  throwsType(
    () => s.accessor.readValue(maps.hash, 0, 4),
    "readValue on a hash",
  );
});

check("readArray.values", (s, maps) => {
  for (const key of CONTRACT_SPEC.array.keys) {
    assert.deepEqual(
      s.accessor.readArray(maps.array, key),
      valueOf("array", key),
    );
  }
});

check("readArray.range", (s, maps) => {
  for (const key of [4, -1, 1.5]) {
    throwsArgument(
      () => s.accessor.readArray(maps.array, key),
      "key",
      `index ${key}`,
    );
  }
});

check("readArray.type", (s, maps) => {
  throwsType(() => s.accessor.readArray(maps.hash, 0), "readArray on a hash");
  throwsType(
    () => s.accessor.readArray(maps.pcpuArray, 0),
    "readArray on a per-CPU array",
  );
});

check("readPercpuArray.values", (s, maps) => {
  for (const key of CONTRACT_SPEC.pcpuArray.keys) {
    const values = s.accessor.readPercpuArray(maps.pcpuArray, key);
    assert.ok(values);
    assert.equal(values.length, s.cpus);
    values.forEach((value, cpu) =>
      assert.deepEqual(
        value,
        valueOf("pcpuArray", key, cpu),
        `key ${key} cpu ${cpu}`,
      )
    );
  }
});

check("readPercpuArray.extraCpusNull", (s, maps) => {
  const values = s.accessor.readPercpuArray(maps.pcpuArray, 1, s.cpus + 2);
  assert.ok(values);
  assert.equal(values.length, s.cpus + 2);
  assert.deepEqual(values.slice(s.cpus), [null, null]);
  assert.deepEqual(values[0], valueOf("pcpuArray", 1, 0));
});

check("readPercpuArray.range", (s, maps) => {
  throwsArgument(
    () => s.accessor.readPercpuArray(maps.pcpuArray, 3),
    "key",
    "index 3",
  );
  throwsArgument(
    () => s.accessor.readPercpuArray(maps.pcpuArray, -1),
    "key",
    "index -1",
  );
});

check("readPercpuArray.numCpus", (s, maps) => {
  for (const numCpus of [2 ** 32, 0, 2.5]) {
    throwsArgument(
      () => s.accessor.readPercpuArray(maps.pcpuArray, 0, numCpus),
      "numCpus",
      `numCpus ${numCpus}`,
    );
  }
});

check("readPercpuArray.type", (s, maps) => {
  throwsType(
    () => s.accessor.readPercpuArray(maps.array, 0),
    "readPercpuArray on an array",
  );
});

check("iterHashMap.entries", (s, maps) => {
  for (const role of ["hash", "lru"] as const) {
    const got = new Map<string, string>();
    for (const { key, value } of s.accessor.iterHashMap(maps[role])) {
      got.set(hex(key), hex(value));
    }
    assert.deepEqual(got, expectedHash(role), role);
  }
});

check("iterHashMap.type", (s, maps) => {
  throwsType(
    () => s.accessor.iterHashMap(maps.array),
    "iterHashMap on an array",
  );
  throwsType(
    () => s.accessor.iterHashMap(maps.pcpuHash),
    "iterHashMap on a per-CPU hash",
  );
});

check("iterPercpuHashMap.entries", (s, maps) => {
  for (const role of ["pcpuHash", "lruPcpuHash"] as const) {
    const got = new Map<string, string[]>();
    for (
      const { key, values } of s.accessor.iterPercpuHashMap(
        maps[role],
        s.cpus + 1,
      )
    ) {
      assert.equal(values[s.cpus], null, "a CPU past the kernel's is null");
      got.set(hex(key), values.slice(0, s.cpus).map((v) => hex(v!)));
    }
    assert.deepEqual(
      got,
      new Map(
        CONTRACT_SPEC[role].keys.map((k) => [
          hex(keyBytes(k)),
          Array.from(
            { length: s.cpus },
            (_, cpu) => hex(valueOf(role, k, cpu)),
          ),
        ]),
      ),
      role,
    );
  }
});

check("iterPercpuHashMap.numCpus", (s, maps) => {
  throwsArgument(
    () => s.accessor.iterPercpuHashMap(maps.pcpuHash, 2 ** 32),
    "numCpus",
    "numCpus 2^32",
  );
});

check("iterPercpuHashMap.type", (s, maps) => {
  throwsType(
    () => s.accessor.iterPercpuHashMap(maps.hash),
    "iterPercpuHashMap on a hash",
  );
});

check("iterEntryBatches.entries", (s, maps) => {
  assert.deepEqual(
    batchesToMap(s.accessor.iterEntryBatches(maps.hash)),
    expectedHash("hash"),
  );
  assert.deepEqual(
    batchesToMap(s.accessor.iterEntryBatches(maps.lru, { batchSize: 1 })),
    expectedHash("lru"),
  );
  assert.deepEqual(
    batchesToMap(s.accessor.iterEntryBatches(maps.array, { batchSize: 3 })),
    new Map(
      CONTRACT_SPEC.array.keys.map((
        k,
      ) => [hex(keyBytes(k)), hex(valueOf("array", k))]),
    ),
  );
  for (const role of ["pcpuArray", "pcpuHash", "lruPcpuHash"] as const) {
    assert.deepEqual(
      batchesToMap(s.accessor.iterEntryBatches(maps[role], { batchSize: 2 })),
      new Map(
        CONTRACT_SPEC[role].keys.map((
          k,
        ) => [hex(keyBytes(k)), hex(percpuValue(role, k, s.cpus))]),
      ),
      role,
    );
  }
});

check("iterEntryBatches.batchSize", (s, maps) => {
  throwsArgument(
    () => s.accessor.iterEntryBatches(maps.hash, { batchSize: 1e9 }),
    "batchSize",
    "1e9",
  );
  throwsArgument(
    () => s.accessor.iterEntryBatches(maps.hash, { batchSize: 0 }),
    "batchSize",
    "0",
  );
  throwsArgument(
    () => s.accessor.iterEntryBatches(maps.hash, { maxBatchBytes: 2 ** 40 }),
    "maxBatchBytes",
    "1 TiB",
  );
});

check("iterEntryBatches.type", (s, maps) => {
  throwsType(
    () => s.accessor.iterEntryBatches(maps.task),
    "iterEntryBatches on task storage",
  );
});

check("iterTaskStorage.entries", (s, maps) => {
  const got = [...s.accessor.iterTaskStorage(maps.task)];
  for (const expected of s.taskEntries) {
    const mine = got.filter((e) => e.owner === expected.owner);
    assert.equal(mine.length, 1, `owner ${expected.owner} listed once`);
    assert.deepEqual(mine[0]!.value, TASK_VALUE);
    assert.equal(mine[0]!.key.length, expected.keyLength);
    if (expected.key) assert.deepEqual(mine[0]!.key, expected.key);
  }
  assert.equal(got.length, s.taskEntries.length, "nothing else");
});

check("iterTaskStorage.type", (s, maps) => {
  throwsType(
    () => s.accessor.iterTaskStorage(maps.hash),
    "iterTaskStorage on a hash",
  );
});

check("readArenaPages.pages", (s) => {
  if (s.arenaName === null) return; // this backend cannot hold an arena here
  const arena = s.accessor.maps().find((m) => m.name === s.arenaName);
  assert.ok(arena, "the arena is listed");
  const result = s.accessor.readArenaPages(arena);
  assert.deepEqual(result.pages.map((p) => p.index), [...ARENA_PAGES.keys()]);
  for (const page of result.pages) {
    const head = ARENA_PAGES.get(page.index)!;
    assert.deepEqual(page.bytes.subarray(0, head.length), head);
    assert.equal(page.bytes.length, 4096);
  }
});

check("readArenaPages.type", (s, maps) => {
  throwsType(
    () => s.accessor.readArenaPages(maps.array),
    "readArenaPages on an array",
  );
});

check("loadProgramBtfBytes", (s, maps) => {
  assert.equal(s.accessor.loadProgramBtfBytes(maps.hash), null);
  assert.equal(s.accessor.loadProgramBtf(maps.hash), null);
  assert.deepEqual(s.accessor.loadProgramBtfBytes(maps.task), s.taskBtf);
  assert.ok((s.accessor.loadProgramBtf(maps.task)?.typeCount ?? 0) >= 3);
});

check("gone", (s, maps) => {
  // A record whose map no longer exists (freed since it was listed).
  // (The guest backend finds a record by kernel address first: drop it.)
  const gone = (role: Role): BpfMapInfo => {
    const { kernelAddress: _, ...rest } = maps[role];
    return { ...rest, id: s.missingId };
  };
  const calls: [string, () => unknown][] = [
    ["readValue", () => s.accessor.readValue(gone("global"), 0, 4)],
    ["readArray", () => s.accessor.readArray(gone("array"), 0)],
    ["readPercpuArray", () => s.accessor.readPercpuArray(gone("pcpuArray"), 0)],
    ["iterHashMap", () => s.accessor.iterHashMap(gone("hash"))],
    ["iterPercpuHashMap", () => s.accessor.iterPercpuHashMap(gone("pcpuHash"))],
    ["iterEntryBatches", () => s.accessor.iterEntryBatches(gone("hash"))],
    ["iterTaskStorage", () => s.accessor.iterTaskStorage(gone("task"))],
  ];
  for (const [method, call] of calls) {
    throwsError(call, MapGoneError, method);
  }
});

// --- programs (issue 11 item 3) ---

check("programs.listed", (s, maps) => {
  const all = s.accessor.programs();
  const ids = all.map((p) => p.id);
  assert.deepEqual(ids, [...ids].sort((a, b) => a - b), "id order");
  for (const role of PROGRAM_ROLES) {
    const spec = PROGRAM_SPEC[role];
    const mine = all.filter((p) => p.name === s.programNames[role]);
    assert.equal(mine.length, 1, `${role} listed once`);
    const program = mine[0]!;
    const insns = spec.insns(spec.maps.map(() => 0));
    assert.deepEqual(
      [program.type, program.typeName, program.btfId],
      [spec.type, "socket_filter", 0],
      role,
    );
    assert.ok(
      kernelTags(insns).includes(program.tag),
      `${role}: tag ${program.tag} is not the kernel's hash of its instructions`,
    );
    assert.deepEqual(
      program.mapIds,
      spec.maps.map((r) => maps[r].id),
      `${role} map ids`,
    );
    assert.equal(program.gplCompatible, spec.license === "GPL", role);
    assert.equal(program.bytesXlated, insns.length, role);
    assert.equal(program.verifiedInsns, spec.verifiedInsns, role);
    assert.equal(program.jited, program.bytesJited > 0, role);
    assert.equal(typeof program.loadTime, "bigint");
    assert.ok(program.loadTime > 0n, `${role} load time`);
    assert.ok((program.bytesMemlock ?? 4096n) % 4096n === 0n, "whole pages");
    // Statistics are either all there (u64 exact) or absent with a reason.
    if (program.runTimeNs === undefined) {
      assert.equal(typeof program.statsNote, "string", role);
      assert.equal(program.runCnt, undefined);
    } else {
      assert.equal(program.statsNote, undefined, role);
      assert.equal(typeof program.runCnt, "bigint");
      assert.equal(typeof program.recursionMisses, "bigint");
    }
  }
});

check("programById", (s) => {
  for (const listed of s.accessor.programs()) {
    if (!PROGRAM_ROLES.some((r) => s.programNames[r] === listed.name)) continue;
    assert.deepEqual(s.accessor.programById(listed.id), listed);
  }
  assert.equal(s.accessor.programById(s.missingId), null);
  throwsArgument(() => s.accessor.programById(-1), "id", "id -1");
  throwsArgument(() => s.accessor.programById(1.5), "id", "id 1.5");
});

check("programs.clean", (s) => {
  s.accessor.programs();
  assert.deepEqual(s.accessor.problems(), []);
});

check("problems.clean", (s, maps) => {
  // Read everything once: an unchanging fixture must need no skipping.
  for (const role of ["hash", "lru"] as const) {
    [...s.accessor.iterHashMap(maps[role])];
  }
  for (const role of ["pcpuHash", "lruPcpuHash"] as const) {
    [...s.accessor.iterPercpuHashMap(maps[role])];
  }
  for (const role of ["hash", "array", "pcpuArray"] as const) {
    [...s.accessor.iterEntryBatches(maps[role])];
  }
  [...s.accessor.iterTaskStorage(maps.task)];
  assert.deepEqual(s.accessor.problems(), []);
});

/**
 * Runs the contract against a backend, one step per check, opening a fresh
 * subject per check so that no check depends on another.
 */
export async function runAccessorContract(
  t: Deno.TestContext,
  open: () => ContractSubject,
): Promise<void> {
  let gaps: ReadonlyMap<string, "fails" | "unsafe">;
  {
    using probe = open();
    gaps = probe.knownGaps;
  }
  for (const id of gaps.keys()) {
    assert.ok(checkIds().includes(id), `knownGaps names no check "${id}"`);
  }
  for (const [id, fn] of CHECKS) {
    const gap = gaps.get(id);
    if (gap === "unsafe") {
      await t.step({
        name: `${id} (KNOWN GAP, not run: it allocates without bound)`,
        ignore: true,
        fn: () => {},
      });
      continue;
    }
    await t.step(gap ? `${id} (KNOWN GAP: must still fail)` : id, () => {
      using subject = open();
      const byName = new Map(subject.accessor.maps().map((m) => [m.name, m]));
      const maps = {} as Record<Role, BpfMapInfo>;
      for (const role of ROLES) {
        const map = byName.get(subject.names[role]);
        assert.ok(
          map,
          `fixture map ${role} ("${subject.names[role]}") is listed`,
        );
        maps[role] = map;
      }
      if (gap === undefined) {
        fn(subject, maps);
        return;
      }
      // KNOWN GAP of this backend: the check must still fail. When it
      // passes, the gap is fixed: remove the id from the backend's knownGaps.
      let failure: unknown = null;
      try {
        fn(subject, maps);
      } catch (error) {
        failure = error;
      }
      assert.ok(
        failure !== null,
        `check "${id}" now passes on this backend: remove it from knownGaps`,
      );
    });
  }
}
