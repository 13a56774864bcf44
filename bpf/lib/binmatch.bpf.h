/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* matchBinaries support: which binary-filter slots an exec'd path matches.
 * Evaluated once per exec (three map lookups); selectors then test a bit. */
#ifndef KERNEYE_BINMATCH_H
#define KERNEYE_BINMATCH_H

#include "path.bpf.h"

struct bin_scratch {
	struct gen_str_key key;
	struct gen_str_key rkey;
	__u32 len;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bin_scratch);
} kerneye_bin_scratch SEC(".maps");

static long bin_reverse(__u64 i, void *ctx)
{
	__u32 zero = 0;
	struct bin_scratch *b = bpf_map_lookup_elem(&kerneye_bin_scratch, &zero);
	__u32 j;

	if (!b || i >= b->len || i >= GEN_POSTFIX_MAX)
		return 1;
	j = b->len - 1 - i;
	if (j >= GEN_STR_MAX)
		return 1;
	b->rkey.s[i & (GEN_POSTFIX_MAX - 1)] = b->key.s[j];
	return 0;
}

/* Slots matched by the kernel string at src (exact, prefix, postfix). */
FUNC_INLINE __u64 bin_slots(const char *src)
{
	__u32 zero = 0;
	struct bin_scratch *b = bpf_map_lookup_elem(&kerneye_bin_scratch, &zero);
	__u64 mask = 0, *v;
	long n;

	if (!b)
		return 0;
	__builtin_memset(&b->key, 0, sizeof(b->key));
	__builtin_memset(&b->rkey, 0, sizeof(b->rkey));
	n = bpf_probe_read_kernel_str(b->key.s, GEN_STR_MAX, src);
	if (n <= 1 || n >= GEN_STR_MAX)
		return 0; /* empty, or too long to match any filter */
	b->len = n - 1;
	v = bpf_map_lookup_elem(&kerneye_bin_names, &b->key);
	if (v)
		mask |= *v;
	b->key.prefixlen = 32 + b->len * 8;
	v = bpf_map_lookup_elem(&kerneye_bin_prefix, &b->key);
	if (v)
		mask |= *v;
	bpf_loop(GEN_POSTFIX_MAX, bin_reverse, NULL, 0);
	b->rkey.prefixlen = 32 + (b->len > GEN_POSTFIX_MAX ? GEN_POSTFIX_MAX : b->len) * 8;
	v = bpf_map_lookup_elem(&kerneye_bin_postfix, &b->rkey);
	if (v)
		mask |= *v;
	return mask;
}

#endif
