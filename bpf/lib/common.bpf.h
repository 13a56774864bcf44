/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps and helpers shared by every kerneye BPF object.
 *
 * Objects other than the base sensor declare the same maps and have user space
 * hand them the base sensor's map fds (bpf_map__reuse_fd) before load, so one
 * ring buffer and one process map serve all sensors without pinning. */
#ifndef KERNEYE_COMMON_H
#define KERNEYE_COMMON_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "compiler.h"
#include "kerneye/abi.h"

/* All events. Size set by the agent (--rb-size) before load. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} kerneye_events_rb SEC(".maps");

#include "execve_map.bpf.h" /* kerneye_execve_map */

/* Per-CPU loss and error counters, index enum stat_idx. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_stats SEC(".maps");

/* matchBinaries: binary path -> bitmask of binary-filter slots it matches.
 * Exact paths in a hash; prefixes and (reversed) postfixes in LPM tries
 * whose masks user space pre-merges with those of shorter entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, struct gen_str_key);
	__type(value, __u64);
} kerneye_bin_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_str_key);
	__type(value, __u64);
} kerneye_bin_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_str_key);
	__type(value, __u64);
} kerneye_bin_postfix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} kerneye_config_map SEC(".maps");

/* Wake the consumer only once this much is queued; it also drains on a short
 * timer. Waking per record costs the traced task dearly (kernel-facts.md). */
const volatile __u32 cfg_wakeup_bytes = 256 << 10;

FUNC_INLINE void stat_inc(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&kerneye_stats, &idx);

	if (v)
		__sync_fetch_and_add(v, 1);
}

FUNC_INLINE __u64 rb_flags(void)
{
	if (bpf_ringbuf_query(&kerneye_events_rb, BPF_RB_AVAIL_DATA) >= cfg_wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

#endif
