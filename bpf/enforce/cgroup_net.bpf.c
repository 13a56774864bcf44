// SPDX-License-Identifier: GPL-2.0-only
/*
 * Network enforcement with cgroup BPF: the socket operations of every task
 * in a cgroup-v2 subtree pass through these programs, and returning 0 makes
 * the syscall fail (EPERM, or the rule's errno via bpf_set_retval, 5.18+).
 *
 *   enf_connect4/6     connect() of TCP/UDP/ICMP sockets   (4.17+)
 *   enf_sendmsg4/6     sendto()/sendmsg() with an address on UDP (4.18+)
 *   enf_bind4/6        bind()                              (4.17+)
 *   enf_sock_create    socket() of AF_INET/AF_INET6        (4.10+)
 *
 * Rules are data (see kerneye/enforce_abi.h): up to ENF_NET_MAX_RULES rules
 * in an array, and two LPM tries (IPv4, IPv6) from prefix to the bitmask of
 * rule slots whose CIDR contains that prefix. User space pre-merges the masks
 * so that the single longest-prefix lookup yields every rule covering the
 * address; the program then filters those by hook, protocol, socket type and
 * port and keeps the one with the lowest priority (deny wins ties). Rules of
 * ENFORCE sets decide; rules of MONITOR sets are evaluated apart and only
 * reported. Everything is updated live from user space: a new rule's slot is
 * written before any trie entry points at it, and trie bits are cleared
 * before a slot is reused (cgroup_net.py keeps that order).
 *
 * "For these binaries": a rule with bin_mask applies only to processes whose
 * binary matched (or, with ENF_RULE_BIN_NOT, did not match) one of those
 * binary-filter slots at exec. The answer is the agent's process map
 * (kerneye_execve_map, see lib/enforce.bpf.h). A process the map does not
 * know counts as bin_match 0.
 *
 * IPv4-mapped IPv6 addresses (::ffff:a.b.c.d on an AF_INET6 socket) are
 * looked up in the IPv4 trie: the kernel hands them to connect6/bind6 as
 * IPv6 and only then switches to the IPv4 code path, where connect4 does not
 * run again. (UDP sendmsg is the exception: udpv6_sendmsg converts first, so
 * sendmsg4 sees a plain IPv4 address.)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "compiler.h"
#include "kerneye/enforce_abi.h"
#include "enforce.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_NET_MAX_RULES);
	__type(key, __u32);
	__type(value, struct enf_net_rule);
} kerneye_net_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_NET_MAX_SETS);
	__type(key, __u32);
	__type(value, struct enf_net_set);
} kerneye_net_sets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_net_config);
} kerneye_net_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_lpm4_key);
	__type(value, __u64);
} kerneye_net_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct enf_lpm6_key);
	__type(value, __u64);
} kerneye_net_v6 SEC(".maps");

/* Per-rule-slot hit counts (decisive matches), and enum enf_stat counters. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_NET_MAX_RULES);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_net_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_net_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} kerneye_net_rb SEC(".maps");

/* What one socket operation looks like to the rules. */
struct net_op {
	__u8 addr[16];
	__u16 family; /* the socket's */
	__u16 port;
	__u32 proto;
	__u32 type;
	__u32 hook;   /* one enum enf_net_hook bit */
	__u32 flags;  /* ENF_EV_MAPPED */
};

/* State of one rule walk, shared with the bpf_loop() callback. */
struct walk {
	__u64 mask;
	struct enf_walk c; /* first: enf_walk_settle() hands &walk to walk_slot */
	struct net_op *op;
	int match_ports;  /* 0 for sock_create */
	int match_family; /* only rules without an address (sock_create) */
};

/* One rule slot (bpf_loop() callback, see enf_walk_settle). */
static long walk_slot(__u32 i, struct walk *w)
{
	__u32 slot = i;
	struct enf_net_rule *r;
	struct net_op *op = w->op;
	int at = enf_walk_at(&w->c, i, ENF_NET_MAX_RULES);

	if (at <= 0)
		return at < 0; /* 1 stops the loop: no more bits */
	r = bpf_map_lookup_elem(&kerneye_net_rules, &slot);
	if (!r || !(r->flags & ENF_RULE_USED) || !(r->hooks & op->hook))
		return 0;
	if (r->proto && r->proto != op->proto)
		return 0;
	if (r->sock_type && r->sock_type != op->type)
		return 0;
	if (w->match_family && r->family && r->family != op->family)
		return 0;
	if (w->match_ports && (op->port < r->port_lo || op->port > r->port_hi))
		return 0;
	if (!enf_bin_ok(&w->c.bin, r->bin_mask, r->flags & ENF_RULE_BIN_NOT))
		return 0;
	enf_offer(&w->c, &kerneye_net_sets, r->set, slot, r->priority, r->action);
	return 0;
}

FUNC_INLINE void report(struct net_op *op, struct enf_net_rule *r, const struct enf_outcome *o)
{
	struct enf_net_event *e = enf_reserve(&kerneye_net_rb, sizeof(*e), &kerneye_net_stats);

	if (!e)
		return;
	enf_msg_common(&e->common, ENF_MSG_NET, sizeof(*e));
	e->hook = op->hook == ENF_HOOK_CONNECT ? 0 : op->hook == ENF_HOOK_SENDMSG ? 1 :
		  op->hook == ENF_HOOK_BIND ? 2 : 3;
	e->verdict = o->verdict;
	e->flags = o->flags | op->flags;
	e->action = r->action;
	e->family = op->family;
	e->port = op->port;
	e->proto = op->proto;
	e->sock_type = op->type;
	e->rule_id = r->id;
	e->err = o->err;
	ENF_FILL_TASK(e);
	__builtin_memcpy(e->addr, op->addr, sizeof(e->addr));
	bpf_ringbuf_submit(e, 0);
}

/* Returns the program's verdict: 1 = allow, 0 = deny. */
FUNC_INLINE int decide(__u64 mask, struct net_op *op, int match_ports, int match_family)
{
	struct walk w = { .c.mask = mask, .op = op, .match_ports = match_ports, .match_family = match_family };
	struct enf_outcome o;
	struct enf_net_rule *r;

	if (!enf_walk_settle(&w.c, ENF_NET_MAX_RULES, walk_slot, &w, &o))
		return 1;
	r = bpf_map_lookup_elem(&kerneye_net_rules, &o.slot);
	if (!r)
		return 1;
	enf_account(&o, r->err, r->flags, &kerneye_net_hits, &kerneye_net_stats);
	if (o.report)
		report(op, r, &o);
	return enf_retval(&o);
}

FUNC_INLINE __u64 mask_v4(const __u8 *addr)
{
	struct enf_lpm4_key k = { .prefixlen = 32 };
	__u64 *m;

	__builtin_memcpy(k.addr, addr, 4);
	m = bpf_map_lookup_elem(&kerneye_net_v4, &k);
	return m ? *m : 0;
}

FUNC_INLINE __u64 mask_v6(const __u8 *addr)
{
	struct enf_lpm6_key k = { .prefixlen = 128 };
	__u64 *m;

	__builtin_memcpy(k.addr, addr, 16);
	m = bpf_map_lookup_elem(&kerneye_net_v6, &k);
	return m ? *m : 0;
}

FUNC_INLINE int on_addr4(struct bpf_sock_addr *ctx, __u32 hook)
{
	struct net_op op = {};
	__u32 ip = ctx->user_ip4;

	__builtin_memcpy(op.addr, &ip, 4);
	op.family = AF_INET;
	op.port = bpf_ntohs((__u16)ctx->user_port);
	op.proto = ctx->protocol;
	op.type = ctx->type;
	op.hook = hook;
	return decide(mask_v4(op.addr), &op, 1, 0);
}

FUNC_INLINE int on_addr6(struct bpf_sock_addr *ctx, __u32 hook)
{
	struct net_op op = {};
	__u32 ip[4];

	/* ctx fields must be loaded one by one with constant offsets */
	ip[0] = ctx->user_ip6[0];
	ip[1] = ctx->user_ip6[1];
	ip[2] = ctx->user_ip6[2];
	ip[3] = ctx->user_ip6[3];
	__builtin_memcpy(op.addr, ip, 16);
	op.family = AF_INET6;
	op.port = bpf_ntohs((__u16)ctx->user_port);
	op.proto = ctx->protocol;
	op.type = ctx->type;
	op.hook = hook;
	if (ip[0] == 0 && ip[1] == 0 && ip[2] == bpf_htonl(0xffff)) {
		op.flags = ENF_EV_MAPPED;
		return decide(mask_v4(op.addr + 12), &op, 1, 0);
	}
	return decide(mask_v6(op.addr), &op, 1, 0);
}

SEC("cgroup/connect4")
int enf_connect4(struct bpf_sock_addr *ctx)
{
	return on_addr4(ctx, ENF_HOOK_CONNECT);
}

SEC("cgroup/connect6")
int enf_connect6(struct bpf_sock_addr *ctx)
{
	return on_addr6(ctx, ENF_HOOK_CONNECT);
}

SEC("cgroup/sendmsg4")
int enf_sendmsg4(struct bpf_sock_addr *ctx)
{
	return on_addr4(ctx, ENF_HOOK_SENDMSG);
}

SEC("cgroup/sendmsg6")
int enf_sendmsg6(struct bpf_sock_addr *ctx)
{
	return on_addr6(ctx, ENF_HOOK_SENDMSG);
}

SEC("cgroup/bind4")
int enf_bind4(struct bpf_sock_addr *ctx)
{
	return on_addr4(ctx, ENF_HOOK_BIND);
}

SEC("cgroup/bind6")
int enf_bind6(struct bpf_sock_addr *ctx)
{
	return on_addr6(ctx, ENF_HOOK_BIND);
}

/* socket(2) of an inet family. Rules here have no address: their slots are
 * in kerneye_net_cfg.create_mask. Does not run for AF_PACKET or AF_UNIX. */
SEC("cgroup/sock_create")
int enf_sock_create(struct bpf_sock *ctx)
{
	__u32 zero = 0;
	struct enf_net_config *cfg = bpf_map_lookup_elem(&kerneye_net_cfg, &zero);
	struct net_op op = {};

	if (!cfg || !cfg->create_mask)
		return 1;
	op.family = ctx->family;
	op.proto = ctx->protocol;
	op.type = ctx->type;
	op.hook = ENF_HOOK_SOCK_CREATE;
	return decide(cfg->create_mask, &op, 0, 1);
}
