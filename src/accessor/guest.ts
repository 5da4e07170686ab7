/**
 * `GuestMemMapAccessor`: the read-only map interface over a frozen VM's
 * memory (a RAM file or an ELF core), with no syscalls into the guest and no
 * vmlinux needed: VMCOREINFO, kallsyms and BTF all come from guest RAM.
 *
 * @module
 */

import { Btf } from "../btf/mod.ts";
import {
  findSpecialFields,
  initSpecialFields,
  type SpecialField,
  type SpecialFieldRules,
  specialFieldRulesFor,
} from "../btf/special_fields.ts";
import { GuestKernel, type GuestKernelOptions } from "../guest/kernel.ts";
import { type KernelLayout, kernelLayoutFromBtf } from "../guest/layout.ts";
import {
  CopySlab,
  type GuestMapLimits,
  GuestMapReader,
  type GuestMapRecord,
} from "../guest/maps.ts";
import type { PhysicalMemory, PhysRegion } from "../guest/phys.ts";
import {
  type GuestMemorySource,
  openElfCore,
  openRamFile,
} from "../guest/source.ts";
import { GuestKernelError, hex } from "../guest/errors.ts";
import {
  readStructOpsValue,
  type StructOpsLayout,
  structOpsLayoutFromBtf,
} from "../guest/struct_ops.ts";
import { parseSystemMap, readVmlinux } from "../guest/symbol_files.ts";
import { MapType } from "../sys/constants.ts";
import type {
  ArenaPages,
  BpfMapAccessor,
  BpfMapInfo,
  LocalStorageEntry,
  MapEntry,
} from "./types.ts";

/** Options for opening a guest image. */
export interface GuestMemOptions extends GuestKernelOptions {
  /** Physical layout of a RAM file; default QEMU x86-64 (RAM above 3 GiB at 4 GiB). */
  regions?: readonly PhysRegion[];
  /**
   * Struct offsets; default read from the guest's BTF.
   *
   * @internal
   */
  layout?: KernelLayout;
  /** Walk limits. */
  limits?: GuestMapLimits;
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
    for (
      const [name, value] of parseSystemMap(
        Deno.readTextFileSync(files.systemMap),
      )
    ) {
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
export class GuestMemMapAccessor implements BpfMapAccessor, Disposable {
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
  // point reads copy into shared 4 KiB chunks (one allocation per chunk)
  readonly #slab = new CopySlab(4096);
  #specialRules: SpecialFieldRules | null = null;
  readonly #specialByMap = new Map<bigint, readonly SpecialField[]>();
  readonly #programBtfs = new Map<bigint, Btf | null>();
  #vmlinux: Btf | null = null;
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
    return accessor;
  }

  /**
   * Maps a raw RAM file (QEMU `memory-backend-file,share=on`) and locates the
   * kernel in it. The accessor owns the mapping; dispose it to unmap.
   *
   * @param path the RAM file, e.g. `/dev/shm/NAME`
   */
  static openRamFile(
    path: string,
    options: GuestMemOptions = {},
  ): GuestMemMapAccessor {
    const source = openRamFile(
      path,
      options.regions ? { regions: options.regions } : {},
    );
    try {
      return GuestMemMapAccessor.#build(source.memory, options, source);
    } catch (error) {
      source.close();
      throw error;
    }
  }

  /**
   * Maps an ELF core (QEMU `dump-guest-memory`, kdump vmcore); its
   * VMCOREINFO note is used when present.
   *
   * @param path the core file
   */
  static openCore(
    path: string,
    options: GuestMemOptions = {},
  ): GuestMemMapAccessor {
    const source = openElfCore(path);
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

  /** The guest's `OSRELEASE`. */
  get release(): string {
    return this.kernel.release;
  }

  /** How many CPUs the guest kernel has (`nr_cpu_ids`). */
  get cpuCount(): number {
    return this.reader.perCpuOffsets.length;
  }

  /** Things skipped while walking (corrupt nodes, moved elements). */
  get problems(): readonly string[] {
    return this.reader.problems;
  }

  #records(): GuestMapRecord[] {
    if (!this.#maps) {
      this.#maps = this.reader.maps();
      for (const record of this.#maps) {
        this.#byAddress.set(record.kernelAddress, record);
      }
    }
    return this.#maps;
  }

  #record(map: BpfMapInfo): GuestMapRecord {
    this.#records();
    const found = map.kernelAddress !== undefined
      ? this.#byAddress.get(map.kernelAddress)
      : this.#maps!.find((r) => r.id === map.id);
    if (!found) {
      throw new RangeError(
        `Map ${map.id} ("${map.name}")${
          map.kernelAddress !== undefined ? ` at ${hex(map.kernelAddress)}` : ""
        } is not in this guest's map_idr`,
      );
    }
    return found;
  }

  /** Forgets the cached map list and translations (if the guest ran in between). */
  refresh(): void {
    this.#maps = null;
    this.#byAddress.clear();
    // freed maps' and BTFs' addresses can be reused by new ones
    this.#specialByMap.clear();
    this.#programBtfs.clear();
    this.kernel.space.clearCache();
  }

  /** Every map in `map_idr`, in id order. */
  maps(): BpfMapInfo[] {
    return this.#records().map(toInfo);
  }

  /** The first map (lowest id) whose name ends with `suffix`, or null. */
  findMap(suffix: string): BpfMapInfo | null {
    const found = this.#records().find((r) => r.name.endsWith(suffix));
    return found ? toInfo(found) : null;
  }

  /**
   * `len` bytes at `offset` of value 0 of an ARRAY or STRUCT_OPS map (the
   * latter as bpf() shows it: user-supplied value, state and refcount); null
   * for other types, out of bounds, or a kernel without `bpf_struct_ops_map`.
   */
  readValue(map: BpfMapInfo, offset: number, len: number): Uint8Array | null {
    if (map.type === MapType.STRUCT_OPS) {
      return this.#structOpsValue(map, offset, len);
    }
    if (map.type !== MapType.ARRAY) return null;
    const record = this.#record(map);
    return this.#asSyscallCopy(
      record,
      this.#copy(this.reader.readArrayValue(record, offset, len)),
      offset,
    );
  }

  #structOpsValue(
    map: BpfMapInfo,
    offset: number,
    len: number,
  ): Uint8Array | null {
    const record = this.#record(map);
    if (offset < 0 || len < 0 || offset + len > record.valueSize) return null;
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

  /** Value `key` of an ARRAY map; null when out of range or not an array. */
  readArray(map: BpfMapInfo, key: number): Uint8Array | null {
    if (map.type !== MapType.ARRAY) return null;
    const record = this.#record(map);
    return this.#asSyscallCopy(
      record,
      this.#copy(this.reader.readArray(record, key)),
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
      let btf = this.#programBtfs.get(record.btfAddress);
      if (btf === undefined) {
        const bytes = this.reader.programBtf(record);
        try {
          btf = bytes === null ? null : Btf.parse(bytes);
        } catch (error) {
          // without its BTF a value's kernel pointers cannot be told from data
          throw new GuestKernelError(
            `Map ${record.id} ("${record.name}"): its BTF is unreadable, so its kernel-owned fields are unknown: ${
              (error as Error).message
            }`,
          );
        }
        this.#programBtfs.set(record.btfAddress, btf);
      }
      this.#specialRules ??= specialFieldRulesFor(
        this.#kernelBtf(),
        this.kernel.release,
      );
      if (btf) {
        fields = findSpecialFields(
          btf,
          record.btfValueTypeId,
          this.#specialRules,
        );
      }
    }
    this.#specialByMap.set(record.kernelAddress, fields);
    return fields;
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

  /** Every entry of a HASH or LRU_HASH map (bucket order). */
  *iterHashMap(map: BpfMapInfo): Iterable<MapEntry> {
    const record = this.#record(map);
    for (const entry of this.reader.iterHashCopies(record)) {
      this.#asSyscallCopy(record, entry.value);
      yield entry;
    }
  }

  /** Each CPU's value of index `key` of a PERCPU_ARRAY; null beyond `nr_cpu_ids`. */
  readPercpuArray(
    map: BpfMapInfo,
    key: number,
    numCpus: number,
  ): (Uint8Array | null)[] | null {
    const record = this.#record(map);
    const values = this.reader.readPercpuArray(record, key, numCpus);
    return values
      ? values.map((v) => this.#asSyscallCopy(record, this.#copy(v)))
      : null;
  }

  /** Every entry of a PERCPU_HASH or LRU_PERCPU_HASH. */
  *iterPercpuHashMap(
    map: BpfMapInfo,
    numCpus: number,
  ): Iterable<{ key: Uint8Array; values: (Uint8Array | null)[] }> {
    const record = this.#record(map);
    for (const entry of this.reader.iterPercpuHashCopies(record, numCpus)) {
      for (const value of entry.values) this.#asSyscallCopy(record, value);
      yield entry;
    }
  }

  /** Every element of a TASK/INODE/SK/CGRP storage map; owner and key are the owner's kernel address. */
  *iterTaskStorage(map: BpfMapInfo): Iterable<LocalStorageEntry> {
    const slab = new CopySlab();
    const scratch = new Uint8Array(8);
    const scratchView = new DataView(scratch.buffer);
    const record = this.#record(map);
    for (const { owner, value } of this.reader.iterLocalStorage(record)) {
      scratchView.setBigUint64(0, owner, true);
      yield {
        owner: hex(owner),
        key: slab.copy(scratch, 0, 8),
        value: this.#asSyscallCopy(record, slab.copy(value, 0, value.length)),
      };
    }
  }

  /** The arena's pages that exist (are mapped in the kernel's arena VM area). */
  readArenaPages(map: BpfMapInfo): ArenaPages {
    const { pages, notes } = this.reader.readArena(this.#record(map));
    return {
      pages: pages.map((p) => ({
        index: p.index,
        userAddress: p.userAddress,
        bytes: p.bytes.slice(),
      })),
      totalPages: map.maxEntries,
      notes,
    };
  }

  /** The raw BTF blob of the map's `struct btf`, or null when it has none. */
  loadProgramBtfBytes(map: BpfMapInfo): Uint8Array | null {
    return this.reader.programBtf(this.#record(map));
  }

  /** The map's BTF parsed; program BTF is self-contained, `base` is for split (module) BTF. */
  loadProgramBtf(map: BpfMapInfo, base?: Btf): Btf | null {
    const bytes = this.loadProgramBtfBytes(map);
    return bytes === null ? null : Btf.parse(bytes, base ? { base } : {});
  }

  /** Unmaps the image if this accessor opened it. */
  close(): void {
    this.#source?.close();
  }

  /** Unmaps the image if this accessor opened it. */
  [Symbol.dispose](): void {
    this.close();
  }
}
