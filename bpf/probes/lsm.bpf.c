// SPDX-License-Identifier: GPL-2.0-only
/* Feature probe: can a BPF-LSM program be loaded and attached? */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("lsm/file_open")
int BPF_PROG(kerneye_probe_lsm, struct file *file)
{
	return 0;
}
