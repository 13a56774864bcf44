// SPDX-License-Identifier: GPL-2.0-only
/* Feature probe: may a raw_tp program call bpf_get_attach_cookie()? (v6.10+;
 * older kernels reject the whole program at load). Loaded, never attached. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("raw_tp")
int kerneye_probe_rawtp_cookie(struct bpf_raw_tracepoint_args *ctx)
{
	return bpf_get_attach_cookie(ctx) == 0;
}
