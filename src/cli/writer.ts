/**
 * A byte-buffered stdout writer for large outputs: entries are encoded
 * straight into a reused buffer and written in 1 MiB chunks, so a dump of
 * any size holds one chunk in memory, never the whole output.
 *
 * @module
 */

const HEX = "0123456789abcdef";
/** `"0xNN"` for every byte, as ASCII. */
const QUOTED_HEX: Uint8Array[] = Array.from(
  { length: 256 },
  (_, byte) =>
    new TextEncoder().encode(`"0x${HEX[byte >> 4]}${HEX[byte & 15]}"`),
);
/** Two lowercase hex digits for every byte. */
const PLAIN_HEX: Uint8Array = new Uint8Array(512);
for (let byte = 0; byte < 256; byte++) {
  PLAIN_HEX[byte * 2] = HEX.charCodeAt(byte >> 4);
  PLAIN_HEX[byte * 2 + 1] = HEX.charCodeAt(byte & 15);
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
 * Buffered output. `flush()` must be called at the end (or use `using`).
 *
 * @example Write JSON hex bytes
 * ```ts ignore
 * using out = new OutputWriter(Deno.stdout);
 * out.text("[");
 * out.jsonHexArray(new Uint8Array([1, 2]));
 * out.text("]\n");
 * ```
 */
export class OutputWriter implements Disposable {
  readonly #sink: ByteSink;
  readonly #buffer: Uint8Array;
  #length = 0;
  readonly #encoder = new TextEncoder();

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
      writeAll(this.#sink, this.#encoder.encode(value));
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
      const buffer = this.#buffer;
      let at = this.#length;
      for (let i = start; i < end; i++) {
        if (i > 0) buffer[at++] = 0x2c; // ,
        buffer.set(QUOTED_HEX[bytes[i]!]!, at);
        at += 6;
      }
      this.#length = at;
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
      const buffer = this.#buffer;
      let at = this.#length;
      for (let i = start; i < end; i++) {
        if (i > 0) buffer[at++] = 0x20;
        const byte = bytes[i]!;
        buffer[at++] = PLAIN_HEX[byte * 2]!;
        buffer[at++] = PLAIN_HEX[byte * 2 + 1]!;
      }
      this.#length = at;
    }
  }

  /** Writes out what is buffered. */
  flush(): void {
    if (this.#length === 0) return;
    writeAll(this.#sink, this.#buffer.subarray(0, this.#length));
    this.#length = 0;
  }

  /** Flushes. */
  [Symbol.dispose](): void {
    this.flush();
  }
}

function writeAll(sink: ByteSink, bytes: Uint8Array): void {
  let done = 0;
  while (done < bytes.length) done += sink.writeSync(bytes.subarray(done));
}
