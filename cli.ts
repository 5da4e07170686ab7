/**
 * The `bpfmap` command line: `bpfmap list`, `show`, `dump`, `find`, `pin`, `hold`.
 *
 * Run it from source with `deno run --allow-all cli.ts list`, or build the
 * single binary with `deno task compile`.
 *
 * @example Run the CLI programmatically
 * ```ts
 * import { main } from "@bpfmap/bpfmap/cli";
 * Deno.exitCode = await main(["list", "--json"]);
 * ```
 *
 * @module
 */

export { type CliIo, main, UsageError } from "./src/cli/main.ts";
import { main } from "./src/cli/main.ts";

if (import.meta.main) {
  Deno.exitCode = await main(Deno.args);
}
