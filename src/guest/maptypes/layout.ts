/**
 * Offsets of the structs behind the map types that are not keyed (ring
 * buffers, queues, bloom filters, LPM tries, stack maps, fd arrays), from
 * the guest's own vmlinux BTF. Each family is null when its struct is not in
 * the guest's BTF (an older kernel, or a kernel built without it), so one
 * missing type never stops the others.
 *
 * Kept apart from `../layout.ts` so the core offsets every image needs stay
 * independent of these optional ones.
 *
 * @module
 */

import { type Btf, BtfKind } from "../../btf/mod.ts";
import { GuestKernelError } from "../errors.ts";

/** `struct bpf_ringbuf_map` and `struct bpf_ringbuf`. */
export interface RingbufLayout {
  /** `bpf_ringbuf_map.rb` (pointer). */
  rb: number;
  /** `bpf_ringbuf.mask` (u64): data size - 1. */
  mask: number;
  /** `bpf_ringbuf.consumer_pos` (unsigned long). */
  consumerPos: number;
  /** `bpf_ringbuf.producer_pos` (unsigned long). */
  producerPos: number;
  /** `bpf_ringbuf.data`: the data pages, vmapped twice in a row. */
  data: number;
}

/** `struct bpf_queue_stack`. */
export interface QueueStackLayout {
  /** `head` (u32): the next slot a push writes. */
  head: number;
  /** `tail` (u32): the oldest element. */
  tail: number;
  /** `size` (u32): `max_entries + 1`. */
  size: number;
  /** `elements`: `size` slots of `value_size` bytes. */
  elements: number;
}

/** `struct bpf_bloom_filter`. */
export interface BloomLayout {
  /** `bitset_mask` (u32): bit count - 1. */
  bitsetMask: number;
  /** `hash_seed` (u32). */
  hashSeed: number;
  /** `nr_hash_funcs` (u32). */
  nrHashFuncs: number;
  /** `bitset` (unsigned long[]). */
  bitset: number;
}

/** `struct lpm_trie` and `struct lpm_trie_node`. */
export interface LpmLayout {
  /** `lpm_trie.root` (pointer). */
  root: number;
  /** `lpm_trie.n_entries` (size_t): real (non-intermediate) nodes. */
  nEntries: number;
  /** `lpm_trie.data_size` (size_t): key bytes after the prefix length. */
  dataSize: number;
  /** `lpm_trie_node.child` (two pointers). */
  child: number;
  /** `lpm_trie_node.prefixlen` (u32). */
  prefixlen: number;
  /** `lpm_trie_node.flags` (u32; bit 0: intermediate). */
  flags: number;
  /** `lpm_trie_node.data`: key data, then the value. */
  data: number;
}

/** `struct bpf_stack_map` and `struct stack_map_bucket`. */
export interface StackMapLayout {
  /** `bpf_stack_map.n_buckets` (u32). */
  nBuckets: number;
  /** `bpf_stack_map.buckets` (pointer array). */
  buckets: number;
  /** `stack_map_bucket.nr` (u32): frames stored. */
  bucketNr: number;
  /** `stack_map_bucket.data`: the frames. */
  bucketData: number;
}

/** `bpf_array.ptrs` and what a program / map slot points at. */
export interface FdArrayLayout {
  /** `bpf_array.ptrs` (pointer array, same offset as `value`). */
  ptrs: number;
  /** `bpf_prog.aux` (pointer). */
  progAux: number;
  /** `bpf_prog_aux.id` (u32). */
  auxId: number;
  /** `bpf_prog_aux.name` (16 bytes). */
  auxName: number;
  /** `bpf_map.id` (u32). */
  mapId: number;
}

/** `struct hlist_head` and `struct hlist_node`: the kernel's hash chains. */
export interface HlistLayout {
  /** `hlist_head.first` (pointer to the first node). */
  hlistFirst: number;
  /** `hlist_node.next` (pointer to the next node). */
  hlistNext: number;
  /** `sizeof(struct hlist_head)`: one bucket of a plain chained table. */
  hlistHeadSize: number;
}

/**
 * `struct bpf_dtab` (DEVMAP's slot array, DEVMAP_HASH's buckets) and
 * `struct bpf_dtab_netdev`, whose `val` is what a lookup copies out.
 */
export interface DevmapLayout extends HlistLayout {
  /** `bpf_dtab.netdev_map` (pointer to `max_entries` pointers; DEVMAP). */
  netdevMap: number;
  /** `bpf_dtab.dev_index_head` (pointer to `n_buckets` hlist heads; DEVMAP_HASH). */
  devIndexHead: number;
  /** `bpf_dtab.n_buckets` (u32). */
  nBuckets: number;
  /** `bpf_dtab_netdev.index_hlist` (the hash chain's node). */
  indexHlist: number;
  /** `bpf_dtab_netdev.xdp_prog` (pointer, null without a program). */
  xdpProg: number;
  /** `bpf_dtab_netdev.idx` (u32): the key. */
  idx: number;
  /** `bpf_dtab_netdev.val` (`struct bpf_devmap_val`). */
  val: number;
}

/** `struct bpf_cpu_map` and `struct bpf_cpu_map_entry`. */
export interface CpumapLayout {
  /** `bpf_cpu_map.cpu_map` (pointer to `max_entries` pointers). */
  cpuMap: number;
  /** `bpf_cpu_map_entry.value` (`struct bpf_cpumap_val`). */
  value: number;
  /** `bpf_cpu_map_entry.prog` (pointer, null without a program). */
  prog: number;
}

/**
 * SOCKMAP (`struct bpf_stab`), SOCKHASH (`struct bpf_shtab` and its
 * buckets and elements), REUSEPORT_SOCKARRAY (`struct reuseport_array`),
 * and the socket cookie every one of them answers a lookup with.
 */
export interface SocketMapLayout extends HlistLayout {
  /** `bpf_stab.sks` (pointer to `max_entries` socket pointers). */
  sks: number;
  /** `bpf_shtab.buckets` (pointer to `buckets_num` buckets). */
  buckets: number;
  /** `bpf_shtab.buckets_num` (u32). */
  bucketsNum: number;
  /** `sizeof(struct bpf_shtab_bucket)`. */
  bucketSize: number;
  /** `bpf_shtab_bucket.head` (hlist head). */
  bucketHead: number;
  /** `bpf_shtab_elem.sk` (pointer). */
  elemSk: number;
  /** `bpf_shtab_elem.node` (the chain's node). */
  elemNode: number;
  /** `bpf_shtab_elem.key` (key bytes). */
  elemKey: number;
  /** `reuseport_array.ptrs` (socket pointers, inline). */
  reuseportPtrs: number;
  /** `sock.__sk_common.skc_cookie` (atomic64; 0 until first asked for). */
  cookie: number;
}

/** Every optional family's offsets. */
export interface MapTypeLayouts {
  /** Ring buffers (null before 5.8). */
  ringbuf: RingbufLayout | null;
  /** Queues and stacks. */
  queueStack: QueueStackLayout | null;
  /** Bloom filters (null before 5.16). */
  bloom: BloomLayout | null;
  /** LPM tries. */
  lpm: LpmLayout | null;
  /** Stack trace maps. */
  stackMap: StackMapLayout | null;
  /** Program arrays and maps of maps. */
  fdArray: FdArrayLayout | null;
  /** DEVMAP and DEVMAP_HASH. */
  devmap: DevmapLayout | null;
  /** CPUMAP. */
  cpumap: CpumapLayout | null;
  /** SOCKMAP, SOCKHASH and REUSEPORT_SOCKARRAY. */
  socketMap: SocketMapLayout | null;
}

function offsetOf(btf: Btf, struct: string, path: string): number {
  const location = btf.memberOffset(struct, path);
  if (location.bitfieldSize !== 0 || location.bitOffset % 8 !== 0) {
    throw new GuestKernelError(
      `${struct}.${path} is a bitfield; bpfmap needs a byte-aligned member`,
    );
  }
  return location.offset;
}

function optional<T>(build: () => T): T | null {
  try {
    return build();
  } catch {
    return null;
  }
}

function sizeOfStruct(btf: Btf, struct: string): number {
  const id = btf.findAllByName(struct, BtfKind.STRUCT)[0];
  if (id === undefined) {
    throw new GuestKernelError(`the guest's BTF has no struct ${struct}`);
  }
  return btf.sizeOf(id);
}

function hlistLayout(btf: Btf): HlistLayout {
  return {
    hlistFirst: offsetOf(btf, "hlist_head", "first"),
    hlistNext: offsetOf(btf, "hlist_node", "next"),
    hlistHeadSize: sizeOfStruct(btf, "hlist_head"),
  };
}

/** Reads every family's offsets from vmlinux BTF; a family whose struct is absent is null. */
export function mapTypeLayoutsFromBtf(btf: Btf): MapTypeLayouts {
  return {
    ringbuf: optional(() => ({
      rb: offsetOf(btf, "bpf_ringbuf_map", "rb"),
      mask: offsetOf(btf, "bpf_ringbuf", "mask"),
      consumerPos: offsetOf(btf, "bpf_ringbuf", "consumer_pos"),
      producerPos: offsetOf(btf, "bpf_ringbuf", "producer_pos"),
      data: offsetOf(btf, "bpf_ringbuf", "data"),
    })),
    queueStack: optional(() => ({
      head: offsetOf(btf, "bpf_queue_stack", "head"),
      tail: offsetOf(btf, "bpf_queue_stack", "tail"),
      size: offsetOf(btf, "bpf_queue_stack", "size"),
      elements: offsetOf(btf, "bpf_queue_stack", "elements"),
    })),
    bloom: optional(() => ({
      bitsetMask: offsetOf(btf, "bpf_bloom_filter", "bitset_mask"),
      hashSeed: offsetOf(btf, "bpf_bloom_filter", "hash_seed"),
      nrHashFuncs: offsetOf(btf, "bpf_bloom_filter", "nr_hash_funcs"),
      bitset: offsetOf(btf, "bpf_bloom_filter", "bitset"),
    })),
    lpm: optional(() => ({
      root: offsetOf(btf, "lpm_trie", "root"),
      nEntries: offsetOf(btf, "lpm_trie", "n_entries"),
      dataSize: offsetOf(btf, "lpm_trie", "data_size"),
      child: offsetOf(btf, "lpm_trie_node", "child"),
      prefixlen: offsetOf(btf, "lpm_trie_node", "prefixlen"),
      flags: offsetOf(btf, "lpm_trie_node", "flags"),
      data: offsetOf(btf, "lpm_trie_node", "data"),
    })),
    stackMap: optional(() => ({
      nBuckets: offsetOf(btf, "bpf_stack_map", "n_buckets"),
      buckets: offsetOf(btf, "bpf_stack_map", "buckets"),
      bucketNr: offsetOf(btf, "stack_map_bucket", "nr"),
      bucketData: offsetOf(btf, "stack_map_bucket", "data"),
    })),
    fdArray: optional(() => ({
      ptrs: offsetOf(btf, "bpf_array", "ptrs"),
      progAux: offsetOf(btf, "bpf_prog", "aux"),
      auxId: offsetOf(btf, "bpf_prog_aux", "id"),
      auxName: offsetOf(btf, "bpf_prog_aux", "name"),
      mapId: offsetOf(btf, "bpf_map", "id"),
    })),
    devmap: optional(() => ({
      ...hlistLayout(btf),
      netdevMap: offsetOf(btf, "bpf_dtab", "netdev_map"),
      devIndexHead: offsetOf(btf, "bpf_dtab", "dev_index_head"),
      nBuckets: offsetOf(btf, "bpf_dtab", "n_buckets"),
      indexHlist: offsetOf(btf, "bpf_dtab_netdev", "index_hlist"),
      xdpProg: offsetOf(btf, "bpf_dtab_netdev", "xdp_prog"),
      idx: offsetOf(btf, "bpf_dtab_netdev", "idx"),
      val: offsetOf(btf, "bpf_dtab_netdev", "val"),
    })),
    cpumap: optional(() => ({
      cpuMap: offsetOf(btf, "bpf_cpu_map", "cpu_map"),
      value: offsetOf(btf, "bpf_cpu_map_entry", "value"),
      prog: offsetOf(btf, "bpf_cpu_map_entry", "prog"),
    })),
    socketMap: optional(() => ({
      ...hlistLayout(btf),
      sks: offsetOf(btf, "bpf_stab", "sks"),
      buckets: offsetOf(btf, "bpf_shtab", "buckets"),
      bucketsNum: offsetOf(btf, "bpf_shtab", "buckets_num"),
      bucketSize: sizeOfStruct(btf, "bpf_shtab_bucket"),
      bucketHead: offsetOf(btf, "bpf_shtab_bucket", "head"),
      elemSk: offsetOf(btf, "bpf_shtab_elem", "sk"),
      elemNode: offsetOf(btf, "bpf_shtab_elem", "node"),
      elemKey: offsetOf(btf, "bpf_shtab_elem", "key"),
      reuseportPtrs: offsetOf(btf, "reuseport_array", "ptrs"),
      cookie: offsetOf(btf, "sock", "__sk_common.skc_cookie"),
    })),
  };
}
