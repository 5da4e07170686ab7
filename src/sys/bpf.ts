/**
 * Typed wrappers over the bpf() commands bpfmap uses, one per command, each
 * encoding its `union bpf_attr` layout at explicit offsets.
 *
 * Every attr and info buffer is zeroed before each call: the kernel rejects
 * non-zero bytes it does not know (E2BIG) and, since 6.18, echoes caller bytes
 * back for fields it does not fill.
 *
 * @module
 */

import { BPF_OBJ_NAME_LEN, BpfCommand, Errno } from "./constants.ts";
import { BpfError, SyscallError } from "./errors.ts";
import { addressOf, getLibc, lastErrno } from "./ffi.ts";
import { OwnedFd } from "./fd.ts";

const SYS_BPF = 321n;
const SYS_PIDFD_OPEN = 434n;
const SYS_PIDFD_GETFD = 438n;

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
      SYS_BPF,
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
    throw new RangeError(
      `Map name "${name}" is ${bytes.length} bytes; the kernel allows at most ${
        BPF_OBJ_NAME_LEN - 1
      }`,
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
  const view = freshAttr();
  view.setUint32(0, attr.type, true);
  view.setUint32(4, attr.keySize, true);
  view.setUint32(8, attr.valueSize, true);
  view.setUint32(12, attr.maxEntries, true);
  view.setUint32(16, attr.flags ?? 0, true);
  view.setUint32(20, attr.innerMapFd ?? 0, true);
  if (attr.name) encodeName(view, 28, attr.name);
  view.setUint32(48, attr.btfFd ?? 0, true);
  view.setUint32(52, attr.btfKeyTypeId ?? 0, true);
  view.setUint32(56, attr.btfValueTypeId ?? 0, true);
  view.setBigUint64(64, attr.mapExtra ?? 0n, true);
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
  const view = freshAttr();
  view.setUint32(0, fd, true);
  view.setBigUint64(8, key ? addressOf(key) : 0n, true);
  view.setBigUint64(16, value ? addressOf(value) : 0n, true);
  view.setBigUint64(24, flags, true);
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
  view.setUint32(0, fd, true);
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
  readonly #attr = new Uint8Array(new ArrayBuffer(64));
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
   * One LOOKUP_BATCH call from the current cursor. Returns how many elements
   * were written and the errno (0, ENOENT at the end, ENOSPC when the next
   * bucket does not fit, or another error). On success the cursor advances.
   */
  next(fd: number): { count: number; errno: number } {
    const view = this.#view;
    this.#attr.fill(0);
    view.setBigUint64(0, this.#started ? addressOf(this.#inCursor) : 0n, true);
    view.setBigUint64(8, addressOf(this.#outCursor), true);
    view.setBigUint64(16, addressOf(this.keys), true);
    view.setBigUint64(24, addressOf(this.values), true);
    view.setUint32(32, this.capacity, true);
    view.setUint32(36, fd, true);
    const result = rawBpf(BpfCommand.MAP_LOOKUP_BATCH, this.#attr);
    const count = view.getUint32(32, true);
    const errno = result < 0 ? -result : 0;
    if (errno === 0 || errno === Errno.ENOENT) {
      this.#inCursor.set(this.#outCursor);
      this.#started = true;
    }
    return { count: errno === 0 || errno === Errno.ENOENT ? count : 0, errno };
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
  view.setUint32(0, startId, true);
  const result = rawBpf(command);
  if (result === -Errno.ENOENT) return null;
  checked(command, result, `after id ${startId}`);
  return view.getUint32(4, true);
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
  view.setUint32(0, id, true);
  view.setUint32(8, openFlags, true);
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
  view.setUint32(0, id, true);
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

const MAP_INFO_SIZE = 104;

function getInfo(fd: number, info: Uint8Array, what: string): number {
  info.fill(0);
  const view = freshAttr();
  view.setUint32(0, fd, true);
  view.setUint32(4, info.byteLength, true);
  view.setBigUint64(8, addressOf(info), true);
  checked(
    BpfCommand.OBJ_GET_INFO_BY_FD,
    rawBpf(BpfCommand.OBJ_GET_INFO_BY_FD),
    `${what} fd ${fd}`,
  );
  return view.getUint32(4, true);
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
  return {
    type: view.getUint32(0, true),
    id: view.getUint32(4, true),
    keySize: view.getUint32(8, true),
    valueSize: view.getUint32(12, true),
    maxEntries: view.getUint32(16, true),
    flags: view.getUint32(20, true),
    name: cString(info.subarray(24, 40)),
    ifindex: view.getUint32(40, true),
    btfVmlinuxValueTypeId: view.getUint32(44, true),
    netnsDev: view.getBigUint64(48, true),
    netnsIno: view.getBigUint64(56, true),
    btfId: view.getUint32(64, true),
    btfKeyTypeId: view.getUint32(68, true),
    btfValueTypeId: view.getUint32(72, true),
    btfVmlinuxId: view.getUint32(76, true),
    mapExtra: view.getBigUint64(80, true),
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
  const info = new Uint8Array(new ArrayBuffer(32));
  const view = new DataView(info.buffer);
  let size = 0;
  let nameBuffer = new Uint8Array(new ArrayBuffer(64));
  for (let attempt = 0; attempt < 4; attempt++) {
    const bytes = new Uint8Array(new ArrayBuffer(Math.max(size, 1)));
    info.fill(0);
    view.setBigUint64(0, size > 0 ? addressOf(bytes) : 0n, true);
    view.setUint32(8, size, true);
    view.setBigUint64(16, addressOf(nameBuffer), true);
    view.setUint32(24, nameBuffer.byteLength, true);
    const attr = freshAttr();
    attr.setUint32(0, fd, true);
    attr.setUint32(4, 32, true);
    attr.setBigUint64(8, addressOf(info), true);
    const result = rawBpf(BpfCommand.OBJ_GET_INFO_BY_FD);
    if (result === -Errno.ENOSPC) {
      nameBuffer = new Uint8Array(new ArrayBuffer(nameBuffer.byteLength * 4));
      continue;
    }
    checked(BpfCommand.OBJ_GET_INFO_BY_FD, result, `btf fd ${fd}`);
    const realSize = view.getUint32(8, true);
    if (size > 0 && realSize <= size) {
      return {
        id: view.getUint32(12, true),
        name: cString(nameBuffer),
        kernelBtf: view.getUint32(28, true) !== 0,
        bytes: bytes.subarray(0, realSize),
      };
    }
    size = realSize;
  }
  throw new Error(`BTF object behind fd ${fd} kept changing size while read`);
}

/** BPF_OBJ_PIN: pins the object to a bpffs path. */
export function objPin(fd: number, path: string): void {
  const bytes = pathBytes(path);
  const view = freshAttr();
  view.setBigUint64(0, addressOf(bytes), true);
  view.setUint32(8, fd, true);
  checked(BpfCommand.OBJ_PIN, rawBpf(BpfCommand.OBJ_PIN), `pin to ${path}`);
}

/** BPF_OBJ_GET: opens a pinned object. */
export function objGet(path: string, openFlags = 0): OwnedFd {
  const bytes = pathBytes(path);
  const view = freshAttr();
  view.setBigUint64(0, addressOf(bytes), true);
  view.setUint32(12, openFlags, true);
  return new OwnedFd(
    checked(BpfCommand.OBJ_GET, rawBpf(BpfCommand.OBJ_GET), `open pin ${path}`),
  );
}

/** BPF_BTF_LOAD: uploads a BTF blob; on failure the verifier log is in the error. */
export function btfLoad(blob: Uint8Array): OwnedFd {
  const log = new Uint8Array(new ArrayBuffer(64 * 1024));
  const data = new Uint8Array(new ArrayBuffer(blob.byteLength));
  data.set(blob);
  const view = freshAttr();
  view.setBigUint64(0, addressOf(data), true);
  view.setBigUint64(8, addressOf(log), true);
  view.setUint32(16, data.byteLength, true);
  view.setUint32(20, log.byteLength, true);
  view.setUint32(24, 1, true);
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
    getLibc().syscall3(SYS_PIDFD_OPEN, BigInt(pid), thread ? 0x80n : 0n, 0n),
  );
  if (result < 0) {
    throw new SyscallError(`pidfd_open(${pid})`, lastErrno());
  }
  return new OwnedFd(result);
}

/** pidfd_getfd(2): a copy of another process's fd. */
export function pidfdGetfd(pidfd: number, targetFd: number): OwnedFd {
  const result = Number(
    getLibc().syscall3(SYS_PIDFD_GETFD, BigInt(pidfd), BigInt(targetFd), 0n),
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
  const view = freshAttr();
  view.setBigUint64(16, addressOf(keys), true);
  view.setBigUint64(24, addressOf(values), true);
  view.setUint32(32, count, true);
  view.setUint32(36, fd, true);
  view.setBigUint64(40, elemFlags, true);
  const result = rawBpf(BpfCommand.MAP_UPDATE_BATCH);
  const done = view.getUint32(32, true);
  checked(
    BpfCommand.MAP_UPDATE_BATCH,
    result,
    `map fd ${fd}, ${done} of ${count} written`,
  );
  return done;
}

/** The raw bpf() call for command encoders kept in other files (`prog.ts`): `-errno` on failure, never throws. */
export { rawBpf };
