/**
 * The accessor contract against the running kernel: the fixture is created
 * with bpf() (through the library's own createMap and update), then read back
 * through `BpfSyscallAccessor`.
 */

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import { btfLoad, mapUpdateElem, pidfdOpen } from "../../src/sys/bpf.ts";
import { MapFlag, MapType } from "../../src/sys/constants.ts";
import type { OwnedFd } from "../../src/sys/fd.ts";
import { MappedBpfMap } from "../../src/sys/mmap.ts";
import { ignoreUnlessRoot } from "../_support/env.ts";
import { progLoad } from "../../src/sys/prog.ts";
import {
  PROGRAM_ROLES,
  PROGRAM_SPEC,
  type ProgramRole,
} from "./program_spec.ts";
import { intBtfBlob, uniqueName } from "../_support/maps.ts";
import {
  type ContractSubject,
  runAccessorContract,
} from "./accessor_contract.ts";
import {
  ARENA_PAGES,
  CONTRACT_SPEC,
  keyBytes,
  percpuValue,
  type Role,
  ROLES,
  TASK_VALUE,
  valueOf,
} from "./spec.ts";

const PER_CPU = new Set<number>([
  MapType.PERCPU_ARRAY,
  MapType.PERCPU_HASH,
  MapType.LRU_PERCPU_HASH,
]);

function openLive(): ContractSubject {
  const accessor = new BpfSyscallAccessor();
  const cpus = accessor.possibleCpus;
  const owned: { close(): void }[] = [];
  try {
    const btfBlob = intBtfBlob();
    const btf = btfLoad(btfBlob);
    owned.push(btf);
    const names = {} as Record<Role, string>;
    const fds = {} as Record<Role, OwnedFd>;
    for (const role of ROLES) {
      const spec = CONTRACT_SPEC[role];
      const name = uniqueName(role === "global" ? "c.bss" : `c_${role}`);
      const fd = BpfSyscallAccessor.createMap({
        type: spec.type,
        keySize: spec.keySize,
        valueSize: spec.valueSize,
        maxEntries: spec.maxEntries,
        flags: spec.flags,
        name,
        ...(role === "task"
          ? { btfFd: btf.fd, btfKeyTypeId: 1, btfValueTypeId: 2 }
          : {}),
      });
      owned.push(fd);
      names[role] = name;
      fds[role] = fd;
      for (const key of spec.keys) {
        mapUpdateElem(
          fd.fd,
          keyBytes(key, spec.keySize),
          PER_CPU.has(spec.type)
            ? percpuValue(role, key, cpus)
            : valueOf(role, key),
        );
      }
    }
    {
      using self = pidfdOpen(Deno.pid);
      mapUpdateElem(fds.task.fd, keyBytes(self.fd), TASK_VALUE);
    }
    // An arena this process maps and touches, so its pages can be read.
    const arenaName = uniqueName("c_arena");
    const arena = BpfSyscallAccessor.createMap({
      type: MapType.ARENA,
      keySize: 0,
      valueSize: 0,
      maxEntries: 4,
      flags: MapFlag.MMAPABLE,
      name: arenaName,
    });
    owned.push(arena);
    const mapping = MappedBpfMap.map(arena.fd, 4 * 4096, { writable: true });
    owned.push(mapping);
    for (const [page, head] of ARENA_PAGES) {
      mapping.bytes.set(head, page * 4096);
    }
    // The contract's programs, loaded through bpfmap's own progLoad.
    const programNames = {} as Record<ProgramRole, string>;
    for (const role of PROGRAM_ROLES) {
      const spec = PROGRAM_SPEC[role];
      const name = uniqueName(`cp_${role}`);
      owned.push(progLoad({
        type: spec.type,
        insns: spec.insns(spec.maps.map((r) => fds[r].fd)),
        license: spec.license,
        name,
      }));
      programNames[role] = name;
    }
    let missingId = 0x7ffffff0;
    while (
      accessor.mapById(missingId) !== null ||
      accessor.programById(missingId) !== null
    ) missingId--;
    return {
      accessor,
      names,
      cpus,
      // Our own thread group leader's storage; its key is the pidfd number
      // the walk used, meaningless afterwards: only its length is checked.
      taskEntries: [{ owner: String(Deno.pid), keyLength: 4 }],
      arenaName,
      taskBtf: btfBlob,
      missingId,
      programNames,
      knownGaps: new Map(),
      [Symbol.dispose](): void {
        for (const resource of owned.reverse()) resource.close();
      },
    };
  } catch (error) {
    for (const resource of owned.reverse()) resource.close();
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
