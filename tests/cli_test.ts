import assert from "node:assert/strict";
import { runCli as run } from "./_support/cli.ts";
import { main } from "../src/cli/main.ts";
import { MemorySink, OutputWriter } from "../src/cli/writer.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo, mapUpdateElem, objGet } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";
import { possibleCpuCount } from "../src/sys/cpus.ts";
import { ignoreUnless, ignoreUnlessRoot } from "./_support/env.ts";
import {
  bpftoolJson,
  ensureBpffs,
  u32,
  u64,
  uniqueName,
} from "./_support/maps.ts";

const ignore = ignoreUnlessRoot();

Deno.test("OutputWriter writes bpftool's quoted hex and plain hex across chunk boundaries", () => {
  const sink = new MemorySink();
  const out = new OutputWriter(sink, 16);
  out.jsonHexArray(new Uint8Array([0, 1, 0xab, 0xff]));
  out.ascii(" ");
  out.plainHex(new Uint8Array([0x10, 0x0f]));
  out.text(" é");
  out.flush();
  assert.equal(sink.text(), '["0x00","0x01","0xab","0xff"] 10 0f é');
});

for (
  const command of ["list", "show", "dump", "find", "pin", "hold", "write"]
) {
  Deno.test(`bpfmap ${command} --help prints its usage and exits 0`, async () => {
    const { code, stdout } = await run(command, "--help");
    assert.equal(code, 0);
    assert.match(stdout, new RegExp(`^Usage: bpfmap ${command}`));
  });
}

Deno.test("bpfmap --help lists every command", async () => {
  const { code, stdout } = await run("--help");
  assert.equal(code, 0);
  for (
    const command of ["list", "show", "dump", "find", "pin", "hold", "write"]
  ) {
    assert.match(stdout, new RegExp(`\\n  ${command} `));
  }
});

Deno.test("bpfmap reports usage errors in one line and exits 2", async () => {
  for (
    const args of [
      ["frobnicate"],
      ["list", "--bogus"],
      ["show"],
      ["show", "--id", "abc"],
      ["show", "--id", "1", "--name", "x"],
      ["dump", "--id", "0"],
      ["dump", "--id", "1", "--max-entries", "-3"],
      ["find"],
      ["pin", "only_name"],
      ["hold"],
      ["hold", "x", "--"],
    ]
  ) {
    const { code, stderr, stdout } = await run(...args);
    assert.equal(code, 2, `${args.join(" ")}: ${stderr}`);
    assert.equal(stdout, "");
    assert.equal(stderr.trim().split("\n").length, 1, stderr);
    assert.match(
      stderr,
      /^bpfmap: usage error: .*\(see 'bpfmap( \w+)? --help'\)\n$/,
    );
  }
});

Deno.test({
  name: "bpfmap list --json matches bpftool map list -j for every map",
  ignore: ignoreUnless("bpf", "bpftool"),
  async fn(): Promise<void> {
    using _fd = BpfSyscallAccessor.createMap({
      type: MapType.LRU_HASH,
      keySize: 8,
      valueSize: 16,
      maxEntries: 64,
      name: uniqueName("cli_list"),
    });
    const ours = JSON.parse((await run("list", "--json")).stdout) as Record<
      string,
      unknown
    >[];
    const theirs = bpftoolJson("map", "list") as Record<string, unknown>[];
    const theirsById = new Map(theirs.map((m) => [m.id, m]));
    let compared = 0;
    for (const map of ours) {
      const reference = theirsById.get(map.id);
      if (!reference) continue; // created or freed between the two listings
      for (
        const key of [
          "id",
          "type",
          "name",
          "flags",
          "bytes_key",
          "bytes_value",
          "max_entries",
          "bytes_memlock",
          "frozen",
        ]
      ) {
        assert.deepEqual(map[key], reference[key], `map ${map.id} key ${key}`);
      }
      // bpftool 7.1 reuses its info buffer across maps and 6.18 echoes it
      // back, so a map without BTF can show the previous row's btf_id there.
      if (map.btf_id !== undefined || reference.btf_id === undefined) {
        assert.equal(map.btf_id, reference.btf_id, `map ${map.id} btf_id`);
      }
      compared++;
    }
    assert.ok(compared >= 1);
  },
});

Deno.test({
  name:
    "bpfmap dump --json is byte-identical to bpftool's for hash, array and per-CPU maps",
  ignore: ignoreUnless("bpf", "bpftool"),
  async fn(): Promise<void> {
    const cpus = possibleCpuCount();
    const specs = [
      { type: MapType.HASH, keySize: 4, valueSize: 8, maxEntries: 500 },
      { type: MapType.ARRAY, keySize: 4, valueSize: 6, maxEntries: 20 },
      { type: MapType.PERCPU_HASH, keySize: 4, valueSize: 12, maxEntries: 50 },
      { type: MapType.PERCPU_ARRAY, keySize: 4, valueSize: 4, maxEntries: 5 },
    ];
    for (const spec of specs) {
      using fd = BpfSyscallAccessor.createMap({
        ...spec,
        name: uniqueName("cli_dump"),
      });
      const percpu = spec.type === MapType.PERCPU_HASH ||
        spec.type === MapType.PERCPU_ARRAY;
      const stride = Math.ceil(spec.valueSize / 8) * 8;
      const entries = Math.min(spec.maxEntries, 300);
      for (let i = 0; i < entries; i++) {
        const value = new Uint8Array(percpu ? stride * cpus : spec.valueSize);
        for (let b = 0; b < value.length; b++) value[b] = (i * 7 + b) & 0xff;
        mapUpdateElem(fd.fd, u32(i), value);
      }
      const id = mapGetInfo(fd.fd).id;
      const ours = await run("dump", "--id", String(id), "--json");
      assert.equal(ours.code, 0, ours.stderr);
      const bpftool = new Deno.Command("bpftool", {
        args: ["map", "dump", "id", String(id), "-j"],
      }).outputSync();
      assert.equal(
        ours.stdout.trim(),
        new TextDecoder().decode(bpftool.stdout).trim(),
        `type ${spec.type}`,
      );
      assert.equal((JSON.parse(ours.stdout) as unknown[]).length, entries);
    }
  },
});

Deno.test({
  name: "bpfmap dump without --json prints hex lines and the element count",
  ignore,
  async fn(): Promise<void> {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: 4,
      name: uniqueName("cli_txt"),
    });
    mapUpdateElem(fd.fd, u32(1), u64(0x0102n));
    const { code, stdout } = await run(
      "dump",
      "--id",
      String(mapGetInfo(fd.fd).id),
    );
    assert.equal(code, 0);
    assert.equal(
      stdout,
      "key: 01 00 00 00  value: 02 01 00 00 00 00 00 00\nFound 1 element\n",
    );
  },
});

Deno.test({
  name: "bpfmap dump --max-entries stops early and counts the rest",
  ignore,
  async fn(): Promise<void> {
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 10,
      name: uniqueName("cli_max"),
    });
    const { stdout } = await run(
      "dump",
      "--id",
      String(mapGetInfo(fd.fd).id),
      "--max-entries",
      "3",
    );
    assert.equal(
      stdout.split("\n").filter((l) => l.startsWith("key:")).length,
      3,
    );
    assert.match(stdout, /Found 3 elements \(7 more not shown\)/);
    const json = await run(
      "dump",
      "--id",
      String(mapGetInfo(fd.fd).id),
      "--max-entries",
      "3",
      "--json",
    );
    assert.equal((JSON.parse(json.stdout) as unknown[]).length, 3);
  },
});

Deno.test({
  name:
    "bpfmap show --name with two same-named maps prints both, as bpftool does",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_twin");
    const spec = {
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name,
    };
    using a = BpfSyscallAccessor.createMap(spec);
    using b = BpfSyscallAccessor.createMap(spec);
    const { stdout } = await run("show", "--name", name, "--json");
    const shown = JSON.parse(stdout) as { id: number }[];
    assert.deepEqual(shown.map((m) => m.id), [
      mapGetInfo(a.fd).id,
      mapGetInfo(b.fd).id,
    ]);
    const dumped = JSON.parse(
      (await run("dump", "--name", name, "--json")).stdout,
    ) as { id: number; elements: unknown[] }[];
    assert.deepEqual(dumped.map((m) => [m.id, m.elements.length]), [[
      mapGetInfo(a.fd).id,
      1,
    ], [mapGetInfo(b.fd).id, 1]]);
  },
});

Deno.test({
  name:
    "bpfmap find prints the lowest-id match and exits 1 with the helper's error on a miss",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_find");
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 4,
      maxEntries: 2,
      name,
    });
    const found = await run("find", name, "--json");
    assert.equal(found.code, 0);
    assert.equal(
      (JSON.parse(found.stdout) as { id: number }).id,
      mapGetInfo(fd.fd).id,
    );
    const missing = await run("find", "cli_nothing");
    assert.equal(missing.code, 1);
    assert.match(
      missing.stderr,
      /^bpfmap: error: No BPF map named "cli_nothing" among \d+ maps scanned/,
    );
    const long = await run("find", "a_name_that_is_too_long");
    assert.equal(long.code, 1);
    assert.match(long.stderr, /"a_name_that_is_"/);
  },
});

Deno.test({
  name: "bpfmap pin pins the map on bpffs so it outlives its creator",
  ignore,
  async fn(): Promise<void> {
    const root = ensureBpffs();
    const name = uniqueName("cli_pin");
    const path = `${root}/${name.replaceAll(".", "_")}`;
    const fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name,
    });
    const id = mapGetInfo(fd.fd).id;
    try {
      const result = await run("pin", name, path);
      assert.equal(result.code, 0, result.stderr);
      fd.close();
      using pinned = objGet(path);
      assert.equal(mapGetInfo(pinned.fd).id, id);
    } finally {
      fd.close();
      Deno.removeSync(path);
    }
  },
});

Deno.test({
  name:
    "bpfmap hold keeps maps alive while the command runs and returns its status",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_hold");
    const fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name,
    });
    const id = mapGetInfo(fd.fd).id;
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--no-lock",
        cli,
        "hold",
        name,
        "--",
        "sh",
        "-c",
        "read line; exit 7",
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // Wait until the holder says it holds the map, then let ours go.
    const reader = child.stderr.getReader();
    const { value } = await reader.read();
    assert.match(
      new TextDecoder().decode(value),
      new RegExp(`holding "${name}" \\(id ${id}\\)`),
    );
    fd.close();
    assert.equal(
      new BpfSyscallAccessor().mapById(id)?.name,
      name,
      "alive while held",
    );
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();
    reader.releaseLock();
    await child.stderr.cancel();
    await child.stdout.cancel();
    const status = await child.status;
    assert.equal(status.code, 7);
    assert.equal(
      new BpfSyscallAccessor().mapById(id),
      null,
      "freed after the holder exits",
    );
  },
});

Deno.test("OutputWriter.jsonKeyValueRun() writes the same elements whatever the chunk size", () => {
  const keys = new Uint8Array([1, 0, 2, 0]);
  const values = new Uint8Array([
    0xa,
    0xb,
    0xc,
    0,
    0,
    0,
    0,
    0,
    0xd,
    0xe,
    0xf,
    0,
    0,
    0,
    0,
    0,
  ]);
  const shapes = [
    { keySize: 2, valueSize: 3, valueStride: 8, cpus: 0 },
    { keySize: 2, valueSize: 3, valueStride: 8, cpus: 0 },
  ];
  const expectedPlain = JSON.stringify([
    { key: ["0x01", "0x00"], value: ["0x0a", "0x0b", "0x0c"] },
    { key: ["0x02", "0x00"], value: ["0x0d", "0x0e", "0x0f"] },
  ]);
  const percpu = { keySize: 2, valueSize: 3, valueStride: 16, cpus: 2 };
  const expectedPercpu = JSON.stringify([
    {
      key: ["0x01", "0x00"],
      values: [{ cpu: 0, value: ["0x0a", "0x0b", "0x0c"] }, {
        cpu: 1,
        value: ["0x0d", "0x0e", "0x0f"],
      }],
    },
  ]);
  for (const chunk of [8, 64, 1 << 20]) {
    const sink = new MemorySink();
    const out = new OutputWriter(sink, chunk);
    out.ascii("[");
    out.jsonKeyValueRun(keys, values, 2, shapes[0]!, true);
    out.ascii("]");
    out.flush();
    assert.equal(sink.text(), expectedPlain, `chunk ${chunk}`);
    const sink2 = new MemorySink();
    const out2 = new OutputWriter(sink2, chunk);
    out2.ascii("[");
    out2.jsonKeyValueRun(keys.subarray(0, 2), values, 1, percpu, true);
    out2.ascii("]");
    out2.flush();
    assert.equal(sink2.text(), expectedPercpu, `per-CPU, chunk ${chunk}`);
  }
});

Deno.test({
  name:
    "bpfmap hold without a command holds until SIGTERM, then exits 0 and lets go",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_sig");
    const fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 4,
      maxEntries: 1,
      name,
    });
    const id = mapGetInfo(fd.fd).id;
    const cli = new URL("../cli.ts", import.meta.url).pathname;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-all", "--no-lock", cli, "hold", name],
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const reader = child.stderr.getReader();
    const { value } = await reader.read();
    assert.match(new TextDecoder().decode(value), /holding/);
    fd.close();
    assert.equal(new BpfSyscallAccessor().mapById(id)?.name, name);
    child.kill("SIGTERM");
    reader.releaseLock();
    await child.stderr.cancel();
    assert.equal((await child.status).code, 0);
    assert.equal(new BpfSyscallAccessor().mapById(id), null);
  },
});

Deno.test({
  name:
    "bpfmap dump with no selector prints the failure dump, with a progress line on a terminal",
  ignore,
  async fn(): Promise<void> {
    const name = uniqueName("cli_all");
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.HASH,
      keySize: 4,
      valueSize: 8,
      maxEntries: 8,
      name,
    });
    mapUpdateElem(fd.fd, u32(3), u64(0x77n));
    const id = mapGetInfo(fd.fd).id;
    const stdout = new MemorySink();
    const stderr = new MemorySink();
    // Other processes' maps may hold values the kernel will not hand out:
    // --partial keeps this test about the report, not about them.
    const code = await main(["dump", "--max-entries", "5", "--partial"], {
      stdout,
      stderr,
      stderrIsTerminal: true,
    });
    assert.equal(code, 0, stderr.text());
    assert.match(
      stdout.text(),
      new RegExp(`== map ${id} ${name} \\(hash\\) ==`),
    );
    assert.match(stderr.text(), /dumping map \d+\/\d+: /);
    const json = await run("dump", "--json", "--max-entries", "5", "--partial");
    const report = JSON.parse(json.stdout) as {
      schema: string;
      maps: { info: { id: number } }[];
    };
    assert.equal(report.schema, "bpfmap.failure-dump/3");
    assert.doesNotMatch(
      json.stderr,
      /dumping map/,
      "no progress when stderr is not a terminal",
    );
  },
});
