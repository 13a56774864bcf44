/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The base sensor's process map: tgid -> identity of the image it runs now
 * (seeded from /proc at start). Declared once here because every object that
 * reads it (base, generic, the enforcement back ends) must declare it exactly
 * alike for bpf_map__reuse_fd to share the base sensor's map. */
#ifndef KERNEYE_EXECVE_MAP_H
#define KERNEYE_EXECVE_MAP_H

#include "kerneye/abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct execve_map_value);
} kerneye_execve_map SEC(".maps");

#endif /* KERNEYE_EXECVE_MAP_H */
