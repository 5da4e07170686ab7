/**
 * Programs of a frozen guest, for `GuestMemMapAccessor.programs()`: the
 * layout is read from the guest's BTF once, `prog_idr` walked per call
 * (cached until `refresh()`), and what could not be read is kept in its own
 * problem log, which the accessor's `problems()` includes.
 *
 * @module
 */

import type { Btf } from "../btf/mod.ts";
import type { GuestKernel } from "../guest/kernel.ts";
import type { BpfMapLayout, XarrayLayout } from "../guest/layout.ts";
import { type GuestProblem, ProblemLog } from "../guest/problems.ts";
import {
  type ProgramLayout,
  programLayoutFromBtf,
} from "../guest/prog_layout.ts";
import {
  type GuestProgramRecord,
  guestStatsEnabled,
  listPrograms,
} from "../guest/programs.ts";
import { MapArgumentError } from "../errors.ts";
import { progTypeName } from "../sys/prog_types.ts";
import type { BpfProgramInfo } from "./types.ts";

/** Where the lister gets what it needs from the accessor. */
export interface GuestProgramSource {
  /** The located guest kernel. */
  kernel: GuestKernel;
  /** The map layout (`bpf_map.id`, `btf.id`) and the IDR layout. */
  mapLayout: BpfMapLayout;
  /** The IDR layout. */
  xarray: XarrayLayout;
  /** `__per_cpu_offset` per possible CPU. */
  perCpuOffsets: readonly bigint[];
  /** The program layout, when the caller gave one. */
  layout?: ProgramLayout | undefined;
  /** The guest's vmlinux BTF (parsed on first use). */
  vmlinux: () => Btf;
  /** Most programs listed. */
  maxPrograms?: number | undefined;
}

/** The accessor's record of a guest program. */
export function programInfoFromGuest(
  record: GuestProgramRecord,
  pageSize: number,
): BpfProgramInfo {
  const info: BpfProgramInfo = {
    id: record.id,
    type: record.type,
    typeName: String(progTypeName(record.type)),
    name: record.name,
    tag: record.tag,
    mapIds: record.mapIds,
    btfId: record.btfId,
    gplCompatible: record.gplCompatible,
    loadTime: record.loadTime,
    // bpf_prog_get_info_by_fd: xlated is len * sizeof(struct bpf_insn);
    // bpftool's "jited" is a non-zero jited_prog_len
    bytesXlated: record.len * 8,
    jited: record.jitedLen > 0,
    bytesJited: record.jitedLen,
    // bpf_prog_show_fdinfo: memlock is prog->pages * PAGE_SIZE
    bytesMemlock: BigInt(record.pages) * BigInt(pageSize),
    kernelAddress: record.kernelAddress,
  };
  if (record.uid !== undefined) info.uid = record.uid;
  if (record.verifiedInsns !== undefined) {
    info.verifiedInsns = record.verifiedInsns;
  }
  if (record.stats) {
    info.runTimeNs = record.stats.runTimeNs;
    info.runCnt = record.stats.runCnt;
    info.recursionMisses = record.stats.recursionMisses;
  } else if (record.statsNote !== undefined) {
    info.statsNote = record.statsNote;
  }
  return info;
}

/** Lists a guest's programs; one per accessor. */
export class GuestProgramLister {
  readonly #source: GuestProgramSource;
  readonly #problems = new ProblemLog();
  #layout: ProgramLayout | null | undefined;
  #records: GuestProgramRecord[] | null = null;

  /** @param source what the accessor supplies */
  constructor(source: GuestProgramSource) {
    this.#source = source;
    this.#layout = source.layout;
  }

  /** What program walks had to skip, oldest first. */
  get problems(): GuestProblem[] {
    return this.#problems.list();
  }

  /** Forgets the cached list (the guest ran). */
  refresh(): void {
    this.#records = null;
  }

  #programLayout(): ProgramLayout | null {
    if (this.#layout !== undefined) return this.#layout;
    try {
      this.#layout = programLayoutFromBtf(this.#source.vmlinux());
    } catch (error) {
      this.#layout = null;
      this.#problems.add({
        what: "program",
        message: `programs cannot be listed: ${(error as Error).message}`,
      });
    }
    return this.#layout;
  }

  #list(): GuestProgramRecord[] {
    if (this.#records) return this.#records;
    const layout = this.#programLayout();
    const { kernel } = this.#source;
    const idr = kernel.findSymbol("prog_idr");
    if (layout === null) return (this.#records = []);
    if (idr === undefined) {
      this.#problems.add({
        what: "program",
        message:
          "programs cannot be listed: symbol prog_idr not found (kallsyms, VMCOREINFO, caller symbols)",
      });
      return (this.#records = []);
    }
    const enabled = guestStatsEnabled(
      kernel.space,
      layout,
      kernel.findSymbol("bpf_stats_enabled_key"),
    );
    try {
      this.#records = listPrograms(
        {
          space: kernel.space,
          layout,
          mapLayout: this.#source.mapLayout,
          xarray: this.#source.xarray,
          perCpuOffsets: this.#source.perCpuOffsets,
          problems: this.#problems,
          ...(this.#source.maxPrograms !== undefined
            ? { maxPrograms: this.#source.maxPrograms }
            : {}),
        },
        idr,
        enabled,
      );
    } catch (error) {
      // only the IDR head itself can throw: its entries are caught per entry
      this.#problems.add({
        what: "program",
        address: idr,
        message: `prog_idr is unreadable: ${(error as Error).message}`,
      });
      this.#records = [];
    }
    return this.#records;
  }

  /** Every readable program, in id order. */
  programs(): BpfProgramInfo[] {
    return this.#list().map((r) =>
      programInfoFromGuest(r, this.#source.kernel.vmcoreinfo.pageSize)
    );
  }

  /** The program with this id, or null. */
  programById(id: number): BpfProgramInfo | null {
    if (!Number.isInteger(id) || id < 0 || id > 0x7fffffff) {
      throw new MapArgumentError(
        null,
        "id",
        `${id} is not a program id (an integer from 0 to 2147483647)`,
      );
    }
    const found = this.#list().find((r) => r.id === id);
    return found
      ? programInfoFromGuest(found, this.#source.kernel.vmcoreinfo.pageSize)
      : null;
  }
}
