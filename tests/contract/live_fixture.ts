/**
 * Creates the contract fixture (`spec.ts`, `program_spec.ts`) with bpf() on
 * the kernel this process runs on. One definition for every place the
 * fixture is made live: the host's live contract test and the VM guest agent
 * (`tests/vm/contract_agent.ts`), so the frozen real guest holds exactly what
 * the live backend was tested with.
 *
 * @module
 */

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import {
  btfLoad,
  mapUpdateElem,
  mapUpdateStorageElem,
  pidfdOpen,
} from "../../src/sys/bpf.ts";
import { MapFlag, MapType } from "../../src/sys/constants.ts";
import type { OwnedFd } from "../../src/sys/fd.ts";
import { MappedBpfMap } from "../../src/sys/mmap.ts";
import { progLoad } from "../../src/sys/prog.ts";
import { intBtfBlob, uniqueName } from "../_support/maps.ts";
import {
  PROGRAM_ROLES,
  PROGRAM_SPEC,
  type ProgramRole,
} from "./program_spec.ts";
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

/** A live contract fixture. Dispose to close every fd and mapping (the kernel then frees it all). */
export interface ContractFixture extends Disposable {
  /** The kernel-visible name of each fixture map. */
  names: Record<Role, string>;
  /** The possible-CPU count the per-CPU values were written for. */
  cpus: number;
  /** The pid whose thread group leader owns the one task-storage element. */
  taskOwnerPid: number;
  /** The arena's kernel-visible name (its `ARENA_PAGES` are touched through a mapping). */
  arenaName: string;
  /** The BTF blob the task-storage map was created with. */
  taskBtf: Uint8Array;
  /** The kernel-visible name of each fixture program. */
  programNames: Record<ProgramRole, string>;
}

/**
 * Creates every fixture map with its contents, one task-storage element for
 * this process, an arena mapped here with `ARENA_PAGES` written, and the
 * contract's programs, all through bpfmap's own createMap, update and
 * progLoad.
 *
 * @param cpus the kernel's possible-CPU count (per-CPU values are this wide)
 */
export function createContractFixture(cpus: number): ContractFixture {
  const owned: { close(): void }[] = [];
  const release = (): void => {
    for (const resource of owned.reverse()) resource.close();
  };
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
      mapUpdateStorageElem(fds.task.fd, keyBytes(self.fd), TASK_VALUE);
    }
    // The kernel allocates an arena page only when it is touched: this
    // process maps the arena and writes exactly the pages the spec lists.
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
    return {
      names,
      cpus,
      taskOwnerPid: Deno.pid,
      arenaName,
      taskBtf: btfBlob,
      programNames,
      [Symbol.dispose]: release,
    };
  } catch (error) {
    release();
    throw error;
  }
}
