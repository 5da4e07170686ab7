/**
 * `bpfmap pin NAME PATH`: pin the lowest-id map with that name on bpffs.
 *
 * @module
 */

import { BpfSyscallAccessor } from "../../accessor/syscall.ts";
import { checkName, parse, UsageError } from "../args.ts";
import type { Context } from "../context.ts";
import { findByName } from "../select.ts";

/** Runs `bpfmap pin ARGS` (live kernel only: pins exist only there). */
export function pin(context: Context, args: string[]): number {
  const { values, positionals } = parse("pin", args, {
    partial: { type: "boolean" },
  });
  if (values.help) return context.help("pin");
  if (positionals.length !== 2) {
    throw new UsageError("pin takes NAME and PATH", "pin");
  }
  const [name, path] = positionals as [string, string];
  checkName(name, "NAME", "pin");
  const accessor = new BpfSyscallAccessor();
  const map = findByName(accessor, name, false);
  accessor.pin(map, path);
  context.line(`pinned map ${map.id} "${map.name}" at ${path}`);
  // A map skipped during the search may have been a lower-id match.
  return context.finish(accessor, values.partial === true);
}
