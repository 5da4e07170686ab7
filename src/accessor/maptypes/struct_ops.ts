/**
 * STRUCT_OPS: the one value (key 0), typed with vmlinux BTF.
 *
 * The value's type is `btf_vmlinux_value_type_id`, a
 * `struct bpf_struct_ops_<name>` of `common` (refcnt, state) and `data`,
 * the kernel struct itself (e.g. `tcp_congestion_ops`). A user-space lookup
 * copies the value user space gave at registration, except that the kernel
 * replaced every function-pointer member (where user space put a program
 * fd) with the attached program's id (`bpf_struct_ops_map_update_elem`
 * stores `prog->aux->id`), and `common` carries the live state and
 * refcount. So a function-pointer member is shown as a program id, named
 * through BPF_PROG_GET_FD_BY_ID; 0 means the member is not implemented.
 *
 * @module
 */

import { MapTypeError, MapUnreadableError } from "../../errors.ts";
import { Btf } from "../../btf/btf.ts";
import { BtfKind } from "../../btf/kind.ts";
import type { BtfMember } from "../../btf/types.ts";
import { loadKernelBtf } from "../../btf/load.ts";
import { type RenderedValue, renderValue } from "../../btf/render.ts";
import {
  btfGetFdById,
  btfGetInfo,
  mapGetFdById,
  mapGetInfo,
  mapLookupElem,
  OpenFlag,
} from "../../sys/bpf.ts";
import { MapType } from "../../sys/constants.ts";
import { progInfoById } from "../../sys/prog.ts";
import type { BpfMapInfo } from "../types.ts";

/** One member of the kernel struct (`data`). */
export interface StructOpsMember {
  /** Member name. */
  name: string;
  /** Byte offset within `data`. */
  offset: number;
  /** `"prog"` for a function pointer, `"data"` otherwise. */
  kind: "prog" | "data";
  /** Function pointers: the attached program's id (0 = not implemented). */
  progId?: number;
  /** That program's name, when it still exists. */
  progName?: string;
  /** Data members: the typed value. */
  value?: RenderedValue;
}

/** A struct_ops map's value, typed. */
export interface StructOpsDump {
  /** Always `"struct_ops"`. */
  kind: "struct_ops";
  /** The kernel struct's name, e.g. `tcp_congestion_ops`. */
  structName: string;
  /** `common.state` by its enumerator name, e.g. `BPF_STRUCT_OPS_STATE_INUSE`. */
  state: string;
  /** `common.refcnt`. */
  refcnt: number;
  /** The kernel struct's members in declaration order. */
  members: StructOpsMember[];
  /** The raw value bytes. */
  value: Uint8Array;
  /** The whole value rendered as bpftool does (its `formatted.value`). */
  formatted: RenderedValue;
}

let vmlinux: Btf | undefined;

/**
 * The BTF the value type lives in: vmlinux, or for a struct_ops type a
 * module defines, that module's BTF split on vmlinux (`btf_vmlinux_id`,
 * 6.9+; older kernels report 0 and only vmlinux types exist there).
 */
function valueBtf(mapFd: number): Btf {
  const kernel = vmlinux ??= loadKernelBtf();
  const btfId = mapGetInfo(mapFd).btfVmlinuxId;
  if (btfId === 0) return kernel;
  using btfFd = btfGetFdById(btfId);
  const info = btfGetInfo(btfFd.fd);
  return info.name === "vmlinux"
    ? kernel
    : Btf.parse(info.bytes, { base: kernel });
}

function memberNamed(
  btf: Btf,
  typeId: number,
  name: string,
): BtfMember | undefined {
  const type = btf.type(btf.resolve(typeId));
  if (type.kind !== BtfKind.STRUCT) return undefined;
  return type.members.find((member) => member.name === name);
}

function isFunctionPointer(btf: Btf, typeId: number): boolean {
  const type = btf.type(btf.resolve(typeId));
  return type.kind === BtfKind.PTR &&
    btf.type(btf.resolve(type.type)).kind === BtfKind.FUNC_PROTO;
}

/**
 * The value of a live STRUCT_OPS map with its kernel struct's members
 * typed, function pointers as program ids and names.
 *
 * @param map the struct_ops map
 * @param btf the BTF the value type lives in (default: vmlinux, or the
 *   module BTF the kernel names in `btf_vmlinux_id`)
 */
export function readStructOpsLive(map: BpfMapInfo, btf?: Btf): StructOpsDump {
  if (map.type !== MapType.STRUCT_OPS) {
    throw new MapTypeError(map, map.type, "a STRUCT_OPS map");
  }
  using fd = mapGetFdById(map.id, OpenFlag.RDONLY);
  const kernel = btf ?? valueBtf(fd.fd);
  const value = new Uint8Array(map.valueSize);
  if (!mapLookupElem(fd.fd, new Uint8Array(4), value)) {
    throw new MapUnreadableError(map, "key 0 has no value");
  }
  return structOpsDumpFromValue(kernel, map, value, (progId) => {
    try {
      return progInfoById(progId)?.name;
    } catch {
      // A program id that no longer opens leaves the member unnamed, not the dump unread.
      return undefined;
    }
  });
}

/**
 * A struct_ops map's value (as bpf() returns it: program ids where the
 * function pointers go) typed with the BTF its value type lives in. Shared
 * by the backends, so a guest's struct_ops dump is the live one's.
 *
 * @param btf the BTF holding `map.btfVmlinuxValueTypeId`
 * @param map the struct_ops map
 * @param value the map's value (`valueSize` bytes)
 * @param programName the name of a program by id, undefined when it is gone
 * @throws {MapUnreadableError} when the type is not a struct_ops value
 */
export function structOpsDumpFromValue(
  btf: Btf,
  map: BpfMapInfo,
  value: Uint8Array,
  programName: (progId: number) => string | undefined,
): StructOpsDump {
  const kernel = btf;
  const valueTypeId = map.btfVmlinuxValueTypeId;
  const valueType = valueTypeId > 0 && valueTypeId < kernel.typeCount
    ? kernel.type(kernel.resolve(valueTypeId))
    : undefined;
  const common = valueType
    ? memberNamed(kernel, valueTypeId, "common")
    : undefined;
  const data = valueType ? memberNamed(kernel, valueTypeId, "data") : undefined;
  if (!valueType || valueType.kind !== BtfKind.STRUCT || !common || !data) {
    throw new MapUnreadableError(
      map,
      `kernel BTF type ${valueTypeId} is not a struct_ops value (common + data)`,
    );
  }
  if (value.byteLength < valueType.size) {
    throw new MapUnreadableError(
      map,
      `its value is ${value.byteLength} bytes, shorter than struct ${valueType.name} (${valueType.size})`,
    );
  }
  const formatted = renderValue(kernel, valueTypeId, value, {
    style: "bpftool",
  });
  const commonValue = renderValue(
    kernel,
    common.type,
    value.subarray(common.bitOffset / 8),
  ) as { refcnt?: { refs?: { counter?: number } }; state?: RenderedValue };
  const dataOffset = data.bitOffset / 8;
  const dataType = kernel.type(kernel.resolve(data.type));
  const members: StructOpsMember[] = [];
  const view = new DataView(value.buffer, value.byteOffset, value.byteLength);
  if (dataType.kind === BtfKind.STRUCT) {
    for (const member of dataType.members) {
      const offset = member.bitOffset / 8;
      if (isFunctionPointer(kernel, member.type)) {
        const progId = Number(view.getBigUint64(dataOffset + offset, true));
        const entry: StructOpsMember = {
          name: member.name,
          offset,
          kind: "prog",
          progId,
        };
        if (progId !== 0) {
          const name = programName(progId);
          if (name !== undefined) entry.progName = name;
        }
        members.push(entry);
      } else if (member.bitfieldSize === 0) {
        members.push({
          name: member.name,
          offset,
          kind: "data",
          value: renderValue(
            kernel,
            member.type,
            value.subarray(dataOffset + offset),
          ),
        });
      }
    }
  }
  return {
    kind: "struct_ops",
    structName: dataType.name,
    state: String(commonValue.state ?? ""),
    refcnt: Number(commonValue.refcnt?.refs?.counter ?? 0),
    members,
    value,
    formatted,
  };
}
