/**
 * `bpfmap progs`: every BPF program, as a table or bpftool's JSON array.
 *
 * @module
 */

import { BpfSyscallAccessor } from "../../accessor/syscall.ts";
import { noPositionals, parse } from "../args.ts";
import type { Context } from "../context.ts";
import { bootEpochSeconds, programJson, programTable } from "../prog_format.ts";
import { SOURCE_OPTIONS, withSource } from "../source.ts";
import { writeText } from "../writer.ts";

/** Runs `bpfmap progs ARGS`. */
export function progs(context: Context, args: string[]): Promise<number> {
  const { values, positionals } = parse("progs", args, {
    json: { type: "boolean", short: "j" },
    partial: { type: "boolean" },
    ...SOURCE_OPTIONS,
  });
  if (values.help) return Promise.resolve(context.help("progs"));
  noPositionals(positionals, "progs");
  return withSource(context, values, ({ accessor }) => {
    const programs = accessor.programs();
    if (values.json) {
      // Only this host's boot time turns a load time into a date.
      const boot = accessor instanceof BpfSyscallAccessor
        ? bootEpochSeconds()
        : null;
      writeText(
        context.io.stdout,
        `[${programs.map((p) => programJson(p, boot)).join(",")}]\n`,
      );
    } else {
      writeText(context.io.stdout, programTable(programs));
    }
    return context.finish(accessor, values.partial === true);
  });
}
