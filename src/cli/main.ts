/**
 * The `bpfmap` command line: parsing, dispatch, exit codes.
 *
 * Exit 0 on success, 1 on a runtime error, 2 on a usage error; every error
 * is one line on stderr.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { BpfmapError } from "../errors.ts";
import { BpfSyscallAccessor } from "../accessor/syscall.ts";
import {
  MapNameTooLongError,
  MapNotFoundError,
  openBpfMapFdByName,
} from "../accessor/pin.ts";
import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import { objPin } from "../sys/bpf.ts";
import type { OwnedFd } from "../sys/fd.ts";
import { mapInfoFromFd } from "../accessor/syscall.ts";
import { writeMapDump } from "./dump.ts";
import { btfRenderer } from "./render.ts";
import {
  type Source,
  SOURCE_HELP,
  SOURCE_OPTIONS,
  SourceUsageError,
  withSource,
} from "./source.ts";
import { dumpState } from "../dump/dump_state.ts";
import { reportToJson, reportToText } from "../dump/format.ts";
import { mapInfoJson, mapTable } from "./format.ts";
import { type ByteSink, OutputWriter } from "./writer.ts";

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

/** Where the CLI writes. Tests pass memory sinks. */
export interface CliIo {
  /** Standard output. */
  stdout: ByteSink;
  /** Standard error (one line per error, progress). */
  stderr: ByteSink;
  /** Whether stderr is a terminal (progress lines). */
  stderrIsTerminal: boolean;
}

const VERSION = "0.1.0";

const MAIN_HELP = `bpfmap ${VERSION}: find, hold and read Linux BPF maps

Usage: bpfmap <command> [options]

Commands:
  list                       List every map (aligned table, or --json like bpftool -j)
  show  (--id N | --name NAME)  Show one map's details
  dump  [--id N | --name NAME] Dump a map's entries, or every map (bpftool's JSON with --json)
  find  NAME                 Find the lowest-id map with this kernel-visible name
  pin   NAME PATH            Pin the map named NAME at a bpffs PATH
  hold  NAME... [-- CMD ...] Keep maps alive while CMD runs, or until SIGINT/SIGTERM

Options:
  -h, --help                 Show help (also after any command)
  -V, --version              Show the version

Needs root (or CAP_SYS_ADMIN): the kernel refuses to enumerate maps otherwise.
Exit status: 0 ok, 1 runtime error, 2 usage error.
`;

const HELP: Record<string, string> = {
  list: `Usage: bpfmap list [--json] [SOURCE]

List every BPF map in id order.

Options:
  -j, --json   One JSON array of bpftool-style objects (id, type, name, flags,
               bytes_key, bytes_value, max_entries, bytes_memlock, frozen, btf_id)
  -h, --help   Show this help

${SOURCE_HELP}`,
  show: `Usage: bpfmap show (--id N | --name NAME) [--json] [SOURCE]

Show one map. --name matches the kernel-visible name exactly; several matches
are all shown (a JSON array when more than one, as bpftool does).

Options:
      --id N       Map id
      --name NAME  Kernel-visible map name (at most 15 characters)
  -j, --json       bpftool's JSON object
  -h, --help       Show this help

${SOURCE_HELP}`,
  dump:
    `Usage: bpfmap dump [--id N | --name NAME] [--json] [--max-entries N] [--hex] [SOURCE]

Dump a map's entries. Hash and array maps are read in LOOKUP_BATCH runs and
written as they arrive. Per-CPU maps show one value per possible CPU. Maps
with BTF are shown typed: --json adds bpftool's "formatted" object, text
shows values instead of hex.

Without --id or --name, dump every map (the failure dump): each map's info
and up to --max-entries (default 64) rendered entries, grouped per map; with
--json, the report schema "bpfmap.failure-dump/1".

Options:
      --id N             Map id
      --name NAME        Kernel-visible (or full BTF) map name; every match is dumped
  -j, --json             bpftool's JSON: [{"key":["0x00",...],"value":[...]}, ...]
      --max-entries N    Write at most N entries per map (the rest are counted)
      --batch-size N     Entries per LOOKUP_BATCH call (default 4096)
      --hex              Raw bytes only, even when the map has BTF
  -h, --help             Show this help

${SOURCE_HELP}`,
  find: `Usage: bpfmap find NAME [--json] [--full] [SOURCE]

Walk map ids in increasing order and print the first map whose kernel-visible
name equals NAME (the pin helper). Exit 1 with the reason when none matches.

Options:
      --full   Also match the full source name kept in the map's BTF, for
               names longer than the kernel's 15 characters
  -j, --json   bpftool's JSON object
  -h, --help   Show this help

${SOURCE_HELP}`,
  pin: `Usage: bpfmap pin NAME PATH

Pin the lowest-id map named NAME at PATH on a bpffs mount (e.g.
/sys/fs/bpf/mymap), so it outlives every process.

Options:
  -h, --help   Show this help
`,
  hold: `Usage: bpfmap hold NAME... [-- COMMAND [ARGS...]]

Open every named map (lowest id wins) and keep the fds open: while COMMAND
runs (exit with its status), or without COMMAND until SIGINT or SIGTERM.
Prints the held ids on stderr.

Options:
  -h, --help   Show this help
`,
};

function encode(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function parseId(
  text: string | undefined,
  command: string,
  option = "--id",
): number {
  if (text === undefined) {
    throw new UsageError(`${option} needs a value`, command);
  }
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > 0x7fffffff) {
    throw new UsageError(
      `${option} "${text}" is not a map id (a positive integer)`,
      command,
    );
  }
  return Number(text);
}

function parseCount(
  text: string | undefined,
  option: string,
  command: string,
): number | undefined {
  if (text === undefined) return undefined;
  if (!/^\d+$/.test(text) || Number(text) < 1) {
    throw new UsageError(
      `${option} "${text}" is not a positive integer`,
      command,
    );
  }
  return Number(text);
}

function parse<
  T extends Record<string, { type: "string" | "boolean"; short?: string }>,
>(
  command: string,
  args: string[],
  options: T,
): {
  values: Record<string, string | boolean | undefined>;
  positionals: string[];
} {
  try {
    const { values, positionals } = parseArgs({
      args,
      options: { help: { type: "boolean", short: "h" }, ...options },
      allowPositionals: true,
      strict: true,
    });
    return {
      values: { ...values } as Record<string, string | boolean | undefined>,
      positionals,
    };
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

/** The map(s) a `--id`/`--name` selector names, lowest id first. */
function selectMaps(
  accessor: BpfMapAccessor,
  values: Record<string, string | boolean | undefined>,
  command: string,
): BpfMapInfo[] {
  const id = values.id as string | undefined;
  const name = values.name as string | undefined;
  if (id !== undefined && name !== undefined) {
    throw new UsageError("give either --id or --name, not both", command);
  }
  if (id !== undefined) {
    const wanted = parseId(id, command);
    const map = accessor instanceof BpfSyscallAccessor
      ? accessor.mapById(wanted)
      : accessor.maps().find((m) => m.id === wanted) ?? null;
    if (!map) throw new Error(`No BPF map with id ${wanted}`);
    return [map];
  }
  if (name !== undefined) {
    const all = accessor.maps();
    const maps = all.filter((m) => m.name === name || m.fullName === name);
    if (maps.length === 0) {
      // Explain the miss the way the pin helper does.
      if (name.length > 15) throw new MapNameTooLongError(name);
      throw new MapNotFoundError(
        name,
        all.map((m) => ({ id: m.id, name: m.name })),
      );
    }
    return maps;
  }
  throw new UsageError("name a map with --id N or --name NAME", command);
}

interface Context {
  io: CliIo;
}

function writeText(sink: ByteSink, text: string): void {
  const bytes = encode(text);
  let done = 0;
  while (done < bytes.length) done += sink.writeSync(bytes.subarray(done));
}

function commandList(
  context: Context,
  args: string[],
): Promise<number> | number {
  const { values, positionals } = parse("list", args, {
    json: { type: "boolean", short: "j" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return help(context, "list");
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}"`, "list");
  }
  return withSource(values, ({ accessor }) => {
    const maps = accessor.maps();
    writeText(
      context.io.stdout,
      values.json ? `[${maps.map(mapInfoJson).join(",")}]\n` : mapTable(maps),
    );
    return 0;
  });
}

function commandShow(
  context: Context,
  args: string[],
): Promise<number> | number {
  const { values, positionals } = parse("show", args, {
    id: { type: "string" },
    name: { type: "string" },
    json: { type: "boolean", short: "j" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return help(context, "show");
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}"`, "show");
  }
  checkSelector(values, "show");
  return withSource(values, ({ accessor }) => {
    const maps = selectMaps(accessor, values, "show");
    if (values.json) {
      const objects = maps.map(mapInfoJson);
      writeText(
        context.io.stdout,
        objects.length === 1 ? `${objects[0]}\n` : `[${objects.join(",")}]\n`,
      );
    } else {
      writeText(context.io.stdout, mapTable(maps));
    }
    return 0;
  });
}

function commandDump(
  context: Context,
  args: string[],
): Promise<number> | number {
  const { values, positionals } = parse("dump", args, {
    id: { type: "string" },
    name: { type: "string" },
    json: { type: "boolean", short: "j" },
    "max-entries": { type: "string" },
    "batch-size": { type: "string" },
    hex: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return help(context, "dump");
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument "${positionals[0]}"`, "dump");
  }
  const maxEntries = parseCount(
    values["max-entries"] as string | undefined,
    "--max-entries",
    "dump",
  );
  const batchSize = parseCount(
    values["batch-size"] as string | undefined,
    "--batch-size",
    "dump",
  );
  const json = values.json === true;
  if (values.id === undefined && values.name === undefined) {
    return withSource(
      values,
      (source) => dumpEverything(context, source, json, maxEntries),
    );
  }
  checkSelector(values, "dump");
  return withSource(values, ({ accessor, cpus }) => {
    const maps = selectMaps(accessor, values, "dump");
    using out = new OutputWriter(context.io.stdout);
    const wrap = json && maps.length > 1;
    if (wrap) out.ascii("[");
    maps.forEach((map, index) => {
      if (wrap) {
        const info = mapInfoJson(map);
        out.text(`${index === 0 ? "" : ","}${info.slice(0, -1)},"elements":`);
      } else if (!json && maps.length > 1) {
        out.text(`${index === 0 ? "" : "\n"}# map ${map.id} "${map.name}"\n`);
      }
      writeMapDump(out, accessor, map, {
        json,
        cpus,
        renderer: values.hex ? undefined : btfRenderer(
          accessor,
          map,
          (message) =>
            writeText(context.io.stderr, `bpfmap: warning: ${message}\n`),
        ),
        ...(maxEntries !== undefined ? { maxEntries } : {}),
        ...(batchSize !== undefined ? { batchSize } : {}),
      });
      if (wrap) out.ascii("}");
    });
    if (wrap) out.ascii("]\n");
    return 0;
  });
}

/**
 * `dump` with no selector: the failure dump of every map, with a progress
 * line on a terminal.
 */
function dumpEverything(
  context: Context,
  source: Source,
  json: boolean,
  maxEntries: number | undefined,
): number {
  const progress = context.io.stderrIsTerminal;
  const report = dumpState(source.accessor, {
    entryLimit: maxEntries ?? 64,
    numCpus: source.cpus,
    source: source.description,
    ...(progress
      ? {
        onMap: (index: number, total: number, map: BpfMapInfo): void => {
          writeText(
            context.io.stderr,
            `\r\x1b[Kdumping map ${
              index + 1
            }/${total}: ${map.id} "${map.name}"`,
          );
        },
      }
      : {}),
  });
  if (progress) writeText(context.io.stderr, "\r\x1b[K");
  writeText(
    context.io.stdout,
    json ? `${reportToJson(report)}\n` : reportToText(report),
  );
  return 0;
}

function commandFind(
  context: Context,
  args: string[],
): Promise<number> | number {
  const { values, positionals } = parse("find", args, {
    json: { type: "boolean", short: "j" },
    full: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return help(context, "find");
  if (positionals.length !== 1) {
    throw new UsageError("find takes exactly one NAME", "find");
  }
  const name = positionals[0]!;
  const full = values.full === true;
  return withSource(values, ({ accessor }) => {
    let map: BpfMapInfo;
    if (accessor instanceof BpfSyscallAccessor) {
      using fd = openBpfMapFdByName(name, full ? { match: "full" } : {});
      const id = mapInfoFromFd(fd.fd).id;
      map = accessor.mapById(id) ?? mapInfoFromFd(fd.fd);
    } else {
      map = findInSource(accessor, name, full);
    }
    writeText(
      context.io.stdout,
      values.json ? `${mapInfoJson(map)}\n` : mapTable([map]),
    );
    return 0;
  });
}

/** The pin helper's contract over any source: lowest id whose name equals `name`. */
function findInSource(
  accessor: BpfMapAccessor,
  name: string,
  full: boolean,
): BpfMapInfo {
  if (name.length > 15 && !full) throw new MapNameTooLongError(name);
  const maps = accessor.maps();
  const found = maps.find((m) =>
    m.name === name || (full && m.fullName === name)
  );
  if (found) return found;
  throw new MapNotFoundError(
    name,
    maps.map((m) => ({ id: m.id, name: m.name })),
  );
}

/** Rejects --id with --name before any source is opened. */
function checkSelector(
  values: Record<string, string | boolean | undefined>,
  command: string,
): void {
  if (values.id !== undefined && values.name !== undefined) {
    throw new UsageError("give either --id or --name, not both", command);
  }
  if (values.id !== undefined) parseId(values.id as string, command);
}

function commandPin(context: Context, args: string[]): number {
  const { values, positionals } = parse("pin", args, {});
  if (values.help) return help(context, "pin");
  if (positionals.length !== 2) {
    throw new UsageError("pin takes NAME and PATH", "pin");
  }
  const [name, path] = positionals as [string, string];
  using fd = openBpfMapFdByName(name);
  objPin(fd.fd, path);
  const map = mapInfoFromFd(fd.fd);
  writeText(
    context.io.stderr,
    `pinned map ${map.id} "${map.name}" at ${path}\n`,
  );
  return 0;
}

async function commandHold(context: Context, args: string[]): Promise<number> {
  const separator = args.indexOf("--");
  const names = separator < 0 ? args : args.slice(0, separator);
  const command = separator < 0 ? [] : args.slice(separator + 1);
  if (names.includes("-h") || names.includes("--help")) {
    return help(context, "hold");
  }
  const unknown = names.find((n) => n.startsWith("-"));
  if (unknown) throw new UsageError(`unknown option "${unknown}"`, "hold");
  if (names.length === 0) {
    throw new UsageError("hold needs at least one map NAME", "hold");
  }
  if (separator >= 0 && command.length === 0) {
    throw new UsageError("nothing after --: give the COMMAND to run", "hold");
  }
  const held: OwnedFd[] = [];
  // Listen before announcing, so a signal sent on seeing "holding" is ours to handle.
  let stop = (): void => {};
  const stopped = new Promise<void>((resolve) => {
    stop = (): void => resolve();
  });
  const signals: Deno.Signal[] = command.length > 0
    ? []
    : ["SIGINT", "SIGTERM"];
  for (const signal of signals) Deno.addSignalListener(signal, stop);
  try {
    for (const name of names) held.push(openBpfMapFdByName(name));
    const ids = held.map((fd) => mapInfoFromFd(fd.fd).id);
    writeText(
      context.io.stderr,
      `holding ${names.map((n, i) => `"${n}" (id ${ids[i]})`).join(", ")}\n`,
    );
    if (command.length > 0) {
      const child = new Deno.Command(command[0]!, {
        args: command.slice(1),
        stdin: "inherit",
        stdout: "inherit",
        stderr: "inherit",
      }).spawn();
      const status = await child.status;
      return status.code;
    }
    await stopped;
    return 0;
  } finally {
    for (const signal of signals) Deno.removeSignalListener(signal, stop);
    for (const fd of held) fd.close();
  }
}

function help(context: Context, command: string): number {
  writeText(context.io.stdout, HELP[command] ?? MAIN_HELP);
  return 0;
}

const COMMANDS: Record<
  string,
  (context: Context, args: string[]) => number | Promise<number>
> = {
  list: commandList,
  show: commandShow,
  dump: commandDump,
  find: commandFind,
  pin: commandPin,
  hold: commandHold,
};

/**
 * Runs the CLI and returns its exit status.
 *
 * @param args the arguments after the program name
 * @param io where output goes (defaults to the process's stdout/stderr)
 *
 * @example
 * ```ts ignore
 * import { main } from "@bpfmap/bpfmap/cli";
 * Deno.exitCode = await main(["list", "--json"]);
 * ```
 */
export async function main(
  args: string[],
  io: CliIo = defaultIo(),
): Promise<number> {
  const [command, ...rest] = args;
  const context: Context = { io };
  if (
    command === undefined || command === "help" || command === "-h" ||
    command === "--help"
  ) {
    const topic = command === "help" ? rest[0] : undefined;
    return help(context, topic ?? "");
  }
  if (command === "-V" || command === "--version") {
    writeText(io.stdout, `bpfmap ${VERSION}\n`);
    return 0;
  }
  const run = COMMANDS[command];
  try {
    if (!run) throw new UsageError(`unknown command "${command}"`, "");
    return await run(context, rest);
  } catch (caught) {
    const error = caught instanceof SourceUsageError
      ? new UsageError(caught.message, command)
      : caught;
    if (error instanceof UsageError) {
      const pointer = error.command
        ? `bpfmap ${error.command} --help`
        : "bpfmap --help";
      writeText(
        io.stderr,
        `bpfmap: usage error: ${error.message} (see '${pointer}')\n`,
      );
      return 2;
    }
    if (isBrokenPipe(error)) return 0;
    const message = error instanceof Error ? error.message : String(error);
    writeText(io.stderr, `bpfmap: error: ${message.replaceAll("\n", " ")}\n`);
    return 1;
  }
}

function isBrokenPipe(error: unknown): boolean {
  return error instanceof Deno.errors.BrokenPipe;
}

function defaultIo(): CliIo {
  return {
    stdout: Deno.stdout,
    stderr: Deno.stderr,
    stderrIsTerminal: Deno.stderr.isTerminal(),
  };
}
