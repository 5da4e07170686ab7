import assert from "node:assert/strict";
import { Btf } from "../src/btf/mod.ts";
import {
  CURRENT_SPECIAL_FIELD_RULES,
  findSpecialFields,
  initSpecialFields,
  LEGACY_SPECIAL_FIELD_RULES,
  type SpecialField,
  specialFieldRulesFor,
} from "../src/btf/special_fields.ts";
import { BtfBuilder } from "./btf_builder.ts";

/** The opaque uapi structs as a BPF program's BTF carries them. */
function opaque(
  b: BtfBuilder,
  u64: number,
  u32: number,
): Record<
  | "timer"
  | "wq"
  | "spinLock"
  | "resSpinLock"
  | "refcount"
  | "listHead"
  | "listNode"
  | "rbRoot"
  | "taskWork",
  number
> {
  const u64s = (n: number) => b.array(u64, n);
  const opaqueStruct = (name: string, size: number, type: number) =>
    b.struct(name, size, [{ name: "__opaque", type, bitOffset: 0 }]);
  return {
    timer: opaqueStruct("bpf_timer", 16, u64s(2)),
    wq: opaqueStruct("bpf_wq", 16, u64s(2)),
    spinLock: b.struct("bpf_spin_lock", 4, [{
      name: "val",
      type: u32,
      bitOffset: 0,
    }]),
    resSpinLock: b.struct("bpf_res_spin_lock", 4, [{
      name: "val",
      type: u32,
      bitOffset: 0,
    }]),
    refcount: opaqueStruct("bpf_refcount", 4, b.array(u32, 1)),
    listHead: opaqueStruct("bpf_list_head", 16, u64s(2)),
    listNode: opaqueStruct("bpf_list_node", 24, u64s(3)),
    rbRoot: opaqueStruct("bpf_rb_root", 16, u64s(2)),
    taskWork: opaqueStruct("bpf_task_work", 8, u64s(1)),
  };
}

const at = (name: string, type: number, byte: number) => ({
  name,
  type,
  bitOffset: byte * 8,
});

/**
 * struct value {
 *   u64 counter;                           // 0
 *   struct bpf_timer timer;                // 8
 *   struct bpf_spin_lock lock;             // 24
 *   struct bpf_refcount ref;               // 28
 *   struct task __kptr *owner;             // 32
 *   struct task *plain;                    // 40  (no tag: data)
 *   struct inner { u64 x; struct bpf_wq wq; } inner;  // 48 (wq at 56)
 *   struct task __kptr_untrusted *ptrs[2]; // 72, 80
 *   my_timer_t typedefd;                   // 88 (a typedef hides it, as in the kernel)
 *   struct bpf_list_head head;             // 104
 *   struct bpf_list_node node;             // 120 (never special in a map value)
 *   struct bpf_rb_root root;               // 144
 *   struct task __uptr *user;              // 160
 * };                                       // 168
 */
function valueBtf(): { btf: Btf; value: number; datasec: number } {
  const b = new BtfBuilder();
  const u64 = b.int("unsigned long long", 8);
  const u32 = b.int("unsigned int", 4);
  const s = opaque(b, u64, u32);
  const task = b.struct("task", 8, [at("pid", u64, 0)]);
  const kptr = b.ptr(b.ref(18, task, "kptr"));
  const untrusted = b.ptr(b.ref(18, task, "kptr_untrusted"));
  const uptr = b.ptr(b.ref(18, task, "uptr"));
  const inner = b.struct("inner", 24, [at("x", u64, 0), at("wq", s.wq, 8)]);
  const myTimer = b.ref(8, s.timer, "my_timer_t");
  const value = b.struct("value", 168, [
    at("counter", u64, 0),
    at("timer", s.timer, 8),
    at("lock", s.spinLock, 24),
    at("ref", s.refcount, 28),
    at("owner", kptr, 32),
    at("plain", b.ptr(task), 40),
    at("inner", inner, 48),
    at("ptrs", b.array(untrusted, 2), 72),
    at("typedefd", myTimer, 88),
    at("head", s.listHead, 104),
    at("node", s.listNode, 120),
    at("root", s.rbRoot, 144),
    at("user", uptr, 160),
  ]);
  const lockVar = b.variable("qa_q_lock0", s.resSpinLock);
  const counterVar = b.variable("counter", u64);
  const timerVar = b.variable("wrong_size_timer", s.timer);
  const datasec = b.datasec(".data.qa_q_lock", 40, [
    { type: counterVar, offset: 0, size: 8 },
    { type: lockVar, offset: 8, size: 4 },
    { type: timerVar, offset: 16, size: 8 }, // secinfo size disagrees: ignored
  ]);
  return { btf: Btf.parse(b.build()), value, datasec };
}

const brief = (fields: SpecialField[]) =>
  fields.map((f) => `${f.kind}@${f.offset}+${f.size}`);

Deno.test("findSpecialFields finds what 7.3's btf_parse_fields finds in a map value", () => {
  const { btf, value } = valueBtf();
  assert.deepEqual(
    brief(findSpecialFields(btf, value, CURRENT_SPECIAL_FIELD_RULES)),
    [
      "timer@8+16",
      "spin_lock@24+4",
      "refcount@28+4",
      "kptr@32+8",
      "wq@56+16",
      "kptr@72+8",
      "kptr@80+8",
      "list_head@104+16",
      "rb_root@144+16",
      "uptr@160+8",
    ],
  );
});

Deno.test("findSpecialFields under 6.1's rules: direct timers, locks and kptr/kptr_ref only", () => {
  const { btf, value } = valueBtf();
  assert.deepEqual(
    brief(findSpecialFields(btf, value, LEGACY_SPECIAL_FIELD_RULES)),
    ["timer@8+16", "spin_lock@24+4", "kptr@32+8"],
  );
});

Deno.test("findSpecialFields reads data sections (global data) by variable, checking sizes", () => {
  const { btf, datasec } = valueBtf();
  assert.deepEqual(
    brief(findSpecialFields(btf, datasec, CURRENT_SPECIAL_FIELD_RULES)),
    ["res_spin_lock@8+4"],
  );
  // 6.12 has no bpf_res_spin_lock: there it is plain data
  const noResLock = {
    ...CURRENT_SPECIAL_FIELD_RULES,
    kinds: new Set(
      [...CURRENT_SPECIAL_FIELD_RULES.kinds].filter((k) =>
        k !== "res_spin_lock"
      ),
    ),
  };
  assert.deepEqual(findSpecialFields(btf, datasec, noResLock), []);
  assert.deepEqual(findSpecialFields(btf, 0, CURRENT_SPECIAL_FIELD_RULES), []);
});

Deno.test("initSpecialFields does what bpf_obj_init does to a copy, also for a window of the value", () => {
  const fields: SpecialField[] = [
    { kind: "timer", offset: 8, size: 16 },
    { kind: "refcount", offset: 28, size: 4 },
  ];
  const whole = new Uint8Array(32).fill(0xaa);
  initSpecialFields(fields, whole);
  assert.deepEqual(
    [...whole],
    [
      ...Array(8).fill(0xaa),
      ...Array(16).fill(0),
      0xaa,
      0xaa,
      0xaa,
      0xaa,
      1,
      0,
      0,
      0,
    ],
  );
  // bytes 4..12 of the value: the first 4 bytes of the timer are cleared
  const window = new Uint8Array(8).fill(0xbb);
  initSpecialFields(fields, window, 4);
  assert.deepEqual([...window], [0xbb, 0xbb, 0xbb, 0xbb, 0, 0, 0, 0]);
  // a window that starts inside the refcount: zeros only (its low byte is outside)
  const tail = new Uint8Array(2).fill(0xcc);
  initSpecialFields(fields, tail, 30);
  assert.deepEqual([...tail], [0, 0]);
});

Deno.test("specialFieldRulesFor takes the kinds from the kernel's enum btf_field_type and nesting from the release", () => {
  const b = new BtfBuilder();
  b.enum("btf_field_type", 4, [
    ["BPF_SPIN_LOCK", 1],
    ["BPF_TIMER", 2],
    ["BPF_KPTR_UNREF", 4],
    ["BPF_KPTR_REF", 8],
    ["BPF_KPTR_PERCPU", 16],
    ["BPF_LIST_HEAD", 32],
    ["BPF_LIST_NODE", 64],
    ["BPF_RB_ROOT", 128],
    ["BPF_RB_NODE", 256],
    ["BPF_REFCOUNT", 512],
    ["BPF_WORKQUEUE", 1024],
  ]);
  const v612 = Btf.parse(b.build());
  const rules = specialFieldRulesFor(v612, "6.12.117+deb13-cloud-amd64");
  assert.deepEqual([...rules.kinds].sort(), [
    "kptr",
    "list_head",
    "rb_root",
    "refcount",
    "spin_lock",
    "timer",
    "wq",
  ]);
  assert.equal(rules.nested, true);
  assert.deepEqual([...rules.pointerTags.keys()].sort(), [
    "kptr",
    "kptr_untrusted",
    "percpu_kptr",
  ]);
  assert.equal(specialFieldRulesFor(v612, "6.10.3").nested, false);
  assert.equal(specialFieldRulesFor(v612, "7.3.4+deb13").nested, true);
  const none = Btf.parse(new BtfBuilder().build());
  assert.equal(
    specialFieldRulesFor(none, "6.1.0-56-cloud-amd64"),
    LEGACY_SPECIAL_FIELD_RULES,
  );
  // 6.1's own enum btf_field_type (private to kernel/bpf/btf.c) is in its BTF too
  const b61 = new BtfBuilder();
  b61.enum("btf_field_type", 4, [
    ["BTF_FIELD_SPIN_LOCK", 0],
    ["BTF_FIELD_TIMER", 1],
    ["BTF_FIELD_KPTR", 2],
  ]);
  assert.equal(
    specialFieldRulesFor(Btf.parse(b61.build()), "6.1.0-56-cloud-amd64"),
    LEGACY_SPECIAL_FIELD_RULES,
  );
});
