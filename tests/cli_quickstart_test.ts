/**
 * README's quick start, typed as printed in a fresh clone, and the Deno
 * permissions README documents.
 */

import assert from "node:assert/strict";
import { ignoreUnless, ignoreUnlessRoot } from "./_support/env.ts";

const ROOT = new URL("../", import.meta.url).pathname;
const CLI = `${ROOT}cli.ts`;
const decoder = new TextDecoder();

/**
 * The shell lines of README's "Quick start" section, as printed: comments
 * after two spaces dropped, and the test command left out (it would run this
 * test inside itself; `.ci/run` runs it).
 */
function quickStartLines(): string[] {
  const readme = Deno.readTextFileSync(`${ROOT}README.md`);
  const section = /^## Quick start\n([\s\S]*?)^## /m.exec(readme);
  assert.ok(section, "README has a Quick start section");
  const lines: string[] = [];
  for (
    const block of section[1]!.matchAll(
      /^```(?:sh|bash|shell)\n([\s\S]*?)^```/gm,
    )
  ) {
    for (const line of block[1]!.split("\n")) {
      const command = line.replace(/ {2,}#.*$/, "").trim();
      if (command !== "" && command !== "deno task test") lines.push(command);
    }
  }
  return lines;
}

function run(
  command: string,
  args: string[],
  cwd = ROOT,
): { code: number; stdout: string; stderr: string } {
  const result = new Deno.Command(command, {
    args,
    cwd,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).outputSync();
  return {
    code: result.code,
    stdout: decoder.decode(result.stdout),
    stderr: decoder.decode(result.stderr),
  };
}

Deno.test("README's quick start has lines that need no placeholder", () => {
  const lines = quickStartLines();
  assert.ok(lines.length >= 2, lines.join("\n"));
  for (const line of lines) {
    assert.doesNotMatch(line, /\b(N|NAME|ID|PATH)\b|<|>/, line);
  }
});

Deno.test({
  name: "README's quick start lines succeed as printed in a fresh clone",
  ignore: ignoreUnlessRoot(),
  sanitizeResources: false,
  fn(): void {
    const clone = Deno.makeTempDirSync({ prefix: "bpfmap-clone-" });
    try {
      const cloned = run("git", ["clone", "--quiet", ROOT, clone]);
      assert.equal(cloned.code, 0, cloned.stderr);
      const isRoot = Deno.uid() === 0;
      for (const line of quickStartLines()) {
        const typed = isRoot ? line.replace(/^sudo /, "") : line;
        const result = run("bash", ["-c", typed], clone);
        assert.equal(
          result.code,
          0,
          `"${line}" failed in a fresh clone: ${result.stderr.trim()}`,
        );
        assert.notEqual(result.stdout.trim(), "", `"${line}" printed nothing`);
        assert.doesNotMatch(result.stderr, /bpfmap: error:/, line);
      }
    } finally {
      Deno.removeSync(clone, { recursive: true });
    }
  },
});

/** Every `--allow-*` flag by itself: together they are `--allow-all`. */
const EVERY_FLAG = [
  "--allow-read",
  "--allow-write",
  "--allow-ffi",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
  "--allow-net",
  "--allow-import",
];

Deno.test({
  name:
    "Reading maps needs --allow-all: every flag but one is refused on /proc and /sys, in one line",
  ignore: ignoreUnless("bpf"),
  fn(): void {
    const all = run(Deno.execPath(), ["run", "--allow-all", CLI, "list"]);
    assert.equal(all.code, 0, all.stderr);
    for (const left of ["--allow-write", "--allow-net"]) {
      const flags = EVERY_FLAG.filter((flag) => flag !== left);
      const result = run(Deno.execPath(), ["run", ...flags, CLI, "list"]);
      assert.equal(result.code, 1, `without ${left}: ${result.stderr}`);
      assert.match(
        result.stderr,
        /^bpfmap: error: Requires all access to "\/(sys|proc)\/[^"]+", run again with the --allow-all flag\n$/,
      );
      assert.equal(result.stdout, "");
    }
  },
});

Deno.test("--help and --version need no permission at all", () => {
  for (const args of [["--help"], ["--version"], ["dump", "--help"]]) {
    const result = run(Deno.execPath(), ["run", CLI, ...args]);
    assert.equal(result.code, 0, `${args.join(" ")}: ${result.stderr}`);
    assert.notEqual(result.stdout, "");
  }
});

Deno.test("A guest image outside /dev needs only --allow-read and --allow-ffi; under /dev/shm, --allow-all", () => {
  const image = new Uint8Array(1 << 20); // no kernel in it: the read gets as far as looking
  const paths = [
    Deno.makeTempFileSync({ prefix: "bpfmap-image-" }),
    `/dev/shm/bpfmap-image-${Deno.pid}`,
  ];
  try {
    for (const path of paths) Deno.writeFileSync(path, image);
    const narrow = ["run", "--allow-read", "--allow-ffi", CLI, "list"];
    const outside = run(Deno.execPath(), [
      ...narrow,
      "--guest-core",
      paths[0]!,
    ]);
    assert.equal(outside.code, 1);
    assert.doesNotMatch(
      outside.stderr,
      /access|--allow/,
      "no permission error",
    );
    const shm = run(Deno.execPath(), [...narrow, "--guest-mem", paths[1]!]);
    assert.equal(shm.code, 1);
    assert.match(shm.stderr, /Requires all access to "\/dev\/shm\//);
  } finally {
    for (const path of paths) Deno.removeSync(path);
  }
});
