// SPDX-License-Identifier: GPL-2.0-only
/*
 * Enforcement with BPF-LSM: each program below runs inside an LSM hook and a
 * negative return value makes the operation fail with that errno. This is the
 * strongest mechanism the kernel offers (5.7+, CONFIG_BPF_LSM and 'bpf' in
 * lsm=): nothing races, nothing fails open while the agent runs, and with
 * pinned links nothing fails open when it dies either.
 *
 *   kerneye_lsm_file_open      open() of listed inodes (optionally only for write)
 *   kerneye_lsm_bprm_check     execve() of listed inodes, or of any inode not on an allowlist
 *   kerneye_lsm_socket_create  SOCK_RAW AF_INET/AF_INET6 and every AF_PACKET socket
 *   kerneye_lsm_read_file      finit_module() (kernel_read_file, READING_MODULE)
 *   kerneye_lsm_load_data      init_module() (kernel_load_data, LOADING_MODULE)
 *   kerneye_lsm_bpf            bpf(BPF_PROG_LOAD), except by exempt tgids
 *   kerneye_lsm_path_unlink    unlink() of a protected inode       (CONFIG_SECURITY_PATH)
 *   kerneye_lsm_path_rename    rename() of, or onto, a protected inode
 *   kerneye_lsm_path_chmod     chmod() of a protected inode
 *   kerneye_lsm_task_kill      terminating/stopping signals to protected tgids
 *   kerneye_lsm_ptrace         ptrace attach (and process_vm_writev) to protected tgids
 *
 * Rules are data (kerneye/enforce_abi.h, BPF-LSM section): a program finds the
 * candidate rule slots for the operation (from the inode map, the task map or
 * the per-kind mask), then walks them: the first ENFORCE rule that applies
 * decides; otherwise the first MONITOR rule that applies is reported and the
 * operation goes on. Files are identified by (device, inode) as the kernel sees
 * them, so a hard link, a symlink, a rename or a bind mount names the same
 * rule, while a copy does not. A rule with a cgroup_mask applies only to tasks
 * in (or below) one of its cgroups, kept in the kerneye_lsm_cgroups array.
 * User space writes a rule's slot (and its cgroups) before any map entry
 * points at it, and clears the masks before it frees a slot (lsm.py).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "compiler.h"
#include "kerneye/enforce_abi.h"
#include "enforce.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define EPERM 1
#define AF_INET 2
#define AF_INET6 10
#define AF_PACKET 17
#define SOCK_RAW 3
#define SOCK_TYPE_MASK 0xf
#define FMODE_WRITE 0x2
#define PTRACE_MODE_ATTACH 0x02

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, ENF_LSM_MAX_RULES);
	__type(key, __u32);
	__type(value, struct enf_lsm_rule);
} kerneye_lsm_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct enf_lsm_config);
} kerneye_lsm_cfg SEC(".maps");

/* (inode, kind) -> slots of the rules naming that inode */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__type(key, struct enf_lsm_inode_key);
	__type(value, __u64);
} kerneye_lsm_inodes SEC(".maps");

/* tgid -> slots of the rules listing it (bpf: exempt; protect_task: protected) */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_lsm_tasks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, ENF_STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} kerneye_lsm_stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 << 10);
} kerneye_lsm_rb SEC(".maps");

/* The cgroup-v2 directories rules are scoped to (enf_lsm_rule.cgroup_mask
 * bits). User space writes a directory's fd; the map holds a reference to
 * the cgroup, so a removed directory stays matchable (and empty) until its
 * slot is cleared. An fd array: no BTF key/value types (libbpf drops them). */
struct {
	__uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
	__uint(max_entries, ENF_LSM_MAX_CGROUPS);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(__u32));
} kerneye_lsm_cgroups SEC(".maps");

/* kerneye_execve_map (binary qualifiers) is declared in lib/enforce.bpf.h. */

/* What one operation looks like in a report. */
struct op {
	const char *name; /* kernel string, or NULL */
	__u64 ino;
	__u32 dev;
	__u32 target;
	__u32 arg;
	__u16 family;
	__u16 sock_type;
	__u16 protocol;
	__u8 hook;
};

FUNC_INLINE struct enf_lsm_config *lsm_config(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kerneye_lsm_cfg, &zero);
}

FUNC_INLINE __u64 inode_slots(struct inode *inode, __u32 kind)
{
	struct enf_lsm_inode_key k = {};
	__u64 *m;

	if (!inode)
		return 0;
	k.ino = BPF_CORE_READ(inode, i_ino);
	k.dev = BPF_CORE_READ(inode, i_sb, s_dev);
	k.kind = kind;
	m = bpf_map_lookup_elem(&kerneye_lsm_inodes, &k);
	return m ? *m : 0;
}

FUNC_INLINE __u64 task_slots(__u32 tgid)
{
	__u64 *m = bpf_map_lookup_elem(&kerneye_lsm_tasks, &tgid);

	return m ? *m : 0;
}

FUNC_INLINE __u64 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

struct cg_walk {
	__u64 want; /* kerneye_lsm_cgroups slots to test */
	__u64 in;   /* those the current task is in or below */
};

static long cg_step(__u32 i, void *ctx)
{
	struct cg_walk *w = ctx;

	if (i >= ENF_LSM_MAX_CGROUPS || !(w->want >> i))
		return 1;
	/* 1: under it; 0: not; < 0: empty slot (a rule freed meanwhile) */
	if (((w->want >> i) & 1) && bpf_current_task_under_cgroup(&kerneye_lsm_cgroups, i) == 1)
		w->in |= 1ULL << i;
	return 0;
}

/* The slots of `want` whose cgroup holds the current task (its cgroup-v2
 * directory or an ancestor of it). bpf_loop (5.17+) so that the verifier
 * checks the step once instead of a loop inside choose()'s loop. */
static __attribute__((noinline)) __u64 cgroups_in(__u64 want)
{
	struct cg_walk w = { .want = want };

	bpf_loop(ENF_LSM_MAX_CGROUPS, cg_step, &w, 0);
	return w.in;
}

/* The rule that decides among the candidate slots: the first ENFORCE rule
 * that applies, else the first MONITOR one, else NULL. A rule applies when its
 * binary qualifier matches, for write-only open rules when the open is for
 * write (is_write), and for cgroup-scoped rules when the current task is in
 * one of its cgroups (tested last, each cgroup slot at most once a walk). */
static __attribute__((noinline)) struct enf_lsm_rule *choose(__u64 cand, int is_write)
{
	struct enf_lsm_rule *mon = NULL;
	__u64 bin_match = enf_bin_match();
	__u64 cg_known = 0, cg_in = 0;

	for (__u32 i = 0; i < ENF_LSM_MAX_RULES; i++) {
		struct enf_lsm_rule *r;
		__u32 k = i;

		if (!(cand & (1ULL << i)))
			continue;
		r = bpf_map_lookup_elem(&kerneye_lsm_rules, &k);
		if (!r || !(r->flags & ENF_LSM_RULE_USED) || r->mode == ENF_MODE_OFF)
			continue;
		if ((r->flags & ENF_LSM_RULE_WRITE_ONLY) && !is_write)
			continue;
		if (!enf_bin_applies(bin_match, r->bin_mask, r->flags & ENF_LSM_RULE_BIN_NOT))
			continue;
		if (r->cgroup_mask) {
			__u64 need = r->cgroup_mask & ~cg_known;

			if (need) {
				cg_in |= cgroups_in(need);
				cg_known |= need;
			}
			if (!(cg_in & r->cgroup_mask))
				continue;
		}
		if (r->mode == ENF_MODE_ENFORCE)
			return r;
		if (!mon)
			mon = r;
	}
	return mon;
}

/* Report the decision of rule r (if any) and return the hook's verdict. */
FUNC_INLINE int finish(struct enf_lsm_rule *r, struct op *op)
{
	struct enf_lsm_event *e;
	int enforce, err;

	if (!r)
		return 0;
	enforce = r->mode == ENF_MODE_ENFORCE;
	err = r->err > 0 ? r->err : EPERM;
	enf_count(&kerneye_lsm_stats, enforce ? ENF_STAT_DENIED : ENF_STAT_MONITORED);
	e = enf_reserve(&kerneye_lsm_rb, sizeof(*e), &kerneye_lsm_stats);
	if (!e)
		return enforce ? -err : 0;
	enf_msg_common(&e->common, ENF_LSM_MSG_OP, sizeof(*e));
	e->hook = op->hook;
	e->verdict = enforce ? ENF_VERDICT_DENY : ENF_VERDICT_ALLOW;
	e->flags = enforce ? 0 : ENF_EV_MONITOR;
	e->kind = r->kind;
	e->rule_id = r->id;
	e->err = enforce ? err : 0;
	e->target = op->target;
	e->arg = op->arg;
	e->dev = op->dev;
	e->ino = op->ino;
	e->family = op->family;
	e->sock_type = op->sock_type;
	e->protocol = op->protocol;
	e->pad = 0;
	ENF_FILL_TASK(e);
	e->name[0] = 0;
	if (op->name)
		bpf_probe_read_kernel_str(e->name, sizeof(e->name), op->name);
	bpf_ringbuf_submit(e, 0);
	return enforce ? -err : 0;
}

FUNC_INLINE void op_inode(struct op *op, struct inode *inode, struct dentry *dentry)
{
	op->ino = BPF_CORE_READ(inode, i_ino);
	op->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	if (dentry)
		op->name = (const char *)BPF_CORE_READ(dentry, d_name.name);
}

SEC("lsm/file_open")
int BPF_PROG(kerneye_lsm_file_open, struct file *file)
{
	struct enf_lsm_config *cfg = lsm_config();
	struct op op = { .hook = ENF_LSM_HOOK_FILE_OPEN };
	struct inode *inode;
	__u64 cand;

	if (!cfg || !cfg->kind_mask[ENF_LSM_KIND_OPEN])
		return 0;
	inode = BPF_CORE_READ(file, f_inode);
	cand = inode_slots(inode, ENF_LSM_KIND_OPEN) & cfg->kind_mask[ENF_LSM_KIND_OPEN];
	if (!cand)
		return 0;
	op.arg = BPF_CORE_READ(file, f_mode);
	op_inode(&op, inode, BPF_CORE_READ(file, f_path.dentry));
	return finish(choose(cand, op.arg & FMODE_WRITE), &op);
}

/* Runs once per binary handler stage: for a script, first with the script,
 * then with its interpreter (bprm->file changes, bprm->filename does not). A
 * memfd or any other file not on an allowlist has an inode no rule names. */
SEC("lsm/bprm_check_security")
int BPF_PROG(kerneye_lsm_bprm_check, struct linux_binprm *bprm)
{
	struct enf_lsm_config *cfg = lsm_config();
	struct op op = { .hook = ENF_LSM_HOOK_BPRM_CHECK };
	__u64 deny, allow, cand = 0;
	struct inode *inode;

	if (!cfg)
		return 0;
	deny = cfg->kind_mask[ENF_LSM_KIND_EXEC_DENY];
	allow = cfg->kind_mask[ENF_LSM_KIND_EXEC_ALLOW];
	if (!deny && !allow)
		return 0;
	inode = BPF_CORE_READ(bprm, file, f_inode);
	if (deny)
		cand |= inode_slots(inode, ENF_LSM_KIND_EXEC_DENY) & deny;
	if (allow)
		cand |= allow & ~inode_slots(inode, ENF_LSM_KIND_EXEC_ALLOW);
	if (!cand)
		return 0;
	op_inode(&op, inode, NULL);
	op.name = BPF_CORE_READ(bprm, filename);
	return finish(choose(cand, 1), &op);
}

SEC("lsm/socket_create")
int BPF_PROG(kerneye_lsm_socket_create, int family, int type, int protocol, int kern)
{
	struct enf_lsm_config *cfg;
	struct op op = { .hook = ENF_LSM_HOOK_SOCKET_CREATE };
	int t = type & SOCK_TYPE_MASK;
	__u64 cand;

	if (kern)
		return 0;
	if (family != AF_PACKET && !((family == AF_INET || family == AF_INET6) && t == SOCK_RAW))
		return 0;
	cfg = lsm_config();
	if (!cfg)
		return 0;
	cand = cfg->kind_mask[ENF_LSM_KIND_RAW_SOCKET];
	if (!cand)
		return 0;
	op.family = family;
	op.sock_type = t;
	op.protocol = protocol;
	return finish(choose(cand, 1), &op);
}

FUNC_INLINE int module_load(struct op *op)
{
	struct enf_lsm_config *cfg = lsm_config();
	__u64 cand;

	if (!cfg)
		return 0;
	cand = cfg->kind_mask[ENF_LSM_KIND_MODULE];
	if (!cand)
		return 0;
	return finish(choose(cand, 1), op);
}

/* finit_module(): the module file is read through kernel_read_file(). */
SEC("lsm/kernel_read_file")
int BPF_PROG(kerneye_lsm_read_file, struct file *file, enum kernel_read_file_id id, bool contents)
{
	struct op op = { .hook = ENF_LSM_HOOK_KERNEL_READ_FILE };

	if (id != bpf_core_enum_value(enum kernel_read_file_id, READING_MODULE))
		return 0;
	op.arg = id;
	if (file)
		op_inode(&op, BPF_CORE_READ(file, f_inode), BPF_CORE_READ(file, f_path.dentry));
	return module_load(&op);
}

/* init_module(): the image comes from a user buffer. */
SEC("lsm/kernel_load_data")
int BPF_PROG(kerneye_lsm_load_data, enum kernel_load_data_id id, bool contents)
{
	struct op op = { .hook = ENF_LSM_HOOK_KERNEL_LOAD_DATA };

	if (id != bpf_core_enum_value(enum kernel_load_data_id, LOADING_MODULE))
		return 0;
	op.arg = id;
	return module_load(&op);
}

/* Only the first argument is used: the hook gained a 'bool kernel' argument
 * in 6.16, which would shift anything read after 'size'. */
SEC("lsm/bpf")
int BPF_PROG(kerneye_lsm_bpf, int cmd, union bpf_attr *attr, unsigned int size)
{
	struct enf_lsm_config *cfg;
	struct op op = { .hook = ENF_LSM_HOOK_BPF };
	__u64 cand;

	if (cmd != BPF_PROG_LOAD)
		return 0;
	cfg = lsm_config();
	if (!cfg)
		return 0;
	cand = cfg->kind_mask[ENF_LSM_KIND_BPF];
	if (!cand)
		return 0;
	cand &= ~task_slots(current_tgid());
	if (!cand)
		return 0;
	op.arg = cmd;
	return finish(choose(cand, 1), &op);
}

FUNC_INLINE int protect_file(struct dentry *dentry, __u8 hook, __u32 arg)
{
	struct enf_lsm_config *cfg = lsm_config();
	struct op op = { .hook = hook, .arg = arg };
	struct inode *inode;
	__u64 cand;

	if (!cfg || !cfg->kind_mask[ENF_LSM_KIND_PROTECT_FILE] || !dentry)
		return 0;
	inode = BPF_CORE_READ(dentry, d_inode);
	if (!inode) /* negative dentry: the rename target does not exist */
		return 0;
	cand = inode_slots(inode, ENF_LSM_KIND_PROTECT_FILE) & cfg->kind_mask[ENF_LSM_KIND_PROTECT_FILE];
	if (!cand)
		return 0;
	op_inode(&op, inode, dentry);
	return finish(choose(cand, 1), &op);
}

SEC("lsm/path_unlink")
int BPF_PROG(kerneye_lsm_path_unlink, const struct path *dir, struct dentry *dentry)
{
	return protect_file(dentry, ENF_LSM_HOOK_PATH_UNLINK, 0);
}

SEC("lsm/path_rename")
int BPF_PROG(kerneye_lsm_path_rename, const struct path *old_dir, struct dentry *old_dentry,
	     const struct path *new_dir, struct dentry *new_dentry)
{
	int ret = protect_file(old_dentry, ENF_LSM_HOOK_PATH_RENAME, 0);

	if (ret)
		return ret;
	/* renaming something else onto a protected file replaces it */
	return protect_file(new_dentry, ENF_LSM_HOOK_PATH_RENAME, 1);
}

SEC("lsm/path_chmod")
int BPF_PROG(kerneye_lsm_path_chmod, const struct path *path, umode_t mode)
{
	return protect_file(BPF_CORE_READ(path, dentry), ENF_LSM_HOOK_PATH_CHMOD, mode);
}

/* Protected-task rules: the target's tgid must be listed and the sender's
 * not (a protected process may signal or trace its own kind). */
FUNC_INLINE int protect_task(struct task_struct *target, __u8 hook, __u32 arg)
{
	struct enf_lsm_config *cfg = lsm_config();
	struct op op = { .hook = hook, .arg = arg };
	__u64 cand;

	if (!cfg || !cfg->kind_mask[ENF_LSM_KIND_PROTECT_TASK])
		return 0;
	op.target = BPF_CORE_READ(target, tgid);
	cand = task_slots(op.target) & cfg->kind_mask[ENF_LSM_KIND_PROTECT_TASK];
	if (!cand)
		return 0;
	cand &= ~task_slots(current_tgid());
	if (!cand)
		return 0;
	return finish(choose(cand, 1), &op);
}

/* Signals whose default action neither terminates nor stops a task: 0 (the
 * existence probe), SIGCHLD, SIGCONT, SIGURG, SIGWINCH. Every other signal
 * to a protected task is denied. Signals the kernel sends itself (faults,
 * the tty's ^C, the OOM killer) do not pass through this hook. */
#define HARMLESS_SIGNALS ((1ULL << 0) | (1ULL << 17) | (1ULL << 18) | (1ULL << 23) | (1ULL << 28))

SEC("lsm/task_kill")
int BPF_PROG(kerneye_lsm_task_kill, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred)
{
	if (sig >= 0 && sig < 64 && (HARMLESS_SIGNALS & (1ULL << sig)))
		return 0;
	return protect_task(p, ENF_LSM_HOOK_TASK_KILL, sig);
}

/* Only attach mode: PTRACE_MODE_READ checks guard /proc/PID/{stat,fd,...},
 * which ps and top read. */
SEC("lsm/ptrace_access_check")
int BPF_PROG(kerneye_lsm_ptrace, struct task_struct *child, unsigned int mode)
{
	if (!(mode & PTRACE_MODE_ATTACH))
		return 0;
	return protect_task(child, ENF_LSM_HOOK_PTRACE, mode);
}
