/**
 * A byte-buffered stdout writer for large outputs: entries are encoded
 * straight into a reused buffer and written in 1 MiB chunks, so a dump of
 * any size holds one chunk in memory, never the whole output.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";

const HEX = "0123456789abcdef";
const HEX_HIGH = new Uint8Array(256);
const HEX_LOW = new Uint8Array(256);
for (let byte = 0; byte < 256; byte++) {
  HEX_HIGH[byte] = HEX.charCodeAt(byte >> 4);
  HEX_LOW[byte] = HEX.charCodeAt(byte & 15);
}
/**
 * A short constant as little-endian words plus trailing bytes: stored with
 * a few word stores, where `Uint8Array.set` costs a call per element.
 */
export interface Packed {
  length: number;
  words: Uint32Array;
  tail: Uint8Array;
}

/** Packs `text` (UTF-8) for {@linkcode storePacked}. */
export function pack(text: string): Packed {
  const bytes = new TextEncoder().encode(text);
  const whole = bytes.length >> 2;
  const view = new DataView(bytes.buffer);
  return {
    length: bytes.length,
    words: Uint32Array.from(
      { length: whole },
      (_, i) => view.getUint32(4 * i, true),
    ),
    tail: bytes.slice(4 * whole),
  };
}

/** Stores a packed constant at `at`; returns the new end. */
export function storePacked(
  buffer: Uint8Array,
  at: number,
  c: Packed,
): number {
  const view = viewOf(buffer);
  const words = c.words;
  for (let i = 0; i < words.length; i++) {
    view.setUint32(at + 4 * i, words[i]!, true);
  }
  const tail = c.tail;
  const end = at + 4 * words.length;
  for (let i = 0; i < tail.length; i++) buffer[end + i] = tail[i]!;
  return at + c.length;
}

const KEY_OPEN = pack('{"key":[');
const VALUE_OPEN = pack('],"value":[');
const VALUES_OPEN = pack('],"values":[');
const cpuOpenCache: Packed[] = [];
function cpuOpen(cpu: number): Packed {
  return cpuOpenCache[cpu] ??= pack(
    `${cpu === 0 ? "" : ","}{"cpu":${cpu},"value":[`,
  );
}

/**
 * Stores `"0xNN"` for `count` bytes of `source` from `start`, comma
 * separated, at `at` in `buffer`; returns the new end. The caller has made
 * room (7 bytes a byte).
 */
export function storeQuotedHex(
  buffer: Uint8Array,
  at: number,
  source: Uint8Array,
  start: number,
  count: number,
): number {
  if (count === 0) return at;
  // Three stores a byte (`,"0x`, `NN`, `"`) instead of seven single
  // bytes: this loop writes most of a large dump.
  const view = viewOf(buffer);
  view.setUint32(at, QUOTE_0X, true);
  view.setUint16(at + 3, HEX_PAIR[source[start]!]!, true);
  buffer[at + 5] = 0x22;
  at += 6;
  for (let b = 1; b < count; b++) {
    view.setUint32(at, COMMA_QUOTE_0X, true);
    view.setUint16(at + 4, HEX_PAIR[source[start + b]!]!, true);
    buffer[at + 6] = 0x22;
    at += 7;
  }
  return at;
}

/** `"0x` as a little-endian word (the fourth byte is overwritten). */
const QUOTE_0X = 0x22 | 0x30 << 8 | 0x78 << 16;
/** `,"0x`. */
const COMMA_QUOTE_0X = (0x2c | 0x22 << 8 | 0x30 << 16 | 0x78 << 24) >>> 0;
/** Both hex digits of a byte, little-endian. */
const HEX_PAIR = new Uint16Array(256);
for (let byte = 0; byte < 256; byte++) {
  HEX_PAIR[byte] = HEX_HIGH[byte]! | HEX_LOW[byte]! << 8;
}

let viewBuffer: Uint8Array | undefined;
let view: DataView | undefined;
function viewOf(buffer: Uint8Array): DataView {
  if (buffer !== viewBuffer) {
    viewBuffer = buffer;
    view = new DataView(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  }
  return view!;
}

/**
 * Stores `01 02 03` for `count` bytes of `source` from `start` at `at` in
 * `buffer`; returns the new end. The caller has made room (3 bytes a byte).
 */
export function storePlainHex(
  buffer: Uint8Array,
  at: number,
  source: Uint8Array,
  start: number,
  count: number,
): number {
  for (let b = 0; b < count; b++) {
    const byte = source[start + b]!;
    if (b > 0) buffer[at++] = 0x20;
    buffer[at] = HEX_HIGH[byte]!;
    buffer[at + 1] = HEX_LOW[byte]!;
    at += 2;
  }
  return at;
}

/**
 * Writing to the output failed (closed pipe, full disk, closed fd): one line
 * naming the cause, e.g. `cannot write the output: No space left on device`.
 * `cause` is the sink's own error.
 */
export class OutputError extends BpfmapError {
  /** Whether the reader went away (EPIPE): a quiet end, not a failure. */
  readonly brokenPipe: boolean;

  /** @param cause the sink's error */
  constructor(cause: unknown) {
    const reason = cause instanceof Error
      ? cause.message.replace(/ \(os error \d+\)$/, "")
      : String(cause);
    super(`cannot write the output: ${reason}`, { cause });
    this.brokenPipe = cause instanceof Deno.errors.BrokenPipe;
  }
}

/** Where bytes go; `Deno.stdout` fits. */
export interface ByteSink {
  /** Writes some bytes synchronously, returning how many were taken. */
  writeSync(bytes: Uint8Array): number;
}

/** A sink that keeps everything in memory (tests, and small outputs). */
export class MemorySink implements ByteSink {
  #chunks: Uint8Array[] = [];

  /** Takes a copy of `bytes`. */
  writeSync(bytes: Uint8Array): number {
    this.#chunks.push(bytes.slice());
    return bytes.length;
  }

  /** Everything written, as text. */
  text(): string {
    const decoder = new TextDecoder();
    return this.#chunks.map((c) => decoder.decode(c)).join("");
  }
}

/**
 * Buffered output. Call `end()` when the document is complete: disposing
 * drops what is still buffered, so a writer abandoned by an error leaves
 * either nothing or what its owner chose to close the document with. Once a
 * write to the sink fails, every later write throws the same
 * {@linkcode OutputError} and nothing more reaches the sink.
 *
 * @example Write JSON hex bytes
 * ```ts
 * using out = new OutputWriter(Deno.stdout);
 * out.text("[");
 * out.jsonHexArray(new Uint8Array([1, 2]));
 * out.text("]\n");
 * out.end();
 * ```
 */
export class OutputWriter implements Disposable {
  readonly #sink: ByteSink;
  readonly #buffer: Uint8Array;
  #length = 0;
  readonly #encoder = new TextEncoder();
  #flushed = false;
  #failure: OutputError | undefined;

  /**
   * @param sink where full chunks are written
   * @param chunkSize bytes buffered before a write
   */
  constructor(sink: ByteSink, chunkSize = 1 << 20) {
    this.#sink = sink;
    this.#buffer = new Uint8Array(chunkSize);
  }

  #reserve(bytes: number): void {
    if (this.#length + bytes > this.#buffer.length) this.flush();
  }

  /** Appends text (any size). */
  text(value: string): void {
    if (value.length * 3 > this.#buffer.length) {
      this.flush();
      this.#write(this.#encoder.encode(value));
      return;
    }
    this.#reserve(value.length * 3);
    const { written } = this.#encoder.encodeInto(
      value,
      this.#buffer.subarray(this.#length),
    );
    this.#length += written;
  }

  /** Appends an ASCII string known to need no escaping (digits, keys). */
  ascii(value: string): void {
    if (value.length > this.#buffer.length) return this.text(value);
    this.#reserve(value.length);
    const buffer = this.#buffer;
    let at = this.#length;
    for (let i = 0; i < value.length; i++) buffer[at++] = value.charCodeAt(i);
    this.#length = at;
  }

  /** Appends `["0x01","0x02"]` for the bytes (bpftool's JSON form). */
  jsonHexArray(bytes: Uint8Array): void {
    this.#reserve(1);
    this.#buffer[this.#length++] = 0x5b; // [
    const perRound = Math.max(1, Math.floor(this.#buffer.length / 7) - 1);
    for (let start = 0; start < bytes.length; start += perRound) {
      const end = Math.min(bytes.length, start + perRound);
      this.#reserve((end - start) * 7);
      let at = this.#length;
      if (start > 0) this.#buffer[at++] = 0x2c; // ,
      this.#length = storeQuotedHex(
        this.#buffer,
        at,
        bytes,
        start,
        end - start,
      );
    }
    this.#reserve(1);
    this.#buffer[this.#length++] = 0x5d; // ]
  }

  /** Appends `01 02 03` (space-separated hex), as bpftool prints without --json. */
  plainHex(bytes: Uint8Array): void {
    const perRound = Math.max(1, Math.floor(this.#buffer.length / 3) - 1);
    for (let start = 0; start < bytes.length; start += perRound) {
      const end = Math.min(bytes.length, start + perRound);
      this.#reserve((end - start) * 3);
      let at = this.#length;
      if (start > 0) this.#buffer[at++] = 0x20;
      this.#length = storePlainHex(this.#buffer, at, bytes, start, end - start);
    }
  }

  /**
   * Appends `count` bpftool elements from packed keys and values, each
   * preceded by a comma unless `first` and it is the first: `{"key":[..],
   * "value":[..]}`, or with `cpus > 0` the per-CPU form `{"key":[..],
   * "values":[{"cpu":0,"value":[..]},..]}` reading CPU c's value at
   * `c * round_up(valueSize, 8)` within each element's stride. This is the
   * hot loop of a large dump: plain byte stores, one space check per element.
   */
  jsonKeyValueRun(
    keys: Uint8Array,
    values: Uint8Array,
    count: number,
    shape: {
      keySize: number;
      valueSize: number;
      valueStride: number;
      cpus: number;
    },
    first: boolean,
  ): void {
    const { keySize, valueSize, valueStride, cpus } = shape;
    const slots = cpus > 0 ? cpus : 1;
    const slotStride = cpus > 0 ? Math.ceil(valueSize / 8) * 8 : 0;
    const worst = 32 + 7 * keySize + slots * (28 + 7 * valueSize);
    for (let i = 0; i < count; i++) {
      if (worst > this.#buffer.length - this.#length) this.flush();
      if (worst > this.#buffer.length) {
        this.#slowElement(keys, values, i, shape, first && i === 0);
        continue;
      }
      const buffer = this.#buffer;
      let at = this.#length;
      if (!(first && i === 0)) buffer[at++] = 0x2c;
      at = storePacked(buffer, at, KEY_OPEN);
      const keyStart = i * keySize;
      at = storeQuotedHex(buffer, at, keys, keyStart, keySize);
      at = storePacked(buffer, at, cpus > 0 ? VALUES_OPEN : VALUE_OPEN);
      for (let slot = 0; slot < slots; slot++) {
        if (cpus > 0) at = storePacked(buffer, at, cpuOpen(slot));
        const valueStart = i * valueStride + slot * slotStride;
        at = storeQuotedHex(buffer, at, values, valueStart, valueSize);
        buffer[at++] = 0x5d; // ]
        if (cpus > 0) buffer[at++] = 0x7d; // }
      }
      if (cpus > 0) buffer[at++] = 0x5d; // ]
      buffer[at++] = 0x7d; // }
      this.#length = at;
    }
  }

  #slowElement(
    keys: Uint8Array,
    values: Uint8Array,
    i: number,
    shape: {
      keySize: number;
      valueSize: number;
      valueStride: number;
      cpus: number;
    },
    first: boolean,
  ): void {
    const { keySize, valueSize, valueStride, cpus } = shape;
    this.ascii(first ? '{"key":' : ',{"key":');
    this.jsonHexArray(keys.subarray(i * keySize, (i + 1) * keySize));
    if (cpus > 0) {
      const slotStride = Math.ceil(valueSize / 8) * 8;
      this.ascii(',"values":[');
      for (let cpu = 0; cpu < cpus; cpu++) {
        this.ascii(`${cpu === 0 ? "" : ","}{"cpu":${cpu},"value":`);
        const start = i * valueStride + cpu * slotStride;
        this.jsonHexArray(values.subarray(start, start + valueSize));
        this.ascii("}");
      }
      this.ascii("]}");
    } else {
      this.ascii(',"value":');
      this.jsonHexArray(
        values.subarray(i * valueStride, i * valueStride + valueSize),
      );
      this.ascii("}");
    }
  }

  /** Whether any byte has reached the sink (so dropping the buffer cannot undo the output). */
  get flushedAny(): boolean {
    return this.#flushed;
  }

  /** Most bytes one {@linkcode OutputWriter.claim} can ask for. */
  get capacity(): number {
    return this.#buffer.length;
  }

  /**
   * Makes room for `maxBytes` (at most `capacity`) and returns where they go
   * in {@linkcode OutputWriter.bytes}; `commit` the new end after storing.
   * For encoders that write bytes directly, like the typed dump's plans.
   */
  claim(maxBytes: number): number {
    this.#reserve(maxBytes);
    return this.#length;
  }

  /** The buffer `claim` positions refer to. */
  get bytes(): Uint8Array {
    return this.#buffer;
  }

  /** Ends a `claim`: everything up to `end` is output. */
  commit(end: number): void {
    this.#length = end;
  }

  /** Writes out what is buffered; throws {@linkcode OutputError} when the sink fails. */
  flush(): void {
    if (this.#failure) throw this.#failure;
    if (this.#length === 0) return;
    const chunk = this.#buffer.subarray(0, this.#length);
    this.#length = 0;
    this.#write(chunk);
  }

  #write(bytes: Uint8Array): void {
    if (this.#failure) throw this.#failure;
    this.#flushed = true;
    try {
      writeAll(this.#sink, bytes);
    } catch (error) {
      this.#failure = error as OutputError;
      throw error;
    }
  }

  /** Flushes the finished document. */
  end(): void {
    this.flush();
  }

  /** Drops what is buffered (the document is abandoned); never throws. */
  discard(): void {
    this.#length = 0;
  }

  /** Discards: a writer left without `end()` was abandoned by an error. */
  [Symbol.dispose](): void {
    this.discard();
  }
}

/** Writes all of `bytes` to `sink`; a sink error becomes an {@linkcode OutputError}. */
export function writeAll(sink: ByteSink, bytes: Uint8Array): void {
  let done = 0;
  try {
    while (done < bytes.length) done += sink.writeSync(bytes.subarray(done));
  } catch (error) {
    throw error instanceof OutputError ? error : new OutputError(error);
  }
}

/** Writes `text` (UTF-8) to `sink` in full. */
export function writeText(sink: ByteSink, text: string): void {
  writeAll(sink, new TextEncoder().encode(text));
}
