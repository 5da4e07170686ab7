/**
 * Typed wrappers over the bpf() commands bpfmap uses, one per command, each
 * encoding its `union bpf_attr` layout through the field tables of `attr.ts`.
 *
 * Every attr and info buffer is zeroed before each call: the kernel rejects
 * non-zero bytes it does not know (E2BIG) and, since 6.18, echoes caller bytes
 * back for fields it does not fill.
 *
 * @module
 */

import { BpfmapError, MapArgumentError } from "../errors.ts";
import {
  BATCH_ATTR,
  BTF_INFO,
  BTF_LOAD_ATTR,
  ELEM_ATTR,
  getU32,
  getU64,
  ID_ATTR,
  INFO_ATTR,
  MAP_CREATE_ATTR,
  MAP_INFO,
  OBJ_ATTR,
  put,
} from "./attr.ts";
import { BPF_OBJ_NAME_LEN, BpfCommand, Errno } from "./constants.ts";
import { BpfError, SyscallError } from "./errors.ts";
import { addressOf, getLibc, lastErrno } from "./ffi.ts";
import { OwnedFd } from "./fd.ts";
import { type SyscallNumbers, syscallNumbers } from "./syscall_numbers.ts";

let numbers: SyscallNumbers | undefined;

function nr(): SyscallNumbers {
  return numbers ??= syscallNumbers();
}

/** Size of the attr buffer we pass; larger than every layout we encode. */
const ATTR_SIZE = 128;

const attrBuffer = new Uint8Array(new ArrayBuffer(ATTR_SIZE));
const attrView = new DataView(attrBuffer.buffer);

function freshAttr(): DataView {
  attrBuffer.fill(0);
  return attrView;
}

/**
 * Runs bpf(cmd, attr) and returns the result, or `-errno` on failure.
 * Never throws on a kernel error: callers that treat ENOENT as a normal end use this.
 */
function rawBpf(command: number, attr: Uint8Array = attrBuffer): number {
  const result = Number(
    getLibc().syscall(
      nr().bpf,
      BigInt(command),
      attr as Uint8Array<ArrayBuffer>,
      BigInt(attr.byteLength),
    ),
  );
  return result < 0 ? -lastErrno() : result;
}

function checked(command: number, result: number, action?: string): number {
  if (result < 0) {
    throw new BpfError(command, -result, action ? { action } : {});
  }
  return result;
}

function encodeName(view: DataView, offset: number, name: string): void {
  const bytes = new TextEncoder().encode(name);
  if (bytes.length >= BPF_OBJ_NAME_LEN) {
    throw new MapArgumentError(
      null,
      "name",
      `"${name}" is ${bytes.length} bytes but the kernel keeps at most ${
        BPF_OBJ_NAME_LEN - 1
      }`,
      { hint: "shorten it (libbpf keeps the first 15 characters)" },
    );
  }
  new Uint8Array(view.buffer, view.byteOffset + offset, bytes.length).set(
    bytes,
  );
}

function pathBytes(path: string): Uint8Array {
  return new TextEncoder().encode(path + "\0");
}

/** What MAP_CREATE needs. */
export interface MapCreateAttr {
  /** `enum bpf_map_type`. */
  type: number;
  /** Key size in bytes. */
  keySize: number;
  /** Value size in bytes. */
  valueSize: number;
  /** Maximum number of entries (pages, for an arena). */
  maxEntries: number;
  /** `BPF_F_*` flags. */
  flags?: number;
  /** Up to 15 characters of `[A-Za-z0-9_.]`. */
  name?: string;
  /** A loaded BTF object describing the key and value. */
  btfFd?: number;
  /** BTF type id of the key. */
  btfKeyTypeId?: number;
  /** BTF type id of the value. */
  btfValueTypeId?: number;
  /** Inner map fd, for map-in-map types. */
  innerMapFd?: number;
  /** Type-specific extra (bloom hashes, arena address). */
  mapExtra?: bigint;
}

/** BPF_MAP_CREATE: a new map, owned by the returned fd. */
export function mapCreate(attr: MapCreateAttr): OwnedFd {
  const f = MAP_CREATE_ATTR.fields;
  const view = freshAttr();
  put(view, f.map_type, attr.type);
  put(view, f.key_size, attr.keySize);
  put(view, f.value_size, attr.valueSize);
  put(view, f.max_entries, attr.maxEntries);
  put(view, f.map_flags, attr.flags ?? 0);
  put(view, f.inner_map_fd, attr.innerMapFd ?? 0);
  if (attr.name) encodeName(view, f.map_name.offset, attr.name);
  put(view, f.btf_fd, attr.btfFd ?? 0);
  put(view, f.btf_key_type_id, attr.btfKeyTypeId ?? 0);
  put(view, f.btf_value_type_id, attr.btfValueTypeId ?? 0);
  put(view, f.map_extra, attr.mapExtra ?? 0n);
  const fd = checked(
    BpfCommand.MAP_CREATE,
    rawBpf(BpfCommand.MAP_CREATE),
    `create ${attr.name ? `map "${attr.name}"` : "map"} of type ${attr.type}`,
  );
  return new OwnedFd(fd);
}

function encodeElem(
  fd: number,
  key: Uint8Array | null,
  value: Uint8Array | null,
  flags: bigint,
): void {
  const f = ELEM_ATTR.fields;
  const view = freshAttr();
  put(view, f.map_fd, fd);
  put(view, f.key, key ? addressOf(key) : 0n);
  put(view, f.value, value ? addressOf(value) : 0n);
  put(view, f.flags, flags);
}

/**
 * BPF_MAP_LOOKUP_ELEM into `value`, returning 0 or the errno instead of
 * throwing: for walks that record an error about one element and go on.
 * The caller sizes `key` and `value` from the map's real sizes.
 */
export function mapLookupElemErrno(
  fd: number,
  key: Uint8Array | null,
  value: Uint8Array,
  flags = 0n,
): number {
  encodeElem(fd, key, value, flags);
  const result = rawBpf(BpfCommand.MAP_LOOKUP_ELEM);
  return result < 0 ? -result : 0;
}

/**
 * BPF_MAP_LOOKUP_ELEM into `value`; false when the key is absent (ENOENT).
 * A null key peeks at a queue or stack.
 */
export function mapLookupElem(
  fd: number,
  key: Uint8Array | null,
  value: Uint8Array,
  flags = 0n,
): boolean {
  encodeElem(fd, key, value, flags);
  const result = rawBpf(BpfCommand.MAP_LOOKUP_ELEM);
  if (result === -Errno.ENOENT) return false;
  checked(BpfCommand.MAP_LOOKUP_ELEM, result, `map fd ${fd}`);
  return true;
}

/** BPF_MAP_UPDATE_ELEM. */
export function mapUpdateElem(
  fd: number,
  key: Uint8Array | null,
  value: Uint8Array,
  flags = 0n,
): void {
  encodeElem(fd, key, value, flags);
  checked(
    BpfCommand.MAP_UPDATE_ELEM,
    rawBpf(BpfCommand.MAP_UPDATE_ELEM),
    `map fd ${fd}`,
  );
}

/**
 * BPF_MAP_UPDATE_ELEM on a local-storage map (task, inode, socket, cgroup).
 *
 * The kernel returns EAGAIN when the owner's storage is being created or torn
 * down at the same moment (a parallel delete, or a closed map's deferred
 * free) and leaves the retry to the caller (`bpf_local_storage_update`,
 * "Return instead of retry to keep things simple"): retry a few times.
 */
export function mapUpdateStorageElem(
  fd: number,
  key: Uint8Array,
  value: Uint8Array,
  flags = 0n,
): void {
  const ATTEMPTS = 8;
  for (let attempt = 1;; attempt++) {
    encodeElem(fd, key, value, flags);
    const result = rawBpf(BpfCommand.MAP_UPDATE_ELEM);
    if (result !== -Errno.EAGAIN || attempt === ATTEMPTS) {
      checked(BpfCommand.MAP_UPDATE_ELEM, result, `map fd ${fd}`);
      return;
    }
  }
}

/** BPF_MAP_DELETE_ELEM; false when the key was absent. */
export function mapDeleteElem(fd: number, key: Uint8Array): boolean {
  encodeElem(fd, key, null, 0n);
  const result = rawBpf(BpfCommand.MAP_DELETE_ELEM);
  if (result === -Errno.ENOENT) return false;
  checked(BpfCommand.MAP_DELETE_ELEM, result, `map fd ${fd}`);
  return true;
}

/** BPF_MAP_GET_NEXT_KEY into `nextKey`; false at the end. A null key asks for the first. */
export function mapGetNextKey(
  fd: number,
  key: Uint8Array | null,
  nextKey: Uint8Array,
): boolean {
  encodeElem(fd, key, nextKey, 0n);
  const result = rawBpf(BpfCommand.MAP_GET_NEXT_KEY);
  if (result === -Errno.ENOENT) return false;
  checked(BpfCommand.MAP_GET_NEXT_KEY, result, `map fd ${fd}`);
  return true;
}

/** BPF_MAP_FREEZE: user space can no longer write the map. */
export function mapFreeze(fd: number): void {
  const view = freshAttr();
  put(view, ELEM_ATTR.fields.map_fd, fd);
  checked(BpfCommand.MAP_FREEZE, rawBpf(BpfCommand.MAP_FREEZE), `map fd ${fd}`);
}

/**
 * Reusable buffers for BPF_MAP_LOOKUP_BATCH, with their addresses taken once.
 * `cursor` is `max(key_size, 4)` bytes: a bucket index for the hash family, a
 * key for the generic (array) implementation.
 */
export class BatchBuffers {
  /** Keys written by the last call, `keySize` bytes each. */
  keys: Uint8Array;
  /** Values written by the last call, `valueStride` bytes each. */
  values: Uint8Array;
  /** Capacity in elements. */
  capacity: number;
  readonly #inCursor: Uint8Array;
  readonly #outCursor: Uint8Array;
  readonly #attr = new Uint8Array(new ArrayBuffer(BATCH_ATTR.size));
  readonly #view = new DataView(this.#attr.buffer);
  readonly #keySize: number;
  readonly #valueStride: number;
  #started = false;

  /**
   * @param keySize the map's key size
   * @param valueStride bytes per element's value (`round_up(value_size, 8) * cpus` for per-CPU maps)
   * @param capacity initial elements per batch
   */
  constructor(keySize: number, valueStride: number, capacity: number) {
    this.#keySize = keySize;
    this.#valueStride = valueStride;
    const cursorSize = Math.max(keySize, 4);
    this.#inCursor = new Uint8Array(new ArrayBuffer(cursorSize));
    this.#outCursor = new Uint8Array(new ArrayBuffer(cursorSize));
    this.capacity = 0;
    this.keys = new Uint8Array(0);
    this.values = new Uint8Array(0);
    this.resize(capacity);
  }

  /** Grows the buffers to hold `capacity` elements. */
  resize(capacity: number): void {
    this.capacity = capacity;
    this.keys = new Uint8Array(
      new ArrayBuffer(Math.max(1, capacity * this.#keySize)),
    );
    this.values = new Uint8Array(
      new ArrayBuffer(Math.max(1, capacity * this.#valueStride)),
    );
  }

  /** Starts a new walk from the beginning of the map. */
  reset(): void {
    this.#started = false;
  }

  /**
   * Bytes the buffers hold now (keys and values): what a walk's memory bound
   * is checked against.
   */
  get bytes(): number {
    return this.keys.byteLength + this.values.byteLength;
  }

  /**
   * One LOOKUP_BATCH call from the current cursor. Returns how many elements
   * were written and the errno (0, ENOENT at the end, ENOSPC when the next
   * bucket does not fit, EINTR when elements vanished under the kernel's own
   * walk, or another error). When elements were copied the cursor advances.
   */
  next(fd: number): { count: number; errno: number } {
    const f = BATCH_ATTR.fields;
    const view = this.#view;
    this.#attr.fill(0);
    put(view, f.in_batch, this.#started ? addressOf(this.#inCursor) : 0n);
    put(view, f.out_batch, addressOf(this.#outCursor));
    put(view, f.keys, addressOf(this.keys));
    put(view, f.values, addressOf(this.values));
    put(view, f.count, this.capacity);
    put(view, f.map_fd, fd);
    const result = rawBpf(BpfCommand.MAP_LOOKUP_BATCH, this.#attr);
    const count = getU32(view, f.count);
    const errno = result < 0 ? -result : 0;
    // EINTR (the generic walk lost an element three times) still reports
    // the elements copied before it, with the cursor after them.
    const partial = errno === Errno.EINTR && count > 0;
    if (errno === 0 || errno === Errno.ENOENT || partial) {
      this.#inCursor.set(this.#outCursor);
      this.#started = true;
    }
    return {
      count: errno === 0 || errno === Errno.ENOENT || partial ? count : 0,
      errno,
    };
  }
}

/** BPF_MAP_GET_NEXT_ID: the next map id after `startId`, or null at the end. */
export function mapGetNextId(startId: number): number | null {
  return getNextId(BpfCommand.MAP_GET_NEXT_ID, startId);
}

/** BPF_BTF_GET_NEXT_ID: the next BTF object id after `startId`, or null at the end. */
export function btfGetNextId(startId: number): number | null {
  return getNextId(BpfCommand.BTF_GET_NEXT_ID, startId);
}

function getNextId(command: number, startId: number): number | null {
  const view = freshAttr();
  put(view, ID_ATTR.fields.start_id, startId);
  const result = rawBpf(command);
  if (result === -Errno.ENOENT) return null;
  checked(command, result, `after id ${startId}`);
  return getU32(view, ID_ATTR.fields.next_id);
}

/** Open flags for MAP_GET_FD_BY_ID and OBJ_GET. */
export const OpenFlag = {
  READ_WRITE: 0,
  RDONLY: 1 << 3,
  WRONLY: 1 << 4,
} as const;

/**
 * BPF_MAP_GET_FD_BY_ID. Throws a BpfError with code ENOENT when the id is
 * gone (a map freed since it was enumerated).
 */
export function mapGetFdById(id: number, openFlags = 0): OwnedFd {
  const view = freshAttr();
  put(view, ID_ATTR.fields.start_id, id);
  put(view, ID_ATTR.fields.open_flags, openFlags);
  return new OwnedFd(
    checked(
      BpfCommand.MAP_GET_FD_BY_ID,
      rawBpf(BpfCommand.MAP_GET_FD_BY_ID),
      `map id ${id}`,
    ),
  );
}

/** BPF_BTF_GET_FD_BY_ID. */
export function btfGetFdById(id: number): OwnedFd {
  const view = freshAttr();
  put(view, ID_ATTR.fields.start_id, id);
  return new OwnedFd(
    checked(
      BpfCommand.BTF_GET_FD_BY_ID,
      rawBpf(BpfCommand.BTF_GET_FD_BY_ID),
      `btf id ${id}`,
    ),
  );
}

/** `struct bpf_map_info` as the kernel reports it. */
export interface RawMapInfo {
  /** Map type. */
  type: number;
  /** Map id. */
  id: number;
  /** Key size. */
  keySize: number;
  /** Value size. */
  valueSize: number;
  /** Maximum entries. */
  maxEntries: number;
  /** Map flags. */
  flags: number;
  /** Kernel-visible name (at most 15 chars). */
  name: string;
  /** Offload device ifindex. */
  ifindex: number;
  /** Struct-ops value type in vmlinux BTF. */
  btfVmlinuxValueTypeId: number;
  /** Network namespace device. */
  netnsDev: bigint;
  /** Network namespace inode. */
  netnsIno: bigint;
  /** BTF object id (0 when none). */
  btfId: number;
  /** Key type id in that BTF. */
  btfKeyTypeId: number;
  /** Value type id in that BTF. */
  btfValueTypeId: number;
  /** BTF object of the struct-ops value type (6.9+). */
  btfVmlinuxId: number;
  /** Type-specific extra. */
  mapExtra: bigint;
}

/** The whole 6.18 struct (104 bytes); its tail past `map_extra` stays zero. */
const MAP_INFO_SIZE = 104;

function getInfo(fd: number, info: Uint8Array, what: string): number {
  info.fill(0);
  const view = freshAttr();
  put(view, INFO_ATTR.fields.bpf_fd, fd);
  put(view, INFO_ATTR.fields.info_len, info.byteLength);
  put(view, INFO_ATTR.fields.info, addressOf(info));
  checked(
    BpfCommand.OBJ_GET_INFO_BY_FD,
    rawBpf(BpfCommand.OBJ_GET_INFO_BY_FD),
    `${what} fd ${fd}`,
  );
  return getU32(view, INFO_ATTR.fields.info_len);
}

function cString(bytes: Uint8Array): string {
  const end = bytes.indexOf(0);
  return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}

/** BPF_OBJ_GET_INFO_BY_FD for a map. Fields a short kernel struct lacks read as 0. */
export function mapGetInfo(fd: number): RawMapInfo {
  const info = new Uint8Array(new ArrayBuffer(MAP_INFO_SIZE));
  getInfo(fd, info, "map");
  const view = new DataView(info.buffer);
  const f = MAP_INFO.fields;
  return {
    type: getU32(view, f.type),
    id: getU32(view, f.id),
    keySize: getU32(view, f.key_size),
    valueSize: getU32(view, f.value_size),
    maxEntries: getU32(view, f.max_entries),
    flags: getU32(view, f.map_flags),
    name: cString(
      info.subarray(f.name.offset, f.name.offset + f.name.size),
    ),
    ifindex: getU32(view, f.ifindex),
    btfVmlinuxValueTypeId: getU32(view, f.btf_vmlinux_value_type_id),
    netnsDev: getU64(view, f.netns_dev),
    netnsIno: getU64(view, f.netns_ino),
    btfId: getU32(view, f.btf_id),
    btfKeyTypeId: getU32(view, f.btf_key_type_id),
    btfValueTypeId: getU32(view, f.btf_value_type_id),
    btfVmlinuxId: getU32(view, f.btf_vmlinux_id),
    mapExtra: getU64(view, f.map_extra),
  };
}

/** `struct bpf_btf_info` plus the BTF bytes. */
export interface RawBtfInfo {
  /** BTF object id. */
  id: number;
  /** Name (`vmlinux`, a module name, or empty for program BTF). */
  name: string;
  /** Whether this is kernel (vmlinux or module) BTF. */
  kernelBtf: boolean;
  /** The raw BTF blob. */
  bytes: Uint8Array;
}

/** BPF_OBJ_GET_INFO_BY_FD for a BTF object, bytes included (retries until the buffer fits). */
export function btfGetInfo(fd: number): RawBtfInfo {
  const f = BTF_INFO.fields;
  const info = new Uint8Array(new ArrayBuffer(BTF_INFO.size));
  const view = new DataView(info.buffer);
  let size = 0;
  let nameBuffer = new Uint8Array(new ArrayBuffer(64));
  for (let attempt = 0; attempt < 4; attempt++) {
    const bytes = new Uint8Array(new ArrayBuffer(Math.max(size, 1)));
    info.fill(0);
    put(view, f.btf, size > 0 ? addressOf(bytes) : 0n);
    put(view, f.btf_size, size);
    put(view, f.name, addressOf(nameBuffer));
    put(view, f.name_len, nameBuffer.byteLength);
    const attr = freshAttr();
    put(attr, INFO_ATTR.fields.bpf_fd, fd);
    put(attr, INFO_ATTR.fields.info_len, info.byteLength);
    put(attr, INFO_ATTR.fields.info, addressOf(info));
    const result = rawBpf(BpfCommand.OBJ_GET_INFO_BY_FD);
    if (result === -Errno.ENOSPC) {
      nameBuffer = new Uint8Array(new ArrayBuffer(nameBuffer.byteLength * 4));
      continue;
    }
    checked(BpfCommand.OBJ_GET_INFO_BY_FD, result, `btf fd ${fd}`);
    const realSize = getU32(view, f.btf_size);
    if (size > 0 && realSize <= size) {
      return {
        id: getU32(view, f.id),
        name: cString(nameBuffer),
        kernelBtf: getU32(view, f.kernel_btf) !== 0,
        bytes: bytes.subarray(0, realSize),
      };
    }
    size = realSize;
  }
  throw new BpfmapError(
    `the BTF object behind fd ${fd} changed size on each of 4 reads`,
    { hint: "retry; a BTF object should not change once loaded" },
  );
}

/**
 * The filesystem type of the mount `path` would be created on (its parent
 * directory's longest matching mount point in /proc/self/mounts), or null.
 */
export function mountTypeOf(path: string): string | null {
  let mounts: string;
  try {
    mounts = Deno.readTextFileSync("/proc/self/mounts");
  } catch {
    return null;
  }
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const parent = absolute.slice(0, absolute.lastIndexOf("/")) || "/";
  let best: { point: string; type: string } | null = null;
  for (const line of mounts.split("\n")) {
    const [, rawPoint, type] = line.split(" ");
    if (rawPoint === undefined || type === undefined) continue;
    const point = rawPoint.replace(/\\040/g, " ");
    const covers = point === "/" || parent === point ||
      parent.startsWith(`${point}/`);
    // A later line for the same point is a mount stacked on top: it wins.
    if (covers && (best === null || point.length >= best.point.length)) {
      best = { point, type };
    }
  }
  return best?.type ?? null;
}

/** BPF_OBJ_PIN: pins the object to a bpffs path. */
export function objPin(fd: number, path: string): void {
  const bytes = pathBytes(path);
  const view = freshAttr();
  put(view, OBJ_ATTR.fields.pathname, addressOf(bytes));
  put(view, OBJ_ATTR.fields.bpf_fd, fd);
  const result = rawBpf(BpfCommand.OBJ_PIN);
  if (result === -Errno.EPERM) {
    const type = mountTypeOf(path);
    if (type !== null && type !== "bpf") {
      throw new BpfError(BpfCommand.OBJ_PIN, Errno.EPERM, {
        action: `pin to ${path}`,
        hint:
          `${path} is not on a bpffs mount (it is on ${type}); mount one with \`mount -t bpf bpf /sys/fs/bpf\` and pin below it`,
      });
    }
  }
  checked(BpfCommand.OBJ_PIN, result, `pin to ${path}`);
}

/** BPF_OBJ_GET: opens a pinned object. */
export function objGet(path: string, openFlags = 0): OwnedFd {
  const bytes = pathBytes(path);
  const view = freshAttr();
  put(view, OBJ_ATTR.fields.pathname, addressOf(bytes));
  put(view, OBJ_ATTR.fields.file_flags, openFlags);
  return new OwnedFd(
    checked(BpfCommand.OBJ_GET, rawBpf(BpfCommand.OBJ_GET), `open pin ${path}`),
  );
}

/** BPF_BTF_LOAD: uploads a BTF blob; on failure the verifier log is in the error. */
export function btfLoad(blob: Uint8Array): OwnedFd {
  const log = new Uint8Array(new ArrayBuffer(64 * 1024));
  const data = new Uint8Array(new ArrayBuffer(blob.byteLength));
  data.set(blob);
  const f = BTF_LOAD_ATTR.fields;
  const view = freshAttr();
  put(view, f.btf, addressOf(data));
  put(view, f.btf_log_buf, addressOf(log));
  put(view, f.btf_size, data.byteLength);
  put(view, f.btf_log_size, log.byteLength);
  put(view, f.btf_log_level, 1);
  const result = rawBpf(BpfCommand.BTF_LOAD);
  if (result < 0) {
    const text = cString(log).trim().split("\n").slice(-3).join(" | ");
    throw new BpfError(BpfCommand.BTF_LOAD, -result, {
      action: "load BTF",
      ...(text ? { hint: `kernel log: ${text}` } : {}),
    });
  }
  return new OwnedFd(result);
}

/** pidfd_open(2); `thread` opens a non-leader thread (PIDFD_THREAD, 6.9+). */
export function pidfdOpen(pid: number, thread = false): OwnedFd {
  const result = Number(
    getLibc().syscall3(nr().pidfdOpen, BigInt(pid), thread ? 0x80n : 0n, 0n),
  );
  if (result < 0) {
    throw new SyscallError(`pidfd_open(${pid})`, lastErrno());
  }
  return new OwnedFd(result);
}

/** pidfd_getfd(2): a copy of another process's fd. */
export function pidfdGetfd(pidfd: number, targetFd: number): OwnedFd {
  const result = Number(
    getLibc().syscall3(
      nr().pidfdGetfd,
      BigInt(pidfd),
      BigInt(targetFd),
      0n,
    ),
  );
  if (result < 0) {
    throw new SyscallError(`pidfd_getfd(fd ${targetFd})`, lastErrno());
  }
  return new OwnedFd(result);
}

/** open(2) read-only (with O_CLOEXEC); `directory` adds O_DIRECTORY. */
export function openReadOnly(path: string, directory = false): OwnedFd {
  const O_CLOEXEC = 0o2000000;
  const O_DIRECTORY = 0o200000;
  const result = getLibc().open(
    pathBytes(path) as Uint8Array<ArrayBuffer>,
    O_CLOEXEC | (directory ? O_DIRECTORY : 0),
    0,
  );
  if (result < 0) {
    throw new SyscallError(`open ${path}`, lastErrno());
  }
  return new OwnedFd(result);
}

/** pread(2) into `buffer` at `offset`; returns bytes read, or -errno. */
export function preadFd(
  fd: number,
  buffer: Uint8Array,
  offset: bigint,
): number {
  const result = Number(
    getLibc().pread(
      fd,
      buffer as Uint8Array<ArrayBuffer>,
      BigInt(buffer.byteLength),
      offset,
    ),
  );
  return result < 0 ? -lastErrno() : result;
}

/**
 * open(2) read-write (with O_CLOEXEC), never creating: for writing into a
 * guest RAM file that must already exist.
 */
export function openReadWrite(path: string): OwnedFd {
  const O_RDWR = 2;
  const O_CLOEXEC = 0o2000000;
  const result = getLibc().open(
    pathBytes(path) as Uint8Array<ArrayBuffer>,
    O_RDWR | O_CLOEXEC,
    0,
  );
  if (result < 0) {
    throw new SyscallError(`open ${path} for writing`, lastErrno());
  }
  return new OwnedFd(result);
}

/** pwrite(2) of `buffer` at `offset`; returns bytes written, or -errno. */
export function pwriteFd(
  fd: number,
  buffer: Uint8Array,
  offset: bigint,
): number {
  const result = Number(
    getLibc().pwrite(
      fd,
      buffer as Uint8Array<ArrayBuffer>,
      BigInt(buffer.byteLength),
      offset,
    ),
  );
  return result < 0 ? -lastErrno() : result;
}

/** The key/value lines of `/proc/self/fdinfo/FD` (memlock, frozen, map_id, ...). */
export function readFdinfo(
  fd: number,
  pid: number | "self" = "self",
): Map<string, string> {
  const text = Deno.readTextFileSync(`/proc/${pid}/fdinfo/${fd}`);
  const fields = new Map<string, string>();
  for (const line of text.split("\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) {
      fields.set(line.slice(0, colon), line.slice(colon + 1).trim());
    }
  }
  return fields;
}

/**
 * BPF_MAP_UPDATE_BATCH: writes `count` keys and values (packed) in one call.
 * Returns how many were written before an error, which is thrown.
 */
export function mapUpdateBatch(
  fd: number,
  keys: Uint8Array,
  values: Uint8Array,
  count: number,
  elemFlags = 0n,
): number {
  const f = BATCH_ATTR.fields;
  const view = freshAttr();
  put(view, f.keys, addressOf(keys));
  put(view, f.values, addressOf(values));
  put(view, f.count, count);
  put(view, f.map_fd, fd);
  put(view, f.elem_flags, elemFlags);
  const result = rawBpf(BpfCommand.MAP_UPDATE_BATCH);
  const done = getU32(view, f.count);
  checked(
    BpfCommand.MAP_UPDATE_BATCH,
    result,
    `map fd ${fd}, ${done} of ${count} written`,
  );
  return done;
}

/** The raw bpf() call for command encoders kept in other files (`prog.ts`): `-errno` on failure, never throws. */
export { rawBpf };
