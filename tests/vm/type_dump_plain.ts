/**
 * A type reader's result as plain JSON (bytes as hex, u64 as decimal
 * strings, a ring buffer's records spelled out), so the guest agent can print
 * what bpf() showed and the host can compare it with guest memory, key for
 * key. Imported by the agent inside the guest and by the host-side compare.
 *
 * @module
 */

import type { TypeDump } from "../../src/accessor/maptypes/mod.ts";

function hex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function plainValue(value: unknown): unknown {
  if (value instanceof Uint8Array) return hex(value);
  if (typeof value === "bigint") return value.toString();
  if (Array.isArray(value)) return value.map(plainValue);
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [key, inner] of Object.entries(value)) {
      if (inner !== undefined) out[key] = plainValue(inner);
    }
    return out;
  }
  return value;
}

/** `dump` as plain JSON-able data. */
export function plainTypeDump(dump: TypeDump | null): unknown {
  if (dump === null) return null;
  if (dump.reader === "ringbuf") {
    const ring = dump.ringbuf;
    return {
      reader: "ringbuf",
      kind: ring.kind,
      capacity: ring.capacity,
      consumerPos: ring.consumerPos.toString(),
      producerPos: ring.producerPos.toString(),
      problems: ring.problems,
      records: ring.records.map(plainValue),
    };
  }
  if (dump.reader === "maps_of_maps") {
    return {
      reader: "maps_of_maps",
      kind: dump.mapsOfMaps.kind,
      slots: dump.mapsOfMaps.slots.map((slot) => {
        const { inner, ...rest } = slot;
        return {
          ...(plainValue(rest) as object),
          ...(inner
            ? {
              inner: {
                id: inner.map.id,
                name: inner.map.name,
                dump: plainTypeDump(inner.dump),
              },
            }
            : {}),
        };
      }),
    };
  }
  return plainValue(dump);
}
