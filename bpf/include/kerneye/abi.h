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
 *   args      size_args bytes, argv[1..] each NUL-terminated
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
	__u32 args_total;  /* full length of argv[1..] before truncation */
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
};

/* Index of the per-CPU counters in kerneye_stats. */
enum stat_idx {
	STAT_RB_LOST_EXEC = 0, /* ring buffer full: exec event dropped */
	STAT_RB_LOST_EXIT = 1,
	STAT_RB_LOST_CLONE = 2,
	STAT_EXECVE_MAP_FULL = 3,
	STAT_MAX = 8,
};

#endif /* KERNEYE_ABI_H */
