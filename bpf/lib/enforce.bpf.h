/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* What the enforcement programs (bpf/enforce/cgroup_net.bpf.c,
 * cgroup_sys.bpf.c, lsm.bpf.c) share: the binary qualifier read from the
 * agent's process map, counters, the choice between the rules of a walk,
 * and the common part of a decision report.
 *
 * The objects keep their own rule, candidate and event maps (their layouts
 * are in kerneye/enforce_abi.h); the helpers below take those maps as
 * arguments, and being always inlined they see them as constants, as the
 * verifier requires. Not for objects that include lib/common.bpf.h: both
 * declare kerneye_execve_map. */
#ifndef KERNEYE_ENFORCE_H
#define KERNEYE_ENFORCE_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "compiler.h"
#include "kerneye/enforce_abi.h"

#ifndef EPERM
#define EPERM 1
#endif

/* The base sensor's process map; only bin_match is read. User space hands
 * in the base sensor's map with bpf_map__reuse_fd before load, so that rules
 * with a bin_mask see the matchBinaries bits computed at exec; without it
 * this private copy stays empty and every process reads as bin_match 0. */
#include "execve_map.bpf.h"

/* Add one to a counter of an array (per-CPU in practice: no atomics). */
FUNC_INLINE void enf_count(void *map, __u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(map, &idx);

	if (v)
		*v += 1;
}

/* The errno a denied operation fails with: the rule's, or EPERM. */
FUNC_INLINE __s32 enf_errno(__s32 err)
{
	return err > 0 && err < 4096 ? err : EPERM;
}

/* --- "for these binaries" ---------------------------------------------------- */

/* bin_match of the current process; 0 when the process map does not know
 * it. bpf_get_current_pid_tgid() is in bpf_base_func_proto, so every
 * program type here may call it. */
FUNC_INLINE __u64 enf_bin_match(void)
{
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	struct execve_map_value *v = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);

	return v ? v->bin_match : 0;
}

/* Does a rule's binary qualifier let it apply to a process with bin_match?
 * bin_mask 0 = every process; else some (bin_not: none) of its bits set. */
FUNC_INLINE int enf_bin_applies(__u64 bin_match, __u64 bin_mask, int bin_not)
{
	if (!bin_mask)
		return 1;
	if (bin_not)
		return !(bin_match & bin_mask);
	return !!(bin_match & bin_mask);
}

/* bin_match looked up on first need, for a walk over many rules. */
struct enf_bin {
	__u64 match;
	int known;
};

FUNC_INLINE int enf_bin_ok(struct enf_bin *b, __u64 bin_mask, int bin_not)
{
	if (!bin_mask)
		return 1;
	if (!b->known) {
		b->match = enf_bin_match();
		b->known = 1;
	}
	return enf_bin_applies(b->match, bin_mask, bin_not);
}

/* --- choosing among the rules of a walk (cgroup back ends) --------------------
 * Each candidate rule that applies is offered to the pick of its rule set's
 * track (ENFORCE or MONITOR); the lowest priority number wins, deny wins
 * ties. Then the ENFORCE pick decides, and a MONITOR deny is reported. */

struct enf_pick {
	__u32 slot;
	__u32 priority;
	__u32 found;
	__u8 action;
};

FUNC_INLINE void enf_consider(struct enf_pick *p, __u32 slot, __u32 priority, __u8 action)
{
	if (p->found && priority > p->priority)
		return;
	if (p->found && priority == p->priority && (p->action == ENF_ACT_DENY || action != ENF_ACT_DENY))
		return;
	p->slot = slot;
	p->priority = priority;
	p->action = action;
	p->found = 1;
}

/* The shared head of a rule walk: the candidate slots, the two tracks'
 * picks and the binary qualifier's state. An object's walk struct starts
 * with it and adds what its walk_slot() callback needs. */
struct enf_walk {
	__u64 mask;
	struct enf_pick enf;
	struct enf_pick mon;
	struct enf_bin bin;
};

/* The start of a bpf_loop() callback at slot i: < 0 when no candidate is
 * left (stop the loop), 0 when i is not a candidate, > 0 when it is. */
FUNC_INLINE int enf_walk_at(const struct enf_walk *w, __u32 i, __u32 max_rules)
{
	if (i >= max_rules || !(w->mask >> i))
		return -1;
	return (w->mask >> i) & 1;
}

/* Offer a rule that applies to the pick of its rule set's track; a rule
 * whose set is OFF (or missing) is ignored. sets: the object's array of
 * struct enf_net_set. */
FUNC_INLINE void enf_offer(struct enf_walk *w, void *sets, __u32 set, __u32 slot, __u32 priority, __u8 action)
{
	struct enf_net_set *s = bpf_map_lookup_elem(sets, &set);

	if (!s || s->mode == ENF_MODE_OFF)
		return;
	/* two calls, not a pointer chosen by ?: which clang turns into
	 * arithmetic on stack pointers that the verifier rejects */
	if (s->mode == ENF_MODE_ENFORCE)
		enf_consider(&w->enf, slot, priority, action);
	else
		enf_consider(&w->mon, slot, priority, action);
}

/* What the picks of a walk mean for the operation. */
struct enf_outcome {
	__u32 slot;    /* the deciding rule */
	__u32 stat;    /* enum enf_stat to count */
	__s32 err;     /* errno returned to the caller; 0 when allowed */
	__u8 verdict;  /* enum enf_verdict */
	__u8 flags;    /* enum enf_event_flag */
	__u8 report;   /* send an event */
};

/* Which rule decides: an ENFORCE deny; else a MONITOR deny (reported, the
 * operation goes on); else an ENFORCE allow (reported when the rule asks).
 * 0 when none does: the operation goes on, nothing is counted. */
FUNC_INLINE int enf_settle(const struct enf_pick *enf, const struct enf_pick *mon, struct enf_outcome *o)
{
	__builtin_memset(o, 0, sizeof(*o));
	if (enf->found && enf->action == ENF_ACT_DENY) {
		o->slot = enf->slot;
		o->stat = ENF_STAT_DENIED;
		o->verdict = ENF_VERDICT_DENY;
		o->report = 1;
	} else if (mon->found && mon->action == ENF_ACT_DENY) {
		o->slot = mon->slot;
		o->stat = ENF_STAT_MONITORED;
		o->verdict = ENF_VERDICT_ALLOW;
		o->flags = ENF_EV_MONITOR;
		o->report = 1;
	} else if (enf->found) {
		o->slot = enf->slot;
		o->stat = ENF_STAT_ALLOWED;
		o->verdict = ENF_VERDICT_ALLOW;
	} else {
		return 0;
	}
	return 1;
}

/* Run walk_slot over the candidates (bpf_loop(), 5.17+: the verifier
 * checks the callback once; an open-coded 64-iteration loop carrying two
 * picks made it explore hundreds of thousands of states per program) and
 * settle. ctx is the object's walk struct, which begins with w. */
FUNC_INLINE int enf_walk_settle(struct enf_walk *w, __u32 max_rules, void *walk_slot, void *ctx,
				struct enf_outcome *o)
{
	if (!w->mask)
		return 0;
	bpf_loop(max_rules, walk_slot, ctx, 0);
	return enf_settle(&w->enf, &w->mon, o);
}

/* Account for the deciding rule (its err and enum enf_rule_flag flags):
 * count its hit and the outcome, fill in the errno and whether to report. */
FUNC_INLINE void enf_account(struct enf_outcome *o, __s32 rule_err, __u32 rule_flags, void *hits, void *stats)
{
	enf_count(hits, o->slot);
	enf_count(stats, o->stat);
	if (o->verdict == ENF_VERDICT_DENY)
		o->err = enf_errno(rule_err);
	else if (rule_flags & ENF_RULE_REPORT)
		o->report = 1;
}

/* The cgroup program's return value: 0 denies (with EPERM, or the rule's
 * errno through bpf_set_retval, 5.18+), 1 lets the operation go on. */
FUNC_INLINE int enf_retval(const struct enf_outcome *o)
{
	if (o->verdict != ENF_VERDICT_DENY)
		return 1;
	if (o->err != EPERM)
		bpf_set_retval(-o->err);
	return 0;
}

/* --- reports ----------------------------------------------------------------- */

/* Reserve an event of size bytes on rb; when it is full count
 * ENF_STAT_RB_LOST in stats (the decision stands, unreported). */
FUNC_INLINE void *enf_reserve(void *rb, __u64 size, void *stats)
{
	void *e = bpf_ringbuf_reserve(rb, size, 0);

	if (!e)
		enf_count(stats, ENF_STAT_RB_LOST);
	return e;
}

FUNC_INLINE void enf_msg_common(struct msg_common *c, __u8 op, __u32 size)
{
	c->op = op;
	c->flags = 0;
	c->pad = 0;
	c->size = size;
	c->ktime = bpf_ktime_get_ns();
}

/* The current task's fields, which every enforcement event has under the
 * same names (pid = thread id, tgid, cgroup_id, comm); a macro because the
 * event structs differ. */
#define ENF_FILL_TASK(e)                                         \
	do {                                                     \
		__u64 __pid_tgid = bpf_get_current_pid_tgid();   \
		(e)->pid = (__u32)__pid_tgid;                    \
		(e)->tgid = __pid_tgid >> 32;                    \
		(e)->cgroup_id = bpf_get_current_cgroup_id();    \
		bpf_get_current_comm((e)->comm, sizeof((e)->comm)); \
	} while (0)

#endif
