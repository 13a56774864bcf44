// SPDX-License-Identifier: GPL-2.0-only
/*
 * The base sensor: always loaded, it follows every process on the host.
 *
 *   sched_process_fork  new process (not thread) -> kerneye_execve_map entry
 *                       flagged CLONE, MSG_OP_CLONE
 *   sched_process_exec  new image -> map entry replaced, MSG_OP_EXECVE with
 *                       filename, argv, cwd, creds, caps, namespaces, cgroup
 *   sched_process_exit  last thread of a process -> MSG_OP_EXIT, entry removed
 *
 * The map gives every process the identity (pid, ktime) of its current image
 * and of its parent's, so user space can link events without racing /proc.
 */
#include "common.bpf.h"
#include "core_fixes.bpf.h"
#include "binmatch.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define DATA_MASK 0x7fff /* tail offsets stay below 32 KiB */
#define NAME_READ 256    /* NAME_MAX + 1 */

struct exec_heap {
	struct msg_exec m;
	/* DATA_MASK + the largest single read, so every masked write fits. */
	char data[DATA_MASK + 1 + MSG_ARGS_MAX];
};

/* One scratch slot per CPU. Not a PERCPU_ARRAY: per-CPU values are capped
 * at 32 KiB. The agent sets max_entries to the number of possible CPUs. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, struct exec_heap);
} kerneye_exec_heap SEC(".maps");

#define S_ISUID 04000
#define S_ISGID 02000

/*
 * Path walks (cwd, cgroup) run under bpf_loop() (v5.17+): the verifier checks
 * the callback once instead of once per iteration and per branch, which an
 * open-coded loop over dentries and mounts blows up (>1M insns).
 * The callbacks write component names, leaf first, each NUL-terminated, into
 * this CPU's scratch slot at w->off.
 */
struct walk {
	struct dentry *dentry;
	struct mount *mnt;
	struct kernfs_node *kn;
	__u32 off;
	__u32 written;
	__u32 budget;
	__u32 trunc;
};

FUNC_INLINE int walk_put(struct walk *w, const void *name)
{
	__u32 cpu = bpf_get_smp_processor_id();
	struct exec_heap *h = bpf_map_lookup_elem(&kerneye_exec_heap, &cpu);
	long n;

	if (!h)
		return 1;
	if (w->written + NAME_READ > w->budget) {
		w->trunc = 1;
		return 1;
	}
	n = bpf_probe_read_kernel_str(h->data + BOUND(w->off, DATA_MASK), NAME_READ, name);
	if (n <= 0)
		return 1;
	w->off += n;
	w->written += n;
	return 0;
}

static long path_step(__u64 i, void *ctx)
{
	struct walk *w = ctx;
	struct dentry *dentry = w->dentry;
	struct mount *mnt = w->mnt;
	struct dentry *parent;

	if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root)) {
		struct mount *mparent = BPF_CORE_READ(mnt, mnt_parent);

		if (mparent == mnt)
			return 1; /* the global root */
		w->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		w->mnt = mparent;
		return 0;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	if (dentry == parent)
		return 1; /* root of a detached tree */
	if (walk_put(w, BPF_CORE_READ(dentry, d_name.name)))
		return 1;
	w->dentry = parent;
	if (i == MSG_PATH_DEPTH - 1)
		w->trunc = 1;
	return 0;
}

static long cgroup_step(__u64 i, void *ctx)
{
	struct walk *w = ctx;
	struct kernfs_node *kn = w->kn;
	struct kernfs_node *parent = kn_parent(kn);

	if (!parent)
		return 1; /* the root, shown as "/" by user space */
	if (walk_put(w, BPF_CORE_READ(kn, name)))
		return 1;
	w->kn = parent;
	if (i == MSG_CGROUP_DEPTH - 1 && kn_parent(parent))
		w->trunc = 1;
	return 0;
}

FUNC_INLINE void fill_cred(struct msg_cred *c, const struct cred *cred)
{
	c->uid = BPF_CORE_READ(cred, uid.val);
	c->gid = BPF_CORE_READ(cred, gid.val);
	c->euid = BPF_CORE_READ(cred, euid.val);
	c->egid = BPF_CORE_READ(cred, egid.val);
	c->suid = BPF_CORE_READ(cred, suid.val);
	c->sgid = BPF_CORE_READ(cred, sgid.val);
	c->fsuid = BPF_CORE_READ(cred, fsuid.val);
	c->fsgid = BPF_CORE_READ(cred, fsgid.val);
	c->securebits = BPF_CORE_READ(cred, securebits);
	c->pad = 0;
	/* kernel_cap_t is one u64 since v6.3 and two u32 before; both read
	 * correctly as 8 little-endian bytes. */
	bpf_probe_read_kernel(&c->cap_permitted, 8, &cred->cap_permitted);
	bpf_probe_read_kernel(&c->cap_effective, 8, &cred->cap_effective);
	bpf_probe_read_kernel(&c->cap_inheritable, 8, &cred->cap_inheritable);
}

FUNC_INLINE void fill_ns(struct msg_ns *ns, struct task_struct *task, __u32 *nspid)
{
	struct nsproxy *p = BPF_CORE_READ(task, nsproxy);
	struct pid *tp = BPF_CORE_READ(task, thread_pid);
	unsigned int level = BPF_CORE_READ(tp, level);
	struct upid up = {};

	ns->uts = BPF_CORE_READ(p, uts_ns, ns.inum);
	ns->ipc = BPF_CORE_READ(p, ipc_ns, ns.inum);
	ns->mnt = BPF_CORE_READ(p, mnt_ns, ns.inum);
	ns->pid_for_children = BPF_CORE_READ(p, pid_ns_for_children, ns.inum);
	ns->net = BPF_CORE_READ(p, net_ns, ns.inum);
	ns->time = ns_time(p, 0);
	ns->time_for_children = ns_time(p, 1);
	ns->cgroup = BPF_CORE_READ(p, cgroup_ns, ns.inum);
	ns->user = BPF_CORE_READ(task, cred, user_ns, ns.inum);
	bpf_probe_read_kernel(&up, sizeof(up), &tp->numbers[level & 31]);
	ns->pid = BPF_CORE_READ(up.ns, ns.inum);
	*nspid = up.nr;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(kerneye_execve, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	__u32 cpu = bpf_get_smp_processor_id(), off = 0, tgid, ptgid;
	struct execve_map_value *curr, *pv, nv = {};
	struct exec_heap *h;
	struct msg_exec *m;
	struct file *file;
	struct inode *inode;
	unsigned long arg_start, arg_end, args_len;
	const struct cred *cred;
	struct walk w = {};
	long n;

	h = bpf_map_lookup_elem(&kerneye_exec_heap, &cpu);
	if (!h)
		return 0;
	m = &h->m;
	__builtin_memset(m, 0, sizeof(*m));
	m->common.op = MSG_OP_EXECVE;
	m->common.ktime = bpf_ktime_get_ns();

	tgid = BPF_CORE_READ(task, tgid);
	ptgid = BPF_CORE_READ(task, real_parent, tgid);
	m->key.pid = tgid;
	m->key.ktime = m->common.ktime;
	m->tid = BPF_CORE_READ(task, pid);
	m->ppid = ptgid;
	m->flags = EXEC_FLAG_EXECVE;

	curr = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);
	if (curr && (curr->flags & EXEC_FLAG_CLONE))
		m->flags |= EXEC_FLAG_CLONE;
	pv = bpf_map_lookup_elem(&kerneye_execve_map, &ptgid);
	if (pv) {
		m->parent = pv->key;
	} else {
		m->parent.pid = ptgid;
		m->flags |= EXEC_FLAG_PARENT_MISS;
	}
	nv.key = m->key;
	nv.parent = m->parent;
	nv.flags = EXEC_FLAG_EXECVE;
	if (curr)
		nv.bin_match = curr->bin_match; /* kept only for follow slots, below */

	m->auid = task_auid(task);
	cred = BPF_CORE_READ(task, cred);
	fill_cred(&m->cred, cred);
	fill_ns(&m->ns, task, &m->nspid);
	m->cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);

	file = BPF_CORE_READ(bprm, file);
	inode = BPF_CORE_READ(file, f_inode);
	m->bin_mode = BPF_CORE_READ(inode, i_mode);
	m->bin_uid = BPF_CORE_READ(inode, i_uid.val);
	m->bin_gid = BPF_CORE_READ(inode, i_gid.val);
	m->bin_nlink = BPF_CORE_READ(inode, __i_nlink);
	m->bin_ino = BPF_CORE_READ(inode, i_ino);
	if (m->bin_mode & S_ISUID) {
		m->flags |= EXEC_FLAG_SETUID;
		if (m->cred.euid == m->bin_uid && m->cred.euid != m->cred.uid)
			m->flags |= EXEC_FLAG_PRIV_SETUID;
	}
	if (m->bin_mode & S_ISGID) {
		m->flags |= EXEC_FLAG_SETGID;
		if (m->cred.egid == m->bin_gid && m->cred.egid != m->cred.gid)
			m->flags |= EXEC_FLAG_PRIV_SETGID;
	}
	/* A non-root, non-setuid exec that ends up with permitted capabilities
	 * got them from file capabilities (ambient sets aside). */
	if (m->cred.uid && m->cred.euid && m->cred.cap_permitted &&
	    !(m->flags & EXEC_FLAG_PRIV_SETUID)) {
		/* kernel_cap_t is a u64 since 6.3 and u32[2] before: read the 8 bytes
		 * (as fill_cred does), not a member whose name changed */
		__u64 ambient = 0;

		bpf_probe_read_kernel(&ambient, 8, &cred->cap_ambient);
		if (!ambient)
			m->flags |= EXEC_FLAG_PRIV_FILECAP;
	}

	nv.exec_caps_effective = m->cred.cap_effective;
	nv.exec_ns_mnt = m->ns.mnt;
	nv.exec_ns_net = m->ns.net;
	nv.exec_ns_pid = m->ns.pid;
	nv.exec_ns_user = m->ns.user;
	{
		__u32 zero = 0;
		struct gen_config *cfg = bpf_map_lookup_elem(&kerneye_config_map, &zero);

		if (cfg && cfg->bin_slots_used) {
			/* the path as executed (interpreter for scripts), and the
			 * file's real path (symlinks and relative paths resolved) */
			__u64 mask = bin_slots(BPF_CORE_READ(bprm, interp));

			if (path_render(BPF_CORE_READ(file, f_path.dentry), BPF_CORE_READ(file, f_path.mnt))) {
				struct path_scratch *ps = path_scratch();

				if (ps)
					mask |= bin_slots(ps->buf);
			}
			nv.bin_match = mask | (nv.bin_match & cfg->bin_follow_mask);
		} else {
			nv.bin_match = 0;
		}
	}
	if (bpf_map_update_elem(&kerneye_execve_map, &tgid, &nv, BPF_ANY))
		stat_inc(STAT_EXECVE_MAP_FULL);

	/* filename as given to execve */
	n = bpf_probe_read_kernel_str(h->data, MSG_FILENAME_MAX, BPF_CORE_READ(bprm, filename));
	if (n > 0) {
		off = n - 1; /* drop the NUL */
		if (n == MSG_FILENAME_MAX)
			m->flags |= EXEC_FLAG_TRUNC_FILENAME;
	} else {
		m->flags |= EXEC_FLAG_ERROR_FILENAME;
	}
	m->size_filename = off;

	/* argv, all of it, NUL-separated as the kernel laid it out */
	arg_start = BPF_CORE_READ(task, mm, arg_start);
	arg_end = BPF_CORE_READ(task, mm, arg_end);
	args_len = arg_end > arg_start ? arg_end - arg_start : 0;
	m->args_total = args_len;
	if (args_len > MSG_ARGS_MAX) {
		args_len = MSG_ARGS_MAX;
		m->flags |= EXEC_FLAG_TRUNC_ARGS;
	}
	if (args_len) {
		if (bpf_probe_read_user(h->data + BOUND(off, DATA_MASK), args_len & (MSG_ARGS_MAX - 1 | MSG_ARGS_MAX),
					(void *)arg_start)) {
			m->flags |= EXEC_FLAG_ERROR_ARGS;
			args_len = 0;
		}
	}
	m->size_args = args_len;
	off += args_len;

	/* cwd */
	w.dentry = BPF_CORE_READ(task, fs, pwd.dentry);
	w.mnt = container_of(BPF_CORE_READ(task, fs, pwd.mnt), struct mount, mnt);
	w.off = off;
	w.budget = MSG_CWD_MAX;
	bpf_loop(MSG_PATH_DEPTH, path_step, &w, 0);
	m->size_cwd = w.written;
	if (w.trunc)
		m->flags |= EXEC_FLAG_TRUNC_CWD;
	if (m->size_cwd == 0)
		m->flags |= EXEC_FLAG_ROOT_CWD;

	off = w.off;
	w.kn = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn);
	w.written = 0;
	w.trunc = 0;
	w.budget = MSG_CGROUP_MAX;
	bpf_loop(MSG_CGROUP_DEPTH, cgroup_step, &w, 0);
	m->size_cgroup = w.written;
	if (w.trunc)
		m->flags |= EXEC_FLAG_TRUNC_CGROUP;
	off = w.off;

	/* name of the executed file: "memfd:x (deleted)" and the like */
	n = bpf_probe_read_kernel_str(h->data + BOUND(off, DATA_MASK), MSG_DNAME_MAX,
				      BPF_CORE_READ(file, f_path.dentry, d_name.name));
	if (n > 0) {
		m->size_dname = n - 1;
		off += n - 1;
	}

	off = BOUND(off, DATA_MASK);
	m->common.size = sizeof(*m) + off;
	if (bpf_ringbuf_output(&kerneye_events_rb, h, sizeof(*m) + off, rb_flags()))
		stat_inc(STAT_RB_LOST_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(kerneye_fork, struct task_struct *parent, struct task_struct *child)
{
	struct execve_map_value *pv, nv = {};
	struct msg_clone *m;
	__u32 tgid = BPF_CORE_READ(child, tgid);
	__u32 ptgid = BPF_CORE_READ(parent, tgid);
	__u64 now;

	if (BPF_CORE_READ(child, pid) != tgid)
		return 0; /* a thread: no process event */
	now = bpf_ktime_get_ns();
	nv.key.pid = tgid;
	nv.key.ktime = now;
	nv.flags = EXEC_FLAG_CLONE;
	pv = bpf_map_lookup_elem(&kerneye_execve_map, &ptgid);
	if (pv) {
		nv.parent = pv->key;
		/* same image as the parent: same binary matches, same exec state */
		nv.bin_match = pv->bin_match;
		nv.exec_caps_effective = pv->exec_caps_effective;
		nv.exec_ns_mnt = pv->exec_ns_mnt;
		nv.exec_ns_net = pv->exec_ns_net;
		nv.exec_ns_pid = pv->exec_ns_pid;
		nv.exec_ns_user = pv->exec_ns_user;
	} else {
		nv.parent.pid = ptgid;
	}
	if (bpf_map_update_elem(&kerneye_execve_map, &tgid, &nv, BPF_ANY))
		stat_inc(STAT_EXECVE_MAP_FULL);

	m = bpf_ringbuf_reserve(&kerneye_events_rb, sizeof(*m), 0);
	if (!m) {
		stat_inc(STAT_RB_LOST_CLONE);
		return 0;
	}
	m->common.op = MSG_OP_CLONE;
	m->common.flags = 0;
	m->common.pad = 0;
	m->common.size = sizeof(*m);
	m->common.ktime = now;
	m->key = nv.key;
	m->parent = nv.parent;
	m->tid = tgid;
	m->flags = pv ? EXEC_FLAG_CLONE : EXEC_FLAG_CLONE | EXEC_FLAG_PARENT_MISS;
	bpf_ringbuf_submit(m, rb_flags());
	return 0;
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(kerneye_exit, struct task_struct *task)
{
	struct execve_map_value *v;
	struct msg_exit *m;
	__u32 tgid;

	/* do_exit() decrements signal->live before this tracepoint: zero means
	 * this is the last thread of the process. */
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;
	tgid = BPF_CORE_READ(task, tgid);
	v = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);

	m = bpf_ringbuf_reserve(&kerneye_events_rb, sizeof(*m), 0);
	if (!m) {
		stat_inc(STAT_RB_LOST_EXIT);
	} else {
		m->common.op = MSG_OP_EXIT;
		m->common.flags = 0;
		m->common.pad = 0;
		m->common.size = sizeof(*m);
		m->common.ktime = bpf_ktime_get_ns();
		if (v) {
			m->key = v->key;
		} else {
			m->key.pid = tgid;
			m->key.pad = 0;
			m->key.ktime = 0;
		}
		m->tid = BPF_CORE_READ(task, pid);
		m->code = BPF_CORE_READ(task, exit_code);
		m->flags = v ? 0 : EXEC_FLAG_PARENT_MISS;
		m->pad = 0;
		bpf_ringbuf_submit(m, rb_flags());
	}
	if (v)
		bpf_map_delete_elem(&kerneye_execve_map, &tgid);
	return 0;
}
