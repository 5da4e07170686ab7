/**
 * Runs 10,000+ accessor operations and prints the process's open-fd count
 * before and after, as JSON. Spawned by the fd-leak test so that no other
 * test shares the process.
 *
 * @module
 */

import { BpfSyscallAccessor } from "../../src/accessor/syscall.ts";
import { mapGetInfo } from "../../src/sys/bpf.ts";
import { MapType } from "../../src/sys/constants.ts";
import { openFdCount, u32, u64, uniqueName } from "./maps.ts";

const accessor = new BpfSyscallAccessor();
using hashFd = BpfSyscallAccessor.createMap({
  type: MapType.HASH,
  keySize: 4,
  valueSize: 8,
  maxEntries: 16,
  name: uniqueName("fd_hash"),
});
using arrayFd = BpfSyscallAccessor.createMap({
  type: MapType.ARRAY,
  keySize: 4,
  valueSize: 8,
  maxEntries: 4,
  name: uniqueName("fd_array"),
});
const hash = accessor.mapById(mapGetInfo(hashFd.fd).id)!;
const array = accessor.mapById(mapGetInfo(arrayFd.fd).id)!;
const before = openFdCount();
let operations = 0;
for (let i = 0; i < 2000; i++) {
  accessor.update(hash, u32(i % 16), u64(BigInt(i)));
  accessor.readArray(array, i % 4);
  [...accessor.iterHashMap(hash)];
  accessor.mapById(hash.id);
  // An abandoned iterator must release its fd too.
  for (const _ of accessor.iterHashMap(hash)) break;
  operations += 5;
}
accessor.maps();
console.log(JSON.stringify({ before, after: openFdCount(), operations }));
