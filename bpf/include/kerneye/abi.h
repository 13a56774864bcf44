/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * THE kernel <-> user-space contract of kerneye.
 *
 * Every struct and constant that crosses the boundary (ring-buffer messages,
 * map keys and values written from user space) lives here and nowhere else.
 * src/kerneye/abi/_generated.py is generated from the BTF of
 * bpf/.output/abi_anchor.bpf.o (tools/gen_abi.py) and checked against the
 * shipped objects by tests and again at agent start.
 *
 * Rules: fixed-width types only, explicit pad members, no 'packed'; every
 * message starts with struct msg_common; variable-length tails follow the
 * fixed part and are described by size_* fields.
 *
 * This header must stay free of kernel headers so that user-space C can use
 * it too: the includer provides __u8/__u16/__u32/__u64.
 */
#ifndef KERNEYE_ABI_H
#define KERNEYE_ABI_H

/* Bumped on any incompatible change; checked at start-up. */
#define KERNEYE_ABI_VERSION 1

/* First byte of every ring-buffer record. Values are stable. */
enum msg_op {
	MSG_OP_UNDEF = 0,
	MSG_OP_EXECVE = 5,
	MSG_OP_EXIT = 7,
	MSG_OP_CLONE = 23,
	MSG_OP_GENERIC = 13, /* a policy hook fired (syscall, tracepoint, uprobe) */
	MSG_OP_MAX = 255,
};

/* msg_exec.flags / msg_exit.flags: where the data came from and what is
 * missing. Rendered as Tetragon's 'flags' words in user space. */
enum exec_flag {
	EXEC_FLAG_EXECVE = 1 << 0,        /* seen by the exec tracepoint */
	EXEC_FLAG_PROCFS = 1 << 1,        /* synthesised from /proc at start */
	EXEC_FLAG_CLONE = 1 << 2,         /* the exec'ing task came from a fork */
	EXEC_FLAG_TRUNC_FILENAME = 1 << 3,
	EXEC_FLAG_TRUNC_ARGS = 1 << 4,
	EXEC_FLAG_TRUNC_CWD = 1 << 5,
	EXEC_FLAG_ERROR_FILENAME = 1 << 6,
	EXEC_FLAG_ERROR_ARGS = 1 << 7,
	EXEC_FLAG_ERROR_CWD = 1 << 8,
	EXEC_FLAG_PARENT_MISS = 1 << 9,   /* parent not in kerneye_execve_map */
	EXEC_FLAG_SETUID = 1 << 10,       /* binary has S_ISUID */
	EXEC_FLAG_SETGID = 1 << 11,       /* binary has S_ISGID */
	EXEC_FLAG_PRIV_SETUID = 1 << 12,  /* euid raised through the setuid bit */
	EXEC_FLAG_PRIV_SETGID = 1 << 13,  /* egid raised through the setgid bit */
	EXEC_FLAG_PRIV_FILECAP = 1 << 14, /* caps raised by file capabilities */
	EXEC_FLAG_TRUNC_CGROUP = 1 << 15,
	EXEC_FLAG_ROOT_CWD = 1 << 16,
};

/* Limits of the variable-length tails of msg_exec. Powers of two. */
#define MSG_FILENAME_MAX 4096
#define MSG_ARGS_MAX 16384
#define MSG_CWD_MAX 4096
#define MSG_CGROUP_MAX 1024
#define MSG_DNAME_MAX 256
/* Directory levels walked for cwd and cgroup paths. */
#define MSG_PATH_DEPTH 48
#define MSG_CGROUP_DEPTH 16

/* Common header of every message (cf. Tetragon's msg_common). */
struct msg_common {
	__u8 op;     /* enum msg_op */
	__u8 flags;  /* reserved */
	__u16 pad;
	__u32 size;  /* whole record, header and tail included */
	__u64 ktime; /* bpf_ktime_get_ns() when the event happened */
};

/* A process's identity: host tgid plus the ktime of its exec (or clone).
 * exec_id = base64("<node>:<ktime>:<pid>"). */
struct msg_execve_key {
	__u32 pid;
	__u32 pad;
	__u64 ktime;
};

/* Credentials and capability sets, as in struct cred. */
struct msg_cred {
	__u32 uid;
	__u32 gid;
	__u32 euid;
	__u32 egid;
	__u32 suid;
	__u32 sgid;
	__u32 fsuid;
	__u32 fsgid;
	__u32 securebits;
	__u32 pad;
	__u64 cap_permitted;
	__u64 cap_effective;
	__u64 cap_inheritable;
};

/* Namespace inode numbers. */
struct msg_ns {
	__u32 uts;
	__u32 ipc;
	__u32 mnt;
	__u32 pid;
	__u32 pid_for_children;
	__u32 net;
	__u32 time;
	__u32 time_for_children;
	__u32 cgroup;
	__u32 user;
};

/*
 * MSG_OP_EXECVE: a successful execve, or a process found in /proc at start.
 * The tail holds, in order and without padding:
 *   filename  size_filename bytes, the path given to execve (not NUL-ended)
 *   args      size_args bytes, argv[0..] each NUL-terminated (as laid out
 *             in the new mm; user space drops argv[0])
 *   cwd       size_cwd bytes, path components leaf first, each NUL-terminated
 *             (an absolute path for PROCFS messages, one component)
 *   cgroup    size_cgroup bytes, cgroup-v2 path components leaf first
 *   dname     size_dname bytes, the dentry name of the executed file
 */
struct msg_exec {
	struct msg_common common;
	struct msg_execve_key key;
	struct msg_execve_key parent; /* ktime 0: parent unknown to the kernel */
	__u32 tid;
	__u32 ppid;        /* real parent's tgid */
	__u32 nspid;       /* pid in the task's own pid namespace */
	__u32 auid;
	__u32 flags;       /* enum exec_flag */
	__u32 args_total;  /* full length of argv[0..] before truncation */
	__u64 cgroup_id;
	struct msg_cred cred;
	struct msg_ns ns;
	__u32 bin_uid;
	__u32 bin_gid;
	__u32 bin_mode;
	__u32 bin_nlink;
	__u64 bin_ino;
	__u32 size_filename;
	__u32 size_args;
	__u32 size_cwd;
	__u32 size_cgroup;
	__u32 size_dname;
	__u32 pad;
};

/* MSG_OP_EXIT: the last thread of a process exited. */
struct msg_exit {
	struct msg_common common;
	struct msg_execve_key key; /* ktime 0: process unknown to the kernel */
	__u32 tid;
	__u32 code;  /* task->exit_code: status << 8 | core << 7 | signal */
	__u32 flags;
	__u32 pad;
};

/* MSG_OP_CLONE: a new process (not a thread) was forked. */
struct msg_clone {
	struct msg_common common;
	struct msg_execve_key key;
	struct msg_execve_key parent;
	__u32 tid;
	__u32 flags;
};

/* Value of kerneye_execve_map (key: tgid). User space seeds it from /proc. */
struct execve_map_value {
	struct msg_execve_key key;
	struct msg_execve_key parent;
	__u32 flags;
	__u32 pad;
	/* matchBinaries: bit n set = the binary matched binary-filter slot n
	 * (kerneye_bin_* maps), computed at exec, inherited through fork. */
	__u64 bin_match;
	/* state at exec, for matchCapabilityChanges / matchNamespaceChanges */
	__u64 exec_caps_effective;
	__u32 exec_ns_mnt;
	__u32 exec_ns_net;
	__u32 exec_ns_pid;
	__u32 exec_ns_user;
};

/* ---------------------------------------------------------------------
 * Generic (policy-driven) hooks. A policy is data: user space writes one
 * struct gen_hook per hook and GEN_MAX_SELECTORS struct gen_selector per
 * hook, and attaches one of the generic programs with the hook id as the
 * BPF cookie. Nothing is recompiled when policies change.
 * ------------------------------------------------------------------- */
#define GEN_MAX_ARGS 5
#define GEN_MAX_SELECTORS 5
#define GEN_MAX_FILTERS 8
#define GEN_MAX_VALUES 8
#define GEN_STR_MAX 248       /* string compare window; prefix limit (LPM keys hold at most 256 bytes: id + 248 + spare) */
#define GEN_POSTFIX_MAX 128
#define GEN_ARG_MAX 4096      /* bytes kept per string/buffer argument */
#define GEN_PATH_MAX 4096
#define GEN_MAX_HOOKS 4096
#define GEN_BIN_SLOTS 64

enum gen_arg_type {
	GT_NONE = 0,
	GT_S64 = 1,      /* int64, long */
	GT_U64 = 2,      /* uint64, size_t, ulong */
	GT_S32 = 3,      /* int, sint32 */
	GT_U32 = 4,      /* uint32 */
	GT_S16 = 5,
	GT_U16 = 6,
	GT_S8 = 7,
	GT_U8 = 8,
	GT_STRING = 9,   /* NUL-terminated string (filename too) */
	GT_CHAR_BUF = 10,/* buffer whose size is another argument */
	GT_FD = 11,      /* file descriptor, resolved to its path */
	GT_SOCKADDR = 12,/* struct sockaddr * (user) */
	GT_SOCK = 13,    /* socket fd, resolved to its tuple */
	GT_BPF_CMD = 14, /* int rendered as a BPF_* command name */
	GT_CAP = 15,     /* int rendered as a capability */
	GT_FILE = 16,    /* struct file * (kernel), rendered as its path */
	GT_BINPRM = 17,  /* struct linux_binprm *: the executed file's path */
	GT_PATH = 18,    /* struct path * */
	GT_KSOCK = 19,   /* struct sock * (kernel), rendered as its tuple */
};

/* Where a raw argument value comes from. */
enum gen_arg_src {
	GS_SYSCALL = 0, /* syscall argument index */
	GS_TP_FIELD = 1,/* tracepoint record field at (offset, size) */
	GS_REG = 2,     /* uprobe: function argument index */
	GS_RET = 3,     /* the return value */
	GS_TP_DATALOC = 4, /* tracepoint __data_loc string field */
	GS_TP_ARRAY = 5,   /* tracepoint char[] field */
	GS_RAW = 6,        /* raw tracepoint argument index */
};

struct gen_arg_spec {
	__u8 type;      /* enum gen_arg_type */
	__u8 src;       /* enum gen_arg_src */
	__u8 index;     /* syscall/function argument index */
	__u8 size_arg;  /* char_buf: 1 + index of the size argument, 0 none */
	__u16 offset;   /* tracepoint field offset */
	__u16 fsize;    /* tracepoint field size */
	__u32 max_data; /* bytes to keep for strings/buffers (<= GEN_ARG_MAX) */
	__u32 user;     /* 1: pointer is a user address, 0: kernel address */
};

enum gen_hook_kind {
	HK_SYSCALL = 0,
	HK_TRACEPOINT = 1,
	HK_UPROBE = 2,
	HK_RAWTP = 3,
	HK_KPROBE = 4,  /* kernel function (kprobe/kretprobe; where the kernel has kprobes) */
};

enum gen_hook_flag {
	HF_ENABLED = 1 << 0,
	HF_RETURN = 1 << 1,   /* report the return value (stash at entry) */
	HF_ENFORCE = 1 << 2,  /* perform enforcement actions (else monitor) */
};

struct gen_hook {
	__u32 policy_id; /* install generation: keys rate-limit state */
	__u32 flags;    /* enum gen_hook_flag */
	__u8 kind;      /* enum gen_hook_kind */
	__u8 nargs;
	__u8 nsel;
	__u8 ret_type;  /* enum gen_arg_type of the return value */
	__u16 slot;     /* attachment slot of the entry program */
	__u16 exit_slot;/* attachment slot of the exit program (return hooks) */
	struct gen_arg_spec args[GEN_MAX_ARGS];
};

/* One attachment (a tracepoint, or a uprobe location) serves every hook on
 * it: the kernel refuses the same program twice on one tracepoint, so the
 * program is attached once with the slot index as cookie and runs the
 * slot's hooks in order. */
#define GEN_HOOKS_PER_SLOT 16

struct gen_slot {
	__u32 n;
	__u32 pad;
	__u32 hooks[GEN_HOOKS_PER_SLOT];
};

enum gen_filter_kind {
	FK_NONE = 0,
	FK_ARG = 1,
	FK_RET = 2,
	FK_PID = 3,
	FK_BIN = 4,
	FK_NS = 5,
	FK_CAP = 6,
	FK_NS_CHANGE = 7,
	FK_CAP_CHANGE = 8,
};

enum gen_op {
	GOP_EQ = 1, GOP_NEQ, GOP_PREFIX, GOP_NOT_PREFIX, GOP_POSTFIX, GOP_NOT_POSTFIX,
	GOP_MASK, GOP_GT, GOP_LT, GOP_RANGE, GOP_NOT_RANGE, GOP_IN_MAP, GOP_NOT_IN_MAP,
	GOP_SPORT, GOP_NOT_SPORT, GOP_DPORT, GOP_NOT_DPORT,
	GOP_SADDR, GOP_NOT_SADDR, GOP_DADDR, GOP_NOT_DADDR,
	GOP_PROTOCOL, GOP_FAMILY, GOP_STATE,
	GOP_IN, GOP_NOT_IN,
};

enum gen_filter_flag {
	FF_FOLLOW = 1 << 0,  /* matchPIDs followForks */
	FF_NSPID = 1 << 1,   /* matchPIDs isNamespacePID */
};

/* One condition. vals are inline operands: values for (Not)Equal on ints,
 * (min, max) pairs for ranges and ports, a mask, a namespace inode, a
 * capability mask, a binary slot; strings, addresses and InMap values live
 * in the kerneye_str_* / kerneye_addr / kerneye_int_set maps keyed by id. */
struct gen_filter {
	__u8 kind;    /* enum gen_filter_kind */
	__u8 op;      /* enum gen_op */
	__u8 arg;     /* FK_ARG: argument slot; FK_NS: namespace; FK_CAP: set */
	__u8 nvals;
	__u32 id;     /* global filter id */
	__u32 flags;  /* enum gen_filter_flag */
	__u32 pad;
	__u64 vals[GEN_MAX_VALUES];
};

enum gen_action_flag {
	AF_POST = 1 << 0,
	AF_NOPOST = 1 << 1,
	AF_SIGNAL = 1 << 2, /* Sigkill is Signal with SIGKILL */
};

struct gen_selector {
	__u32 nfilters;
	__u32 actions;    /* enum gen_action_flag */
	__u32 signal;
	__u32 rate_limit_ms;
	__u32 rate_scope; /* 0 thread, 1 process, 2 global */
	__u32 has_ret;    /* has FK_RET filters: decided at return */
	struct gen_filter f[GEN_MAX_FILTERS];
};

/* String map key: exact match (hash) and prefix/postfix (LPM, where
 * prefixlen counts the 32 bits of id, then 8 per byte). */
struct gen_str_key {
	__u32 prefixlen;
	__u32 id;
	char s[GEN_STR_MAX];
};

/* Address map key (LPM): IPv4 is stored IPv4-mapped (::ffff:a.b.c.d). */
struct gen_addr_key {
	__u32 prefixlen;
	__u32 id;
	__u8 addr[16];
};

struct gen_int_key {
	__u32 id;
	__u32 pad;
	__u64 val;
};

/* Rendered argument encodings in the msg_generic tail. */
struct gen_sockaddr {
	__u16 family;
	__u16 port;   /* host order */
	__u32 pad;
	__u8 addr[16];
};

struct gen_sock {
	__u16 family;
	__u16 type;
	__u16 protocol;
	__u16 state;
	__u16 sport;
	__u16 dport;
	__u32 pad;
	__u8 saddr[16];
	__u8 daddr[16];
	__u64 cookie;
};

enum gen_msg_flag {
	GF_RETURN = 1 << 0,     /* ret is valid */
	GF_MONITOR = 1 << 1,    /* an enforcement action was elided (monitor mode) */
	GF_SIGNALED = 1 << 2,   /* a signal was sent */
};

/* MSG_OP_GENERIC. Tail: arguments, arg i at arg_off[i], arg_len[i] bytes:
 * ints 8 bytes; strings/buffers raw bytes; fd = 8-byte fd then its path;
 * sockaddr = struct gen_sockaddr; sock = struct gen_sock. */
struct msg_generic {
	struct msg_common common;
	struct msg_execve_key key;
	__u32 hook_id;
	__u32 tid;
	__u32 sel;       /* index of the matching selector */
	__u32 flags;     /* enum gen_msg_flag */
	__s64 ret;
	__u32 signal;
	__u32 arg_trunc; /* bit i: argument i was truncated */
	__u16 arg_off[GEN_MAX_ARGS];
	__u16 arg_len[GEN_MAX_ARGS];
	__u32 pad;
};

/* Global switches written by user space (kerneye_config_map[0]). */
struct gen_config {
	__u64 bin_follow_mask; /* binary slots with followChildren */
	__u64 bin_slots_used;  /* 0: skip binary matching at exec entirely */
};

/* Per-hook counters (per-CPU array indexed by hook id). */
struct gen_hook_stats {
	__u64 posted;
	__u64 enforced;
	__u64 monitored;
	__u64 rate_limited;
	__u64 lost;
};

/* Index of the per-CPU counters in kerneye_stats. */
enum stat_idx {
	STAT_RB_LOST_EXEC = 0, /* ring buffer full: exec event dropped */
	STAT_RB_LOST_EXIT = 1,
	STAT_RB_LOST_CLONE = 2,
	STAT_EXECVE_MAP_FULL = 3,
	STAT_RB_LOST_GENERIC = 4,
	STAT_GEN_STASH_FULL = 5,
	STAT_MAX = 8,
};

#endif /* KERNEYE_ABI_H */
