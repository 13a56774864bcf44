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
 * Binary qualifiers read kerneye_execve_map as cgroup_net.bpf.c does;
 * bpf_get_current_pid_tgid() is available to both program types here
 * (bpf_base_func_proto).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "compiler.h"
#include "kerneye/enforce_abi.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1

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

/* The base sensor's process map (same definition as lib/common.bpf.h). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, __u32);
	__type(value, struct execve_map_value);
} kerneye_execve_map SEC(".maps");

/* What one operation looks like to the rules. */
struct sys_op {
	__u8 kind;    /* enum enf_sys_kind */
	__u8 access;  /* enum enf_sys_access bits requested */
	__u8 dev_type;
	__u8 pad;
	__u32 major;
	__u32 minor;
};

struct pick {
	__u32 slot;
	__u32 priority;
	__u32 found;
	__u8 action;
};

struct walk {
	__u64 mask;
	struct sys_op *op;
	struct pick enf;
	struct pick mon;
	__u64 bin_match;
	int bin_known;
};

FUNC_INLINE void count(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);

	if (v)
		*v += 1;
}

FUNC_INLINE void consider(struct pick *p, __u32 slot, struct enf_sys_rule *r)
{
	if (p->found && r->priority > p->priority)
		return;
	if (p->found && r->priority == p->priority &&
	    (p->action == ENF_ACT_DENY || r->action != ENF_ACT_DENY))
		return;
	p->slot = slot;
	p->priority = r->priority;
	p->action = r->action;
	p->found = 1;
}

FUNC_INLINE int bin_ok(struct walk *w, struct enf_sys_rule *r)
{
	if (!r->bin_mask)
		return 1;
	if (!w->bin_known) {
		__u32 tgid = bpf_get_current_pid_tgid() >> 32;
		struct execve_map_value *v = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);

		w->bin_match = v ? v->bin_match : 0;
		w->bin_known = 1;
	}
	if (r->flags & ENF_RULE_BIN_NOT)
		return !(w->bin_match & r->bin_mask);
	return !!(w->bin_match & r->bin_mask);
}

/* One rule slot, run by bpf_loop() (verified once, not per iteration). */
static long walk_slot(__u32 i, struct walk *w)
{
	__u32 slot = i;
	struct enf_sys_rule *r;
	struct enf_net_set *s;
	struct sys_op *op = w->op;
	__u32 set;

	if (i >= ENF_SYS_MAX_RULES || !(w->mask >> i))
		return 1;
	if (!((w->mask >> i) & 1))
		return 0;
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
	if (!bin_ok(w, r))
		return 0;
	set = r->set;
	s = bpf_map_lookup_elem(&kerneye_sys_sets, &set);
	if (!s || s->mode == ENF_MODE_OFF)
		return 0;
	if (s->mode == ENF_MODE_ENFORCE)
		consider(&w->enf, slot, r);
	else
		consider(&w->mon, slot, r);
	return 0;
}

FUNC_INLINE void report(struct sys_op *op, const char *name, struct enf_sys_rule *r, __u8 verdict, __u8 flags,
			__s32 err)
{
	struct enf_sys_event *e = bpf_ringbuf_reserve(&kerneye_sys_rb, sizeof(*e), 0);
	__u64 pid_tgid;

	if (!e) {
		count(&kerneye_sys_stats, ENF_STAT_RB_LOST);
		return;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	e->common.op = op->kind == ENF_SYS_KIND_DEV ? ENF_SYS_MSG_DEV : ENF_SYS_MSG_SYSCTL;
	e->common.flags = 0;
	e->common.pad = 0;
	e->common.size = sizeof(*e);
	e->common.ktime = bpf_ktime_get_ns();
	e->verdict = verdict;
	e->flags = flags;
	e->action = r->action;
	e->access = op->access;
	e->dev_type = op->dev_type;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	e->major = op->major;
	e->minor = op->minor;
	e->rule_id = r->id;
	e->pid = (__u32)pid_tgid;
	e->tgid = pid_tgid >> 32;
	e->err = err;
	e->cgroup_id = bpf_get_current_cgroup_id();
	bpf_get_current_comm(e->comm, sizeof(e->comm));
	if (name)
		__builtin_memcpy(e->name, name, sizeof(e->name));
	else
		__builtin_memset(e->name, 0, sizeof(e->name));
	bpf_ringbuf_submit(e, 0);
}

/* 1 = allow, 0 = deny. name: the sysctl's, or NULL. */
FUNC_INLINE int decide(__u64 mask, struct sys_op *op, const char *name)
{
	struct walk w = { .mask = mask, .op = op };
	struct pick *enf = &w.enf, *mon = &w.mon;
	struct enf_sys_rule *r;

	if (!mask)
		return 1;
	bpf_loop(ENF_SYS_MAX_RULES, walk_slot, &w, 0);
	if (enf->found) {
		r = bpf_map_lookup_elem(&kerneye_sys_rules, &enf->slot);
		if (!r)
			return 1;
		if (enf->action == ENF_ACT_DENY) {
			__s32 err = r->err > 0 && r->err < 4096 ? r->err : EPERM;

			count(&kerneye_sys_hits, enf->slot);
			count(&kerneye_sys_stats, ENF_STAT_DENIED);
			report(op, name, r, ENF_VERDICT_DENY, 0, err);
			if (err != EPERM)
				bpf_set_retval(-err);
			return 0;
		}
	}
	if (mon->found && mon->action == ENF_ACT_DENY) {
		r = bpf_map_lookup_elem(&kerneye_sys_rules, &mon->slot);
		if (r) {
			count(&kerneye_sys_hits, mon->slot);
			count(&kerneye_sys_stats, ENF_STAT_MONITORED);
			report(op, name, r, ENF_VERDICT_ALLOW, ENF_EV_MONITOR, 0);
		}
		return 1;
	}
	if (enf->found) {
		r = bpf_map_lookup_elem(&kerneye_sys_rules, &enf->slot);
		if (r) {
			count(&kerneye_sys_hits, enf->slot);
			count(&kerneye_sys_stats, ENF_STAT_ALLOWED);
			if (r->flags & ENF_RULE_REPORT)
				report(op, name, r, ENF_VERDICT_ALLOW, 0, 0);
		}
	}
	return 1;
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
