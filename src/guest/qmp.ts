/**
 * A minimal QMP (QEMU Machine Protocol) client: connect to a unix socket,
 * negotiate capabilities, stop/continue/quit the guest. Every exchange is
 * bounded in time and in bytes, so a peer that accepts and never answers, or
 * floods bytes without a newline, ends in a one-line {@linkcode QmpError}
 * naming the socket and what was awaited instead of a hang.
 *
 * @module
 */

import { BpfmapError, type BpfmapErrorOptions } from "../errors.ts";

/** A QMP failure: an error reply, a timeout, a closed or misbehaving peer. */
export class QmpError extends BpfmapError {
  /** QMP error class for an error reply (e.g. `GenericError`), else `""`. */
  readonly errorClass: string;
  /** The socket path. */
  readonly socket: string;

  /**
   * Builds the one-line message.
   *
   * @param socket the socket path
   * @param problem what went wrong, e.g. `no reply to "stop" within 5000 ms`
   * @param errorClass QMP's `class` for an error reply
   */
  constructor(
    socket: string,
    problem: string,
    errorClass = "",
    options: BpfmapErrorOptions = {},
  ) {
    super(`QMP socket ${socket}: ${problem}`, options);
    this.socket = socket;
    this.errorClass = errorClass;
  }
}

/** Options for {@linkcode QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Keep retrying the connection this long (QEMU may still be starting); default 10000 ms. */
  timeoutMs?: number;
  /** How long the greeting and each reply may take; default 5000 ms. */
  replyTimeoutMs?: number;
  /** Largest message accepted (bytes up to its newline); default 1 MiB. */
  maxMessageBytes?: number;
}

/** Options for one {@linkcode QmpClient.execute}. */
export interface QmpExecuteOptions {
  /** How long the reply may take; default the client's `replyTimeoutMs`. */
  timeoutMs?: number;
}

/** Asynchronous events kept at most (oldest dropped). */
const MAX_EVENTS = 1000;

function isConnectRetryable(error: unknown): boolean {
  // the socket is not there yet, or QEMU is not listening yet
  return error instanceof Deno.errors.NotFound ||
    error instanceof Deno.errors.ConnectionRefused;
}

/**
 * A connected QMP session. Disposable: disposing closes the socket (it does
 * not quit QEMU).
 *
 * @example
 * ```ts
 * import { QmpClient } from "./qmp.ts";
 * await using qmp = await QmpClient.connect("/tmp/guest.qmp");
 * await qmp.stop();
 * // ... read the frozen guest's RAM ...
 * await qmp.cont();
 * ```
 */
export class QmpClient implements AsyncDisposable {
  /** The socket path. */
  readonly path: string;
  readonly #conn: Deno.UnixConn;
  readonly #replyTimeoutMs: number;
  readonly #maxMessageBytes: number;
  readonly #chunk = new Uint8Array(64 << 10);
  // bytes received and not yet consumed (no newline among them yet, or more lines)
  #pending = new Uint8Array(0);
  #closed = false;
  /** Asynchronous events received while waiting for replies (the last 1000). */
  readonly events: Record<string, unknown>[] = [];

  private constructor(
    path: string,
    conn: Deno.UnixConn,
    options: QmpConnectOptions,
  ) {
    this.path = path;
    this.#conn = conn;
    this.#replyTimeoutMs = options.replyTimeoutMs ?? 5000;
    this.#maxMessageBytes = options.maxMessageBytes ?? (1 << 20);
  }

  /**
   * Connects to `path`, reads the greeting and sends `qmp_capabilities`.
   * Only "no socket yet" and "connection refused" are retried; a peer that
   * answers wrongly or not at all fails at once.
   *
   * @param path the socket given to `-qmp unix:PATH,server,nowait`
   */
  static async connect(
    path: string,
    options: QmpConnectOptions = {},
  ): Promise<QmpClient> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    let conn: Deno.UnixConn;
    for (;;) {
      try {
        conn = await Deno.connect({ transport: "unix", path });
        break;
      } catch (error) {
        if (!isConnectRetryable(error) || Date.now() > deadline) {
          throw new QmpError(
            path,
            `cannot connect: ${(error as Error).message.split("\n")[0]}`,
            "",
            { cause: error },
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    const client = new QmpClient(path, conn, options);
    try {
      const greeting = await client.#readMessage(
        "greeting",
        Date.now() + client.#replyTimeoutMs,
        client.#replyTimeoutMs,
      );
      if (!("QMP" in greeting)) {
        throw new QmpError(
          path,
          `expected a greeting with "QMP", got ${
            JSON.stringify(greeting).slice(0, 80)
          }`,
        );
      }
      await client.execute("qmp_capabilities");
      return client;
    } catch (error) {
      client.close();
      throw error;
    }
  }

  /** Reads into #pending until a newline, within `timeoutMs` and the size bound. */
  async #readLine(
    awaiting: string,
    deadline: number,
    budgetMs: number,
  ): Promise<string> {
    for (;;) {
      const newline = this.#pending.indexOf(0x0a);
      if (newline >= 0) {
        const line = new TextDecoder().decode(
          this.#pending.subarray(0, newline),
        );
        this.#pending = this.#pending.slice(newline + 1);
        return line;
      }
      if (this.#pending.length > this.#maxMessageBytes) {
        this.close();
        throw new QmpError(
          this.path,
          `${awaiting} exceeds ${this.#maxMessageBytes} bytes without a newline`,
        );
      }
      const n = await this.#readChunk(awaiting, deadline, budgetMs);
      const grown = new Uint8Array(this.#pending.length + n);
      grown.set(this.#pending);
      grown.set(this.#chunk.subarray(0, n), this.#pending.length);
      this.#pending = grown;
    }
  }

  async #readChunk(
    awaiting: string,
    deadline: number,
    budgetMs: number,
  ): Promise<number> {
    const remaining = deadline - Date.now();
    const timedOut = (): QmpError => {
      this.close();
      return new QmpError(
        this.path,
        `no ${awaiting} within ${budgetMs} ms`,
      );
    };
    if (remaining <= 0 || this.#closed) throw timedOut();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), remaining);
    });
    let n: number | null | "timeout";
    try {
      n = await Promise.race([this.#conn.read(this.#chunk), timeout]);
    } catch (error) {
      this.close();
      throw new QmpError(
        this.path,
        `reading ${awaiting} failed: ${(error as Error).message}`,
        "",
        { cause: error },
      );
    } finally {
      clearTimeout(timer);
    }
    if (n === "timeout") throw timedOut();
    if (n === null) {
      this.close();
      throw new QmpError(
        this.path,
        `closed by the peer while awaiting ${awaiting}`,
      );
    }
    return n;
  }

  async #readMessage(
    awaiting: string,
    deadline: number,
    budgetMs: number,
  ): Promise<Record<string, unknown>> {
    for (;;) {
      const line = (await this.#readLine(awaiting, deadline, budgetMs)).trim();
      if (!line) continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(line);
      } catch {
        this.close();
        throw new QmpError(
          this.path,
          `${awaiting} is not JSON: ${line.slice(0, 80)}`,
        );
      }
      if (
        parsed === null || typeof parsed !== "object" || Array.isArray(parsed)
      ) {
        this.close();
        throw new QmpError(
          this.path,
          `expected a JSON object as ${awaiting}, got ${line.slice(0, 80)}`,
        );
      }
      return parsed as Record<string, unknown>;
    }
  }

  /**
   * Runs one QMP command and returns its `return` value.
   *
   * @param command e.g. `"query-status"`
   * @param args the command's `arguments`
   * @param options a longer timeout for slow commands (`dump-guest-memory`)
   */
  async execute(
    command: string,
    args?: Record<string, unknown>,
    options: QmpExecuteOptions = {},
  ): Promise<unknown> {
    if (this.#closed) {
      throw new QmpError(this.path, `closed before "${command}"`);
    }
    const message = args === undefined
      ? { execute: command }
      : { execute: command, arguments: args };
    try {
      await this.#conn.write(
        new TextEncoder().encode(JSON.stringify(message) + "\n"),
      );
    } catch (error) {
      this.close();
      throw new QmpError(
        this.path,
        `sending "${command}" failed: ${(error as Error).message}`,
        "",
        { cause: error },
      );
    }
    const awaiting = `reply to "${command}"`;
    const timeoutMs = options.timeoutMs ?? this.#replyTimeoutMs;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const reply = await this.#readMessage(awaiting, deadline, timeoutMs);
      if ("return" in reply) return reply.return;
      if ("error" in reply) {
        const error = (reply.error ?? {}) as { class?: string; desc?: string };
        throw new QmpError(
          this.path,
          `"${command}" failed: ${error.class ?? "?"}: ${error.desc ?? "?"}`,
          error.class ?? "?",
        );
      }
      if (this.events.length >= MAX_EVENTS) this.events.shift();
      this.events.push(reply);
    }
  }

  /** Freezes every vCPU (`stop`). */
  async stop(): Promise<void> {
    await this.execute("stop");
  }

  /** Resumes the guest (`cont`). */
  async cont(): Promise<void> {
    await this.execute("cont");
  }

  /** The run state, e.g. `"paused"` or `"running"`. */
  async status(): Promise<string> {
    const reply = await this.execute("query-status") as { status?: string };
    return reply?.status ?? "unknown";
  }

  /** Ends QEMU (`quit`); the connection closes with it. */
  async quit(): Promise<void> {
    try {
      await this.execute("quit");
    } catch {
      // QEMU may close the socket before replying
    }
    this.close();
  }

  /** Closes the socket. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // already closed
    }
  }

  /** Closes the socket. */
  [Symbol.asyncDispose](): Promise<void> {
    this.close();
    return Promise.resolve();
  }
}
