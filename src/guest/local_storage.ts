/**
 * TASK/INODE/SK/CGRP storage maps: `bpf_local_storage_map` buckets of
 * `hlist` chains of `bpf_local_storage_elem`, each pointing at its owner's
 * `bpf_local_storage`. No `max_entries` bounds them, so cycles are detected
 * exactly and the total is capped.
 *
 * @module
 */

import { MapType } from "../sys/constants.ts";
import { GuestKernelError, GuestMemoryError, hex } from "./errors.ts";
import {
  checkType,
  type GuestMapRecord,
  type MapReadContext,
} from "./map_records.ts";

/** One local-storage element. */
export interface GuestStorageEntry {
  /** Kernel virtual address of the owner (task_struct, inode, sock, cgroup). */
  owner: bigint;
  /** Value bytes (a copy). */
  value: Uint8Array;
}

/** Map types read as local storage. */
export const STORAGE_TYPES: ReadonlySet<number> = new Set<number>([
  MapType.TASK_STORAGE,
  MapType.INODE_STORAGE,
  MapType.SK_STORAGE,
  MapType.CGRP_STORAGE,
]);

/** Most elements a walk accepts. */
const LIMIT = 1 << 22;

/**
 * Every element of a TASK/INODE/SK/CGRP storage map, keyed by owner address.
 * A bucket whose chain leads to unmapped memory, or an element whose owner or
 * value cannot be read, is skipped and recorded in `context.problems`.
 */
export function* iterLocalStorage(
  context: MapReadContext,
  map: GuestMapRecord,
): Generator<GuestStorageEntry> {
  checkType(map, STORAGE_TYPES, "a task, inode, sk or cgroup storage map");
  const s = context.layout.localStorage;
  if (!s) {
    throw new GuestKernelError(
      "The guest's BTF has no struct bpf_local_storage_map",
    );
  }
  const { space, problems } = context;
  const base = map.kernelAddress;
  const log = space.mustU32(
    base + BigInt(s.bucketLog),
    "bpf_local_storage_map.bucket_log",
  );
  if (log > 24) {
    throw new GuestMemoryError(
      `walk map ${map.id} ("${map.name}")`,
      base,
      `bucket_log ${log} is implausible`,
    );
  }
  const buckets = space.mustU64(
    base + BigInt(s.buckets),
    "bpf_local_storage_map.buckets",
  );
  const nBuckets = 1 << log;
  const seen = new Set<bigint>();
  const skip = (
    what: "bucket" | "element" | "owner",
    bucket: number,
    address: bigint,
    why: string,
  ): void => {
    problems.add({
      what,
      mapId: map.id,
      address,
      message: `map ${map.id} ("${map.name}"): ${
        what === "bucket"
          ? `rest of bucket ${bucket}`
          : `an element of bucket ${bucket}`
      } skipped at ${hex(address)}: ${why}`,
    });
  };
  for (let b = 0; b < nBuckets; b++) {
    const headVa = buckets + BigInt(b * s.bucketSize + s.bucketFirst);
    let node = space.u64(headVa);
    if (node === null) {
      if (b === 0) {
        throw new GuestMemoryError(
          `read bucket 0 of map ${map.id}`,
          headVa,
          "not mapped",
        );
      }
      skip("bucket", b, headVa, "the bucket is not mapped");
      continue;
    }
    while (node !== null && node !== 0n) {
      if (seen.has(node)) {
        throw new GuestMemoryError(
          `walk map ${map.id}`,
          node,
          `selem at ${hex(node)} of map ${map.id} is reached twice (cycle)`,
        );
      }
      seen.add(node);
      if (seen.size > LIMIT) {
        throw new GuestMemoryError(
          `walk map ${map.id}`,
          node,
          `more than ${LIMIT} elements`,
        );
      }
      const elem = node - BigInt(s.elemMapNode);
      const next = space.u64(node + BigInt(s.nodeNext));
      if (next === null) {
        skip("bucket", b, node, "selem.map_node is not mapped");
        break;
      }
      const storage = space.u64(elem + BigInt(s.elemLocalStorage));
      const owner = storage === null || storage === 0n
        ? storage
        : space.u64(storage + BigInt(s.storageOwner));
      const value = space.read(elem + BigInt(s.elemData), map.valueSize);
      if (owner === null) {
        skip("owner", b, elem, "its bpf_local_storage is not mapped");
      } else if (value === null) {
        skip("element", b, elem, "its value is not mapped");
      } else {
        yield { owner, value: value.slice() };
      }
      node = next;
    }
  }
}
