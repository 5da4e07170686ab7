/**
 * Compares the programs the guest agent listed through bpf()
 * (`BPFMAP-PROGS [...]` on the console, u64 as strings) with what
 * `GuestMemMapAccessor.programs()` reads from the frozen guest's RAM.
 *
 * @module
 */

import type { GuestMemMapAccessor } from "../../src/accessor/guest.ts";

// Every fact both backends must agree on; run statistics move while the
// programs run, so only whether they are shown is compared.
const FIELDS = [
  "id",
  "type",
  "typeName",
  "name",
  "tag",
  "mapIds",
  "btfId",
  "gplCompatible",
  "loadTime",
  "uid",
  "bytesXlated",
  "jited",
  "bytesJited",
  "bytesMemlock",
  "verifiedInsns",
] as const;

/** Programs compared and every difference, one line each. */
export function comparePrograms(
  consoleText: string,
  memory: GuestMemMapAccessor,
): { programs: number; mismatches: string[] } {
  const line = consoleText.split("\n").find((l) =>
    l.startsWith("BPFMAP-PROGS ")
  );
  if (!line) throw new Error("No BPFMAP-PROGS line on the guest console");
  const live = JSON.parse(line.slice(13).trim()) as Record<string, unknown>[];
  const ram = memory.programs();
  const mismatches: string[] = [];
  const ramById = new Map(ram.map((p) => [p.id, p]));
  for (const want of live) {
    const got = ramById.get(want.id as number);
    if (!got) {
      mismatches.push(`program ${want.id} "${want.name}" is not in guest RAM`);
      continue;
    }
    const norm = (v: unknown): string =>
      JSON.stringify(v, (_, x) => typeof x === "bigint" ? x.toString() : x) ??
        "undefined";
    for (const field of FIELDS) {
      if (norm(got[field]) !== norm(want[field])) {
        mismatches.push(
          `program ${want.id} "${want.name}": ${field} live ${
            norm(want[field])
          } ram ${norm(got[field])}`,
        );
      }
    }
    if ((got.runCnt === undefined) !== (want.runCnt === undefined)) {
      mismatches.push(
        `program ${want.id} "${want.name}": run statistics shown by one backend only`,
      );
    }
  }
  for (const got of ram) {
    if (!live.some((p) => p.id === got.id)) {
      mismatches.push(`program ${got.id} "${got.name}" is only in guest RAM`);
    }
  }
  return { programs: live.length, mismatches };
}
