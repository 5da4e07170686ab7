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
import type { OwnedFd } from "../../sys/fd.ts";
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
  readonly position: bigint;
  /** Data length from the header, flags masked off. */
  readonly length: number;
  /** Reserved by the producer and not yet submitted: the data may be incomplete. */
  readonly busy: boolean;
  /** Discarded: a consumer would skip it. */
  readonly discarded: boolean;
  /** The record's data (`length` bytes), a view of the snapshot's one copy. */
  readonly data: Uint8Array;
}

/**
 * The ring buffer as it stood when read. The pending span is copied once
 * into {@linkcode RingbufSnapshot.span}; records are kept as two columns
 * (header offset, header word) and made into objects only when asked for,
 * so a ring of a million small records is read at copy speed.
 */
export class RingbufSnapshot {
  /** `"ringbuf"` or `"user_ringbuf"`. */
  readonly kind: "ringbuf" | "user_ringbuf";
  /** Data area size in bytes (`max_entries`). */
  readonly capacity: number;
  /** The consumer's position (u64, never wrapped). */
  readonly consumerPos: bigint;
  /** The producer's position (u64, never wrapped). */
  readonly producerPos: bigint;
  /** What could not be read and why (positions out of bounds, a cut record); empty when all was read. */
  readonly problems: string[] = [];
  /** The copied pending span, from the consumer position on. */
  span: Uint8Array = new Uint8Array(0);
  /** How many records were found. */
  count = 0;
  /** Offset of record `i`'s header in `span` (first `count` entries). */
  offsets: Uint32Array = new Uint32Array(0);
  /** Record `i`'s header word: length with the busy and discard bits. */
  headers: Uint32Array = new Uint32Array(0);
  #records: RingbufRecord[] | undefined;

  /**
   * An empty snapshot; {@linkcode parseRingbuf} fills it.
   *
   * @param kind which ring
   * @param capacity data area size
   * @param consumerPos consumer position
   * @param producerPos producer position
   */
  constructor(
    kind: "ringbuf" | "user_ringbuf",
    capacity: number,
    consumerPos: bigint,
    producerPos: bigint,
  ) {
    this.kind = kind;
    this.capacity = capacity;
    this.consumerPos = consumerPos;
    this.producerPos = producerPos;
  }

  /** `producerPos - consumerPos`: bytes not yet consumed (headers and padding included). */
  get pendingBytes(): bigint {
    return this.producerPos - this.consumerPos;
  }

  /** Record `index` (0 = oldest). */
  record(index: number): RingbufRecord {
    if (!Number.isInteger(index) || index < 0 || index >= this.count) {
      throw new RangeError(
        `record ${index} is out of range: the snapshot holds ${this.count}`,
      );
    }
    const offset = this.offsets[index]!;
    const header = this.headers[index]!;
    const length = header & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT);
    return {
      position: this.consumerPos + BigInt(offset),
      length,
      busy: (header & RINGBUF_BUSY_BIT) !== 0,
      discarded: (header & RINGBUF_DISCARD_BIT) !== 0,
      data: this.span.subarray(
        offset + RINGBUF_HEADER_SIZE,
        offset + RINGBUF_HEADER_SIZE + length,
      ),
    };
  }

  /** Every record, oldest first, as objects (made on first access). */
  get records(): RingbufRecord[] {
    if (this.#records === undefined) {
      const records = new Array<RingbufRecord>(this.count);
      for (let i = 0; i < this.count; i++) records[i] = this.record(i);
      this.#records = records;
    }
    return this.#records;
  }
}

function roundUp8(value: number): number {
  return (value + 7) & ~7;
}

/**
 * The number of pending bytes to read, after checking the positions and the
 * capacity; null (with the reason in `snapshot.problems`) when nothing can
 * be read. More than `capacity` pending is cut to `capacity`.
 */
function pendingLength(snapshot: RingbufSnapshot): number | null {
  const { capacity, consumerPos, producerPos } = snapshot;
  if (capacity <= 0 || (capacity & (capacity - 1)) !== 0) {
    snapshot.problems.push(`capacity ${capacity} is not a power of two`);
    return null;
  }
  if (producerPos < consumerPos) {
    snapshot.problems.push(
      `producer position ${producerPos} is behind consumer position ${consumerPos}`,
    );
    return null;
  }
  const span = snapshot.pendingBytes;
  if (span > BigInt(capacity)) {
    snapshot.problems.push(
      `${span} bytes pending exceed the capacity ${capacity}; read only the first ${capacity}`,
    );
    return capacity;
  }
  return Number(span);
}

/** Bytes copied before the headers in them are walked: the walk then reads from cache, not memory. */
const WALK_CHUNK = 256 * 1024;

/**
 * Copies `pending` (the span from the consumer position on) into `into`
 * when given and large enough, else into fresh memory (or keeps it as is
 * with `into === pending`), and walks its record headers into `snapshot`.
 * The copy goes a chunk at a time, each chunk's headers walked while the
 * chunk is still in cache. At most `pending.byteLength / 8` steps whatever
 * the headers say.
 */
function walkRecords(
  snapshot: RingbufSnapshot,
  pending: Uint8Array,
  into: Uint8Array | undefined,
): RingbufSnapshot {
  const length = pending.byteLength;
  const { consumerPos } = snapshot;
  const copyNeeded = into !== pending;
  const copy = !copyNeeded
    ? pending
    : into && into.byteLength >= length
    ? into.subarray(0, length)
    : new Uint8Array(length);
  snapshot.span = copy;
  const view = new DataView(copy.buffer, copy.byteOffset, copy.byteLength);
  let offsets = new Uint32Array(Math.min(4096, length >>> 3) + 1);
  let headers = new Uint32Array(offsets.length);
  let count = 0;
  let offset = 0;
  let copied = copyNeeded ? 0 : length;
  let broken = false;
  while (!broken && offset + RINGBUF_HEADER_SIZE <= length) {
    if (offset + RINGBUF_HEADER_SIZE > copied) {
      const end = Math.min(
        length,
        Math.max(copied + WALK_CHUNK, offset + RINGBUF_HEADER_SIZE),
      );
      copy.set(pending.subarray(copied, end), copied);
      copied = end;
    }
    // every header whose 8 bytes are copied
    const walkEnd = copied - RINGBUF_HEADER_SIZE;
    while (offset <= walkEnd) {
      const header = view.getUint32(offset, true);
      const dataLength = header & ~(RINGBUF_BUSY_BIT | RINGBUF_DISCARD_BIT);
      if (dataLength > length - offset - RINGBUF_HEADER_SIZE) {
        snapshot.problems.push(
          `record at position ${
            consumerPos + BigInt(offset)
          } claims ${dataLength} bytes but only ${
            length - offset - RINGBUF_HEADER_SIZE
          } are pending`,
        );
        broken = true;
        break;
      }
      if (count === offsets.length) {
        // Grow geometrically; the walk is bounded by length / 8 records anyway.
        const grown = Math.min(offsets.length * 2, (length >>> 3) + 1);
        const moreOffsets = new Uint32Array(grown);
        moreOffsets.set(offsets);
        const moreHeaders = new Uint32Array(grown);
        moreHeaders.set(headers);
        offsets = moreOffsets;
        headers = moreHeaders;
      }
      offsets[count] = offset;
      headers[count] = header;
      count++;
      offset += roundUp8(dataLength + RINGBUF_HEADER_SIZE);
    }
  }
  // the span is whole even when a bad header stopped the walk early
  if (copied < length) copy.set(pending.subarray(copied), copied);
  snapshot.count = count;
  snapshot.offsets = offsets;
  snapshot.headers = headers;
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
 * @param into where to copy the pending span when it fits (a buffer reused
 *   across reads is already faulted in, which makes the copy several times
 *   faster than into fresh memory); a new buffer otherwise
 */
export function parseRingbuf(
  kind: RingbufSnapshot["kind"],
  consumerPos: bigint,
  producerPos: bigint,
  data: Uint8Array,
  capacity: number,
  into?: Uint8Array,
): RingbufSnapshot {
  const snapshot = new RingbufSnapshot(
    kind,
    capacity,
    consumerPos,
    producerPos,
  );
  const length = pendingLength(snapshot);
  if (length === null) return snapshot;
  if (data.byteLength < 2 * capacity) {
    snapshot.problems.push(
      `data area is ${data.byteLength} bytes, the double mapping needs ${
        2 * capacity
      }`,
    );
    return snapshot;
  }
  const start = Number(consumerPos & BigInt(capacity - 1));
  // One copy of the whole pending span: the double mapping makes it
  // contiguous, and records become views of it instead of one copy each.
  return walkRecords(snapshot, data.subarray(start, start + length), into);
}

/**
 * Walks the records of `pending`, the bytes from the consumer position on
 * (`min(producerPos - consumerPos, capacity)` of them), already copied by
 * the caller (a guest ring read out of memory): they become the snapshot's
 * span as they are. Fewer bytes than the positions say is a problem, and
 * the records that are there are walked.
 */
export function parsePendingSpan(
  kind: RingbufSnapshot["kind"],
  consumerPos: bigint,
  producerPos: bigint,
  capacity: number,
  pending: Uint8Array,
): RingbufSnapshot {
  const snapshot = new RingbufSnapshot(
    kind,
    capacity,
    consumerPos,
    producerPos,
  );
  const length = pendingLength(snapshot);
  if (length === null) return snapshot;
  if (pending.byteLength < length) {
    snapshot.problems.push(
      `only ${pending.byteLength} of the ${length} pending bytes were read`,
    );
  }
  const span = pending.subarray(0, Math.min(length, pending.byteLength));
  return walkRecords(snapshot, span, span);
}

/** The page size, after checking `map` is a ring whose size the kernel would accept. */
function checkRing(map: BpfMapInfo): number {
  if (map.type !== MapType.RINGBUF && map.type !== MapType.USER_RINGBUF) {
    throw new MapTypeError(map, map.type, "a RINGBUF or USER_RINGBUF map");
  }
  const capacity = map.maxEntries;
  const page = pageSize();
  if (
    capacity <= 0 || capacity % page !== 0 || (capacity & (capacity - 1))
  ) {
    throw new MapArgumentError(
      map,
      "max_entries",
      `is ${capacity}, not a power-of-two multiple of the ${page}-byte page`,
    );
  }
  return page;
}

function kindOf(map: BpfMapInfo): RingbufSnapshot["kind"] {
  return map.type === MapType.RINGBUF ? "ringbuf" : "user_ringbuf";
}

/**
 * A live RINGBUF or USER_RINGBUF held open and mapped for repeated reads:
 * the fd, the read-only mapping and one copy buffer are owned by this
 * object and released by `Symbol.dispose`. Each {@linkcode read} copies
 * the pending span into the same buffer, so the records of one read are
 * valid until the next read; copy what you keep.
 *
 * @example Watch a ring without consuming it
 * ```ts
 * import { BpfSyscallAccessor } from "../syscall.ts";
 * const map = new BpfSyscallAccessor().findMap("events")!;
 * using reader = RingbufReader.open(map);
 * const { records } = reader.read();
 * ```
 */
export class RingbufReader implements Disposable {
  readonly #map: BpfMapInfo;
  readonly #fd: OwnedFd;
  readonly #mapping: MappedBpfMap;
  readonly #page: number;
  #buffer: Uint8Array | undefined;

  private constructor(
    map: BpfMapInfo,
    fd: OwnedFd,
    mapping: MappedBpfMap,
    page: number,
  ) {
    this.#map = map;
    this.#fd = fd;
    this.#mapping = mapping;
    this.#page = page;
  }

  /**
   * Opens and maps `map`. The map is opened read-write (the kernel refuses
   * to mmap a read-only map fd even for reading) but mapped PROT_READ only.
   */
  static open(map: BpfMapInfo): RingbufReader {
    const page = checkRing(map);
    const capacity = map.maxEntries;
    const fd = mapGetFdById(map.id, OpenFlag.READ_WRITE);
    try {
      const mapping = MappedBpfMap.map(fd.fd, 2 * page + 2 * capacity);
      return new RingbufReader(map, fd, mapping, page);
    } catch (error) {
      fd.close();
      throw error;
    }
  }

  /**
   * The pending records now. With `reuse` (the default) they are views of
   * this reader's buffer, overwritten by the next read; without, of a
   * fresh copy.
   */
  read(options: { reuse?: boolean } = {}): RingbufSnapshot {
    const bytes = this.#mapping.bytes;
    const page = this.#page;
    const capacity = this.#map.maxEntries;
    const positions = new DataView(bytes.buffer, bytes.byteOffset, 2 * page);
    // Consumer first: the producer only moves forward, so reading it second
    // can only show more records, never a span that starts before the consumer.
    const consumerPos = positions.getBigUint64(0, true);
    const producerPos = positions.getBigUint64(page, true);
    const reuse = options.reuse ?? true;
    if (reuse) this.#buffer ??= new Uint8Array(capacity);
    return parseRingbuf(
      kindOf(this.#map),
      consumerPos,
      producerPos,
      bytes.subarray(2 * page),
      capacity,
      reuse ? this.#buffer : undefined,
    );
  }

  /** Unmaps and closes; later calls do nothing. */
  close(): void {
    this.#mapping.close();
    this.#fd.close();
    this.#buffer = undefined;
  }

  /** Unmaps and closes. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * The pending records of a live RINGBUF or USER_RINGBUF, without consuming
 * any, copied into fresh memory; the fd and mappings are released before
 * returning.
 *
 * Unlike a held {@linkcode RingbufReader}, which maps the whole ring twice
 * once and reuses its buffer, a one-shot read pays for every page it maps
 * and every fresh page it copies into. So it maps the two position pages,
 * reads the positions, then maps only the pages the pending span covers
 * (at its offset in the double mapping, so a span that wraps is still one
 * run): a nearly empty 64 MiB ring costs a few pages, a full one half of
 * what mapping it twice would.
 */
export function readRingbufLive(map: BpfMapInfo): RingbufSnapshot {
  const page = checkRing(map);
  const capacity = map.maxEntries;
  using fd = mapGetFdById(map.id, OpenFlag.READ_WRITE);
  let consumerPos: bigint;
  let producerPos: bigint;
  {
    using positions = MappedBpfMap.map(fd.fd, 2 * page);
    const view = new DataView(
      positions.bytes.buffer,
      positions.bytes.byteOffset,
      2 * page,
    );
    // consumer first, as RingbufReader.read does
    consumerPos = view.getBigUint64(0, true);
    producerPos = view.getBigUint64(page, true);
  }
  const snapshot = new RingbufSnapshot(
    kindOf(map),
    capacity,
    consumerPos,
    producerPos,
  );
  const length = pendingLength(snapshot);
  if (length === null) return snapshot;
  if (length === 0) return walkRecords(snapshot, new Uint8Array(0), undefined);
  const start = Number(consumerPos & BigInt(capacity - 1));
  const firstPage = Math.floor(start / page);
  const pages = Math.ceil((start + length) / page) - firstPage;
  // the data area starts two pages in and is mapped twice: start < capacity
  // and length <= capacity keep the window inside it
  using pendingPages = MappedBpfMap.map(fd.fd, pages * page, {
    offset: (2 + firstPage) * page,
  });
  const from = start - firstPage * page;
  return walkRecords(
    snapshot,
    pendingPages.bytes.subarray(from, from + length),
    undefined,
  );
}
