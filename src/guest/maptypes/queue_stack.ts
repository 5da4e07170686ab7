/**
 * QUEUE and STACK in guest memory: `struct bpf_queue_stack` is a ring of
 * `size = max_entries + 1` slots. A push writes at `head` and advances it;
 * a queue pops at `tail`, a stack at `head - 1`; `head == tail` is empty.
 * Memory shows every element, where bpf() can only peek at the head
 * without consuming.
 *
 * @module
 */

import { GuestMemoryError } from "../errors.ts";
import type { GuestMapRecord } from "../map_records.ts";
import type { KernelAddressSpace } from "../paging.ts";
import type { QueueStackLayout } from "./layout.ts";

/** Every element, copied, in the order pops would return them. */
export function readGuestQueueStack(
  space: KernelAddressSpace,
  layout: QueueStackLayout,
  map: GuestMapRecord,
  stack: boolean,
): Uint8Array[] {
  const va = map.kernelAddress;
  const what = `map ${map.id} ("${map.name}")`;
  const head = space.mustU32(va + BigInt(layout.head), "bpf_queue_stack.head");
  const tail = space.mustU32(va + BigInt(layout.tail), "bpf_queue_stack.tail");
  const size = space.mustU32(va + BigInt(layout.size), "bpf_queue_stack.size");
  // size, head and tail bound the walk: check them before trusting any
  if (size !== map.maxEntries + 1 || head >= size || tail >= size) {
    throw new GuestMemoryError(
      `use the ${stack ? "stack" : "queue"} of ${what}`,
      va,
      `head ${head}, tail ${tail}, size ${size} (max_entries ${map.maxEntries})`,
    );
  }
  const count = (head - tail + size) % size;
  const elements: Uint8Array[] = [];
  const base = va + BigInt(layout.elements);
  for (let i = 0; i < count; i++) {
    const slot = stack ? (head - 1 - i + size) % size : (tail + i) % size;
    elements.push(
      space.mustRead(
        base + BigInt(slot) * BigInt(map.valueSize),
        map.valueSize,
        `element ${slot} of ${what}`,
      ).slice(),
    );
  }
  return elements;
}
