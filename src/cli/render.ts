/**
 * Typed rendering for dumps: builds an {@linkcode EntryRenderer} from a map's
 * BTF with the one renderer every backend shares.
 *
 * @module
 */

import type { BpfMapAccessor, BpfMapInfo } from "../accessor/types.ts";
import type { Btf } from "../btf/btf.ts";
import { toJson } from "../btf/json.ts";
import { formatValue } from "../btf/format_value.ts";
import { type RenderedValue, renderValue } from "../btf/render.ts";
import { compileValuePlan } from "../btf/plan.ts";
import type { EntryRenderer } from "./dump.ts";
import type { EntryPlans } from "./typed_dump.ts";

function attempt(render: () => RenderedValue): RenderedValue | undefined {
  try {
    return render();
  } catch {
    // A value the BTF cannot describe is shown as hex instead.
    return undefined;
  }
}

/**
 * A renderer for `map`'s keys and values, or undefined when the map has no
 * BTF (or it cannot be loaded: `warn` is told why and the dump goes on in hex).
 */
export function btfRenderer(
  accessor: BpfMapAccessor,
  map: BpfMapInfo,
  warn: (message: string) => void,
): EntryRenderer | undefined {
  if (map.btfId === 0 || map.btfValueTypeId === 0) return undefined;
  let btf: Btf | null;
  try {
    btf = accessor.loadProgramBtf(map);
  } catch (error) {
    warn(
      `map ${map.id} "${map.name}": BTF ${map.btfId} unreadable, showing hex: ${
        error instanceof Error ? error.message : String(error)
      }`,
    );
    return undefined;
  }
  if (btf === null) return undefined;
  const keyType = map.btfKeyTypeId;
  const valueType = map.btfValueTypeId;
  const typed = btf;
  const key = (bytes: Uint8Array): RenderedValue | undefined =>
    keyType === 0
      ? undefined
      : attempt(() => renderValue(typed, keyType, bytes));
  const value = (bytes: Uint8Array): RenderedValue | undefined =>
    attempt(() => renderValue(typed, valueType, bytes));
  return {
    plans: plansFor(typed, map),
    keyJson(bytes): string | undefined {
      const rendered = key(bytes);
      return rendered === undefined ? undefined : toJson(rendered);
    },
    valueJson(bytes): string | undefined {
      const rendered = value(bytes);
      return rendered === undefined ? undefined : toJson(rendered);
    },
    keyText(bytes): string | undefined {
      const rendered = key(bytes);
      return rendered === undefined ? undefined : formatValue(rendered);
    },
    valueText(bytes): string | undefined {
      const rendered = value(bytes);
      return rendered === undefined ? undefined : formatValue(rendered);
    },
  };
}

/** Plans for the map's key and value, or undefined when either type needs the renderer. */
function plansFor(btf: Btf, map: BpfMapInfo): EntryPlans | undefined {
  const value = compileValuePlan(btf, map.btfValueTypeId, map.valueSize);
  if (!value) return undefined;
  if (map.btfKeyTypeId === 0) return { key: undefined, value };
  const key = compileValuePlan(btf, map.btfKeyTypeId, map.keySize);
  return key ? { key, value } : undefined;
}
