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
	ENF_RULE_BIN_NOT = 1 << 2, /* bin_mask applies when the binary matched NONE of its slots */
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
	/* "for these binaries": 0 = every process; else the rule applies only
	 * if execve_map_value.bin_match of the current tgid (0 when absent from
	 * kerneye_execve_map) & bin_mask != 0 (== 0 with ENF_RULE_BIN_NOT). */
	__u64 bin_mask;
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

/* ---- BPF-LSM back end (bpf/enforce/lsm.bpf.c, src/kerneye/enforce/lsm.py) ----
 * Rules live in kerneye_lsm_rules[slot]; which slots apply where is data:
 * kerneye_lsm_inodes maps (inode, kind) to the slots of the rules naming that
 * inode, kerneye_lsm_tasks maps a tgid to the slots of the rules listing it
 * (exempt from a bpf rule, protected by a task rule), and
 * enf_lsm_config.kind_mask[kind] holds the slots of all rules of a kind.
 * Modes, verdicts, event flags and stat indices reuse enum enf_mode,
 * enf_verdict, enf_event_flag and enf_stat above. */
#define ENF_LSM_MAX_RULES 64 /* one bit per rule in a __u64 mask */
#define ENF_LSM_MAX_CGROUPS 64 /* kerneye_lsm_cgroups slots; one bit each in enf_lsm_rule.cgroup_mask */
#define ENF_LSM_NAME_LEN 256

enum enf_lsm_const {
	ENF_LSM_MSG_OP = 72, /* msg_common.op of struct enf_lsm_event */
};

/* What a rule does (enf_lsm_rule.kind; the index into kind_mask). */
enum enf_lsm_kind {
	ENF_LSM_KIND_OPEN = 0,         /* file_open of listed inodes */
	ENF_LSM_KIND_EXEC_DENY = 1,    /* bprm_check_security of listed inodes */
	ENF_LSM_KIND_EXEC_ALLOW = 2,   /* bprm_check_security of any other inode */
	ENF_LSM_KIND_RAW_SOCKET = 3,   /* socket_create SOCK_RAW inet, AF_PACKET */
	ENF_LSM_KIND_MODULE = 4,       /* kernel_read_file/kernel_load_data of a module */
	ENF_LSM_KIND_BPF = 5,          /* bpf(BPF_PROG_LOAD) by tgids not listed */
	ENF_LSM_KIND_PROTECT_FILE = 6, /* path_unlink/path_rename/path_chmod of listed inodes */
	ENF_LSM_KIND_PROTECT_TASK = 7, /* task_kill/ptrace_access_check of listed tgids */
	ENF_LSM_KIND_MAX = 8,
};

/* Which LSM hook made a decision (enf_lsm_event.hook). */
enum enf_lsm_hook {
	ENF_LSM_HOOK_FILE_OPEN = 1,
	ENF_LSM_HOOK_BPRM_CHECK = 2,
	ENF_LSM_HOOK_SOCKET_CREATE = 3,
	ENF_LSM_HOOK_KERNEL_READ_FILE = 4,
	ENF_LSM_HOOK_KERNEL_LOAD_DATA = 5,
	ENF_LSM_HOOK_BPF = 6,
	ENF_LSM_HOOK_PATH_UNLINK = 7,
	ENF_LSM_HOOK_PATH_RENAME = 8,
	ENF_LSM_HOOK_PATH_CHMOD = 9,
	ENF_LSM_HOOK_TASK_KILL = 10,
	ENF_LSM_HOOK_PTRACE = 11,
};

/* enf_lsm_rule.flags */
enum enf_lsm_rule_flag {
	ENF_LSM_RULE_USED = 1 << 0,
	ENF_LSM_RULE_WRITE_ONLY = 1 << 1, /* open rules: only opens for write */
	ENF_LSM_RULE_BIN_NOT = 1 << 2,    /* applies when bin_match & bin_mask == 0 */
};

struct enf_lsm_rule {
	__u32 id;       /* reported in events */
	__u8 kind;      /* enum enf_lsm_kind */
	__u8 mode;      /* enum enf_mode; OFF = slot unused */
	__u16 flags;    /* enum enf_lsm_rule_flag */
	__s32 err;      /* errno the operation fails with; 0 = EPERM */
	__u32 pad;
	__u64 bin_mask; /* 0 = any binary, else see ENF_LSM_RULE_BIN_NOT */
	/* 0 = any task; else the rule applies only when the current task is in
	 * (or below) the cgroup-v2 directory of one of these kerneye_lsm_cgroups
	 * slots (a BPF_MAP_TYPE_CGROUP_ARRAY user space fills with directory fds) */
	__u64 cgroup_mask;
};

/* kerneye_lsm_cfg[0] */
struct enf_lsm_config {
	__u64 kind_mask[ENF_LSM_KIND_MAX]; /* slots of the rules of each kind */
};

/* kerneye_lsm_inodes key; dev is the kernel's encoding (MAJOR << 20 | MINOR
 * of inode->i_sb->s_dev), not stat()'s. */
struct enf_lsm_inode_key {
	__u64 ino;
	__u32 dev;
	__u32 kind; /* enum enf_lsm_kind */
};

/* One decision, on kerneye_lsm_rb: denials and monitor-mode would-denies. */
struct enf_lsm_event {
	struct msg_common common; /* op = ENF_LSM_MSG_OP */
	__u8 hook;        /* enum enf_lsm_hook */
	__u8 verdict;     /* enum enf_verdict actually applied */
	__u8 flags;       /* enum enf_event_flag */
	__u8 kind;        /* the rule's enum enf_lsm_kind */
	__u32 rule_id;
	__s32 err;        /* errno returned to the caller, 0 when allowed */
	__u32 pid;        /* thread id */
	__u32 tgid;
	__u32 target;     /* task_kill, ptrace: the target's tgid */
	__u32 arg;        /* signal, ptrace mode, bpf cmd, file id, chmod mode or f_mode */
	__u32 dev;        /* kernel encoding; 0 when no inode */
	__u64 ino;
	__u64 cgroup_id;  /* cgroup-v2 id of the task */
	__u16 family;     /* socket_create */
	__u16 sock_type;
	__u16 protocol;
	__u16 pad;
	char comm[ENF_COMM_LEN];
	char name[ENF_LSM_NAME_LEN]; /* exec: bprm->filename; file hooks: the dentry's name */
};
/* ---- end of the BPF-LSM section ---- */

/* ---- cgroup sysctl / device section (bpf/enforce/cgroup_sys.bpf.c) ----
 * Modes, verdicts, event flags, stat indices and rule flags reuse enum
 * enf_mode, enf_verdict, enf_event_flag, enf_stat and enf_rule_flag; a rule
 * set's mode is a struct enf_net_set. */
enum enf_sys_const {
	ENF_SYS_MAX_RULES = 64,    /* one bit per rule in a __u64 mask */
	ENF_SYS_MAX_SETS = 16,
	ENF_SYSCTL_NAME_MAX = 128, /* full name, '/' separated, NUL included */
	ENF_SYS_MSG_SYSCTL = 80,   /* msg_common.op of a sysctl struct enf_sys_event */
	ENF_SYS_MSG_DEV = 81,      /* msg_common.op of a device struct enf_sys_event */
};

#define ENF_DEV_ANY 0xffffffffU /* enf_sys_rule.major/minor wildcard */

enum enf_sys_kind {
	ENF_SYS_KIND_SYSCTL = 1,
	ENF_SYS_KIND_DEV = 2,
};

/* enf_sys_rule.access / enf_sys_event.access bits: the kernel's
 * BPF_DEVCG_ACC_* values; sysctl rules use READ and WRITE. */
enum enf_sys_access {
	ENF_ACC_MKNOD = 1 << 0,
	ENF_ACC_READ = 1 << 1,
	ENF_ACC_WRITE = 1 << 2,
};

/* enf_sys_rule.dev_type: the kernel's BPF_DEVCG_DEV_*; 0 = any */
enum enf_dev_type {
	ENF_DEV_BLOCK = 1,
	ENF_DEV_CHAR = 2,
};

/* kerneye_sys_rules[slot]. Which sysctl names a sysctl rule covers lives in
 * the kerneye_sysctl_names LPM trie (slot bits, pre-merged by user space);
 * device rules are found through enf_sys_config.dev_mask. */
struct enf_sys_rule {
	__u32 id;        /* reported in events */
	__u32 priority;  /* lower wins; on a tie deny wins */
	__u8 action;     /* enum enf_action */
	__u8 set;        /* rule set, index into kerneye_sys_sets */
	__u8 kind;       /* enum enf_sys_kind */
	__u8 access;     /* enum enf_sys_access bits the rule covers */
	__u8 dev_type;   /* enum enf_dev_type; 0 = any */
	__u8 pad[3];
	__u32 major;     /* ENF_DEV_ANY = any */
	__u32 minor;
	__s32 err;       /* errno the operation fails with; 0 = EPERM */
	__u32 flags;     /* enum enf_rule_flag */
	__u64 bin_mask;  /* as enf_net_rule.bin_mask */
};

/* kerneye_sys_cfg[0] */
struct enf_sys_config {
	__u64 dev_mask;  /* slots of device rules */
	__u64 pad;
};

/* kerneye_sysctl_names key. A prefix rule "kernel/" is stored with
 * prefixlen 8 * 7; an exact name with its terminating NUL (8 * (len + 1)),
 * so that it cannot match a longer name. Lookups use the full width. */
struct enf_sysctl_key {
	__u32 prefixlen;
	char name[ENF_SYSCTL_NAME_MAX];
};

/* One decision, on kerneye_sys_rb: denials, monitor-mode would-denies and
 * matches of allow rules flagged REPORT. */
struct enf_sys_event {
	struct msg_common common; /* op = ENF_SYS_MSG_SYSCTL or ENF_SYS_MSG_DEV */
	__u8 verdict;     /* enum enf_verdict actually applied */
	__u8 flags;       /* enum enf_event_flag */
	__u8 action;      /* the matching rule's enum enf_action */
	__u8 access;      /* enum enf_sys_access bits requested */
	__u8 dev_type;    /* enum enf_dev_type; 0 for sysctl */
	__u8 pad[3];
	__u32 major;      /* device events */
	__u32 minor;
	__u32 rule_id;
	__u32 pid;        /* thread id */
	__u32 tgid;
	__s32 err;        /* errno returned to the caller, 0 when allowed */
	__u64 cgroup_id;  /* cgroup-v2 id of the task */
	char comm[ENF_COMM_LEN];
	char name[ENF_SYSCTL_NAME_MAX]; /* sysctl events; empty for devices */
};
/* ---- end of the cgroup sysctl / device section ---- */

#endif /* KERNEYE_ENFORCE_ABI_H */
