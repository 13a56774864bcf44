/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* CO-RE flavours for fields that were renamed across kernel versions. */
#ifndef KERNEYE_CORE_FIXES_H
#define KERNEYE_CORE_FIXES_H

#include <bpf/bpf_core_read.h>

/* kernfs_node.parent became __parent in v6.15 (commit 633488947ef6,
 * "kernfs: Use RCU to access kernfs_node::parent"). */
struct kernfs_node___old {
	struct kernfs_node___old *parent;
} __attribute__((preserve_access_index));

FUNC_INLINE struct kernfs_node *kn_parent(struct kernfs_node *kn)
{
	if (bpf_core_field_exists(kn->__parent))
		return BPF_CORE_READ(kn, __parent);
	return (struct kernfs_node *)BPF_CORE_READ((struct kernfs_node___old *)kn, parent);
}

/* task_struct.loginuid only exists with CONFIG_AUDIT. */
FUNC_INLINE __u32 task_auid(struct task_struct *t)
{
	if (bpf_core_field_exists(t->loginuid))
		return BPF_CORE_READ(t, loginuid.val);
	return 0xffffffff;
}

/* nsproxy.time_ns appeared in v5.6. */
FUNC_INLINE __u32 ns_time(struct nsproxy *p, int for_children)
{
	if (!bpf_core_field_exists(p->time_ns))
		return 0;
	if (for_children)
		return BPF_CORE_READ(p, time_ns_for_children, ns.inum);
	return BPF_CORE_READ(p, time_ns, ns.inum);
}

#endif
