/**
 * Runs the CLI in-process with memory sinks, for tests.
 *
 * @module
 */

import type { BpfMapAccessor } from "../../src/accessor/types.ts";
import { main } from "../../src/cli/main.ts";
import { MemorySink } from "../../src/cli/writer.ts";

/** What one CLI run produced. */
export interface CliRun {
  /** Exit status. */
  code: number;
  /** Everything written to stdout. */
  stdout: string;
  /** Everything written to stderr. */
  stderr: string;
}

/** Runs `bpfmap ARGS...` and captures its exit status and output. */
export function runCli(...args: string[]): Promise<CliRun> {
  return runCliOn(undefined, ...args);
}

/** Runs `bpfmap ARGS...` reading maps through `accessor` (when given). */
export async function runCliOn(
  accessor: BpfMapAccessor | undefined,
  ...args: string[]
): Promise<CliRun> {
  const stdout = new MemorySink();
  const stderr = new MemorySink();
  const code = await main(args, {
    stdout,
    stderr,
    stderrIsTerminal: false,
    ...(accessor ? { accessor } : {}),
  });
  return { code, stdout: stdout.text(), stderr: stderr.text() };
}
