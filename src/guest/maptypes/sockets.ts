/**
 * SOCKMAP, SOCKHASH and REUSEPORT_SOCKARRAY in guest memory. A user-space
 * lookup answers with the socket's cookie (`sock_map_lookup_sys`,
 * `sock_hash_lookup_sys`, `bpf_fd_reuseport_array_lookup_elem`), and ENOSPC
 * for every key when the value is 4 bytes; these readers find the same
 * `struct sock` and read `sk_cookie` (`__sk_common.skc_cookie`).
 *
 * One difference memory cannot hide: the kernel numbers a socket lazily, on
 * the first lookup or `SO_COOKIE` (`__sock_gen_cookie`). A socket nobody
 * has asked about yet reads as cookie 0 here, where a bpf() lookup would
 * give it the next number.
 *
 * Slot order is `get_next_key`'s: every index for the arrays, bucket by
 * bucket and down each chain for SOCKHASH (`sock_hash_get_next_key`).
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { SocketMapLayout } from "./layout.ts";
import {
  bucketCountFor,
  readPointerArray,
  walkHashChains,
} from "./pointers.ts";

/** `MAX_BPF_STACK`: the largest SOCKHASH key the kernel creates. */
const MAX_BPF_STACK = 512;

/** One slot of a socket map. */
export interface GuestSocketSlot {
  /** Key bytes (`key_size` of them; a u32 index for the arrays). */
  key: Uint8Array;
  /** The `struct sock *`, 0n for an empty slot. */
  socket: bigint;
  /** `sk_cookie` (0n when empty, or when never asked for: see the module doc). */
  cookie: bigint;
}

function indexKey(index: number): Uint8Array {
  const key = new Uint8Array(4);
  new DataView(key.buffer).setUint32(0, index, true);
  return key;
}

function cookieOf(
  space: KernelAddressSpace,
  layout: SocketMapLayout,
  socket: bigint,
  what: string,
): bigint {
  return socket === 0n
    ? 0n
    : space.mustU64(socket + BigInt(layout.cookie), `sk_cookie of ${what}`);
}

function arraySlots(
  space: KernelAddressSpace,
  layout: SocketMapLayout,
  map: GuestMapRecord,
  sockets: bigint[],
): GuestSocketSlot[] {
  const what = `map ${map.id} ("${map.name}")`;
  return sockets.map((socket, index) => ({
    key: indexKey(index),
    socket,
    cookie: cookieOf(space, layout, socket, `slot ${index} of ${what}`),
  }));
}

/** Every index of a SOCKMAP, in order. */
export function readGuestSockmap(
  space: KernelAddressSpace,
  layout: SocketMapLayout,
  map: GuestMapRecord,
): GuestSocketSlot[] {
  const what = `map ${map.id} ("${map.name}")`;
  const sks = space.mustU64(
    map.kernelAddress + BigInt(layout.sks),
    `bpf_stab.sks of ${what}`,
  );
  return arraySlots(
    space,
    layout,
    map,
    readPointerArray(space, sks, map.maxEntries, `the sockets of ${what}`),
  );
}

/** Every index of a REUSEPORT_SOCKARRAY, in order (its pointers are inline). */
export function readGuestReuseportArray(
  space: KernelAddressSpace,
  layout: SocketMapLayout,
  map: GuestMapRecord,
): GuestSocketSlot[] {
  const what = `map ${map.id} ("${map.name}")`;
  return arraySlots(
    space,
    layout,
    map,
    readPointerArray(
      space,
      map.kernelAddress + BigInt(layout.reuseportPtrs),
      map.maxEntries,
      `the sockets of ${what}`,
    ),
  );
}

/** Every element of a SOCKHASH, in `get_next_key` order. */
export function readGuestSockhash(
  space: KernelAddressSpace,
  layout: SocketMapLayout,
  map: GuestMapRecord,
): GuestSocketSlot[] {
  const what = `map ${map.id} ("${map.name}")`;
  const va = map.kernelAddress;
  // sock_hash_alloc refuses keys larger than the BPF stack
  if (map.keySize === 0 || map.keySize > MAX_BPF_STACK) {
    throw new GuestMemoryError(
      `read the keys of ${what}`,
      va,
      `key_size ${map.keySize} is not 1 to ${MAX_BPF_STACK}`,
    );
  }
  const buckets = space.mustU32(
    va + BigInt(layout.bucketsNum),
    `bpf_shtab.buckets_num of ${what}`,
  );
  // sock_hash_alloc sizes the buckets from max_entries: anything else is
  // not this map's table, and would bound the walk by a hostile number
  if (buckets !== bucketCountFor(map.maxEntries)) {
    throw new GuestMemoryError(
      `use the buckets of ${what}`,
      va,
      `buckets_num is ${buckets}, max_entries ${map.maxEntries} makes ${
        bucketCountFor(map.maxEntries)
      }`,
    );
  }
  const table = space.mustU64(
    va + BigInt(layout.buckets),
    `bpf_shtab.buckets of ${what}`,
  );
  const nodes = walkHashChains(
    space,
    layout,
    map,
    table,
    buckets,
    layout.bucketSize,
    layout.bucketHead,
  );
  return nodes.map((node) => {
    const element = node - BigInt(layout.elemNode);
    const socket = space.mustU64(
      element + BigInt(layout.elemSk),
      `bpf_shtab_elem.sk of ${what}`,
    );
    return {
      key: space.mustRead(
        element + BigInt(layout.elemKey),
        map.keySize,
        `a key of ${what}`,
      ).slice(),
      socket,
      cookie: cookieOf(space, layout, socket, `an element of ${what}`),
    };
  });
}
