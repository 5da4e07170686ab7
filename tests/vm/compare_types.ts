/**
 * Holds what the guest agent read through bpf() of the maps with a type
 * reader (`BPFMAP-TYPED` lines) against `GuestMemMapAccessor.readTypeDump`
 * of the frozen guest. The same plain JSON on both sides, except where
 * memory shows more than bpf(): a queue's or stack's every element (its
 * first must be the live head, the rest the agent's pushes in pop order) and
 * a bloom filter's bits (membership answered from memory must equal the
 * kernel's answer for every candidate).
 *
 * @module
 */

import { guestBloomContains } from "../../src/accessor/guest_types.ts";
import type { GuestMemMapAccessor } from "../../src/accessor/guest.ts";
import { plainTypeDump } from "./type_dump_plain.ts";

/** What was compared and every difference. */
export interface TypedComparison {
  /** Maps compared. */
  maps: number;
  /** Kinds compared, in agent order. */
  kinds: string[];
  /** Records, elements, entries, slots, stacks and membership answers compared. */
  items: number;
  /** One line per difference; empty when all agreed. */
  mismatches: string[];
}

interface TypedLine {
  kind: string;
  id: number;
  live: Record<string, unknown> | null;
  extra: Record<string, unknown>;
}

function unhex(text: string): Uint8Array {
  return new Uint8Array(
    (text.match(/../g) ?? []).map((b) => parseInt(b, 16)),
  );
}

/** Compares every `BPFMAP-TYPED` map of the console with guest memory. */
export function compareTypedGuest(
  consoleText: string,
  memory: GuestMemMapAccessor,
): TypedComparison {
  const result: TypedComparison = {
    maps: 0,
    kinds: [],
    items: 0,
    mismatches: [],
  };
  const prefix = "BPFMAP-TYPED ";
  const lines = consoleText.split("\n").filter((l) => l.startsWith(prefix))
    .map((l) => JSON.parse(l.slice(prefix.length).trim()) as TypedLine);
  for (const line of lines) {
    const tag = `map ${line.id} (${line.kind})`;
    const bad = (what: string, live: unknown, mem: unknown): void => {
      result.mismatches.push(
        `${tag}: ${what}: live ${
          JSON.stringify(live)?.slice(0, 300)
        } vs memory ${JSON.stringify(mem)?.slice(0, 300)}`,
      );
    };
    const info = memory.mapById(line.id);
    if (info === null) {
      result.mismatches.push(`${tag}: not in guest memory`);
      continue;
    }
    result.maps++;
    result.kinds.push(line.kind);
    const mem = plainTypeDump(memory.readTypeDump(info, { recurse: true })) as
      | Record<string, Record<string, unknown>>
      | null;
    const same = (what: string, live: unknown, got: unknown): boolean => {
      if (JSON.stringify(live) === JSON.stringify(got)) return true;
      bad(what, live, got);
      return false;
    };
    switch (line.kind) {
      case "queue":
      case "stack": {
        const live = line.live!.queue as Record<string, unknown>;
        const got = mem?.queue ?? {};
        same("kind", live.kind, got.kind);
        same("max_entries", live.maxEntries, got.maxEntries);
        same("live head = first element", live.head, got.head);
        same("every element in pop order", line.extra.order, got.elements);
        result.items += (got.elements as unknown[] | undefined)?.length ?? 0;
        break;
      }
      case "bloom": {
        const { bits: _bits, bitsSet, note: _n, ...got } = mem?.bloom ?? {};
        const { note: _note, ...live } = line.live!.bloom as Record<
          string,
          unknown
        >;
        same("bloom facts", live, got);
        if (!(Number(bitsSet) > 0)) bad("bits set", "> 0", bitsSet);
        const candidates = line.extra.candidates as string[];
        const answers = line.extra.answers as boolean[];
        const fromMemory = candidates.map((c) =>
          guestBloomContains(memory, info, unhex(c))
        );
        same("membership of every candidate", answers, fromMemory);
        result.items += candidates.length;
        break;
      }
      case "lpm": {
        // live: the keyed path (readTypeDump is null there); memory: the trie walk
        if (mem !== null) bad("readTypeDump of a keyed type", null, mem);
        const walked = plainTypeDump(
          memory.readTypeDump(info, { keyedEntries: true }),
        ) as Record<string, Record<string, unknown>> | null;
        const got = (walked?.keyed?.entries as { key: string; value: string }[])
          ?.map((e) => [e.key, e.value]);
        same("entries in get_next_key order", line.extra.entries, got);
        const batched: [string, string][] = [];
        for (const batch of memory.iterEntryBatches(info)) {
          for (let i = 0; i < batch.count; i++) {
            const hex = (b: Uint8Array): string =>
              Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
            batched.push([
              hex(batch.keys.subarray(i * 8, i * 8 + 8)),
              hex(batch.values.subarray(i * 8, i * 8 + 8)),
            ]);
          }
        }
        same("entries through iterEntryBatches", line.extra.entries, batched);
        result.items += batched.length;
        break;
      }
      default: {
        same("type dump", line.live, mem);
        // what the agent made must be there, or equality proves nothing
        const text = JSON.stringify(line.live);
        const expect: Record<string, RegExp> = {
          ringbuf: new RegExp(
            `"discarded":true.*"position":"${
              (line.extra as { lastPosition?: string }).lastPosition
            }"`,
          ),
          "user_ringbuf": /"length":12,"busy":true/,
          "stack_trace": /"symbol":"bpf_prog_[0-9a-f]+_t_stackid\+0x/,
          "prog_array": /"progName":"t_tail1".*"progName":"t_tail3"/,
          "array_of_maps": /"name":"t_inner0".*"name":"t_inner1"/,
          "hash_of_maps": /"name":"t_inner\d".*"name":"t_inner\d"/,
          "perf_event_array": /"errno":524.*"errno":524.*"errno":524/,
          devmap:
            /"status":"empty".*"ifindex":1,"progId":\d+,"progName":"t_xdp_dev".*"ifindex":1,"progId":0}/,
          "devmap_hash": /("object":\{"ifindex":1\}.*){5}/,
          cpumap: /"qsize":192,"progId":\d+,"progName":"t_xdp_cpu"/,
          sockmap: /"status":"empty".*"cookie":"[1-9]\d*".*"cookie":"[1-9]\d*"/,
          sockmap4: /"errno":28.*"errno":28/,
          sockhash: /("cookie":"[1-9]\d*".*){3}/,
          "reuseport_sockarray": new RegExp(
            `"cookie":"${(line.extra as { cookie?: string }).cookie}"`,
          ),
        };
        if (expect[line.kind] && !expect[line.kind]!.test(text)) {
          bad(`live read lacks ${expect[line.kind]}`, text.slice(0, 200), "");
        }
        const live = line.live as Record<string, Record<string, unknown[]>>;
        // plainTypeDump puts a ring's records at the top level
        result.items += (live as { records?: unknown[] }).records?.length ??
          live.stacks?.stacks?.length ?? live.slots?.slots?.length ??
          live.mapsOfMaps?.slots?.length ?? 0;
      }
    }
  }
  return result;
}
