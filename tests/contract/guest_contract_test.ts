/**
 * The accessor contract against a frozen guest's memory: the same fixture,
 * written into a synthetic RAM image (`guest_image.ts`), read back through
 * `GuestMemMapAccessor`. Needs no privileges.
 */

import { hex } from "../../src/guest/errors.ts";
import { intBtfBlob } from "../_support/maps.ts";
import {
  type ContractSubject,
  runAccessorContract,
} from "./accessor_contract.ts";
import { buildGuestImage } from "./guest_image.ts";

/**
 * Checks the guest backend fails today: each is a disagreement with the live
 * backend, reported to the owner of src/guest and src/accessor/guest.ts.
 * Remove an id once fixed (the contract then fails here, on purpose, until
 * it is removed).
 */
// Every disagreement the suite found on this backend is fixed: an entry here
// would have to keep failing (see accessor_contract.ts).
export const GUEST_KNOWN_GAPS: ReadonlyMap<string, "fails" | "unsafe"> =
  new Map();

function openGuest(): ContractSubject {
  const image = buildGuestImage(intBtfBlob());
  const ownerKey = new Uint8Array(8);
  new DataView(ownerKey.buffer).setBigUint64(0, image.taskOwner, true);
  return {
    accessor: image.accessor,
    names: image.names,
    cpus: image.cpus,
    taskEntries: [{ owner: hex(image.taskOwner), keyLength: 8, key: ownerKey }],
    arenaName: null, // the image has no struct bpf_arena layout
    taskBtf: image.taskBtf,
    missingId: 60,
    programNames: image.programNames,
    knownGaps: GUEST_KNOWN_GAPS,
    [Symbol.dispose](): void {
      image.accessor.close();
    },
  };
}

Deno.test("GuestMemMapAccessor meets the BpfMapAccessor contract on a synthetic guest image", async (t) => {
  await runAccessorContract(t, openGuest);
});
