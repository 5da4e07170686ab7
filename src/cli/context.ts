/**
 * What a command runs with: where it writes, and how it reports what it had
 * to skip.
 *
 * @module
 */

import type { BpfMapAccessor } from "../accessor/types.ts";
import { HELP, MAIN_HELP } from "./help.ts";
import { type ByteSink, writeText } from "./writer.ts";

/** Where the CLI writes. Tests pass memory sinks. */
export interface CliIo {
  /** Standard output. */
  stdout: ByteSink;
  /** Standard error (one line per error, warnings, progress). */
  stderr: ByteSink;
  /** Whether stderr is a terminal (progress lines). */
  stderrIsTerminal: boolean;
  /**
   * Whether standard output was closed when the process started: the Rust
   * runtime reopens a closed fd 1 on /dev/null, so writes would vanish
   * without an error.
   */
  stdoutClosed?: boolean;
  /**
   * Read maps through this accessor instead of opening the source the
   * options name (embedding, and tests that wrap a real backend).
   */
  accessor?: BpfMapAccessor;
}

/** One command's run. */
export class Context {
  /** Where output goes. */
  readonly io: CliIo;

  /** @param io where output goes */
  constructor(io: CliIo) {
    this.io = io;
  }

  /**
   * Writes one line to stderr. A failing stderr is ignored: there is nowhere
   * left to report it, and the exit status still says what happened.
   */
  line(text: string): void {
    try {
      writeText(this.io.stderr, `${text.replaceAll("\n", " ")}\n`);
    } catch {
      // stderr closed or full: the exit status carries the outcome
    }
  }

  /** Rewrites the progress line on a terminal stderr (a courtesy: failures are ignored). */
  progress(text: string): void {
    if (!this.io.stderrIsTerminal) return;
    try {
      writeText(this.io.stderr, `\r\x1b[K${text}`);
    } catch {
      // progress is a courtesy
    }
  }

  /** Prints the help of `command` (or the main help) on stdout; exit status 0. */
  help(command: string): number {
    writeText(this.io.stdout, HELP[command] ?? MAIN_HELP);
    return 0;
  }

  /** `bpfmap: warning: ...` on stderr. */
  warn(message: string): void {
    this.line(`bpfmap: warning: ${message}`);
  }

  /** `bpfmap: note: ...` on stderr (nothing lost, but worth knowing). */
  note(message: string): void {
    this.line(`bpfmap: note: ${message}`);
  }

  /**
   * Warns about everything `accessor` had to skip (its `problems()`), plus
   * `skipped` lines of the command's own, one `bpfmap: warning:` line each;
   * returns the exit status: 1 when anything was skipped and `partial` was
   * not given, else 0.
   */
  finish(
    accessor: BpfMapAccessor | undefined,
    partial: boolean,
    skipped: readonly string[] = [],
  ): number {
    const lines = [
      ...(accessor?.problems() ?? []).map((problem) => problem.message),
      ...skipped,
    ];
    for (const line of lines) this.warn(line);
    return lines.length === 0 || partial ? 0 : 1;
  }
}
