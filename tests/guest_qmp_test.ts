import assert from "node:assert/strict";
import { QmpClient, QmpError } from "../src/guest/qmp.ts";

/**
 * A fake QMP peer on a unix socket in a temp dir: `script` gets each line
 * the client sends and the connection to answer on (or not).
 */
async function withPeer(
  script: {
    greet: (conn: Deno.UnixConn) => Promise<void>;
    onLine?: (line: string, conn: Deno.UnixConn) => Promise<void>;
  },
  body: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "bpfmap-qmp-" });
  const path = `${dir}/qmp.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    let conn: Deno.UnixConn;
    try {
      conn = await listener.accept();
    } catch {
      return; // the listener was closed before anyone connected
    }
    try {
      await script.greet(conn);
      let pending = "";
      const buf = new Uint8Array(4096);
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) break;
        pending += new TextDecoder().decode(buf.subarray(0, n));
        let nl;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          await script.onLine?.(line, conn);
        }
      }
    } catch {
      // the client hung up mid-write: expected in the flood case
    } finally {
      try {
        conn.close();
      } catch {
        // already closed
      }
    }
  })();
  try {
    await body(path);
  } finally {
    listener.close();
    await served;
    await Deno.remove(dir, { recursive: true });
  }
}

const send = (conn: Deno.UnixConn, text: string): Promise<number> =>
  conn.write(new TextEncoder().encode(text));
const GREETING = '{"QMP": {"version": {}, "capabilities": []}}\n';

/** Answers every command with `{"return": {}}` except those in `silent`. */
function answering(silent: string[] = []): {
  greet: (conn: Deno.UnixConn) => Promise<void>;
  onLine: (line: string, conn: Deno.UnixConn) => Promise<void>;
} {
  return {
    greet: async (conn) => void await send(conn, GREETING),
    onLine: async (line, conn) => {
      const command = (JSON.parse(line) as { execute: string }).execute;
      if (silent.includes(command)) return;
      if (command === "query-status") {
        await send(
          conn,
          '{"event": "STOP", "timestamp": {}}\n{"return": {"status": "paused"}}\n',
        );
      } else if (command === "bad") {
        await send(
          conn,
          '{"error": {"class": "CommandNotFound", "desc": "no bad"}}\n',
        );
      } else await send(conn, '{"return": {}}\n');
    },
  };
}

async function rejectsQmp(
  promise: Promise<unknown>,
  path: string,
  pattern: RegExp,
): Promise<void> {
  const started = performance.now();
  await assert.rejects(promise, (error) => {
    assert.ok(error instanceof QmpError, String(error));
    assert.ok(!error.message.includes("\n"), "one line");
    assert.ok(error.message.startsWith(`QMP socket ${path}: `), error.message);
    assert.match(error.message, pattern);
    return true;
  });
  assert.ok(performance.now() - started < 3000, "bounded in time");
}

Deno.test("QMP: a peer that accepts but never greets times out with the socket named", async () => {
  await withPeer({ greet: async () => {} }, async (path) => {
    await rejectsQmp(
      QmpClient.connect(path, { replyTimeoutMs: 200 }),
      path,
      /no greeting within 200 ms$/,
    );
  });
});

for (const command of ["stop", "cont"] as const) {
  Deno.test(`QMP: a peer that never answers "${command}" times out`, async () => {
    await withPeer(answering([command]), async (path) => {
      await using qmp = await QmpClient.connect(path, { replyTimeoutMs: 300 });
      await rejectsQmp(
        command === "stop" ? qmp.stop() : qmp.cont(),
        path,
        new RegExp(`no reply to "${command}" within 300 ms$`),
      );
      // the session is closed: later commands fail at once, they do not hang
      await rejectsQmp(qmp.status(), path, /closed before "query-status"/);
    });
  });
}

Deno.test("QMP: a peer flooding bytes without a newline is cut off at the byte bound", async () => {
  let sent = 0;
  const flood = async (conn: Deno.UnixConn): Promise<void> => {
    const junk = new Uint8Array(16 << 10).fill(0x41);
    for (let i = 0; i < 1024; i++) sent += await conn.write(junk);
  };
  await withPeer({ greet: flood }, async (path) => {
    await rejectsQmp(
      QmpClient.connect(path, { maxMessageBytes: 64 << 10 }),
      path,
      /greeting exceeds 65536 bytes without a newline$/,
    );
  });
  assert.ok(sent < 16 << 20, `the client stopped reading (${sent} bytes sent)`);
});

Deno.test("QMP: a null or non-JSON greeting is a QmpError, not a TypeError", async () => {
  for (
    const [greeting, pattern] of [
      ["null\n", /expected a JSON object as greeting, got null$/],
      ["[1]\n", /expected a JSON object as greeting, got \[1\]$/],
      ["{oops\n", /greeting is not JSON: \{oops$/],
      ['{"hello": 1}\n', /expected a greeting with "QMP"/],
    ] as const
  ) {
    await withPeer(
      { greet: async (conn) => void await send(conn, greeting) },
      async (path) => {
        await rejectsQmp(QmpClient.connect(path), path, pattern);
      },
    );
  }
});

Deno.test("QMP: a peer that hangs up mid-reply is named; a missing socket is not retried past the deadline", async () => {
  await withPeer(
    {
      greet: async (conn) => {
        await send(conn, '{"QMP": {}');
        conn.close();
      },
    },
    async (path) => {
      await rejectsQmp(
        QmpClient.connect(path),
        path,
        /closed by the peer while awaiting greeting$/,
      );
    },
  );
  const missing = `${await Deno.makeTempDir()}/none.sock`;
  await rejectsQmp(
    QmpClient.connect(missing, { timeoutMs: 300 }),
    missing,
    /cannot connect: /,
  );
});

Deno.test("QMP: replies, error replies and events in between", async () => {
  await withPeer(answering(), async (path) => {
    await using qmp = await QmpClient.connect(path);
    await qmp.stop();
    assert.equal(await qmp.status(), "paused");
    assert.deepEqual(qmp.events.map((e) => e.event), ["STOP"]);
    await assert.rejects(qmp.execute("bad"), (error) => {
      assert.ok(error instanceof QmpError);
      assert.equal(error.errorClass, "CommandNotFound");
      assert.equal(
        error.message,
        `QMP socket ${path}: "bad" failed: CommandNotFound: no bad`,
      );
      return true;
    });
    await qmp.cont();
  });
});
