/**
 * A minimal QMP (QEMU Machine Protocol) client for test harnesses: connect
 * to a unix socket, negotiate capabilities, stop/continue/quit the guest.
 *
 * @module
 */

import { BpfmapError } from "../errors.ts";

/** A QMP error reply (`{"error": {...}}`). */
export class QmpError extends BpfmapError {
  /** QMP error class, e.g. `GenericError`. */
  readonly errorClass: string;

  /**
   * Builds the error from QMP's reply.
   *
   * @param command the command that failed
   * @param errorClass QMP's `class`
   * @param description QMP's `desc`
   */
  constructor(command: string, errorClass: string, description: string) {
    super(`QMP ${command} failed: ${errorClass}: ${description}`);
    this.errorClass = errorClass;
  }
}

/** Options for {@linkcode QmpClient.connect}. */
export interface QmpConnectOptions {
  /** Keep retrying the connection this long (QEMU may still be starting); default 10000 ms. */
  timeoutMs?: number;
}

/**
 * A connected QMP session. Disposable: disposing closes the socket (it does
 * not quit QEMU).
 *
 * @example
 * ```ts ignore
 * import { QmpClient } from "./qmp.ts";
 * await using qmp = await QmpClient.connect("/tmp/guest.qmp");
 * await qmp.stop();
 * // ... read the frozen guest's RAM ...
 * await qmp.cont();
 * ```
 */
export class QmpClient implements AsyncDisposable {
  readonly #conn: Deno.UnixConn;
  readonly #decoder = new TextDecoder();
  #buffer = "";
  #closed = false;
  /** Asynchronous events received while waiting for replies. */
  readonly events: Record<string, unknown>[] = [];

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  /**
   * Connects to `path`, reads the greeting and sends `qmp_capabilities`.
   *
   * @param path the socket given to `-qmp unix:PATH,server,nowait`
   */
  static async connect(
    path: string,
    options: QmpConnectOptions = {},
  ): Promise<QmpClient> {
    const deadline = Date.now() + (options.timeoutMs ?? 10_000);
    let lastError: unknown;
    for (;;) {
      try {
        const conn = await Deno.connect({ transport: "unix", path });
        const client = new QmpClient(conn);
        try {
          const greeting = await client.#readMessage();
          if (!("QMP" in greeting)) {
            throw new Error(
              `Unexpected QMP greeting: ${JSON.stringify(greeting)}`,
            );
          }
          await client.execute("qmp_capabilities");
          return client;
        } catch (error) {
          client.close();
          throw error;
        }
      } catch (error) {
        lastError = error;
        if (Date.now() > deadline) break;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
    throw new Error(
      `Cannot connect to QMP socket ${path}: ${String(lastError)}`,
    );
  }

  async #readMessage(): Promise<Record<string, unknown>> {
    for (;;) {
      const newline = this.#buffer.indexOf("\n");
      if (newline >= 0) {
        const line = this.#buffer.slice(0, newline).trim();
        this.#buffer = this.#buffer.slice(newline + 1);
        if (line) return JSON.parse(line) as Record<string, unknown>;
        continue;
      }
      const chunk = new Uint8Array(65536);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("QMP connection closed by QEMU");
      this.#buffer += this.#decoder.decode(chunk.subarray(0, n), {
        stream: true,
      });
    }
  }

  /**
   * Runs one QMP command and returns its `return` value.
   *
   * @param command e.g. `"query-status"`
   * @param args the command's `arguments`
   */
  async execute(
    command: string,
    args?: Record<string, unknown>,
  ): Promise<unknown> {
    const message = args === undefined
      ? { execute: command }
      : { execute: command, arguments: args };
    await this.#conn.write(
      new TextEncoder().encode(JSON.stringify(message) + "\n"),
    );
    for (;;) {
      const reply = await this.#readMessage();
      if ("return" in reply) return reply.return;
      if ("error" in reply) {
        const error = reply.error as { class?: string; desc?: string };
        throw new QmpError(command, error.class ?? "?", error.desc ?? "?");
      }
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
    return reply.status ?? "unknown";
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
