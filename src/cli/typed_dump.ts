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
import { compileConstant, TEXT_WIDTH, type ValuePlan } from "../btf/plan.ts";
import { type OutputWriter, storePlainHex, storeQuotedHex } from "./writer.ts";

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

const encoder = new TextEncoder();
type Constant = (out: Uint8Array, at: number) => number;

/** The constant parts of elements, compiled on the first typed dump. */
interface Constants {
  keyOpen: Constant;
  valueOpen: Constant;
  valuesOpen: Constant;
  formattedKey: Constant;
  formattedOpen: Constant;
  formattedValue: Constant;
  formattedValues: Constant;
  textKey: Constant;
  textValue: Constant;
  cpuOpen: Constant[];
  cpuLabel: Constant[];
}

let constants: Constants | undefined;
function constantsFor(cpus: number): Constants {
  const c = constants ??= {
    keyOpen: compileConstant(encoder.encode('{"key":[')),
    valueOpen: compileConstant(encoder.encode('],"value":[')),
    valuesOpen: compileConstant(encoder.encode('],"values":[')),
    formattedKey: compileConstant(encoder.encode(',"formatted":{"key":')),
    formattedOpen: compileConstant(encoder.encode(',"formatted":{')),
    formattedValue: compileConstant(encoder.encode('"value":')),
    formattedValues: compileConstant(encoder.encode('"values":[')),
    textKey: compileConstant(encoder.encode("key: ")),
    textValue: compileConstant(encoder.encode(TEXT_VALUE)),
    cpuOpen: [],
    cpuLabel: [],
  };
  for (let cpu = c.cpuOpen.length; cpu < cpus; cpu++) {
    c.cpuOpen.push(compileConstant(encoder.encode(
      `${cpu === 0 ? "" : ","}{"cpu":${cpu},"value":`,
    )));
    c.cpuLabel.push(compileConstant(encoder.encode(
      `  value (CPU ${String(cpu).padStart(2, "0")}): `,
    )));
  }
  return c;
}

const TEXT_VALUE = "  value: ";
/** "\nvalue: " without its first byte. */
const VALUE_COLON = encoder.encode("value: ");

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
  const c = constantsFor(shape.cpus);
  for (let i = 0; i < batch.count; i++) {
    let at = out.claim(max);
    const buffer = out.bytes;
    at = json
      ? jsonElement(buffer, at, batch, i, shape, plans, first && i === 0, c)
      : textElement(buffer, at, batch, i, shape, plans, c);
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
  c: Constants,
): number {
  const { keySize, valueSize, valueStride, cpus } = shape;
  const keyStart = i * keySize;
  const valueStart = i * valueStride;
  const slotStride = Math.ceil(valueSize / 8) * 8;
  if (!first) b[at++] = 0x2c;
  at = c.keyOpen(b, at);
  at = storeQuotedHex(b, at, batch.keys, keyStart, keySize);
  if (cpus > 0) {
    at = c.valuesOpen(b, at);
    for (let cpu = 0; cpu < cpus; cpu++) {
      at = c.cpuOpen[cpu]!(b, at);
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
    at = c.valueOpen(b, at);
    at = storeQuotedHex(b, at, batch.values, valueStart, valueSize);
  }
  b[at++] = 0x5d;
  if (plans.key) {
    at = c.formattedKey(b, at);
    at = plans.key.json(batch.keys, keyStart, b, at);
    b[at++] = 0x2c;
  } else {
    at = c.formattedOpen(b, at);
  }
  if (cpus > 0) {
    at = c.formattedValues(b, at);
    for (let cpu = 0; cpu < cpus; cpu++) {
      at = c.cpuOpen[cpu]!(b, at);
      at = plans.value.json(batch.values, valueStart + cpu * slotStride, b, at);
      b[at++] = 0x7d;
    }
    b[at++] = 0x5d;
  } else {
    at = c.formattedValue(b, at);
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
  c: Constants,
): number {
  const { keySize, valueSize, valueStride, cpus } = shape;
  const keyStart = i * keySize;
  const valueStart = i * valueStride;
  at = c.textKey(b, at);
  at = plans.key
    ? plans.key.text!(batch.keys, keyStart, b, at)
    : storePlainHex(b, at, batch.keys, keyStart, keySize);
  const text = plans.value.text!;
  if (cpus > 0) {
    const slotStride = Math.ceil(valueSize / 8) * 8;
    b[at++] = 0x0a;
    for (let cpu = 0; cpu < cpus; cpu++) {
      at = c.cpuLabel[cpu]!(b, at);
      at = text(batch.values, valueStart + cpu * slotStride, b, at);
      b[at++] = 0x0a;
    }
    return at;
  }
  at = c.textValue(b, at);
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
