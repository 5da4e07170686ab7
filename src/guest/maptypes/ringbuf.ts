/**
 * RINGBUF and USER_RINGBUF in guest memory: `bpf_ringbuf_map.rb` points at
 * a `struct bpf_ringbuf` whose data pages the kernel vmaps twice in a row
 * (`bpf_ringbuf_area_alloc`), so a pending span that wraps reads as one
 * run of kernel addresses. Reading is non-destructive by nature: nothing is
 * written to the image.
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { RingbufLayout } from "./layout.ts";

/** The positions and the pending bytes, before records are parsed. */
export interface GuestRingbuf {
  /** Data area size (`mask + 1`). */
  capacity: number;
  /** `consumer_pos`. */
  consumerPos: bigint;
  /** `producer_pos`. */
  producerPos: bigint;
  /**
   * The pending span (at most `capacity` bytes), copied, starting at
   * `consumerPos & mask`; empty when the positions are inconsistent (the
   * record parser names why).
   */
  pending: Uint8Array;
}

/** Largest data area read: a ring larger than this is refused rather than copied. */
export const MAX_GUEST_RINGBUF = 1 << 30;

/** Reads a ring buffer's positions and pending span. */
export function readGuestRingbuf(
  space: KernelAddressSpace,
  layout: RingbufLayout,
  map: GuestMapRecord,
): GuestRingbuf {
  const what = `map ${map.id} ("${map.name}")`;
  const rb = space.mustU64(
    map.kernelAddress + BigInt(layout.rb),
    `bpf_ringbuf_map.rb of ${what}`,
  );
  const mask = space.mustU64(rb + BigInt(layout.mask), `bpf_ringbuf.mask`);
  const capacity = mask + 1n;
  // max_entries is the data size the kernel was asked for; a mask that
  // disagrees means this is not the ring the map record describes.
  if (
    capacity !== BigInt(map.maxEntries) || capacity > BigInt(MAX_GUEST_RINGBUF)
  ) {
    throw new GuestMemoryError(
      `use the ring buffer of ${what}`,
      rb,
      `bpf_ringbuf.mask + 1 is ${capacity}, max_entries is ${map.maxEntries}`,
    );
  }
  const consumerPos = space.mustU64(
    rb + BigInt(layout.consumerPos),
    "bpf_ringbuf.consumer_pos",
  );
  const producerPos = space.mustU64(
    rb + BigInt(layout.producerPos),
    "bpf_ringbuf.producer_pos",
  );
  const size = Number(capacity);
  let pending = new Uint8Array(0);
  if (producerPos >= consumerPos) {
    const length = Number(
      producerPos - consumerPos > capacity
        ? capacity
        : producerPos - consumerPos,
    );
    const start = Number(consumerPos & mask);
    // read() may return a view of a page cache: copy before the next read
    pending = space.mustRead(
      rb + BigInt(layout.data + start),
      length,
      `the pending records of ${what}`,
    ).slice();
  }
  return { capacity: size, consumerPos, producerPos, pending };
}
