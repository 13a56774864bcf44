/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The kernel <-> user-space contract of kerneye's enforcement back ends
 * (bpf/enforce/ <-> src/kerneye/enforce/). Same rules as abi.h:
 * fixed-width types, explicit pads, no 'packed', every message starts with
 * struct msg_common. The Python mirror is src/kerneye/enforce/_abi.py; it is
 * checked against the BTF of bpf/.output/enforce_anchor.bpf.o by
 * tests/unit/test_enforce_abi.py.
 *
 * Kept apart from abi.h while enforcement is a standalone module; when it is
 * wired into the agent's shared ring buffer, ENF_MSG_* must be added to
 * enum msg_op (their values are chosen not to collide with it).
 */
#ifndef KERNEYE_ENFORCE_ABI_H
#define KERNEYE_ENFORCE_ABI_H

#include "kerneye/abi.h"

#define ENF_NET_MAX_RULES 64 /* one bit per rule in a __u64 mask */
#define ENF_NET_MAX_SETS 16
#define ENF_COMM_LEN 16

/* First byte (msg_common.op) of the enforcement messages. */
enum enf_msg_op {
	ENF_MSG_NET = 64, /* struct enf_net_event */
};

/* Which socket operation a rule applies to (enf_net_rule.hooks bits) and
 * which one an event reports (enf_net_event.hook, the bit index). */
enum enf_net_hook {
	ENF_HOOK_CONNECT = 1 << 0,     /* cgroup/connect4, connect6 */
	ENF_HOOK_SENDMSG = 1 << 1,     /* cgroup/sendmsg4, sendmsg6 (unconnected UDP) */
	ENF_HOOK_BIND = 1 << 2,        /* cgroup/bind4, bind6 */
	ENF_HOOK_SOCK_CREATE = 1 << 3, /* cgroup/sock_create (AF_INET, AF_INET6 only) */
};

enum enf_action {
	ENF_ACT_DENY = 0,
	ENF_ACT_ALLOW = 1,
};

/* Mode of a rule set. OFF skips its rules; MONITOR counts and reports what
 * would be denied and allows it; ENFORCE denies. */
enum enf_mode {
	ENF_MODE_OFF = 0,
	ENF_MODE_MONITOR = 1,
	ENF_MODE_ENFORCE = 2,
};

enum enf_verdict {
	ENF_VERDICT_ALLOW = 0,
	ENF_VERDICT_DENY = 1,
};

/* enf_net_event.flags */
enum enf_event_flag {
	ENF_EV_MONITOR = 1 << 0, /* a monitor-mode rule would have denied this */
	ENF_EV_MAPPED = 1 << 1,  /* IPv4-mapped IPv6 address, matched as IPv4 */
};

/* enf_net_rule.flags */
enum enf_rule_flag {
	ENF_RULE_USED = 1 << 0,   /* slot holds a rule */
	ENF_RULE_REPORT = 1 << 1, /* report matches of an allow rule too */
};

/* Per-CPU counters in kerneye_net_stats. */
enum enf_stat {
	ENF_STAT_DENIED = 0,
	ENF_STAT_MONITORED = 1,  /* would have been denied */
	ENF_STAT_ALLOWED = 2,    /* an allow rule matched */
	ENF_STAT_RB_LOST = 3,    /* ring buffer full: decision made, not reported */
	ENF_STAT_MAX = 4,
};

/* One rule, kerneye_net_rules[slot]. Which addresses it covers is not stored
 * here: its slot bit is set in the values of the LPM-trie entries of every
 * prefix inside its CIDR (user space merges them, see cgroup_net.py). */
struct enf_net_rule {
	__u32 id;        /* reported in events */
	__u32 priority;  /* lower wins; on a tie deny wins */
	__u8 action;     /* enum enf_action */
	__u8 set;        /* rule set, index into kerneye_net_sets */
	__u8 proto;      /* IPPROTO_*; 0 = any */
	__u8 sock_type;  /* SOCK_STREAM/DGRAM/RAW; 0 = any */
	__u16 port_lo;   /* host byte order, inclusive; ignored by sock_create */
	__u16 port_hi;
	__u16 family;    /* AF_INET/AF_INET6; 0 = any (sock_create rules) */
	__u16 hooks;     /* enum enf_net_hook bits */
	__s32 err;       /* errno the operation fails with; 0 = EPERM */
	__u32 flags;     /* enum enf_rule_flag */
	__u32 pad;
};

struct enf_net_set {
	__u32 mode;  /* enum enf_mode */
	__u32 pad;
};

/* kerneye_net_cfg[0] */
struct enf_net_config {
	__u64 create_mask; /* slots of rules with ENF_HOOK_SOCK_CREATE */
	__u64 pad;
};

/* LPM-trie keys. The address is in network byte order (as in the trie). */
struct enf_lpm4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct enf_lpm6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* One decision, reported on kerneye_net_rb. Sent for denials, for what a
 * monitor-mode rule would deny, and for allow rules flagged REPORT. */
struct enf_net_event {
	struct msg_common common; /* op = ENF_MSG_NET */
	__u8 hook;        /* bit index of enum enf_net_hook */
	__u8 verdict;     /* enum enf_verdict actually applied */
	__u8 flags;       /* enum enf_event_flag */
	__u8 action;      /* the matching rule's enum enf_action */
	__u16 family;     /* AF_INET / AF_INET6 as the socket saw it */
	__u16 port;       /* host byte order; 0 for sock_create */
	__u32 proto;      /* IPPROTO_* */
	__u32 sock_type;  /* SOCK_* */
	__u32 rule_id;
	__u32 pid;        /* thread id */
	__u32 tgid;
	__s32 err;        /* errno returned to the caller, 0 when allowed */
	__u64 cgroup_id;  /* cgroup-v2 id of the task */
	__u8 addr[16];    /* IPv4 in the first 4 bytes; network byte order */
	char comm[ENF_COMM_LEN];
};

#endif /* KERNEYE_ENFORCE_ABI_H */
