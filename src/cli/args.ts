/**
 * Argument parsing shared by the commands: one-line usage errors that name
 * the bad input, map ids, counts and the `--id`/`--name` selector.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { BpfmapError } from "../errors.ts";

/** A mistake in how the command was called (exit 2). */
export class UsageError extends BpfmapError {
  /** The command whose help applies. */
  readonly command: string;

  /**
   * @param message what was wrong
   * @param command the command, for the `--help` pointer
   */
  constructor(message: string, command = "") {
    super(message);
    this.command = command;
  }
}

/** Parsed option values, by long name. */
export type Values = Record<string, string | boolean | undefined>;

/** A parseArgs option table. */
export type OptionTable = Record<
  string,
  { type: "string" | "boolean"; short?: string }
>;

/**
 * Parses `args` strictly (`--help` is always accepted). A value that looks
 * like a negative number is taken as the option's value, so `--id -1` is
 * reported as a bad id rather than as an ambiguous option.
 */
export function parse(
  command: string,
  args: string[],
  options: OptionTable,
): { values: Values; positionals: string[] } {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const next = args[i + 1];
    const option = arg.startsWith("--") ? options[arg.slice(2)] : undefined;
    if (option?.type === "string" && next !== undefined && /^-\d/.test(next)) {
      joined.push(`${arg}=${next}`);
      i++;
    } else {
      joined.push(arg);
    }
  }
  try {
    const { values, positionals } = parseArgs({
      args: joined,
      options: { help: { type: "boolean", short: "h" }, ...options },
      allowPositionals: true,
      strict: true,
    });
    return { values: { ...values } as Values, positionals };
  } catch (error) {
    const message = error instanceof Error
      ? error.message.split("\n")[0]!
      : String(error);
    throw new UsageError(
      message.replace(/\. To specify a positional.*$/, ""),
      command,
    );
  }
}

/** The map id in `text` (1 to 2^31-1). */
export function parseId(text: string, command: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 0x7fffffff) {
    throw new UsageError(
      `--id "${text}" is not a map id (an integer from 1 to 2147483647)`,
      command,
    );
  }
  return Number(text);
}

/** A positive integer option no larger than `max`, or undefined when absent. */
export function parseCount(
  text: string | undefined,
  option: string,
  command: string,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max) {
    throw new UsageError(
      `${option} "${text}" is out of range (an integer from 1 to ${max})`,
      command,
    );
  }
  return Number(text);
}

/** A map name given on the command line: never empty (it would match nothing, or everything). */
export function checkName(name: string, what: string, command: string): void {
  if (name === "") {
    throw new UsageError(`${what} is empty: give a map name`, command);
  }
}

/** Rejects positionals a command does not take. */
export function noPositionals(positionals: string[], command: string): void {
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}"`, command);
  }
}

/**
 * Checks an `--id`/`--name` selector before any source is opened; returns
 * whether one was given.
 */
export function checkSelector(values: Values, command: string): boolean {
  if (values.id !== undefined && values.name !== undefined) {
    throw new UsageError("give either --id or --name, not both", command);
  }
  if (values.id !== undefined) parseId(values.id as string, command);
  if (values.name !== undefined) {
    checkName(values.name as string, "--name", command);
  }
  return values.id !== undefined || values.name !== undefined;
}
