/**
 * Signals against real processes: a guest paused through QMP is resumed on
 * every way out (a fake QMP peer on a real socket records the commands), and
 * `hold -- CMD` passes signals on to CMD and keeps the maps until it exits.
 */

import assert from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;

/**
 * A QMP peer on a real unix socket: greets, answers every command, and
 * records them. The reply to `stop` waits until `releaseStop()`.
 */
class FakeQmp implements AsyncDisposable {
  readonly dir = Deno.makeTempDirSync({ prefix: "bpfmap-qmp-" });
  readonly path = `${this.dir}/qmp.sock`;
  readonly commands: string[] = [];
  readonly #listener = Deno.listen({ transport: "unix", path: this.path });
  readonly #served: Promise<void>;
  #release = (): void => {};
  readonly #stopReleased: Promise<void>;
  #sawStop = (): void => {};
  /** Resolves when `stop` has arrived. */
  readonly stopArrived: Promise<void>;

  constructor(holdStop: boolean) {
    this.#stopReleased = holdStop
      ? new Promise((resolve) => this.#release = resolve)
      : Promise.resolve();
    this.stopArrived = new Promise((resolve) => this.#sawStop = resolve);
    this.#served = this.#serve();
  }

  releaseStop(): void {
    this.#release();
  }

  async #serve(): Promise<void> {
    const conn = await this.#listener.accept();
    const encoder = new TextEncoder();
    const send = (value: unknown): Promise<number> =>
      conn.write(encoder.encode(JSON.stringify(value) + "\n"));
    await send({ QMP: { version: {}, capabilities: [] } });
    let buffer = "";
    const chunk = new Uint8Array(4096);
    for (;;) {
      const n = await conn.read(chunk).catch(() => null);
      if (n === null) break;
      buffer += new TextDecoder().decode(chunk.subarray(0, n));
      for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const command = (JSON.parse(line) as { execute: string }).execute;
        this.commands.push(command);
        if (command === "stop") {
          this.#sawStop();
          await this.#stopReleased;
        }
        await send({ return: {} }).catch(() => 0);
      }
    }
    conn.close();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#release();
    this.#listener.close();
    await this.#served.catch(() => {});
    Deno.removeSync(this.dir, { recursive: true });
  }
}

function spawnCli(args: string[]): Deno.ChildProcess {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CLI, ...args],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
}

Deno.test({
  name: "--qmp resumes the guest when the read fails",
  sanitizeResources: false,
  async fn(): Promise<void> {
    await using qmp = new FakeQmp(false);
    const ram = Deno.makeTempFileSync({ prefix: "bpfmap-not-ram-" });
    try {
      Deno.writeFileSync(ram, new Uint8Array(1 << 16));
      const result = await spawnCli([
        "list",
        "--guest-mem",
        ram,
        "--qmp",
        qmp.path,
      ]).output();
      const stderr = new TextDecoder().decode(result.stderr);
      assert.equal(result.code, 1, stderr);
      assert.match(stderr, /^bpfmap: error: [^\n]+\n$/);
      assert.deepEqual(qmp.commands, ["qmp_capabilities", "stop", "cont"]);
    } finally {
      Deno.removeSync(ram);
    }
  },
});

Deno.test({
  name:
    "SIGTERM or SIGINT while the guest is paused resumes it (cont) before exiting 128+signal",
  sanitizeResources: false,
  async fn(): Promise<void> {
    for (
      const [signal, status] of [["SIGTERM", 143], ["SIGINT", 130]] as const
    ) {
      await using qmp = new FakeQmp(true);
      const child = spawnCli([
        "dump",
        "--guest-mem",
        "/nonexistent-never-read",
        "--qmp",
        qmp.path,
      ]);
      await qmp.stopArrived;
      child.kill(signal);
      // The reply to "stop" is still owed: the CLI must wait for it, then cont.
      await new Promise((resolve) => setTimeout(resolve, 200));
      qmp.releaseStop();
      const result = await child.output();
      assert.equal(
        result.code,
        status,
        new TextDecoder().decode(result.stderr),
      );
      assert.deepEqual(
        qmp.commands,
        ["qmp_capabilities", "stop", "cont"],
        signal,
      );
    }
  },
});

Deno.test({
  name:
    "hold -- CMD passes SIGTERM on to CMD, holds the map until CMD exits, and exits with its status",
  ignore: ignoreUnless("bpf"),
  async fn(): Promise<void> {
    const name = uniqueName("cli_hsig");
    const fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name,
    });
    const id = mapGetInfo(fd.fd).id;
    const child = spawnCli([
      "hold",
      name,
      "--",
      "sh",
      "-c",
      'trap "sleep 0.5; exit 5" TERM; echo ready >&2; while :; do sleep 0.05; done',
    ]);
    const reader = child.stderr.getReader();
    let seen = "";
    while (!seen.includes("ready")) {
      const { value, done } = await reader.read();
      if (done) break;
      seen += new TextDecoder().decode(value);
    }
    assert.match(seen, new RegExp(`holding "${name}" \\(id ${id}\\)`));
    fd.close();
    child.kill("SIGTERM");
    await new Promise((resolve) => setTimeout(resolve, 150));
    assert.equal(
      new BpfSyscallAccessor().mapById(id)?.name,
      name,
      "still held while CMD handles the signal",
    );
    reader.releaseLock();
    await child.stderr.cancel();
    await child.stdout.cancel();
    const status = await child.status;
    assert.equal(
      status.code,
      5,
      "CMD got SIGTERM (its trap ran) and its status is ours",
    );
    assert.equal(new BpfSyscallAccessor().mapById(id), null, "freed after");
  },
});

Deno.test({
  name: "hold -- CMD exits 128+signal when the passed-on signal kills CMD",
  ignore: ignoreUnless("bpf"),
  async fn(): Promise<void> {
    const name = uniqueName("cli_hkill");
    using _fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name,
    });
    for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
      const child = spawnCli(["hold", name, "--", "sleep", "30"]);
      const reader = child.stderr.getReader();
      const { value } = await reader.read();
      assert.match(new TextDecoder().decode(value), /holding/);
      // Give the command a moment to be spawned after the announcement.
      await new Promise((resolve) => setTimeout(resolve, 200));
      const started = performance.now();
      child.kill(signal);
      reader.releaseLock();
      await child.stderr.cancel();
      await child.stdout.cancel();
      assert.equal((await child.status).code, code, signal);
      assert.ok(
        performance.now() - started < 10_000,
        "did not wait for sleep 30",
      );
    }
  },
});
