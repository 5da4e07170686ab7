/**
 * `deno task compile`: builds the single-binary `bpfmap` with `deno compile`.
 *
 * deno compile needs the `denort` runtime: it downloads it (or takes it from
 * Deno's cache), or uses the file `DENORT_BIN` names. Where neither works,
 * this fails with one line saying so instead of a page of network errors.
 *
 * Usage: deno task compile [--output PATH] [--target TRIPLE]
 *
 * @module
 */

import { parseArgs } from "node:util";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    output: { type: "string", default: "bpfmap" },
    target: { type: "string" },
    help: { type: "boolean", short: "h" },
  },
});
if (values.help) {
  console.log(
    "Usage: deno task compile [--output PATH] [--target TRIPLE]\n\nBuilds the single-binary bpfmap CLI. Set DENORT_BIN to a denort binary of the same Deno version where it cannot be downloaded.",
  );
  Deno.exit(0);
}

const denort = Deno.env.get("DENORT_BIN");
if (denort !== undefined) {
  try {
    if (!Deno.statSync(denort).isFile) throw new Error("not a file");
  } catch {
    console.error(
      `compile: DENORT_BIN="${denort}" is not a readable file: point it at a denort binary for Deno ${Deno.version.deno}`,
    );
    Deno.exit(1);
  }
}

const root = new URL("..", import.meta.url).pathname;
const args = [
  "compile",
  "--allow-ffi",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
  "--allow-sys",
  "--no-lock",
  "--output",
  values.output!,
  ...(values.target ? ["--target", values.target] : []),
  `${root}cli.ts`,
];
const result = await new Deno.Command(Deno.execPath(), {
  args,
  stdout: "piped",
  stderr: "piped",
}).output();
if (result.success) {
  console.log(`compile: wrote ${values.output}`);
  Deno.exit(0);
}
const stderr = new TextDecoder().decode(result.stderr);
const network = /dl\.deno\.land|download|dns|resolve|connect|network|tcp/i.test(
  stderr,
);
if (network && denort === undefined) {
  console.error(
    `compile: deno compile could not download its denort runtime (no network access to Deno's download host here); set DENORT_BIN to a denort binary for Deno ${Deno.version.deno} and run again`,
  );
} else {
  const first = stderr.split("\n").find((line) => /error/i.test(line)) ??
    stderr.split("\n")[0];
  console.error(`compile: deno compile failed: ${first?.trim()}`);
}
Deno.exit(1);
