/**
 * RINGBUF and USER_RINGBUF: the pending records, read without consuming.
 *
 * The map is mmapped read-only as the kernel lays it out for user space:
 * the consumer page (`consumer_pos` at offset 0), the producer page
 * (`producer_pos` at its offset 0), then the data area mapped twice in a
 * row, so a record that wraps past the end reads contiguously. Nothing is
 * ever written: a reader that moved `consumer_pos` would steal the records
 * from the real consumer.
 *
 * @module
 */

import { MapArgumentError, MapTypeError } from "../../errors.ts";
import { mapGetFdById, OpenFlag } from "../../sys/bpf.ts";
import { MapType } from "../../sys/constants.ts";
import { pageSize } from "../../sys/elem.ts";
import { MappedBpfMap } from "../../sys/mmap.ts";
import type { BpfMapInfo } from "../types.ts";

/** `BPF_RINGBUF_BUSY_BIT`: reserved, not yet submitted or discarded. */
export const RINGBUF_BUSY_BIT = 1 << 31;
/** `BPF_RINGBUF_DISCARD_BIT`: discarded; a consumer skips it. */
export const RINGBUF_DISCARD_BIT = 1 << 30;
/** `BPF_RINGBUF_HDR_SZ`: `u32 len` (with the two bits above) and `u32 pg_off`. */
export const RINGBUF_HEADER_SIZE = 8;

/** One record between the consumer and producer positions. */
export interface RingbufRecord {
  /** The record's position (the ring offset of its header, unwrapped). */
  position: bigint;
  /** Data length from the header, flags masked off. */
  length: number;
  /** Reserved by the producer and not yet submitted: the data may be incomplete. */
  busy: boolean;
  /** Discarded: a consumer would skip it. */
  discarded: boolean;
  /** The record's data (`length` bytes), a view of the snapshot's one copy. */
  data: Uint8Array;
}

/** The ring buffer as it stood when read. */
export interface RingbufSnapshot {
  /** `"ringbuf"` or `"user_ringbuf"`. */
  kind: "ringbuf" | "user_ringbuf";
  /** Data area size in bytes (`max_entries`). */
  capacity: number;
  /** The consumer's position (u64, never wrapped). */
  consumerPos: bigint;
  /** The producer's position (u64, never wrapped). */
  producerPos: bigint;
  /** `producerPos - consumerPos`: bytes not yet consumed (headers and padding included). */
  pendingBytes: bigint;
  /** Records from the consumer position on, oldest first. */
  records: RingbufRecord[];
  /** What could not be read and why (positions out of bounds, a cut record); empty when all was read. */
  problems: string[];
}

function roundUp8(value: number): number {
  return (value + 7) & ~7;
}

/**
 * Walks the records between `consumerPos` and `producerPos` in `data`, the
 * data area mapped twice (`2 * capacity` bytes). Pure, so that hostile
 * positions and headers can be tested without a kernel: the walk reads at
 * most `capacity` bytes and makes at most `capacity / 8` steps whatever the
 * positions and lengths say.
 *
 * @param kind which ring this is
 * @param consumerPos the consumer position read from the consumer page
 * @param producerPos the producer position read from the producer page
 * @param data the double-mapped data area (or a copy of it)
 * @param capacity the data area size, a power of two
 */
export function parseRingbuf(
  kind: RingbufSnapshot["kind"],
  consumerPos: bigint,
  producerPos: bigint,
  data: Uint8Array,
  capacity: number,
): RingbufSnapshot {
  const snapshot: RingbufSnapshot = {
    kind,
    capacity,
    consumerPos,
    producerPos,
    pendingBytes: producerPos - consumerPos,
    records: [],
    problems: [],
  };
  if (capacity <= 0 || (capacity & (capacity - 1)) !== 0) {
    snapshot.problems.push(`capacity ${capacity} is not a power of two`);
    return snapshot;
  }
  if (data.byteLength < 2 * capacity) {
    snapshot.problems.push(
      `data area is ${data.byteLength} bytes, the double mapping needs ${
        2 * capacity
      }`,
    );
    return snapshot;
  }
  if (producerPos < consumerPos) {
    snapshot.problems.push(
      `producer position ${producerPos} is behind consumer position ${consumerPos}`,
    );
    return snapshot;
  }
  let span = snapshot.pendingBytes;
  if (span > BigInt(capacity)) {
    snapshot.problems.push(
      `${span} bytes pending exceed the capacity ${capacity}; read only the first ${capacity}`,
    );
    span = BigInt(capacity);
  }
  const length = Number(span);
  const start = Number(consumerPos & BigInt(capacity - 1));
  // One copy of the whole pending span: the double mapping makes it
  // contiguous, and records become views of it instead of one copy each.
  const copy = data.slice(start, start + length);
  const view = new DataView(copy.buffer);
  let offset = 0;
  while (offset + RINGBUF_HEADER_SIZE <= length) {
    const header = view.getUint32(offset, true);
    const dataLength = header & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT);
    const size = roundUp8(dataLength + RINGBUF_HEADER_SIZE);
    if (dataLength > length - offset - RINGBUF_HEADER_SIZE) {
      snapshot.problems.push(
        `record at position ${
          consumerPos + BigInt(offset)
        } claims ${dataLength} bytes but only ${
          length - offset - RINGBUF_HEADER_SIZE
        } are pending`,
      );
      break;
    }
    snapshot.records.push({
      position: consumerPos + BigInt(offset),
      length: dataLength,
      busy: (header & RINGBUF_BUSY_BIT) !== 0,
      discarded: (header & RINGBUF_DISCARD_BIT) !== 0,
      data: copy.subarray(
        offset + RINGBUF_HEADER_SIZE,
        offset + RINGBUF_HEADER_SIZE + dataLength,
      ),
    });
    offset += size;
  }
  if (offset < length && snapshot.problems.length === 0) {
    snapshot.problems.push(
      `${length - offset} pending bytes at position ${
        consumerPos + BigInt(offset)
      } are too short for a record header`,
    );
  }
  return snapshot;
}

/**
 * The pending records of a live RINGBUF or USER_RINGBUF, without consuming
 * any. The map is opened read-write (the kernel refuses to mmap a read-only
 * map fd even for reading) but mapped PROT_READ only; fd and mapping are
 * released before returning.
 */
export function readRingbufLive(map: BpfMapInfo): RingbufSnapshot {
  if (map.type !== MapType.RINGBUF && map.type !== MapType.USER_RINGBUF) {
    throw new MapTypeError(map, map.type, "a RINGBUF or USER_RINGBUF map");
  }
  const capacity = map.maxEntries;
  const page = pageSize();
  if (capacity <= 0 || capacity % page !== 0 || (capacity & (capacity - 1))) {
    throw new MapArgumentError(
      map,
      "max_entries",
      `is ${capacity}, not a power-of-two multiple of the ${page}-byte page`,
    );
  }
  using fd = mapGetFdById(map.id, OpenFlag.READ_WRITE);
  using mapping = MappedBpfMap.map(fd.fd, 2 * page + 2 * capacity);
  const bytes = mapping.bytes;
  const positions = new DataView(bytes.buffer, bytes.byteOffset, 2 * page);
  // Consumer first: the producer only moves forward, so reading it second
  // can only show more records, never a span that starts before the consumer.
  const consumerPos = positions.getBigUint64(0, true);
  const producerPos = positions.getBigUint64(page, true);
  return parseRingbuf(
    map.type === MapType.RINGBUF ? "ringbuf" : "user_ringbuf",
    consumerPos,
    producerPos,
    bytes.subarray(2 * page),
    capacity,
  );
}
