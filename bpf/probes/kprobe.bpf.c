// SPDX-License-Identifier: GPL-2.0-only
/* Feature probe: can a kprobe be loaded and attached? */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("kprobe/security_file_open")
int BPF_KPROBE(kerneye_probe_kprobe)
{
	return 0;
}
