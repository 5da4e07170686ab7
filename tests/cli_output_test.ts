/**
 * The CLI writing into real pipes, a full device and a closed stdout: each
 * ends with the right exit status and at most one line on stderr.
 */

import assert from "node:assert/strict";
import { ignoreUnless } from "./_support/env.ts";
import { uniqueName } from "./_support/maps.ts";
import { BpfSyscallAccessor } from "../src/accessor/syscall.ts";
import { mapGetInfo } from "../src/sys/bpf.ts";
import { MapType } from "../src/sys/constants.ts";

const CLI = new URL("../cli.ts", import.meta.url).pathname;
const DENO = Deno.execPath();

/** Runs a bash line with `$CLI` set to the CLI; returns status and stderr. */
function sh(line: string): { code: number; stdout: string; stderr: string } {
  const result = new Deno.Command("bash", {
    args: ["-c", line],
    env: { CLI: `${DENO} run --allow-all ${CLI}`, NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).outputSync();
  const decoder = new TextDecoder();
  return {
    code: result.code,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  };
}

Deno.test({
  name:
    "a reader that closes the pipe early (| head -c 100) ends the dump quietly with status 0",
  ignore: ignoreUnless("bpf"),
  fn(): void {
    // 50,000 64-byte values are ~25 MB of JSON: far more than a pipe buffer.
    using fd = BpfSyscallAccessor.createMap({
      type: MapType.ARRAY,
      keySize: 4,
      valueSize: 64,
      maxEntries: 50_000,
      name: uniqueName("cli_pipe"),
    });
    const id = mapGetInfo(fd.fd).id;
    for (const args of [`dump --id ${id} --json`, `dump --id ${id}`]) {
      const result = sh(
        `$CLI ${args} | head -c 100 >/dev/null; echo "status=\${PIPESTATUS[0]}"`,
      );
      assert.equal(result.stdout, "status=0\n", `${args}: ${result.stderr}`);
      assert.equal(result.stderr, "", args);
    }
    const full = sh(`$CLI dump --id ${id} --json >/dev/full`);
    assert.equal(full.code, 1);
    assert.equal(
      full.stderr,
      "bpfmap: error: cannot write the output: No space left on device\n",
    );
  },
});

Deno.test("--help into a full device is one line and status 1; into a closed pipe, status 0", () => {
  const full = sh(`$CLI --help >/dev/full`);
  assert.equal(full.code, 1);
  assert.equal(
    full.stderr,
    "bpfmap: error: cannot write the output: No space left on device\n",
  );
  const closed = sh(`$CLI dump --help | true; echo "status=\${PIPESTATUS[0]}"`);
  assert.match(closed.stdout, /^status=0\n$/);
  assert.equal(closed.stderr, "");
});

Deno.test("a closed stdout (>&-) is an error, not a silent success", () => {
  for (const args of ["--help", "--version", "list --json"]) {
    const result = sh(`$CLI ${args} >&-`);
    assert.equal(result.code, 1, args);
    assert.equal(
      result.stderr,
      "bpfmap: error: standard output is closed; redirect it (e.g. >/dev/null) instead\n",
      args,
    );
  }
  const devNull = sh(`$CLI --help >/dev/null`);
  assert.equal(devNull.code, 0, "an open /dev/null is fine");
});
