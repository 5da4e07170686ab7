/**
 * `bpfmap write`: live on the kinds fixture's real maps (checked with
 * bpftool), through a guest accessor for the .rodata warning, and every
 * usage and runtime error with its exit status.
 *
 * @module
 */

import { equal, match, ok } from "node:assert/strict";
import { GuestMemMapAccessor } from "../src/accessor/guest.ts";
import { parseJsonExact } from "../src/btf/json.ts";
import { ignoreUnless } from "./_support/env.ts";
import { runCli, runCliOn } from "./_support/cli.ts";
import { bpftoolJson, loadFixture } from "./btf_fixture.ts";
import { buildWriteImage } from "./_support/guest_write_image.ts";

type Json = Record<string, unknown>;

function bssVars(pin: string): Json {
  const json = parseJsonExact(
    bpftoolJson(["map", "lookup", "pinned", pin, "key", "0", "0", "0", "0"]),
  ) as Json;
  const formatted = (json.formatted as Json).value as Json;
  return Object.assign({}, ...(formatted[".bss"] as Json[]));
}

Deno.test({
  name:
    "bpfmap write sets fields live, prints old -> new, and fails in one line",
  ignore: ignoreUnless("clang", "bpf", "bpftool"),
  async fn(): Promise<void> {
    using fixture = loadFixture("kinds");
    const bss = fixture.info.get("kinds_bss")!;
    const run = await runCli(
      "write",
      "--id",
      String(bss.id),
      "g_counter=18446744073709551615",
      "g_bss_key.port=0x1f90",
    );
    equal(run.stderr, "");
    equal(run.code, 0);
    equal(
      run.stdout,
      `map "kinds.bss" (id ${bss.id}), element 0:\n` +
        "  g_counter: 0 -> 18446744073709551615\n" +
        "  g_bss_key.port: 0 -> 8080\n",
    );
    const vars = bssVars(fixture.pins.get("kinds_bss")!);
    equal(vars.g_counter, 18446744073709551615n);
    equal((vars.g_bss_key as Json).port, 8080);

    const byName = await runCli(
      "write",
      "--name",
      "kinds.bss",
      "--key",
      "0",
      "g_bss_key.id=1",
    );
    equal(byName.code, 0, byName.stderr);
    match(byName.stdout, /, key 0:\n {2}g_bss_key\.id: 0 -> 1\n$/);

    const hashKey = "0x01 0 0 0 0x50 0 0 0";
    const hash = fixture.info.get("kinds_hash")!;
    const missing = await runCli(
      "write",
      "--id",
      String(hash.id),
      "--key",
      hashKey,
      "delta=1",
    );
    equal(missing.code, 1);
    equal(
      missing.stderr,
      `bpfmap: error: key 0x0100000050000000 is not in the map for map "kinds_hash" (id ${hash.id})\n`,
    );

    const cases: [string[], number, RegExp][] = [
      [
        ["--id", String(bss.id), "g_nope=1"],
        1,
        /^bpfmap: error: field "g_nope" has no variable "g_nope" in section \.bss \(variables: g_counter, g_bss_key\) for map "kinds\.bss"/,
      ],
      [
        ["--id", String(bss.id), "g_bss_key.port=65536"],
        1,
        /^bpfmap: error: field "g_bss_key\.port" \(__u16\) cannot hold 65536: the range is 0\.\.65535/,
      ],
      [
        ["--id", String(fixture.info.get("kinds_rodata")!.id), "r_const=1"],
        1,
        /^bpfmap: error: map "kinds\.rodata" \(id \d+\) is frozen/,
      ],
      [
        ["--id", String(bss.id), "g_counter"],
        2,
        /^bpfmap: usage error: "g_counter" is not FIELD=VALUE .*\(see 'bpfmap write --help'\)/,
      ],
      [
        ["--id", String(bss.id)],
        2,
        /^bpfmap: usage error: give at least one FIELD=VALUE/,
      ],
      [
        ["g_counter=1"],
        2,
        /^bpfmap: usage error: name a map with --id N or --name NAME/,
      ],
      [
        ["--id", String(bss.id), "--key", "x y", "g_counter=1"],
        2,
        /^bpfmap: usage error: --key "x y" is not a key/,
      ],
      [
        ["--id", String(bss.id), "--guest-core", "/nonexistent", "g_counter=1"],
        2,
        /^bpfmap: usage error: --guest-core is a copy of a guest's memory/,
      ],
      [
        ["--id", String(bss.id), "--key", "1", "g_counter=1"],
        1,
        /^bpfmap: error: key 1 is not an index of the array \(0\.\.0\)/,
      ],
    ];
    for (const [args, code, message] of cases) {
      const result = await runCli("write", ...args);
      equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
      match(result.stderr, message);
      equal(result.stderr.split("\n").length, 2, "one line");
      equal(result.stdout, "");
    }
    // none of the refused writes changed anything
    const after = bssVars(fixture.pins.get("kinds_bss")!);
    equal(after.g_counter, 18446744073709551615n);
    equal((after.g_bss_key as Json).port, 8080);
  },
});

Deno.test("bpfmap write --help names every option", async () => {
  const run = await runCli("write", "--help");
  equal(run.code, 0);
  for (
    const option of [
      "--id",
      "--name",
      "--key",
      "--allow-rodata",
      "--guest-mem",
      "--qmp",
    ]
  ) {
    ok(run.stdout.includes(option), option);
  }
  ok((await runCli("--help")).stdout.includes("write (--id N | --name NAME)"));
});

Deno.test("bpfmap write on a guest: .rodata only with --allow-rodata, with a warning", async () => {
  const image = buildWriteImage();
  const guest = GuestMemMapAccessor.fromMemory(
    image.ram.memory(),
    image.options,
  );
  const refused = await runCliOn(
    guest,
    "write",
    "--name",
    "t.rodata",
    "knob=5",
  );
  equal(refused.code, 1);
  match(
    refused.stderr,
    /^bpfmap: error: map "t\.rodata" \(id 2\) is frozen .*--allow-rodata/,
  );
  const run = await runCliOn(
    guest,
    "write",
    "--name",
    "t.rodata",
    "--allow-rodata",
    "knob=5",
  );
  equal(run.code, 0, run.stderr);
  equal(run.stdout, 'map "t.rodata" (id 2), element 0:\n  knob: 100 -> 5\n');
  match(
    run.stderr,
    /^bpfmap: warning: map "t\.rodata" \(id 2\) is frozen \(\.rodata\): the verifier usually folds const volatile knobs/,
  );
  equal(
    new DataView(image.ram.bytes.buffer).getUint32(
      Number(image.rodataPa),
      true,
    ),
    5,
  );
});
