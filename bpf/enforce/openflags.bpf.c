// SPDX-License-Identifier: GPL-2.0-only
/* Open flags of the open() in flight, per thread, for fanotify write-only
 * rules (src/kerneye/enforce/fanotify.py).
 *
 * A fanotify permission event says which file is being opened and by whom
 * (the thread id, with FAN_REPORT_TID) but not with which flags. The enter
 * tracepoints of the open-family syscalls record the flags under the thread
 * id; the exit tracepoints delete the entry. While the thread waits for the
 * fanotify verdict it sits inside the syscall, so the responder finds the
 * entry of exactly this open. execve/execveat are recorded as reads, so
 * that the open done by exec is not mistaken for an unknown opener.
 *
 * Not seen (no entry, user space decides): io_uring IORING_OP_OPENAT (no
 * syscall tracepoint), kernel-internal opens (core dumps, swapon, acct,
 * overlayfs copy-up), opens that entered the syscall before this object was
 * attached. Thread ids are init-namespace ids; the reader must run in the
 * initial pid namespace to compare them with FAN_REPORT_TID's.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#define OF_OP_OPEN 1
#define OF_OP_EXEC 2

#define O_WRONLY_ 01
#define O_CREAT_ 0100
#define O_TRUNC_ 01000

/* Mirrored by _OpenFlags in fanotify.py; all fields aligned, no padding. */
struct openflags_value {
	__u64 flags;
	__u32 tgid;
	__u32 op;
};

/* LRU: an entry whose exit was never seen (a thread that exec'd from a
 * multithreaded process changes its id) ages out instead of filling it. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct openflags_value);
} kerneye_openflags SEC(".maps");

static __always_inline int record(__u64 flags, __u32 op)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tid = (__u32)id;
	struct openflags_value v = { .flags = flags, .tgid = id >> 32, .op = op };

	bpf_map_update_elem(&kerneye_openflags, &tid, &v, BPF_ANY);
	return 0;
}

static __always_inline int forget(void)
{
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_delete_elem(&kerneye_openflags, &tid);
	return 0;
}

SEC("tp/syscalls/sys_enter_openat")
int enf_of_openat(struct trace_event_raw_sys_enter *ctx)
{
	return record(ctx->args[2], OF_OP_OPEN);
}

SEC("tp/syscalls/sys_enter_open")
int enf_of_open(struct trace_event_raw_sys_enter *ctx)
{
	return record(ctx->args[1], OF_OP_OPEN);
}

SEC("tp/syscalls/sys_enter_creat")
int enf_of_creat(struct trace_event_raw_sys_enter *ctx)
{
	return record(O_CREAT_ | O_WRONLY_ | O_TRUNC_, OF_OP_OPEN);
}

SEC("tp/syscalls/sys_enter_open_by_handle_at")
int enf_of_open_by_handle_at(struct trace_event_raw_sys_enter *ctx)
{
	return record(ctx->args[2], OF_OP_OPEN);
}

SEC("tp/syscalls/sys_enter_openat2")
int enf_of_openat2(struct trace_event_raw_sys_enter *ctx)
{
	struct open_how how = {};

	/* a faulting read leaves no entry: user space treats that as unknown */
	if (bpf_probe_read_user(&how, sizeof(how), (void *)ctx->args[2]))
		return 0;
	return record(how.flags, OF_OP_OPEN);
}

SEC("tp/syscalls/sys_enter_execve")
int enf_of_execve(void *ctx)
{
	return record(0, OF_OP_EXEC);
}

SEC("tp/syscalls/sys_enter_execveat")
int enf_of_execveat(void *ctx)
{
	return record(0, OF_OP_EXEC);
}

SEC("tp/syscalls/sys_exit_openat")
int enf_of_openat_exit(void *ctx) { return forget(); }
SEC("tp/syscalls/sys_exit_open")
int enf_of_open_exit(void *ctx) { return forget(); }
SEC("tp/syscalls/sys_exit_creat")
int enf_of_creat_exit(void *ctx) { return forget(); }
SEC("tp/syscalls/sys_exit_open_by_handle_at")
int enf_of_open_by_handle_at_exit(void *ctx) { return forget(); }
SEC("tp/syscalls/sys_exit_openat2")
int enf_of_openat2_exit(void *ctx) { return forget(); }
SEC("tp/syscalls/sys_exit_execve")
int enf_of_execve_exit(void *ctx) { return forget(); }
SEC("tp/syscalls/sys_exit_execveat")
int enf_of_execveat_exit(void *ctx) { return forget(); }

/* an anchor so the value type is in BTF for the layout check */
struct openflags_value _openflags_value = {};

char LICENSE[] SEC("license") = "GPL";
