/**
 * The typed dump's hot loop: whole batches of elements written straight
 * into the output buffer, raw hex and `"formatted"` (or typed text) alike,
 * with the map's compiled plans ({@linkcode compileValuePlan}). The element
 * shapes are exactly those `writeMapDump` writes element by element through
 * the renderer; a test holds the two paths equal.
 *
 * @module
 */

import type { EntryBatch } from "../accessor/types.ts";
import { TEXT_WIDTH, type ValuePlan } from "../btf/plan.ts";
import {
  type OutputWriter,
  pack,
  type Packed,
  storePacked,
  storePlainHex,
  storeQuotedHex,
} from "./writer.ts";

/** Plans for a map's keys and values. */
export interface EntryPlans {
  /** The key's plan; undefined when keys have no BTF type (shown as hex). */
  key: ValuePlan | undefined;
  /** The value's plan. */
  value: ValuePlan;
}

/** The shape of one batch's elements. */
export interface TypedShape {
  /** Key bytes. */
  keySize: number;
  /** Value bytes (one CPU's for per-CPU maps). */
  valueSize: number;
  /** Bytes from one element's value(s) to the next. */
  valueStride: number;
  /** CPUs for per-CPU maps, 0 otherwise. */
  cpus: number;
}

const KEY_OPEN = pack('{"key":[');
const VALUE_OPEN = pack('],"value":[');
const VALUES_OPEN = pack('],"values":[');
const FORMATTED_KEY = pack(',"formatted":{"key":');
const FORMATTED_OPEN = pack(',"formatted":{');
const FORMATTED_VALUE = pack('"value":');
const FORMATTED_VALUES = pack('"values":[');
const TEXT_KEY = pack("key: ");
const TEXT_VALUE = pack("  value: ");
/** "\nvalue: " without its first byte. */
const VALUE_COLON = new TextEncoder().encode("value: ");
const cpuOpens: Packed[] = [];
function cpuOpen(cpu: number): Packed {
  return cpuOpens[cpu] ??= pack(
    `${cpu === 0 ? "" : ","}{"cpu":${cpu},"value":`,
  );
}
const cpuLabels: Packed[] = [];
function cpuLabel(cpu: number): Packed {
  return cpuLabels[cpu] ??= pack(
    `  value (CPU ${String(cpu).padStart(2, "0")}): `,
  );
}

/** Bytes one element can take, or Infinity when the plans cannot write it. */
function elementMax(
  plans: EntryPlans,
  shape: TypedShape,
  json: boolean,
): number {
  const slots = shape.cpus > 0 ? shape.cpus : 1;
  if (json) {
    return 64 + 7 * shape.keySize + (plans.key?.jsonMax ?? 0) +
      slots * (80 + 7 * shape.valueSize + plans.value.jsonMax);
  }
  if (!plans.value.text || (plans.key && !plans.key.text)) return Infinity;
  return 16 + Math.max(3 * shape.keySize, plans.key?.textMax ?? 0) +
    slots * (32 + plans.value.textMax);
}

/** Whether the typed run can write these elements (else the caller goes element by element). */
export function canWriteTyped(
  out: OutputWriter,
  plans: EntryPlans,
  shape: TypedShape,
  json: boolean,
): boolean {
  return elementMax(plans, shape, json) <= out.capacity;
}

/**
 * Writes `batch`'s elements as `writeMapDump` does with a renderer: JSON
 * elements (comma first unless `first`) with `"formatted"`, or text lines.
 * {@linkcode canWriteTyped} must have said yes.
 */
export function writeTypedRun(
  out: OutputWriter,
  batch: EntryBatch,
  shape: TypedShape,
  plans: EntryPlans,
  json: boolean,
  first: boolean,
): void {
  const max = elementMax(plans, shape, json);
  for (let i = 0; i < batch.count; i++) {
    let at = out.claim(max);
    const buffer = out.bytes;
    at = json
      ? jsonElement(buffer, at, batch, i, shape, plans, first && i === 0)
      : textElement(buffer, at, batch, i, shape, plans);
    out.commit(at);
  }
}

function jsonElement(
  b: Uint8Array,
  at: number,
  batch: EntryBatch,
  i: number,
  shape: TypedShape,
  plans: EntryPlans,
  first: boolean,
): number {
  const { keySize, valueSize, valueStride, cpus } = shape;
  const keyStart = i * keySize;
  const valueStart = i * valueStride;
  const slotStride = Math.ceil(valueSize / 8) * 8;
  if (!first) b[at++] = 0x2c;
  at = storePacked(b, at, KEY_OPEN);
  at = storeQuotedHex(b, at, batch.keys, keyStart, keySize);
  if (cpus > 0) {
    at = storePacked(b, at, VALUES_OPEN);
    for (let cpu = 0; cpu < cpus; cpu++) {
      at = storePacked(b, at, cpuOpen(cpu));
      b[at++] = 0x5b;
      at = storeQuotedHex(
        b,
        at,
        batch.values,
        valueStart + cpu * slotStride,
        valueSize,
      );
      b[at++] = 0x5d;
      b[at++] = 0x7d;
    }
  } else {
    at = storePacked(b, at, VALUE_OPEN);
    at = storeQuotedHex(b, at, batch.values, valueStart, valueSize);
  }
  b[at++] = 0x5d;
  if (plans.key) {
    at = storePacked(b, at, FORMATTED_KEY);
    at = plans.key.json(batch.keys, keyStart, b, at);
    b[at++] = 0x2c;
  } else {
    at = storePacked(b, at, FORMATTED_OPEN);
  }
  if (cpus > 0) {
    at = storePacked(b, at, FORMATTED_VALUES);
    for (let cpu = 0; cpu < cpus; cpu++) {
      at = storePacked(b, at, cpuOpen(cpu));
      at = plans.value.json(batch.values, valueStart + cpu * slotStride, b, at);
      b[at++] = 0x7d;
    }
    b[at++] = 0x5d;
  } else {
    at = storePacked(b, at, FORMATTED_VALUE);
    at = plans.value.json(batch.values, valueStart, b, at);
  }
  b[at++] = 0x7d;
  b[at++] = 0x7d;
  return at;
}

/** formatValue breaks a value over lines only past the width, and then at its second byte. */
function multiline(b: Uint8Array, start: number, end: number): boolean {
  if (end - start <= TEXT_WIDTH) return false;
  for (let p = start; p < end; p++) if (b[p] === 0x0a) return true;
  return false;
}

function textElement(
  b: Uint8Array,
  at: number,
  batch: EntryBatch,
  i: number,
  shape: TypedShape,
  plans: EntryPlans,
): number {
  const { keySize, valueSize, valueStride, cpus } = shape;
  const keyStart = i * keySize;
  const valueStart = i * valueStride;
  at = storePacked(b, at, TEXT_KEY);
  at = plans.key
    ? plans.key.text!(batch.keys, keyStart, b, at)
    : storePlainHex(b, at, batch.keys, keyStart, keySize);
  const text = plans.value.text!;
  if (cpus > 0) {
    const slotStride = Math.ceil(valueSize / 8) * 8;
    b[at++] = 0x0a;
    for (let cpu = 0; cpu < cpus; cpu++) {
      at = storePacked(b, at, cpuLabel(cpu));
      at = text(batch.values, valueStart + cpu * slotStride, b, at);
      b[at++] = 0x0a;
    }
    return at;
  }
  at = storePacked(b, at, TEXT_VALUE);
  const start = at;
  at = text(batch.values, valueStart, b, at);
  if (multiline(b, start, at)) {
    // "\nvalue: " instead of "  value: ", one byte shorter.
    b.copyWithin(start - 1, start, at);
    at--;
    b[start - 9] = 0x0a;
    b.set(VALUE_COLON, start - 8);
  }
  b[at++] = 0x0a;
  return at;
}
