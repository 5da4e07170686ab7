/**
 * Recovering a map's full source name from its BTF (the kernel keeps 15 characters).
 *
 * @module
 */

import type { Btf } from "./btf.ts";
import { BtfKind } from "./kind.ts";

/** The kernel's name limit: 15 characters plus NUL (`BPF_OBJ_NAME_LEN`). */
const KERNEL_NAME_MAX = 15;

/** Extra facts that break ties between maps with the same prefix and types. */
export interface RecoverFullMapNameOptions {
  /** `enum bpf_map_type` number of the map. */
  mapType?: number;
  /** The map's `max_entries`. */
  maxEntries?: number;
}

interface MapDefinition {
  key: number;
  value: number;
  type?: number;
  maxEntries?: number;
}

/** Reads a libbpf BTF-defined map struct: `__type(key, T)` is `T *key`, `__uint(x, N)` is `int (*x)[N]`. */
function readDefinition(btf: Btf, varType: number): MapDefinition | undefined {
  const def = btf.type(btf.resolve(varType));
  if (def.kind !== BtfKind.STRUCT) return undefined;
  const result: MapDefinition = { key: 0, value: 0 };
  for (const member of def.members) {
    const ptr = btf.type(btf.resolve(member.type));
    if (ptr.kind !== BtfKind.PTR) continue;
    if (member.name === "key") result.key = ptr.type;
    else if (member.name === "value") result.value = ptr.type;
    else if (member.name === "type" || member.name === "max_entries") {
      const array = btf.type(btf.resolve(ptr.type));
      if (array.kind !== BtfKind.ARRAY) continue;
      if (member.name === "type") result.type = array.nelems;
      else result.maxEntries = array.nelems;
    }
  }
  return result;
}

function sameType(btf: Btf, a: number, b: number): boolean {
  if (a === b) return true;
  if (a === 0 || b === 0) return false;
  return btf.resolve(a) === btf.resolve(b);
}

/**
 * The full source name of a map whose kernel name was truncated to 15
 * characters: the VAR in the BTF's `.maps` DATASEC whose name starts with
 * `kernelName` and whose libbpf map definition has the same key and value
 * types (and, when given, map type and max_entries). Returns `kernelName`
 * itself when it was not truncated and a VAR of that name exists, and
 * undefined when no VAR or more than one matches.
 *
 * @param btf the map's BTF (the program object's, `btf_id` of the map)
 * @param kernelName the name the kernel reports
 * @param btfKeyTypeId the map's `btf_key_type_id`
 * @param btfValueTypeId the map's `btf_value_type_id`
 * @param options map type and max entries to break ties
 * @returns the full name, or undefined
 *
 * @example Recover a long name
 * ```ts ignore
 * import { loadBtfById, recoverFullMapName } from "./mod.ts";
 * const btf = loadBtfById(info.btfId);
 * const full = recoverFullMapName(btf, info.name, info.btfKeyTypeId, info.btfValueTypeId);
 * console.log(full ?? info.name);
 * ```
 */
export function recoverFullMapName(
  btf: Btf,
  kernelName: string,
  btfKeyTypeId: number,
  btfValueTypeId: number,
  options: RecoverFullMapNameOptions = {},
): string | undefined {
  if (kernelName === "") return undefined;
  const sections = btf.findAllByName(".maps", BtfKind.DATASEC);
  const matches = new Set<string>();
  for (const section of sections) {
    for (const variable of btf.datasecVariables(section)) {
      const exact = variable.name === kernelName;
      const truncated = kernelName.length === KERNEL_NAME_MAX &&
        variable.name.startsWith(kernelName);
      if (!exact && !truncated) continue;
      const def = readDefinition(btf, variable.type);
      if (!def) continue;
      if (!sameType(btf, def.key, btfKeyTypeId)) continue;
      if (!sameType(btf, def.value, btfValueTypeId)) continue;
      if (
        options.mapType !== undefined && def.type !== undefined &&
        def.type !== options.mapType
      ) continue;
      if (
        options.maxEntries !== undefined && def.maxEntries !== undefined &&
        def.maxEntries !== options.maxEntries
      ) continue;
      matches.add(variable.name);
    }
  }
  if (matches.size !== 1) return undefined;
  return matches.values().next().value;
}
