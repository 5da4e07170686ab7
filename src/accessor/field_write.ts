/**
 * Writes by field name, shared by both backends: the {@linkcode BpfMapFieldWriter}
 * interface, and the preparation every write goes through before anything
 * is touched (paths resolved through the map's BTF, every value encoded and
 * range-checked, the key built), so a bad second field never leaves the
 * first one written.
 *
 * Writes are an interface of their own rather than methods of
 * `BpfMapAccessor`: that interface stays read-only (a dump can be handed any
 * accessor without handing it the power to change maps), while a harness or
 * the CLI's `write` command can write through whichever backend it opened,
 * live or guest, without knowing which.
 *
 * @module
 */

import type { Btf } from "../btf/btf.ts";
import {
  encodeFieldValue,
  type FieldLocation,
  formatFieldValue,
  resolveFieldPath,
} from "../btf/field_path.ts";
import { FieldError, MapArgumentError, type MapIdentity } from "../errors.ts";
import { MapType } from "../sys/constants.ts";
import type { BpfMapInfo } from "./types.ts";

/** A value to store: text as the CLI takes it, or a number, bigint or boolean. */
export type FieldValue = string | number | bigint | boolean;

/** Options for {@linkcode BpfMapFieldWriter.writeFields}. */
export interface WriteFieldOptions {
  /**
   * Which element: an index of an ARRAY (default 0: global data), or a
   * HASH key as an integer (encoded little-endian into the key size) or as
   * the key's bytes.
   */
  key?: number | bigint | Uint8Array;
  /**
   * Guest backend only: write a frozen map (`.rodata`) anyway. The result
   * carries a warning: the verifier usually folds `const volatile` knobs
   * into the programs at load time, so changing them later changes nothing.
   */
  allowReadonly?: boolean;
}

/** One field a write changed. */
export interface FieldChange {
  /** The path as given. */
  path: string;
  /** The field's C type. */
  typeName: string;
  /** Where it lives in the value. */
  byteOffset: number;
  /** Bytes it spans. */
  byteSize: number;
  /** Its value before, as text (see `formatFieldValue`). */
  old: string;
  /** Its value after. */
  new: string;
}

/** What a field write did. */
export interface FieldWriteResult {
  /** The map written. */
  map: BpfMapInfo;
  /** The key of the element written (its bytes). */
  key: Uint8Array;
  /** The fields, in the order given. */
  changes: FieldChange[];
  /** Things the caller should know (a `.rodata` write on a guest). */
  warnings: string[];
}

/**
 * Writes fields of one map element by BTF path. Implemented by both
 * backends: `BpfSyscallAccessor` (read-modify-write of the element through
 * `BPF_MAP_UPDATE_ELEM`) and `GuestMemMapAccessor` (the field's bytes stored
 * in the frozen guest's memory).
 *
 * @example Turn a scheduler knob up
 * ```ts ignore
 * const accessor = new BpfSyscallAccessor();
 * const bss = accessor.findMap("scx_simp.bss")!;
 * const result = accessor.writeField(bss, "vtime_now", 0);
 * console.log(result.changes[0]!.old, "->", result.changes[0]!.new);
 * ```
 */
export interface BpfMapFieldWriter {
  /**
   * Sets each `path` to its value in one element, all or nothing: every
   * path and value is checked before anything is written.
   *
   * @throws {FieldError} for a bad path or a value that does not fit
   * @throws {MapReadOnlyError} for a frozen map
   */
  writeFields(
    map: BpfMapInfo,
    assignments: Iterable<readonly [string, FieldValue]>,
    options?: WriteFieldOptions,
  ): FieldWriteResult;
  /** {@linkcode writeFields} with one field. */
  writeField(
    map: BpfMapInfo,
    path: string,
    value: FieldValue,
    options?: WriteFieldOptions,
  ): FieldWriteResult;
}

/** Whether `accessor` can write fields (both built-in backends can). */
export function isFieldWriter(
  accessor: unknown,
): accessor is BpfMapFieldWriter {
  return typeof accessor === "object" && accessor !== null &&
    typeof (accessor as Partial<BpfMapFieldWriter>).writeFields === "function";
}

/** Assignments checked against a value type, ready to apply to an element. */
export interface PreparedFieldWrite {
  /** The fields, in order. */
  fields: readonly FieldLocation[];
  /**
   * Applies every assignment to `value` (the whole element, changed in
   * place) and reports old and new values.
   */
  apply(value: Uint8Array): FieldChange[];
}

function valueText(value: FieldValue): string {
  return typeof value === "string" ? value : String(value);
}

/**
 * Resolves and encodes every assignment against the map's value type, on a
 * scratch copy, so errors come before any write.
 *
 * @param map the map, for messages
 * @param btf the map's BTF (null when it has none)
 * @param valueTypeId its value type id
 * @param valueSize its value size
 * @throws {FieldError} for a bad path or value (naming the map)
 * @throws {MapArgumentError} when the map has no BTF value type
 */
export function prepareFieldWrite(
  map: MapIdentity,
  btf: Btf | null,
  valueTypeId: number,
  valueSize: number,
  assignments: Iterable<readonly [string, FieldValue]>,
): PreparedFieldWrite {
  const list = [...assignments].map(([path, value]) =>
    [path, valueText(value)] as const
  );
  if (list.length === 0) {
    throw new MapArgumentError(map, "fields", "are missing: name at least one");
  }
  if (btf === null || valueTypeId === 0) {
    throw new MapArgumentError(
      map,
      `field "${list[0]![0]}"`,
      "cannot be found: the map has no BTF value type",
      { hint: "write raw bytes with update() or writeValue() instead" },
    );
  }
  const fields: FieldLocation[] = [];
  const scratch = new Uint8Array(valueSize);
  try {
    for (const [path, text] of list) {
      const field = resolveFieldPath(btf, valueTypeId, path);
      encodeFieldValue(btf, field, text, scratch);
      fields.push(field);
    }
  } catch (error) {
    throw error instanceof FieldError ? error.forMap(map) : error;
  }
  return {
    fields,
    apply(value: Uint8Array): FieldChange[] {
      const old = fields.map((f) => formatFieldValue(btf, f, value));
      list.forEach(([, text], i) =>
        encodeFieldValue(btf, fields[i]!, text, value)
      );
      return fields.map((f, i) => ({
        path: f.path,
        typeName: f.typeName,
        byteOffset: f.byteOffset,
        byteSize: f.byteSize,
        old: old[i]!,
        new: formatFieldValue(btf, f, value),
      }));
    },
  };
}

/** An ARRAY index from the `key` option (default 0), checked against `max_entries`. */
export function arrayIndexOf(
  map: MapIdentity & { maxEntries: number },
  key: WriteFieldOptions["key"],
): number {
  const index = key === undefined
    ? 0
    : key instanceof Uint8Array
    ? (key.length === 4
      ? new DataView(key.buffer, key.byteOffset, 4).getUint32(0, true)
      : -1)
    : Number(key);
  if (!Number.isInteger(index) || index < 0 || index >= map.maxEntries) {
    throw new MapArgumentError(
      map,
      "key",
      `${
        key instanceof Uint8Array ? `(${key.length} bytes)` : String(key)
      } is not an index of the array (0..${map.maxEntries - 1})`,
    );
  }
  return index;
}

/** The bytes of the element's key: an ARRAY index, or a HASH key. */
export function fieldWriteKey(
  map: MapIdentity & { type: number; keySize: number; maxEntries: number },
  key: WriteFieldOptions["key"],
): Uint8Array {
  if (map.type === MapType.ARRAY) {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, arrayIndexOf(map, key), true);
    return bytes;
  }
  if (key === undefined) {
    throw new MapArgumentError(
      map,
      "key",
      "is missing: a hash map's element is named by its key",
    );
  }
  if (key instanceof Uint8Array) {
    if (key.length !== map.keySize) {
      throw new MapArgumentError(
        map,
        "key",
        `is ${key.length} bytes but the key size is ${map.keySize}`,
      );
    }
    return key.slice();
  }
  const number = BigInt(key);
  const bits = BigInt(map.keySize * 8);
  if (map.keySize > 8 || number < 0n || number >= (1n << bits)) {
    throw new MapArgumentError(
      map,
      "key",
      map.keySize > 8
        ? `${key} is a number but the key is ${map.keySize} bytes: give its bytes`
        : `${key} does not fit the ${map.keySize}-byte key`,
    );
  }
  const bytes = new Uint8Array(map.keySize);
  let rest = number;
  for (let i = 0; i < bytes.length; i++) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return bytes;
}
