/**
 * The `bpfmap` command line: dispatch and exit codes. The commands live in
 * `commands/`, one file each.
 *
 * Exit 0 on success, 1 on a runtime error (or data skipped without
 * `--partial`), 2 on a usage error; every error is one line on stderr. A
 * reader that closes the pipe early ends the run quietly with 0.
 *
 * @module
 */

import { SourceUsageError } from "./source.ts";
import { UsageError } from "./args.ts";
import { type CliIo, Context } from "./context.ts";
import { HELP, MAIN_HELP, VERSION } from "./help.ts";
import { OutputError, writeText } from "./writer.ts";
import { contains } from "./commands/contains.ts";
import { diff } from "./commands/diff.ts";
import { dump } from "./commands/dump.ts";
import { find } from "./commands/find.ts";
import { hold } from "./commands/hold.ts";
import { list } from "./commands/list.ts";
import { pin } from "./commands/pin.ts";
import { progs } from "./commands/progs.ts";
import { scx } from "./commands/scx.ts";
import { show } from "./commands/show.ts";
import { write } from "./commands/write.ts";

export { UsageError } from "./args.ts";
export type { CliIo } from "./context.ts";

const COMMANDS: Readonly<
  Record<string, (context: Context, args: string[]) => number | Promise<number>>
> = { list, show, dump, contains, find, pin, hold, diff, progs, write, scx };

/** Commands that write only to stderr, so a closed stdout does not matter. */
const STDERR_ONLY = new Set(["pin", "hold"]);

/**
 * Runs the CLI and returns its exit status.
 *
 * @param args the arguments after the program name
 * @param io where output goes (defaults to the process's stdout/stderr)
 *
 * @example
 * ```ts
 * import { main } from "@bpfmap/bpfmap/cli";
 * Deno.exitCode = await main(["list", "--json"]);
 * ```
 */
export async function main(
  args: string[],
  io: CliIo = defaultIo(),
): Promise<number> {
  const context = new Context(io);
  const [command, ...rest] = args;
  try {
    if (command === undefined) {
      // No command is a usage mistake: say what there is, on stderr.
      writeText(io.stderr, MAIN_HELP);
      return 2;
    }
    if (io.stdoutClosed && !STDERR_ONLY.has(command)) {
      context.line(
        "bpfmap: error: standard output is closed; redirect it (e.g. >/dev/null) instead",
      );
      return 1;
    }
    if (command === "-h" || command === "--help") return context.help("");
    if (command === "help") return helpCommand(context, rest);
    if (command === "-V" || command === "--version") {
      writeText(io.stdout, `bpfmap ${VERSION}\n`);
      return 0;
    }
    const run = COMMANDS[command];
    if (!run) throw new UsageError(`unknown command "${command}"`);
    return await run(context, rest);
  } catch (caught) {
    return report(context, caught, command ?? "");
  }
}

function helpCommand(context: Context, topics: string[]): number {
  if (topics.length > 1) {
    throw new UsageError(`help takes one COMMAND, not ${topics.length}`);
  }
  const topic = topics[0];
  if (topic !== undefined && HELP[topic] === undefined) {
    throw new UsageError(`no command "${topic}" to help with`);
  }
  return context.help(topic ?? "");
}

/** The exit status for an error, after one line on stderr. */
function report(context: Context, caught: unknown, command: string): number {
  // A failing `using`/`await using` cleanup wraps the error that got there first.
  const errors: unknown[] = [];
  for (let e = caught; e !== undefined;) {
    if (e instanceof SuppressedError) {
      errors.push(e.suppressed);
      e = e.error;
    } else {
      errors.push(e);
      e = undefined;
    }
  }
  const first = errors[0];
  if (errors.some((e) => e instanceof OutputError && e.brokenPipe)) {
    // The reader has all it wanted (`| head`): a quiet, successful end.
    return 0;
  }
  if (first instanceof UsageError || first instanceof SourceUsageError) {
    const topic = first instanceof UsageError ? first.command : command;
    const pointer = topic ? `bpfmap ${topic} --help` : "bpfmap --help";
    context.line(`bpfmap: usage error: ${first.message} (see '${pointer}')`);
    return 2;
  }
  context.line(`bpfmap: error: ${errors.map(messageOf).join("; then: ")}`);
  return 1;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Whether fd 1 was closed at start-up. The Rust runtime reopens a closed
 * standard fd on /dev/null read-write; a shell's `>/dev/null` opens it
 * write-only, so the two can be told apart.
 */
function stdoutWasClosed(): boolean {
  try {
    // Never prompt for this: without read permission, assume stdout is open.
    const query = { name: "read", path: "/proc/self" } as const;
    if (Deno.permissions.querySync(query).state !== "granted") return false;
    if (Deno.readLinkSync("/proc/self/fd/1") !== "/dev/null") return false;
    const flags = /^flags:\s+(\d+)$/m.exec(
      Deno.readTextFileSync("/proc/self/fdinfo/1"),
    );
    return flags !== null && (parseInt(flags[1]!, 8) & 3) === 2;
  } catch {
    // Not permitted or not Linux: assume it is open.
    return false;
  }
}

function defaultIo(): CliIo {
  return {
    stdout: Deno.stdout,
    stderr: Deno.stderr,
    stderrIsTerminal: Deno.stderr.isTerminal(),
    stdoutClosed: stdoutWasClosed(),
  };
}
