/**
 * `GuestMemMapAccessor`: the read-only map interface over a frozen VM's
 * memory (a RAM file or an ELF core), with no syscalls into the guest and no
 * vmlinux needed: VMCOREINFO, kallsyms and BTF all come from guest RAM.
 *
 * @module
 */

import { Btf } from "../btf/mod.ts";
import {
  CURRENT_SPECIAL_FIELD_RULES,
  findSpecialFields,
  initSpecialFields,
  type SpecialField,
  type SpecialFieldRules,
  specialFieldRulesFor,
} from "../btf/special_fields.ts";
import { recoverFullMapName } from "../btf/map_name.ts";
import {
  describeMap,
  FieldError,
  MapGoneError,
  type MapIdentity,
  MapReadOnlyError,
  MapUnreadableError,
} from "../errors.ts";
import {
  arrayIndexOf,
  type BpfMapFieldWriter,
  type FieldValue,
  type FieldWriteResult,
  prepareFieldWrite,
  type WriteFieldOptions,
} from "./field_write.ts";
import { arrayElementAddress, writeKernelBytes } from "../guest/write.ts";
import {
  GuestKernelError,
  GuestMemoryError,
  GuestSourceError,
  hex,
} from "../guest/errors.ts";
import {
  readStructOpsValue,
  type StructOpsLayout,
  structOpsLayoutFromBtf,
} from "../guest/struct_ops.ts";
import { GuestKernel, type GuestKernelOptions } from "../guest/kernel.ts";
import { type KernelLayout, kernelLayoutFromBtf } from "../guest/layout.ts";
import {
  CopySlab,
  type GuestMapLimits,
  GuestMapReader,
  type GuestMapRecord,
  type UnreadableMap,
} from "../guest/maps.ts";
import type { PhysicalMemory, PhysRegion } from "../guest/phys.ts";
import {
  type GuestMemorySource,
  openElfCore,
  openRamFile,
  surveyRamFile,
} from "../guest/source.ts";
import {
  ramOutside,
  type RamRange,
  readSystemRam,
} from "../guest/system_ram.ts";
import {
  openQemuProcess,
  type QemuProcessOptions,
} from "../guest/qemu_process.ts";
import { openKcore } from "../guest/kcore.ts";
import { parseSystemMap, readVmlinux } from "../guest/symbol_files.ts";
import { MapType } from "../sys/constants.ts";
import {
  checkIndex,
  checkValueRange,
  expectMapType,
  MAX_CPUS,
} from "./checks.ts";
import { entryBatchesFromReads } from "./entry_batches.ts";
import { validateCpuCount } from "./percpu.ts";
import { GuestProgramLister } from "./programs_guest.ts";
import type { ProgramLayout } from "../guest/prog_layout.ts";
import { guestTypeDump } from "./guest_types.ts";
import type { TypeDump, TypeReadOptions } from "./maptypes/mod.ts";
import type {
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
  BpfProgramInfo,
  EntryBatch,
  EntryBatchOptions,
  LocalStorageEntry,
  MapEntry,
  ReadProblem,
} from "./types.ts";

/** Options for opening a guest image. */
export interface GuestMemOptions extends GuestKernelOptions {
  /** Physical layout of a RAM file; default: the usual VMM layout of the architecture VMCOREINFO names (x86-64: QEMU, RAM above 3 GiB at 4 GiB; aarch64: QEMU virt, RAM at 1 GiB). */
  regions?: readonly PhysRegion[];
  /**
   * Struct offsets; default read from the guest's BTF.
   *
   * @internal
   */
  layout?: KernelLayout;
  /** Walk limits. */
  limits?: GuestMapLimits;
  /**
   * Program struct offsets; default read from the guest's BTF.
   *
   * @internal
   */
  programLayout?: ProgramLayout;
  /**
   * Open a RAM file read-write so `writeFields` can store into the guest
   * (freeze it first). An ELF core cannot be opened writable.
   */
  writable?: boolean;
}

/** Files a caller may have for the guest kernel. */
export interface GuestKernelFiles {
  /** A System.map (link-time addresses). */
  systemMap?: string;
  /** A vmlinux ELF: `.symtab` symbols and `.BTF`. */
  vmlinux?: string;
  /** A raw vmlinux BTF file (e.g. a copy of `/sys/kernel/btf/vmlinux` from the guest). */
  btf?: string;
}

/**
 * Reads optional System.map / vmlinux / BTF files into `GuestMemOptions`
 * fields (symbols win in the order vmlinux, System.map; BTF in the order
 * btf file, vmlinux `.BTF`). Without files the guest's RAM supplies all.
 *
 * @example
 * ```ts ignore
 * const options = loadGuestKernelFiles({ systemMap: "System.map-6.1.0-56-cloud-amd64" });
 * using guest = GuestMemMapAccessor.openRamFile("/dev/shm/vm", options);
 * ```
 */
export function loadGuestKernelFiles(
  files: GuestKernelFiles,
): GuestKernelOptions {
  const options: GuestKernelOptions = {};
  const symbols = new Map<string, bigint>();
  let btf: Uint8Array | undefined;
  if (files.btf) btf = Deno.readFileSync(files.btf);
  if (files.vmlinux) {
    const vmlinux = readVmlinux(Deno.readFileSync(files.vmlinux));
    for (const [name, value] of vmlinux.symbols) symbols.set(name, value);
    btf ??= vmlinux.btf;
  }
  if (files.systemMap) {
    const parsed = parseSystemMap(Deno.readTextFileSync(files.systemMap));
    if (parsed.size === 0) {
      throw new GuestSourceError(
        files.systemMap,
        'has no System.map lines ("ADDRESS TYPE NAME", e.g. "ffffffff82a4e5c0 b map_idr")',
        { hint: "give the System.map of the guest's kernel, or leave it out" },
      );
    }
    for (const [name, value] of parsed) {
      if (!symbols.has(name)) symbols.set(name, value);
    }
  }
  if (symbols.size > 0) options.symbols = symbols;
  if (btf) options.btf = btf;
  return options;
}

function toInfo(record: GuestMapRecord): BpfMapInfo {
  return {
    id: record.id,
    name: record.name,
    type: record.type,
    keySize: record.keySize,
    valueSize: record.valueSize,
    maxEntries: record.maxEntries,
    flags: record.flags,
    btfId: record.btfId,
    btfKeyTypeId: record.btfKeyTypeId,
    btfValueTypeId: record.btfValueTypeId,
    btfVmlinuxValueTypeId: record.btfVmlinuxValueTypeId,
    mapExtra: record.mapExtra,
    frozen: record.frozen,
    memlock: 0n,
    kernelAddress: record.kernelAddress,
  };
}

const CORE_NOT_WRITABLE =
  "is an ELF core, a copy of the guest's memory: writing it would change the file, never the guest";

const ONE_VALUE_TYPES: ReadonlySet<number> = new Set([
  MapType.ARRAY,
  MapType.STRUCT_OPS,
]);
const ARRAY_TYPES: ReadonlySet<number> = new Set([MapType.ARRAY]);
const PERCPU_ARRAY_TYPES: ReadonlySet<number> = new Set([MapType.PERCPU_ARRAY]);

/**
 * Reads BPF maps out of a guest's memory image. The guest must be frozen
 * (QMP `stop`) or dead while it is used; results are cached per map list.
 *
 * @example Read every map of a paused QEMU guest
 * ```ts ignore
 * import { GuestMemMapAccessor } from "./guest.ts";
 * using guest = GuestMemMapAccessor.openRamFile("/dev/shm/vm-ram");
 * for (const map of guest.maps()) console.log(map.id, map.name, guest.release);
 * ```
 */
export class GuestMemMapAccessor
  implements BpfMapAccessor, BpfMapFieldWriter, Disposable {
  /**
   * The located kernel (symbols, address space, BTF).
   *
   * @internal
   */
  readonly kernel: GuestKernel;
  /**
   * The low-level map reader.
   *
   * @internal
   */
  readonly reader: GuestMapReader;
  readonly #source: GuestMemorySource | null;
  #maps: GuestMapRecord[] | null = null;
  readonly #byAddress = new Map<bigint, GuestMapRecord>();
  #unreadable: readonly UnreadableMap[] = [];
  // parsed program BTF by struct btf address (null: none or unparsable)
  readonly #btfs = new Map<bigint, Btf | null>();
  // point reads copy into shared 4 KiB chunks (one allocation per chunk)
  readonly #slab = new CopySlab(4096);
  #specialRules: SpecialFieldRules | null = null;
  readonly #specialByMap = new Map<bigint, readonly SpecialField[]>();
  #vmlinux: Btf | null = null;
  #programLister: GuestProgramLister | null = null;
  #programLayout: ProgramLayout | undefined;
  #structOps: StructOpsLayout | null | undefined;

  private constructor(
    kernel: GuestKernel,
    reader: GuestMapReader,
    source: GuestMemorySource | null,
  ) {
    this.kernel = kernel;
    this.reader = reader;
    this.#source = source;
  }

  /**
   * Locates the kernel in `memory` and reads its BTF layout. The memory is
   * not owned: keep it alive while the accessor is used.
   *
   * @param memory guest physical memory
   */
  static fromMemory(
    memory: PhysicalMemory,
    options: GuestMemOptions = {},
  ): GuestMemMapAccessor {
    return GuestMemMapAccessor.#build(memory, options, null);
  }

  static #build(
    memory: PhysicalMemory,
    options: GuestMemOptions,
    source: GuestMemorySource | null,
  ): GuestMemMapAccessor {
    const kernel = GuestKernel.open(memory, options);
    const vmlinux = options.layout ? null : Btf.parse(kernel.btfBytes());
    const layout = options.layout ?? kernelLayoutFromBtf(vmlinux!);
    const reader = new GuestMapReader(
      kernel.space,
      layout,
      kernel.perCpuOffsets(),
      kernel.symbol("map_idr"),
      options.limits ?? {},
    );
    const accessor = new GuestMemMapAccessor(kernel, reader, source);
    accessor.#vmlinux = vmlinux; // parsed once: special fields and struct_ops need it too
    accessor.#programLayout = options.programLayout;
    return accessor;
  }

  /**
   * Opens a raw RAM file (QEMU `memory-backend-file,share=on`) and locates
   * the kernel in it. The file is read with pread, never mapped, so one that
   * shrinks while in use is an error rather than SIGBUS. The accessor owns
   * the file; dispose it to close.
   *
   * @param path the RAM file, e.g. `/dev/shm/NAME`
   */
  static openRamFile(
    path: string,
    options: GuestMemOptions = {},
  ): GuestMemMapAccessor {
    if (options.regions) return GuestMemMapAccessor.#openRamAs(path, options);
    const survey = surveyRamFile(path, options.vmcoreinfo ?? null);
    const vmcoreinfo = survey.vmcoreinfo ?? undefined;
    const first = survey.layouts[0]!;
    if (survey.layouts.length === 1) {
      return GuestMemMapAccessor.#openRamAs(path, {
        ...options,
        regions: first.regions,
        ...(vmcoreinfo === undefined ? {} : { vmcoreinfo }),
      });
    }
    // Machines that place the high part of RAM differently (QEMU's pc and
    // q35): the layout that holds all the RAM the kernel itself lists wins.
    const rejected: string[] = [];
    for (const layout of survey.layouts) {
      let accessor: GuestMemMapAccessor;
      try {
        accessor = GuestMemMapAccessor.#openRamAs(path, {
          ...options,
          regions: layout.regions,
          ...(vmcoreinfo === undefined ? {} : { vmcoreinfo }),
        });
      } catch (error) {
        rejected.push(`${layout.machine}: ${(error as Error).message}`);
        continue;
      }
      let outside: RamRange | null;
      try {
        outside = ramOutside(
          layout.regions,
          readSystemRam(accessor.kernel, accessor.#kernelBtf()),
        );
      } catch (error) {
        accessor.close();
        rejected.push(
          `${layout.machine}: its System RAM list is unreadable (${
            (error as Error).message
          })`,
        );
        continue;
      }
      if (outside === null) return accessor;
      accessor.close();
      rejected.push(
        `${layout.machine}: leaves out the guest's System RAM ${
          hex(outside.start)
        }-${hex(outside.end)}`,
      );
    }
    throw new GuestSourceError(
      path,
      `(${survey.size} bytes) matches none of the RAM layouts of its size: ${
        rejected.join("; ")
      }`,
      {
        hint:
          "pass the guest's regions, or read it through --qmp / --guest-pid, which take the machine type from QEMU's command line",
      },
    );
  }

  static #openRamAs(
    path: string,
    options: GuestMemOptions,
  ): GuestMemMapAccessor {
    const source = openRamFile(path, {
      ...(options.writable ? { writable: true } : {}),
      ...(options.regions ? { regions: options.regions } : {}),
      ...(options.vmcoreinfo !== undefined
        ? { vmcoreinfo: options.vmcoreinfo }
        : {}),
    });
    try {
      // the scan that chose the layout found VMCOREINFO: do not scan again
      const withInfo =
        source.vmcoreinfo !== null && options.vmcoreinfo === undefined
          ? { ...options, vmcoreinfo: source.vmcoreinfo }
          : options;
      const accessor = GuestMemMapAccessor.#build(
        source.memory,
        withInfo,
        source,
      );
      if (!options.writable) {
        accessor.#writeRefusal =
          "was opened read-only: open it with { writable: true } (the CLI's write command does) to write";
      }
      return accessor;
    } catch (error) {
      source.close();
      throw error;
    }
  }

  /**
   * Opens an ELF core (QEMU `dump-guest-memory`, kdump vmcore); its
   * VMCOREINFO note is used when present.
   *
   * @param path the core file
   */
  static openCore(
    path: string,
    options: GuestMemOptions = {},
  ): GuestMemMapAccessor {
    if (options.writable) {
      throw new GuestSourceError(path, CORE_NOT_WRITABLE, {
        hint: "write through the running guest's RAM file (--guest-mem)",
      });
    }
    const source = openElfCore(path);
    try {
      const withInfo =
        source.vmcoreinfo !== null && options.vmcoreinfo === undefined
          ? { ...options, vmcoreinfo: source.vmcoreinfo }
          : options;
      const accessor = GuestMemMapAccessor.#build(
        source.memory,
        withInfo,
        source,
      );
      accessor.#writeRefusal = CORE_NOT_WRITABLE;
      return accessor;
    } catch (error) {
      source.close();
      throw error;
    }
  }

  /**
   * Opens the guest RAM of a running QEMU process through `/proc/PID/mem`
   * (no RAM file needed). Stop the guest (QMP `stop`) around the read and
   * say so with `frozen: true`; otherwise `notes` says that the view
   * may be torn. `ram` (from QMP: {@linkcode qemuRamLayout}) places RAM
   * exactly; without it QEMU's command line and the machine's rules do.
   *
   * @param pid a `qemu-system-*` process
   */
  static openQemuProcess(
    pid: number,
    options: GuestMemOptions & QemuProcessOptions = {},
  ): GuestMemMapAccessor {
    return GuestMemMapAccessor.#fromSource(
      openQemuProcess(pid, options),
      options,
    );
  }

  /**
   * Reads this machine's own maps through `/proc/kcore` with the guest
   * walkers (root; no lockdown=confidentiality). The kernel runs meanwhile:
   * `notes` says that a map changing during the read may be torn.
   */
  static openKcore(options: GuestMemOptions = {}): GuestMemMapAccessor {
    return GuestMemMapAccessor.#fromSource(openKcore(), options);
  }

  static #fromSource(
    source: GuestMemorySource,
    options: GuestMemOptions,
  ): GuestMemMapAccessor {
    try {
      const withInfo =
        source.vmcoreinfo !== null && options.vmcoreinfo === undefined
          ? { ...options, vmcoreinfo: source.vmcoreinfo }
          : options;
      return GuestMemMapAccessor.#build(source.memory, withInfo, source);
    } catch (error) {
      source.close();
      throw error;
    }
  }

  /**
   * What the source says about the whole view (nothing skipped): a guest or
   * kernel read while it ran may show a map torn by a concurrent update.
   */
  get notes(): readonly string[] {
    return this.#source?.notes ?? [];
  }

  /** The guest's `OSRELEASE`. */
  get release(): string {
    return this.kernel.release;
  }

  /** The guest's `OSRELEASE` (the interface's name for {@linkcode release}). */
  get kernelRelease(): string {
    return this.kernel.release;
  }

  /** How many CPUs the guest kernel has (`nr_cpu_ids`). */
  get cpuCount(): number {
    return this.reader.perCpuOffsets.length;
  }

  /** The guest's possible-CPU count (`nr_cpu_ids`): values per per-CPU map entry. */
  get possibleCpus(): number {
    return this.reader.perCpuOffsets.length;
  }

  /**
   * What reads so far had to skip (maps, buckets, elements, owners, pages),
   * oldest first, each with the map id and guest address involved.
   */
  problems(): readonly ReadProblem[] {
    const programs = this.#programLister?.problems ?? [];
    return programs.length === 0
      ? this.reader.problems
      : [...this.reader.problems, ...programs];
  }

  // --- programs (issue 11 item 3): the work is in programs_guest.ts ---

  #programs(): GuestProgramLister {
    return this.#programLister ??= new GuestProgramLister({
      kernel: this.kernel,
      mapLayout: this.reader.layout.map,
      xarray: this.reader.layout.xarray,
      perCpuOffsets: this.reader.perCpuOffsets,
      layout: this.#programLayout,
      vmlinux: () => this.#kernelBtf(),
    });
  }

  /** Every readable program in `prog_idr`, in id order; the others are in `problems()`. */
  programs(): BpfProgramInfo[] {
    return this.#programs().programs();
  }

  /** The program with this id in `prog_idr`, or null. */
  programById(id: number): BpfProgramInfo | null {
    return this.#programs().programById(id);
  }

  // --- end programs ---

  #records(): GuestMapRecord[] {
    if (!this.#maps) {
      this.#maps = this.reader.maps();
      this.#unreadable = this.reader.unreadable;
      for (const record of this.#maps) {
        this.#byAddress.set(record.kernelAddress, record);
      }
    }
    return this.#maps;
  }

  #unreadableError(found: UnreadableMap): MapUnreadableError {
    return new MapUnreadableError(
      { id: found.id, name: found.name ?? "?" },
      `struct bpf_map at ${hex(found.address)}: ${found.reason}`,
      { hint: "the image is corrupt there, or the map was being freed" },
    );
  }

  #record(map: BpfMapInfo): GuestMapRecord {
    this.#records();
    const found = map.kernelAddress !== undefined
      ? this.#byAddress.get(map.kernelAddress)
      : this.#maps!.find((r) => r.id === map.id);
    if (found) return found;
    const broken = this.#unreadable.find((u) => u.id === map.id);
    if (broken) throw this.#unreadableError(broken);
    throw new MapGoneError(map, {
      hint: `no struct bpf_map${
        map.kernelAddress !== undefined ? ` at ${hex(map.kernelAddress)}` : ""
      } is in this guest's map_idr`,
    });
  }

  /** `fn()`, with guest memory errors about `map` raised as MapUnreadableError. */
  #guard<T>(map: MapIdentity, fn: () => T): T {
    try {
      return fn();
    } catch (error) {
      throw this.#wrap(map, error);
    }
  }

  #wrap(map: MapIdentity, error: unknown): unknown {
    return error instanceof GuestMemoryError
      ? new MapUnreadableError(map, error.message, { cause: error })
      : error;
  }

  /** Forgets the cached map list and translations (if the guest ran in between). */
  refresh(): void {
    this.#maps = null;
    this.#unreadable = [];
    this.#byAddress.clear();
    // freed maps' and BTFs' addresses can be reused by new ones
    this.#btfs.clear();
    this.#specialByMap.clear();
    this.kernel.space.clearCache();
    this.#programLister?.refresh();
  }

  /**
   * The BTF-recovered full name of a map whose kernel name may be cut
   * (exactly 15 characters); undefined when it was not cut or is not known.
   * Program BTF is parsed once per `struct btf`.
   */
  #fullName(record: GuestMapRecord): string | undefined {
    if (record.name.length !== 15 || record.btfAddress === 0n) return undefined;
    let btf = this.#btfs.get(record.btfAddress);
    if (btf === undefined) {
      try {
        const bytes = this.reader.programBtf(record);
        btf = bytes === null ? null : Btf.parse(bytes);
      } catch {
        btf = null; // a name is a nicety: an unreadable BTF leaves it out
      }
      this.#btfs.set(record.btfAddress, btf);
    }
    if (btf === null) return undefined;
    try {
      const full = recoverFullMapName(
        btf,
        record.name,
        record.btfKeyTypeId,
        record.btfValueTypeId,
        { mapType: record.type, maxEntries: record.maxEntries },
      );
      return full !== undefined && full !== record.name ? full : undefined;
    } catch {
      return undefined;
    }
  }

  #info(record: GuestMapRecord): BpfMapInfo {
    const info = toInfo(record);
    const full = this.#fullName(record);
    if (full !== undefined) info.fullName = full;
    return info;
  }

  /**
   * The contents of a map whose type has its own reader, from guest memory
   * (`src/guest/maptypes/`): the same results as the live readers, plus what
   * only memory shows (every queue element, a bloom filter's fill), and a
   * struct_ops map typed with the guest's vmlinux BTF. Null for
   * the hash, array, per-CPU, local-storage and arena maps (read
   * them with the methods below), and for LPM tries unless
   * `options.keyedEntries` asks for their entries.
   */
  readTypeDump(
    map: BpfMapInfo,
    options: TypeReadOptions = {},
  ): TypeDump | null {
    const record = this.#record(map);
    return this.#guard(
      map,
      () => guestTypeDump(this, record, this.#info(record), options),
    );
  }

  /** Every readable map in `map_idr`, in id order; the others are in `problems()`. */
  maps(): BpfMapInfo[] {
    return this.#records().map((r) => this.#info(r));
  }

  /**
   * The map with this id in `map_idr`, or null when there is none; throws
   * MapUnreadableError (naming the id and address) when the entry exists
   * but its `struct bpf_map` cannot be read.
   */
  mapById(id: number): BpfMapInfo | null {
    const found = this.#records().find((r) => r.id === id);
    if (found) return this.#info(found);
    const broken = this.#unreadable.find((u) => u.id === id);
    if (broken) throw this.#unreadableError(broken);
    return null;
  }

  /** Every entry of a hash or array map, packed into batches. */
  iterEntryBatches(
    map: BpfMapInfo,
    options: EntryBatchOptions = {},
  ): Iterable<EntryBatch> {
    return entryBatchesFromReads(this, map, options);
  }

  /** The first map (lowest id) whose name ends with `suffix`, or null. */
  findMap(suffix: string): BpfMapInfo | null {
    for (const record of this.#records()) {
      const info = this.#info(record);
      if (info.name.endsWith(suffix) || info.fullName?.endsWith(suffix)) {
        return info;
      }
    }
    return null;
  }

  /**
   * `len` bytes at `offset` of value 0 of an ARRAY or STRUCT_OPS map (the
   * latter as bpf() shows it: user-supplied value, state and refcount); null
   * for a kernel without `bpf_struct_ops_map`.
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when the range is not inside the value
   */
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null {
    const record = this.#record(map);
    expectMapType(
      record,
      ONE_VALUE_TYPES,
      "an ARRAY or STRUCT_OPS map (a map with one value)",
    );
    checkValueRange(record, "offset", offset, len);
    if (record.type === MapType.STRUCT_OPS) {
      return this.#guard(map, () => this.#structOpsValue(record, offset, len));
    }
    return this.#guard(
      map,
      () =>
        this.#asSyscallCopy(
          record,
          this.#copy(this.reader.readArrayValue(record, offset, len)),
          offset,
        ),
    );
  }

  #structOpsValue(
    record: GuestMapRecord,
    offset: number,
    len: number,
  ): Uint8Array | null {
    if (this.#structOps === undefined) {
      this.#structOps = structOpsLayoutFromBtf(this.#kernelBtf());
    }
    if (this.#structOps === null) return null;
    const value = readStructOpsValue(
      this.kernel.space,
      this.#structOps,
      record.kernelAddress,
      record.valueSize,
    );
    return value.subarray(offset, offset + len);
  }

  /**
   * Value `key` of an ARRAY map.
   *
   * @throws {MapTypeError} for other map types
   * @throws {MapArgumentError} when `key` is not an index of the map
   */
  readArray(map: BpfMapInfo, key: number): Uint8Array | null {
    const record = this.#record(map);
    expectMapType(record, ARRAY_TYPES, "an ARRAY map");
    checkIndex(record, key);
    return this.#guard(
      map,
      () =>
        this.#asSyscallCopy(
          record,
          this.#copy(this.reader.readArray(record, key)),
        ),
    );
  }

  #copy(bytes: Uint8Array | null): Uint8Array | null {
    return bytes === null ? null : this.#slab.copy(bytes, 0, bytes.length);
  }

  /**
   * The kernel-owned fields (timers, locks, kptrs, ...) of the map's value,
   * which bpf() re-initialises in every copy it returns; found from the
   * map's BTF by the guest kernel's own rules, once per map.
   */
  #specialFields(record: GuestMapRecord): readonly SpecialField[] {
    const cached = this.#specialByMap.get(record.kernelAddress);
    if (cached) return cached;
    let fields: readonly SpecialField[] = [];
    if (record.btfAddress !== 0n && record.btfValueTypeId !== 0) {
      const btf = this.#programBtf(record);
      this.#specialRules ??= this.#kernelSpecialFieldRules();
      fields = findSpecialFields(
        btf,
        record.btfValueTypeId,
        this.#specialRules,
      );
    }
    this.#specialByMap.set(record.kernelAddress, fields);
    return fields;
  }

  /**
   * The map's program BTF, parsed once per `struct btf`. Without it a value's
   * kernel pointers cannot be told from data, so an unreadable one is an error.
   */
  #programBtf(record: GuestMapRecord): Btf {
    let btf = this.#btfs.get(record.btfAddress);
    if (btf === undefined) {
      try {
        const bytes = this.reader.programBtf(record);
        btf = bytes === null ? null : Btf.parse(bytes);
      } catch {
        btf = null;
      }
      this.#btfs.set(record.btfAddress, btf);
    }
    if (btf === null) {
      throw new GuestKernelError(
        `Map ${record.id} ("${record.name}"): its BTF is unreadable, so its kernel-owned fields are unknown`,
      );
    }
    return btf;
  }

  /**
   * The guest kernel's rules for which fields are kernel-owned. An image
   * opened with a caller-supplied layout may have no readable vmlinux BTF:
   * then the newest kernel's rules, which zero the most.
   */
  #kernelSpecialFieldRules(): SpecialFieldRules {
    let vmlinux: Btf;
    try {
      vmlinux = this.#kernelBtf();
    } catch {
      return CURRENT_SPECIAL_FIELD_RULES;
    }
    return specialFieldRulesFor(vmlinux, this.kernel.release);
  }

  #kernelBtf(): Btf {
    return this.#vmlinux ??= Btf.parse(this.kernel.btfBytes());
  }

  /** `copy` (value bytes from offset `start`) as bpf() would return it. */
  #asSyscallCopy<T extends Uint8Array | null>(
    record: GuestMapRecord,
    copy: T,
    start = 0,
  ): T {
    if (copy !== null) {
      const fields = this.#specialFields(record);
      if (fields.length > 0) initSpecialFields(fields, copy, start);
    }
    return copy;
  }

  /** Every entry of a HASH or LRU_HASH map (bucket order); MapTypeError for other types. */
  *iterHashMap(map: BpfMapInfo): Iterable<MapEntry> {
    const record = this.#record(map);
    const walk = this.reader.iterHashCopies(record);
    try {
      for (const entry of walk) {
        this.#asSyscallCopy(record, entry.value);
        yield entry;
      }
    } catch (error) {
      throw this.#wrap(map, error);
    }
  }

  /**
   * Each CPU's value of index `key` of a PERCPU_ARRAY; null beyond
   * `nr_cpu_ids`, and null for other types (as on the live backend).
   */
  readPercpuArray(
    map: BpfMapInfo,
    key: number,
    numCpus: number = this.possibleCpus,
  ): (Uint8Array | null)[] | null {
    validateCpuCount(map, numCpus, Math.max(MAX_CPUS, this.possibleCpus));
    const record = this.#record(map);
    expectMapType(record, PERCPU_ARRAY_TYPES, "a PERCPU_ARRAY map");
    checkIndex(record, key);
    return this.#guard(map, () => {
      const values = this.reader.readPercpuArray(record, key, numCpus);
      return values
        ? values.map((v) => this.#asSyscallCopy(record, this.#copy(v)))
        : null;
    });
  }

  /** Every entry of a PERCPU_HASH or LRU_PERCPU_HASH; MapTypeError for other types. */
  *iterPercpuHashMap(
    map: BpfMapInfo,
    numCpus: number = this.possibleCpus,
  ): Iterable<{ key: Uint8Array; values: (Uint8Array | null)[] }> {
    validateCpuCount(map, numCpus, Math.max(MAX_CPUS, this.possibleCpus));
    const record = this.#record(map);
    const walk = this.reader.iterPercpuHash(record, numCpus);
    try {
      for (const entry of walk) {
        for (const value of entry.values) this.#asSyscallCopy(record, value);
        yield entry;
      }
    } catch (error) {
      throw this.#wrap(map, error);
    }
  }

  /**
   * Every element of a TASK/INODE/SK/CGRP storage map; owner and key are the
   * owner's kernel address. MapTypeError for other types.
   */
  *iterTaskStorage(map: BpfMapInfo): Iterable<LocalStorageEntry> {
    const slab = new CopySlab();
    const scratch = new Uint8Array(8);
    const scratchView = new DataView(scratch.buffer);
    const record = this.#record(map);
    const walk = this.reader.iterLocalStorage(record);
    try {
      for (const { owner, value } of walk) {
        scratchView.setBigUint64(0, owner, true);
        yield {
          owner: hex(owner),
          key: slab.copy(scratch, 0, 8),
          value: this.#asSyscallCopy(
            record,
            slab.copy(value, 0, value.length),
          ),
        };
      }
    } catch (error) {
      throw this.#wrap(map, error);
    }
  }

  /** The arena's pages that exist (are mapped in the kernel's arena VM area). */
  readArenaPages(map: BpfMapInfo): ArenaPages {
    const record = this.#record(map);
    const { pages, notes } = this.#guard(
      map,
      () => this.reader.readArena(record),
    );
    return { pages, totalPages: map.maxEntries, notes };
  }

  /** The raw BTF blob of the map's `struct btf`, or null when it has none. */
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null {
    const record = this.#record(map);
    return this.#guard(map, () => this.reader.programBtf(record));
  }

  /** The map's BTF parsed; program BTF is self-contained, `base` is for split (module) BTF. */
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null {
    const bytes = this.loadProgramBtfBytes(map);
    return bytes === null ? null : Btf.parse(bytes, base ? { base } : {});
  }

  // Writes: field stores into the frozen guest's memory (see field_write.ts).

  /** Why this accessor cannot write, or null when it can (memory permitting). */
  #writeRefusal: string | null = null;

  /**
   * Sets fields of one element of an ARRAY map (global data included) by
   * BTF path, storing only the fields' bytes at the element's place in the
   * guest's memory: the rest of the element, the map and the kernel are not
   * touched, and nothing is written past the element. Freeze the guest first
   * (QMP `stop`): a running guest may be writing the same element.
   *
   * A frozen map (`.rodata`) is refused unless `allowReadonly`; even then
   * the result warns that `const volatile` knobs are usually folded into the
   * programs by the verifier at load time, so writing them later changes
   * nothing.
   *
   * @throws {MapTypeError} for maps other than ARRAY
   * @throws {MapReadOnlyError} for a frozen map without `allowReadonly`
   * @throws {FieldError} for a bad path, a value that does not fit, or a
   *   field holding kernel-owned state (a lock, timer, kptr)
   * @throws {GuestSourceError} when the image cannot be written (an ELF
   *   core, or a RAM file opened read-only)
   */
  writeFields(
    map: BpfMapInfo,
    assignments: Iterable<readonly [string, FieldValue]>,
    options: WriteFieldOptions = {},
  ): FieldWriteResult {
    const record = this.#record(map);
    const who = { id: record.id, name: record.name };
    expectMapType(
      record,
      ARRAY_TYPES,
      "an ARRAY map (the guest backend writes array elements and global data)",
    );
    const memory = this.kernel.space.memory;
    const refusal = this.#writeRefusal ??
      (memory.write === undefined ? "cannot be written" : null);
    if (refusal !== null) {
      throw new GuestSourceError(this.#source?.path ?? "guest memory", refusal);
    }
    const warnings: string[] = [];
    if (record.frozen) {
      if (!options.allowReadonly) {
        throw new MapReadOnlyError(
          who,
          "is frozen (BPF_MAP_FREEZE, as libbpf does to .rodata): its const volatile knobs were usually folded into the programs by the verifier at load time, so writing them changes nothing",
          { hint: "pass allowReadonly (--allow-rodata) to write it anyway" },
        );
      }
      warnings.push(
        `${
          describeMap(who)
        } is frozen (.rodata): the verifier usually folds const volatile knobs into the programs at load time, so the programs may never read the value written`,
      );
    }
    const btf = record.btfAddress === 0n ? null : this.#programBtf(record);
    const prepared = prepareFieldWrite(
      who,
      btf,
      record.btfValueTypeId,
      record.valueSize,
      assignments,
    );
    const owned = btf === null ? [] : this.#specialFields(record);
    for (const field of prepared.fields) {
      const clash = owned.find((o) =>
        o.offset < field.byteOffset + field.byteSize &&
        field.byteOffset < o.offset + o.size
      );
      if (clash) {
        throw new FieldError(
          who,
          field.path,
          field.typeName,
          `overlaps a ${clash.kind} at byte ${clash.offset}: kernel-owned state is never written`,
        );
      }
    }
    const index = arrayIndexOf(record, options.key);
    const space = this.kernel.space;
    return this.#guard(map, () => {
      const va = arrayElementAddress(space, this.reader.layout, record, index);
      const what = `value ${index} of map ${record.id} ("${record.name}")`;
      const element = space.mustRead(va, record.valueSize, what).slice();
      const changes = prepared.apply(element);
      for (const change of changes) {
        writeKernelBytes(
          space,
          va + BigInt(change.byteOffset),
          element.subarray(
            change.byteOffset,
            change.byteOffset + change.byteSize,
          ),
          `${change.path} of ${what}`,
        );
      }
      const key = new Uint8Array(4);
      new DataView(key.buffer).setUint32(0, index, true);
      return { map, key, changes, warnings };
    });
  }

  /** {@linkcode writeFields} with one field. */
  writeField(
    map: BpfMapInfo,
    path: string,
    value: FieldValue,
    options: WriteFieldOptions = {},
  ): FieldWriteResult {
    return this.writeFields(map, [[path, value]], options);
  }

  /** Closes the image file if this accessor opened it. */
  close(): void {
    this.#source?.close();
  }

  /** Closes the image file if this accessor opened it. */
  [Symbol.dispose](): void {
    this.close();
  }
}
