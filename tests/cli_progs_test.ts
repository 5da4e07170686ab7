/**
 * `bpfmap progs`: the JSON held key by key against `bpftool prog show -j`,
 * the table, a guest image's programs with exact u64s, and usage errors.
 */

import assert from "node:assert/strict";
import { runCli, runCliOn } from "./_support/cli.ts";
import { ignoreUnless } from "./_support/env.ts";
import { intBtfBlob, uniqueName } from "./_support/maps.ts";
import { loadTrivialProgram } from "./_support/bpf_prog.ts";
import {
  buildGuestImage,
  GUEST_PROGRAM_LAYOUT,
  GUEST_PROGRAM_LOAD_TIME,
} from "./contract/guest_image.ts";

Deno.test("bpfmap progs --help prints its usage and exits 0", async () => {
  const { code, stdout } = await runCli("progs", "--help");
  assert.equal(code, 0);
  assert.match(stdout, /^Usage: bpfmap progs/);
  assert.match(stdout, /--guest-mem FILE/);
});

Deno.test("bpfmap progs with an argument is a one-line usage error, exit 2", async () => {
  const { code, stdout, stderr } = await runCli("progs", "extra");
  assert.equal(code, 2);
  assert.equal(stdout, "");
  assert.equal(
    stderr,
    `bpfmap: usage error: unexpected argument "extra" (see 'bpfmap progs --help')\n`,
  );
});

Deno.test({
  name:
    "bpfmap progs --json prints every key bpftool prog show -j prints, with the same values",
  ignore: ignoreUnless("bpf", "bpftool"),
  async fn(): Promise<void> {
    const name = uniqueName("cli_prog");
    using _prog = loadTrivialProgram(name, 2);
    const run = await runCli("progs", "--json");
    assert.equal(run.code, 0, run.stderr);
    const ours = (JSON.parse(run.stdout) as Record<string, unknown>[])
      .find((p) => p.name === name);
    assert.ok(ours, "listed");
    const out = new Deno.Command("bpftool", { args: ["prog", "show", "-j"] })
      .outputSync();
    const theirs = (JSON.parse(new TextDecoder().decode(out.stdout)) as Record<
      string,
      unknown
    >[]).find((p) => p.id === ours.id);
    assert.ok(theirs, "bpftool lists it");
    for (const [key, value] of Object.entries(theirs)) {
      if (key === "loaded_at") {
        // Both round the same clocks to seconds; a second may tick between the runs.
        assert.ok(Math.abs(Number(ours[key]) - Number(value)) <= 1, key);
      } else {
        assert.deepEqual(ours[key], value, key);
      }
    }
    assert.equal(ours.verified_insns, 2);
  },
});

Deno.test({
  name: "bpfmap progs prints a table row per program",
  ignore: ignoreUnless("bpf"),
  async fn(): Promise<void> {
    const name = uniqueName("cli_tab");
    using _prog = loadTrivialProgram(name);
    const run = await runCli("progs");
    assert.equal(run.code, 0, run.stderr);
    const lines = run.stdout.trimEnd().split("\n");
    assert.match(lines[0]!, /^ID +TYPE +NAME +TAG +MAPS +XLATED/);
    const row = lines.find((l) => l.includes(` ${name} `));
    assert.ok(row, run.stdout);
    assert.match(
      row,
      new RegExp(`socket_filter +${name} +[0-9a-f]{16} +- +16 `),
    );
  },
});

Deno.test("bpfmap progs --json on a guest image: exact u64 digits, map ids, and load_time_ns for loaded_at", async () => {
  const image = buildGuestImage(intBtfBlob());
  using _ = image.accessor;
  const run = await runCliOn(image.accessor, "progs", "--json");
  assert.equal(run.code, 0, run.stderr);
  // JSON.parse would round these: check the digits as printed.
  assert.match(run.stdout, /"run_time_ns":18446744073709551615,"run_cnt":7,/);
  assert.match(
    run.stdout,
    new RegExp(`"load_time_ns":${GUEST_PROGRAM_LOAD_TIME}`),
  );
  const listed = JSON.parse(run.stdout) as Record<string, unknown>[];
  assert.deepEqual(listed.map((p) => [p.id, p.name, p.map_ids]), [
    [5, "cp_plain", undefined],
    [9, "cp_withMaps", [1, 3]],
  ]);
  assert.equal(listed[0]!.gpl_compatible, false);
  assert.equal(listed[1]!.gpl_compatible, true);
  assert.ok(!("loaded_at" in listed[0]!));
});

Deno.test("bpfmap progs on a guest image whose prog_idr is corrupt warns and exits 1 (0 with --partial)", async () => {
  const image = buildGuestImage(intBtfBlob());
  using _ = image.accessor;
  image.ram.u64(
    image.programs.plain.prog + BigInt(GUEST_PROGRAM_LAYOUT.aux),
    0xffff_ffff_dead_0000n,
  );
  const run = await runCliOn(image.accessor, "progs");
  assert.equal(run.code, 1);
  assert.match(run.stderr, /^bpfmap: warning: prog_idr: entry 5 /);
  assert.ok(run.stdout.includes("cp_withMaps"));
  image.accessor.refresh();
  const partial = await runCliOn(image.accessor, "progs", "--partial");
  assert.equal(partial.code, 0);
});
