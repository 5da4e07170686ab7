/**
 * The CLI's failure paths against real maps: dumps that fail part-way,
 * maps that vanish, skipped data, unreadable maps and bad arguments. Faults
 * are injected between the CLI and a real backend (tests/_support/wrapped.ts);
 * the maps and their contents are the kernel's.
 */

import assert from "node:assert/strict";
import { runCli, runCliOn } from "./_support/cli.ts";
import { ignoreUnless } from "./_support/env.ts";
import { u32, u64, uniqueName } from "./_support/maps.ts";
import { WrappedAccessor } from "./_support/wrapped.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { parseJsonExact } from "../src/btf/json.ts";
import { MapUnreadableError } from "../src/errors.ts";
import { mapGetInfo, mapUpdateElem } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import type { OwnedFd } from "../src/sys/fd.ts";

const ignore = ignoreUnless("bpf");

/** A HASH u32 -> u64 map holding `entries` keys. */
function filledHash(entries: number, name = uniqueName("cli_err")): OwnedFd {
  const fd = BpfSyscallAccessor.createMap({
    type: MapType.HASH,
    keySize: 4,
    valueSize: 8,
    maxEntries: Math.max(entries, 1),
    name,
  });
  for (let i = 0; i < entries; i++) {
    mapUpdateElem(fd.fd, u32(i), u64(BigInt(i) * 0x100000001n));
  }
  return fd;
}

const idOf = (fd: OwnedFd): number => mapGetInfo(fd.fd).id;

const INJECTED = "injected read failure";

function failing(
  ids: number[],
  visible: number[],
  entries: number,
): WrappedAccessor {
  return new WrappedAccessor(new BpfSyscallAccessor(), {
    only: new Set(visible),
    failAfter: { ids: new Set(ids), entries, error: new Error(INJECTED) },
  });
}

function oneErrorLine(stderr: string): void {
  assert.match(stderr, new RegExp(`^bpfmap: error: .*${INJECTED}.*\\n$`));
}

/** Empty, or one JSON array whose last element is `{"error": ...}`. */
function assertClosedJsonDump(stdout: string, shown: number): void {
  if (stdout === "") return;
  const elements = parseJsonExact(stdout) as Record<string, unknown>[];
  assert.equal(elements.length, shown + 1);
  assert.deepEqual(elements.at(-1), { error: INJECTED });
}

Deno.test({
  name:
    "dump --id that fails after N entries writes nothing or a complete document ending with the error, exit 1",
  ignore,
  async fn(): Promise<void> {
    // 40,000 elements are ~2.5 MB of JSON: failing at 30,000 comes after the
    // writer has flushed its first 1 MiB chunks.
    using big = filledHash(40_000);
    using small = filledHash(10);
    for (const [fd, after] of [[small, 3], [big, 30_000]] as const) {
      const id = idOf(fd);
      const accessor = failing([id], [id], after);
      const json = await runCliOn(accessor, "dump", "--id", `${id}`, "--json");
      assert.equal(json.code, 1);
      oneErrorLine(json.stderr);
      assertClosedJsonDump(json.stdout, after);
      if (after > 1000) assert.notEqual(json.stdout, "", "already flushed");
      const text = await runCliOn(accessor, "dump", "--id", `${id}`);
      assert.equal(text.code, 1);
      oneErrorLine(text.stderr);
      if (text.stdout !== "") {
        const lines = text.stdout.split("\n");
        assert.equal(lines.pop(), "", "ends with a newline");
        assert.equal(lines.pop(), `error: ${INJECTED}`);
        assert.equal(lines.length, after);
        assert.ok(lines.every((l) => /^key: [0-9a-f ]+ {2}value: /.test(l)));
      }
    }
  },
});

Deno.test({
  name:
    "dump --name over several maps records one map's failure and still writes every map, one valid document",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_errn");
    using a = filledHash(5, name);
    using b = filledHash(5, name);
    const accessor = failing([idOf(b)], [idOf(a), idOf(b)], 3);
    const json = await runCliOn(accessor, "dump", "--name", name, "--json");
    assert.equal(json.code, 1);
    oneErrorLine(json.stderr);
    const maps = parseJsonExact(json.stdout) as {
      id: number;
      elements: Record<string, unknown>[];
    }[];
    assert.deepEqual(maps.map((m) => m.id), [idOf(a), idOf(b)]);
    assert.equal(maps[0]!.elements.length, 5);
    assert.equal(maps[1]!.elements.length, 4);
    assert.deepEqual(maps[1]!.elements.at(-1), { error: INJECTED });
    const text = await runCliOn(accessor, "dump", "--name", name);
    assert.equal(text.code, 1);
    oneErrorLine(text.stderr);
    assert.match(
      text.stdout,
      new RegExp(
        `^# map ${
          idOf(a)
        } "${name}"\\n(key: .*\\n){5}Found 5 elements\\n\\n# map ${
          idOf(b)
        } "${name}"\\n(key: .*\\n){3}error: ${INJECTED}\\n$`,
      ),
    );
  },
});

Deno.test({
  name:
    "the failure dump records a map that fails mid-read in its errors, stays valid, and exits 1 unless --partial",
  ignore,
  async fn(): Promise<void> {
    using a = filledHash(4);
    using b = filledHash(8);
    const accessor = failing([idOf(b)], [idOf(a), idOf(b)], 3);
    const json = await runCliOn(accessor, "dump", "--json");
    assert.equal(json.code, 1, json.stderr);
    assert.match(
      json.stderr,
      new RegExp(
        `^bpfmap: warning: map "[^"]+" \\(id ${idOf(b)}\\): .*${INJECTED}\\n$`,
      ),
    );
    const report = parseJsonExact(json.stdout) as {
      maps: { id: number; entries: unknown[]; errors: string[] }[];
    };
    assert.deepEqual(report.maps.map((m) => m.id), [idOf(a), idOf(b)]);
    assert.equal(report.maps[0]!.entries.length, 4);
    assert.equal(report.maps[1]!.entries.length, 3);
    assert.match(report.maps[1]!.errors[0]!, new RegExp(INJECTED));
    const text = await runCliOn(accessor, "dump");
    assert.equal(text.code, 1);
    assert.match(
      text.stdout,
      new RegExp(`  error: Cannot read contents: .*${INJECTED}\\n$`),
    );
    const partial = await runCliOn(accessor, "dump", "--json", "--partial");
    assert.equal(partial.code, 0);
    parseJsonExact(partial.stdout);
  },
});

Deno.test({
  name:
    "dump --name skips a matched map freed before its turn, with a note, as list does",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_gone");
    using a = filledHash(2, name);
    const b = filledHash(2, name);
    const [idA, idB] = [idOf(a), idOf(b)];
    // The kernel frees B for real once its last fd closes: do that as soon
    // as A's dump begins, after the CLI has matched both names.
    const accessor = new WrappedAccessor(new BpfSyscallAccessor(), {
      only: new Set([idA, idB]),
      onRead: (map) => {
        if (map.id === idA) b.close();
      },
    });
    try {
      const json = await runCliOn(accessor, "dump", "--name", name, "--json");
      assert.equal(json.code, 0, json.stderr);
      const maps = parseJsonExact(json.stdout) as { id: number }[];
      assert.deepEqual(maps.map((m) => m.id), [idA]);
      assert.match(
        json.stderr,
        new RegExp(
          `^bpfmap: note: map "${name}" \\(id ${idB}\\) was freed before its dump; skipped\\n$`,
        ),
      );
    } finally {
      b.close();
    }
  },
});

Deno.test({
  name:
    "the failure dump exits 1 with one line when it cannot list a single map (real EPERM, no capabilities)",
  ignore: ignoreUnless("bpf") || !hasSetpriv(),
  fn(): void {
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    const result = new Deno.Command("setpriv", {
      args: [
        "--bounding-set=-all",
        "--inh-caps=-all",
        "--",
        Deno.execPath(),
        "run",
        "--allow-all",
        cli,
        "dump",
        "--json",
      ],
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).outputSync();
    const stderr = new TextDecoder().decode(result.stderr);
    assert.equal(result.code, 1, stderr);
    assert.match(stderr, /^bpfmap: error: Cannot list maps: .*EPERM.*\n$/);
    const report = JSON.parse(new TextDecoder().decode(result.stdout)) as {
      maps: unknown[];
      errors: string[];
    };
    assert.deepEqual(report.maps, []);
    assert.match(report.errors[0]!, /EPERM/);
  },
});

function hasSetpriv(): boolean {
  try {
    return new Deno.Command("setpriv", { args: ["--help"], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name:
    "what a read had to skip is a warning line each and exit 1, unless --partial",
  ignore,
  async fn(): Promise<void> {
    using fd = filledHash(1);
    const id = idOf(fd);
    const accessor = new WrappedAccessor(new BpfSyscallAccessor(), {
      only: new Set([id]),
      problems: [{ what: "bucket", mapId: id, message: "bucket 7 unmapped" }],
    });
    for (
      const args of [
        ["list"],
        ["show", "--id", `${id}`],
        ["dump", "--id", `${id}`],
        ["dump"],
      ]
    ) {
      const strict = await runCliOn(accessor, ...args);
      assert.equal(strict.code, 1, args.join(" "));
      assert.match(strict.stderr, /^bpfmap: warning: bucket 7 unmapped\n$/);
      assert.notEqual(strict.stdout, "");
      const partial = await runCliOn(accessor, ...args, "--partial");
      assert.equal(partial.code, 0, args.join(" "));
      assert.equal(partial.stderr, "bpfmap: warning: bucket 7 unmapped\n");
    }
    const report = parseJsonExact(
      (await runCliOn(accessor, "dump", "--json", "--partial")).stdout,
    ) as { errors: string[] };
    assert.deepEqual(report.errors, ["bucket 7 unmapped"]);
  },
});

Deno.test({
  name: "show --id on a map that exists but cannot be read says unreadable",
  ignore,
  async fn(): Promise<void> {
    using fd = filledHash(1);
    const id = idOf(fd);
    const accessor = new WrappedAccessor(new BpfSyscallAccessor(), {
      only: new Set([id]),
      unreadable: {
        ids: new Set([id]),
        error: new MapUnreadableError(
          { id, name: "x" },
          "bpf_map at 0x10 unmapped",
        ),
      },
    });
    const result = await runCliOn(accessor, "show", "--id", `${id}`);
    assert.equal(result.code, 1);
    assert.match(
      result.stderr,
      /^bpfmap: error: .* is unreadable: bpf_map at 0x10 unmapped\n$/,
    );
    assert.doesNotMatch(result.stderr, /no BPF map/);
    const missing = await runCliOn(accessor, "show", "--id", "2147483647");
    assert.match(
      missing.stderr,
      /^bpfmap: error: no BPF map with id 2147483647/,
    );
  },
});

Deno.test({
  name: "dump --json --max-entries says on stderr how many entries it left out",
  ignore,
  async fn(): Promise<void> {
    using fd = filledHash(5);
    const id = idOf(fd);
    const result = await runCli(
      "dump",
      "--id",
      `${id}`,
      "--json",
      "--max-entries",
      "2",
    );
    assert.equal(result.code, 0);
    assert.equal((JSON.parse(result.stdout) as unknown[]).length, 2);
    assert.match(
      result.stderr,
      new RegExp(
        `^bpfmap: note: map "[^"]+" \\(id ${id}\\): 3 more entries not shown \\(--max-entries 2\\)\\n$`,
      ),
    );
  },
});

Deno.test({
  name:
    "an entry whose value cannot be read is listed like bpftool's, with the error in place of the value",
  ignore,
  async fn(): Promise<void> {
    // A perf_event_array slot answers ENOTSUPP to a lookup: whatever the
    // backend does with it, stdout is empty or valid and the exit status says so.
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.PERF_EVENT_ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 2,
      name: uniqueName("cli_perf"),
    });
    const id = idOf(fd);
    const result = await runCli("dump", "--id", `${id}`, "--json");
    // Either a complete document with every slot's error in place (what
    // bpftool prints, exit 0: the kernel never lets user space read these
    // slots, nothing was lost), or nothing on stdout and one line (exit 1).
    if (result.code === 0) {
      const elements = JSON.parse(result.stdout) as {
        key: string[];
        value: { error: string };
      }[];
      assert.equal(elements.length, 2);
      for (const element of elements) {
        assert.equal(element.key.length, 4);
        assert.match(element.value.error, /\S/);
      }
    } else {
      assert.equal(result.code, 1, result.stderr);
      assert.equal(result.stdout, "");
      assert.equal(result.stderr.trim().split("\n").length, 1);
    }
  },
});

Deno.test({
  name:
    "per-entry read errors are rendered as bpftool does, warned about, and exit 1 unless --partial",
  ignore,
  async fn(): Promise<void> {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 8,
      maxEntries: 3,
      name: uniqueName("cli_eerr"),
    });
    mapUpdateElem(fd.fd, u32(2), u64(7n));
    const id = idOf(fd);
    const accessor = new WrappedAccessor(new BpfSyscallAccessor(), {
      only: new Set([id]),
      oddEntriesUnreadable: { ids: new Set([id]), message: "ENOTSUPP" },
    });
    const json = await runCliOn(accessor, "dump", "--id", `${id}`, "--json");
    assert.equal(json.code, 1);
    assert.equal(
      json.stdout,
      '[{"key":["0x00","0x00","0x00","0x00"],"value":["0x00","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]},' +
        '{"key":["0x01","0x00","0x00","0x00"],"value":{"error":"ENOTSUPP"}},' +
        '{"key":["0x02","0x00","0x00","0x00"],"value":["0x07","0x00","0x00","0x00","0x00","0x00","0x00","0x00"]}]\n',
    );
    assert.match(
      json.stderr,
      /^bpfmap: warning: map "[^"]+" \(id \d+\): 1 value could not be read \(listed with their error\)\n$/,
    );
    const text = await runCliOn(accessor, "dump", "--id", `${id}`, "--partial");
    assert.equal(text.code, 0);
    assert.equal(
      text.stdout,
      "key: 00 00 00 00  value: 00 00 00 00 00 00 00 00\n" +
        "key: 01 00 00 00  error: ENOTSUPP\n" +
        "key: 02 00 00 00  value: 07 00 00 00 00 00 00 00\n" +
        "Found 3 elements (1 unreadable)\n",
    );
  },
});

Deno.test("usage mistakes are one line naming the input, exit 2", async () => {
  const cases: [string[], RegExp][] = [
    [["show", "--name", ""], /--name is empty/],
    [["dump", "--name", ""], /--name is empty/],
    [["find", ""], /NAME is empty/],
    [["pin", "", "/sys/fs/bpf/x"], /NAME is empty/],
    [["hold", ""], /NAME is empty/],
    [["show", "--id", "-1"], /--id "-1" is not a map id/],
    [["dump", "--id", "-1", "--json"], /--id "-1" is not a map id/],
    [
      ["dump", "--id", "1", "--max-entries", "-3"],
      /--max-entries "-3" is out of range/,
    ],
    [["help", "frob"], /no command "frob"/],
    [["frob"], /unknown command "frob"/],
    [["dump", "--batch-size", "8"], /--batch-size applies to one map's dump/],
    [["dump", "--hex"], /--hex applies to one map's dump/],
    [
      ["dump", "--id", "1", "--batch-size", "1000000000"],
      /--batch-size "1000000000" is out of range \(an integer from 1 to 1048576\)/,
    ],
    [["dump", "--id", "1", "--batch-size", "0"], /out of range/],
  ];
  for (const [args, message] of cases) {
    const { code, stdout, stderr } = await runCli(...args);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "", args.join(" "));
    assert.match(stderr, /^bpfmap: usage error: [^\n]*\n$/, args.join(" "));
    assert.match(stderr, message, args.join(" "));
  }
});

Deno.test("no command prints the help on stderr and exits 2", async () => {
  const { code, stdout, stderr } = await runCli();
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.match(stderr, /^bpfmap \S+: find, hold and read/);
  const help = await runCli("help", "dump");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: bpfmap dump/);
});

Deno.test({
  name:
    "a map the backend cannot list (a ring buffer, without type readers) is one line and empty stdout alone, an error element among several",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_ring");
    using hash = filledHash(3, name);
    using ring = BpfSyscallAccessor.createMap({
      type: MapType.RINGBUF,
      keySize: 0,
      valueSize: 0,
      maxEntries: 4096,
      name,
    });
    // The live backend reads ring buffers; a backend without that reader
    // (the guest backend today) is what this covers.
    const accessor = new WrappedAccessor(new BpfSyscallAccessor(), {
      only: new Set([idOf(hash), idOf(ring)]),
      noTypeReaders: true,
    });
    const alone = await runCliOn(
      accessor,
      "dump",
      "--id",
      `${idOf(ring)}`,
      "--json",
    );
    assert.equal(alone.code, 1);
    assert.equal(alone.stdout, "");
    assert.match(
      alone.stderr,
      /^bpfmap: error: Cannot dump map .*ring buffer[^\n]*\n$/,
    );
    const both = await runCliOn(accessor, "dump", "--name", name, "--json");
    assert.equal(both.code, 1);
    const maps = JSON.parse(both.stdout) as {
      id: number;
      elements: { error?: string }[];
    }[];
    assert.deepEqual(maps.map((m) => m.id), [idOf(hash), idOf(ring)]);
    assert.equal(maps[0]!.elements.length, 3);
    assert.match(maps[1]!.elements[0]!.error!, /ring buffer/);
  },
});
