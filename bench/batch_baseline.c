// The C floor for reading a map: BPF_MAP_LOOKUP_BATCH over the whole map,
// raw syscalls, the same batch size bpfmap starts with. Prints entries and
// seconds. Built and run by bench/run.ts; not part of bpfmap.
#include <errno.h>
#include <linux/bpf.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long bpf(int cmd, union bpf_attr *attr) {
  return syscall(__NR_bpf, cmd, attr, sizeof(*attr));
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: %s MAP_ID VALUE_STRIDE [BATCH]\n", argv[0]);
    return 2;
  }
  uint32_t id = strtoul(argv[1], NULL, 10);
  uint32_t stride = strtoul(argv[2], NULL, 10);
  uint32_t batch = argc > 3 ? strtoul(argv[3], NULL, 10) : 4096;
  union bpf_attr attr;
  memset(&attr, 0, sizeof(attr));
  attr.map_id = id;
  int fd = bpf(BPF_MAP_GET_FD_BY_ID, &attr);
  if (fd < 0) { perror("BPF_MAP_GET_FD_BY_ID"); return 1; }
  struct bpf_map_info info;
  memset(&info, 0, sizeof(info));
  memset(&attr, 0, sizeof(attr));
  attr.info.bpf_fd = fd;
  attr.info.info_len = sizeof(info);
  attr.info.info = (uint64_t)(uintptr_t)&info;
  if (bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) < 0) { perror("info"); return 1; }
  size_t cap = batch;
  char *keys = malloc(cap * info.key_size), *values = malloc(cap * stride);
  uint64_t in = 0, out = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  uint64_t total = 0;
  int started = 0;
  for (;;) {
    memset(&attr, 0, sizeof(attr));
    attr.batch.in_batch = started ? (uint64_t)(uintptr_t)&in : 0;
    attr.batch.out_batch = (uint64_t)(uintptr_t)&out;
    attr.batch.keys = (uint64_t)(uintptr_t)keys;
    attr.batch.values = (uint64_t)(uintptr_t)values;
    attr.batch.count = cap;
    attr.batch.map_fd = fd;
    long rc = bpf(BPF_MAP_LOOKUP_BATCH, &attr);
    int err = rc < 0 ? errno : 0;
    if (err == ENOSPC) {
      cap *= 2;
      keys = realloc(keys, cap * info.key_size);
      values = realloc(values, cap * stride);
      continue;
    }
    if (err && err != ENOENT) { perror("BPF_MAP_LOOKUP_BATCH"); return 1; }
    total += attr.batch.count;
    in = out;
    started = 1;
    if (err == ENOENT) break;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  printf("%llu %.6f\n", (unsigned long long)total,
         (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9);
  return 0;
}
