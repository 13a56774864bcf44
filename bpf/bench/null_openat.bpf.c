// SPDX-License-Identifier: GPL-2.0-only
/* Benchmark floor: the cheapest possible program on the openat syscall
 * tracepoint (it drops everything). bench/open_storm.py compares kerneye's
 * non-matching policy with it, on the same workload, in the same run. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("tracepoint/syscalls/sys_enter_openat")
int kerneye_bench_null(void *ctx)
{
	return 0;
}
