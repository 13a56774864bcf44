// SPDX-License-Identifier: GPL-2.0-only
/*
 * sysctl and device enforcement with cgroup BPF. Every task of a cgroup-v2
 * subtree passes through these programs; returning 0 makes the operation
 * fail (EPERM, or the rule's errno via bpf_set_retval, 5.18+).
 *
 *   enf_sysctl   read()/write() of a /proc/sys file          (5.2+)
 *   enf_dev      open of a device node (read/write), mknod    (4.15+)
 *
 * A cgroup/sysctl program runs at the read or write itself, not at open, so
 * a denied write fails in write(2) and nothing is changed. cgroup/dev is the
 * cgroup-v2 form of the v1 devices controller; in a hybrid layout a v1
 * devices cgroup still applies on top.
 *
 * Rules are data (kerneye/enforce_abi.h): up to ENF_SYS_MAX_RULES rules in
 * an array. Sysctl rules are found by one lookup of the full name in an LPM
 * trie of name bytes: prefix rules are stored with the prefix's bits, exact
 * names with their terminating NUL, and user space pre-merges the slot masks
 * so that the longest match carries every rule covering the name. Device
 * rules are few; their slots are in kerneye_sys_cfg.dev_mask and each is
 * matched on type, major, minor (ENF_DEV_ANY = wildcard) and access, like
 * the v1 controller's "c 1:3 rwm" entries. Of the candidates the lowest
 * priority wins (deny wins ties); ENFORCE sets decide, MONITOR sets only
 * report, as in cgroup_net.bpf.c.
 *
 * Binary qualifiers read kerneye_execve_map as cgroup_net.bpf.c does; the
 * rule walk's choice, counters and report header are lib/enforce.bpf.h's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "compiler.h"
#include "kerneye/enforce_abi.h"
#include "enforce.bpf.h"

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_SYS_MAX_RULES);
	__type(key, __u32);
	__type(value, struct enf_sys_rule);
} kerneye_sys_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_SYS_MAX_SETS);
	__type(key, __u32);
	__type(value, struct enf_net_set);
} kerneye_sys_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_sys_config);
} kerneye_sys_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_sysctl_key);
	__type(value, __u64);
} kerneye_sysctl_names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_SYS_MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_sys_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_sys_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} kerneye_sys_rb SEC(".maps");

/* What one operation looks like to the rules. */
struct sys_op {
	__u8 kind;    /* enum enf_sys_kind */
	__u8 access;  /* enum enf_sys_access bits requested */
	__u8 dev_type;
	__u8 pad;
	__u32 major;
	__u32 minor;
};

struct walk {
	struct enf_walk c; /* first: enf_walk_settle() hands &walk to walk_slot */
	struct sys_op *op;
};

/* One rule slot (bpf_loop() callback, see enf_walk_settle). */
static long walk_slot(__u32 i, struct walk *w)
{
	__u32 slot = i;
	struct enf_sys_rule *r;
	struct sys_op *op = w->op;
	int at = enf_walk_at(&w->c, i, ENF_SYS_MAX_RULES);

	if (at <= 0)
		return at < 0;
	r = bpf_map_lookup_elem(&kerneye_sys_rules, &slot);
	if (!r || !(r->flags & ENF_RULE_USED) || r->kind != op->kind || !(r->access & op->access))
		return 0;
	if (op->kind == ENF_SYS_KIND_DEV) {
		if (r->dev_type && r->dev_type != op->dev_type)
			return 0;
		if (r->major != ENF_DEV_ANY && r->major != op->major)
			return 0;
		if (r->minor != ENF_DEV_ANY && r->minor != op->minor)
			return 0;
	}
	if (!enf_bin_ok(&w->c.bin, r->bin_mask, r->flags & ENF_RULE_BIN_NOT))
		return 0;
	enf_offer(&w->c, &kerneye_sys_sets, r->set, slot, r->priority, r->action);
	return 0;
}

FUNC_INLINE void report(struct sys_op *op, const char *name, struct enf_sys_rule *r, const struct enf_outcome *o)
{
	struct enf_sys_event *e = enf_reserve(&kerneye_sys_rb, sizeof(*e), &kerneye_sys_stats);

	if (!e)
		return;
	enf_msg_common(&e->common, op->kind == ENF_SYS_KIND_DEV ? ENF_SYS_MSG_DEV : ENF_SYS_MSG_SYSCTL, sizeof(*e));
	e->verdict = o->verdict;
	e->flags = o->flags;
	e->action = r->action;
	e->access = op->access;
	e->dev_type = op->dev_type;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->major = op->major;
	e->minor = op->minor;
	e->rule_id = r->id;
	e->err = o->err;
	ENF_FILL_TASK(e);
	if (name)
		__builtin_memcpy(e->name, name, sizeof(e->name));
	else
		__builtin_memset(e->name, 0, sizeof(e->name));
	bpf_ringbuf_submit(e, 0);
}

/* 1 = allow, 0 = deny. name: the sysctl's, or NULL. */
FUNC_INLINE int decide(__u64 mask, struct sys_op *op, const char *name)
{
	struct walk w = { .c.mask = mask, .op = op };
	struct enf_outcome o;
	struct enf_sys_rule *r;

	if (!enf_walk_settle(&w.c, ENF_SYS_MAX_RULES, walk_slot, &w, &o))
		return 1;
	r = bpf_map_lookup_elem(&kerneye_sys_rules, &o.slot);
	if (!r)
		return 1;
	enf_account(&o, r->err, r->flags, &kerneye_sys_hits, &kerneye_sys_stats);
	if (o.report)
		report(op, name, r, &o);
	return enf_retval(&o);
}

SEC("cgroup/sysctl")
int enf_sysctl(struct bpf_sysctl *ctx)
{
	struct enf_sysctl_key k = { .prefixlen = 8 * ENF_SYSCTL_NAME_MAX };
	struct sys_op op = { .kind = ENF_SYS_KIND_SYSCTL };
	__u64 *mask;

	op.access = ctx->write ? ENF_ACC_WRITE : ENF_ACC_READ;
	/* Full name ("kernel/domainname"), NUL-terminated; a name that does not
	 * fit comes back truncated with -E2BIG, which still matches prefixes
	 * (user space refuses rule names that long). The rest of k stays 0. */
	bpf_sysctl_get_name(ctx, k.name, sizeof(k.name), 0);
	mask = bpf_map_lookup_elem(&kerneye_sysctl_names, &k);
	if (!mask)
		return 1;
	return decide(*mask, &op, k.name);
}

SEC("cgroup/dev")
int enf_dev(struct bpf_cgroup_dev_ctx *ctx)
{
	__u32 zero = 0;
	struct enf_sys_config *cfg = bpf_map_lookup_elem(&kerneye_sys_cfg, &zero);
	struct sys_op op = { .kind = ENF_SYS_KIND_DEV };

	if (!cfg || !cfg->dev_mask)
		return 1;
	op.access = ctx->access_type >> 16;
	op.dev_type = ctx->access_type & 0xffff;
	op.major = ctx->major;
	op.minor = ctx->minor;
	return decide(cfg->dev_mask, &op, NULL);
}
