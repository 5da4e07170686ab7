/**
 * The accessor contract against the running kernel: the fixture is created
 * with bpf() (through the library's own createMap and update,
 * `live_fixture.ts`), then read back through `BpfSyscallAccessor`. The VM
 * contract test runs this same file inside a real guest.
 */

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import { ignoreUnlessRoot } from "../_support/env.ts";
import {
  type ContractSubject,
  runAccessorContract,
} from "./accessor_contract.ts";
import { createContractFixture } from "./live_fixture.ts";

function openLive(): ContractSubject {
  const accessor = new BpfSyscallAccessor();
  const fixture = createContractFixture(accessor.possibleCpus);
  try {
    let missingId = 0x7ffffff0;
    while (
      accessor.mapById(missingId) !== null ||
      accessor.programById(missingId) !== null
    ) missingId--;
    return {
      accessor,
      names: fixture.names,
      cpus: fixture.cpus,
      // Our own thread group leader's storage; its key is the pidfd number
      // the walk used, meaningless afterwards: only its length is checked.
      taskEntries: [{ owner: String(fixture.taskOwnerPid), keyLength: 4 }],
      arenaName: fixture.arenaName,
      taskBtf: fixture.taskBtf,
      missingId,
      programNames: fixture.programNames,
      knownGaps: new Map(),
      [Symbol.dispose](): void {
        fixture[Symbol.dispose]();
      },
    };
  } catch (error) {
    fixture[Symbol.dispose]();
    throw error;
  }
}

Deno.test({
  name:
    "BpfSyscallAccessor meets the BpfMapAccessor contract on the running kernel",
  ignore: ignoreUnlessRoot(),
  async fn(t): Promise<void> {
    await runAccessorContract(t, openLive);
  },
});
