// SPDX-License-Identifier: GPL-2.0-only
/*
 * Policy-driven hooks. One object, loaded once; policies are data.
 *
 * For every hook of a TracingPolicy user space writes a struct gen_hook
 * (argument specs, flags) and up to GEN_MAX_SELECTORS struct gen_selector
 * into maps, then attaches one of the programs below with the hook id as
 * the BPF cookie (v5.15+). The same program can be attached many times:
 * each attachment is one hook.
 *
 *   kerneye_gen_sys_enter   tracepoint syscalls/sys_enter_*   (spec.kprobes, syscall)
 *   kerneye_gen_sys_exit    tracepoint syscalls/sys_exit_*    (return: true / returnArg)
 *   kerneye_gen_tp          any tracepoint (spec.tracepoints), fields by offset
 *   kerneye_gen_uprobe      uprobe (spec.uprobes)
 *   kerneye_gen_uretprobe   uretprobe
 *   kerneye_gen_kprobe      kprobe on a kernel function (spec.kprobes, syscall: false)
 *   kerneye_gen_kretprobe   kretprobe (return: true)
 *
 * Pipeline of one hit:
 *   raw values (ctx-specific) -> typed arguments into the event tail
 *   -> selectors in order (filters ANDed, first full match wins)
 *   -> actions (Signal/Sigkill in enforce mode, else counted as monitor)
 *   -> rate limit -> ring buffer
 * Hooks with a return value stash the entry state per thread and decide at
 * exit, where matchReturnArgs can be evaluated.
 */
#include "common.bpf.h"
#include "core_fixes.bpf.h"
#include "path.bpf.h"
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

#define GEN_TAIL 16384           /* event tail budget */
#define TAIL_MASK (GEN_TAIL - 1)
#define ARG_MASK (2 * GEN_ARG_MAX - 1)

enum { PH_ENTRY = 0, PH_EXIT = 1 };
enum src_kind { SRC_SYS_ENTER = 0, SRC_SYS_EXIT = 1, SRC_TP = 2, SRC_UPROBE = 3, SRC_URETPROBE = 4, SRC_RAWTP = 5,
		SRC_KPROBE = 6, SRC_KRETPROBE = 7 };

FUNC_INLINE int is_pathish(__u8 t)
{
	return t == GT_FD || t == GT_FILE || t == GT_BINPRM || t == GT_PATH;
}

/* What is stashed between entry and exit of a return hook. */
struct gen_stash {
	__u32 mask;   /* selectors whose entry filters passed */
	__u32 off;    /* tail bytes used */
	__s64 ival[GEN_MAX_ARGS];
	struct msg_generic m;
	char data[GEN_TAIL + 2 * GEN_ARG_MAX + 64];
};

struct gen_heap {
	struct gen_stash st;
	__u64 raw[GEN_MAX_ARGS];
	struct gen_str_key key;
	struct gen_str_key rkey;
	struct gen_addr_key akey;
	__u32 hook_id;
	__u32 phase;
	__u32 sel;        /* selector being evaluated */
	__u32 ok;         /* running AND of the filters */
	__u32 slen;       /* string scratch length */
	__u32 soff;       /* string offset in tail */
	__u64 hash;
	void *ctx;
	struct pt_regs regs; /* uprobe register copy */
	__u32 slot;
	__u32 src;           /* enum src_kind */
	__s64 exit_ret;
	__u32 walk_pid;
	__u32 walk_hit;
	struct task_struct *walk_task;
	__u64 pad2;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 64); /* set to the number of possible CPUs */
	__type(key, __u32);
	__type(value, struct gen_heap);
} kerneye_gen_heap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct gen_hook);
} kerneye_hooks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct gen_slot);
} kerneye_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, GEN_MAX_HOOKS * GEN_MAX_SELECTORS);
	__type(key, __u32);
	__type(value, struct gen_selector);
} kerneye_selectors SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_str_key);
	__type(value, __u8);
} kerneye_str_eq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_str_key);
	__type(value, __u8);
} kerneye_str_prefix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_str_key);
	__type(value, __u8);
} kerneye_str_postfix SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_addr_key);
	__type(value, __u8);
} kerneye_addr SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct gen_int_key);
	__type(value, __u8);
} kerneye_int_set SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, GEN_MAX_HOOKS);
	__type(key, __u32);
	__type(value, struct gen_hook_stats);
} kerneye_hook_stats SEC(".maps");

struct rate_key {
	__u32 hook_id;
	__u32 sel;
	__u64 scope;
	__u64 hash;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 32768);
	__type(key, struct rate_key);
	__type(value, __u64);
} kerneye_rate SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, __u64);
	__type(value, struct gen_stash);
} kerneye_stash SEC(".maps");

FUNC_INLINE struct gen_heap *heap(void)
{
	__u32 cpu = bpf_get_smp_processor_id();

	return bpf_map_lookup_elem(&kerneye_gen_heap, &cpu);
}

FUNC_INLINE struct gen_hook_stats *hstats(__u32 hook_id)
{
	return bpf_map_lookup_elem(&kerneye_hook_stats, &hook_id);
}

/* ------------------------------------------------------------------ */
/* argument readers                                                    */

FUNC_INLINE __s64 extend(__u64 v, __u8 type)
{
	switch (type) {
	case GT_S32: case GT_BPF_CMD: case GT_CAP: case GT_FD: case GT_SOCK:
		return (__s64)(__s32)v;
	case GT_U32:
		return (__u32)v;
	case GT_S16:
		return (__s64)(__s16)v;
	case GT_U16:
		return (__u16)v;
	case GT_S8:
		return (__s64)(__s8)v;
	case GT_U8:
		return (__u8)v;
	default:
		return (__s64)v;
	}
}

FUNC_INLINE struct file *fd_file(int fd)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file **fds;
	unsigned int max;
	struct file *f = NULL;

	if (fd < 0)
		return NULL;
	max = BPF_CORE_READ(task, files, fdt, max_fds);
	if ((unsigned int)fd >= max)
		return NULL;
	fds = BPF_CORE_READ(task, files, fdt, fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

#define AF_INET 2
#define AF_INET6 10
#define AF_UNIX 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000

FUNC_INLINE void map_v4(__u8 *addr16, __u32 v4)
{
	__builtin_memset(addr16, 0, 10);
	addr16[10] = 0xff;
	addr16[11] = 0xff;
	__builtin_memcpy(addr16 + 12, &v4, 4);
}

/* A sockaddr is a user pointer at a syscall, a kernel copy in a kernel
 * function (kprobes: security_socket_connect and the like). */
FUNC_INLINE void read_mem(void *dst, __u32 n, void *src, __u32 user)
{
	if (user)
		bpf_probe_read_user(dst, n, src);
	else
		bpf_probe_read_kernel(dst, n, src);
}

static long read_arg(__u64 i, void *unused)
{
	struct gen_heap *h = heap();
	struct gen_hook *hook;
	struct gen_arg_spec *spec;
	__u32 off, sz, len = 0;
	__u64 idx = i;
	char *dst;
	__u64 raw;
	long n;

	if (!h || idx >= GEN_MAX_ARGS)
		return 1;
	hook = bpf_map_lookup_elem(&kerneye_hooks, &h->hook_id);
	if (!hook)
		return 1;
	/* older verifiers (6.1) lose the bound of idx across the lookup */
	asm volatile("" : "+r"(idx));
	if (idx >= GEN_MAX_ARGS)
		return 1;
	spec = &hook->args[idx];
	raw = h->raw[idx];
	off = h->st.off & TAIL_MASK;
	dst = &h->st.data[off];
	h->st.m.arg_off[idx] = off;
	sz = spec->max_data;
	if (sz == 0 || sz > GEN_ARG_MAX)
		sz = GEN_ARG_MAX;

	switch (spec->type) {
	case GT_STRING:
		if (spec->user)
			n = bpf_probe_read_user_str(dst, sz & ARG_MASK, (void *)raw);
		else
			n = bpf_probe_read_kernel_str(dst, sz & ARG_MASK, (void *)raw);
		if (n > 0) {
			len = n - 1;
			if ((__u32)n == sz)
				h->st.m.arg_trunc |= 1 << idx;
		}
		break;
	case GT_CHAR_BUF: {
		__u64 want = spec->size_arg ? h->raw[(spec->size_arg - 1) & 7 & (GEN_MAX_ARGS | 3)] : sz;

		if ((__s64)want < 0)
			want = 0;
		if (want > sz) {
			want = sz;
			h->st.m.arg_trunc |= 1 << idx;
		}
		len = want;
		if (len) {
			if (spec->user)
				n = bpf_probe_read_user(dst, len & ARG_MASK, (void *)raw);
			else
				n = bpf_probe_read_kernel(dst, len & ARG_MASK, (void *)raw);
			if (n)
				len = 0;
		}
		break;
	}
	case GT_FD:
	case GT_FILE:
	case GT_BINPRM:
	case GT_PATH: {
		struct file *f = NULL;
		struct dentry *d = NULL;
		struct vfsmount *mnt = NULL;
		__u32 plen = 0;

		if (spec->type == GT_FD)
			f = fd_file((int)raw);
		else if (spec->type == GT_FILE)
			f = (struct file *)raw;
		else if (spec->type == GT_BINPRM)
			f = BPF_CORE_READ((struct linux_binprm *)raw, file);
		if (f) {
			d = BPF_CORE_READ(f, f_path.dentry);
			mnt = BPF_CORE_READ(f, f_path.mnt);
		} else if (spec->type == GT_PATH && raw) {
			d = BPF_CORE_READ((struct path *)raw, dentry);
			mnt = BPF_CORE_READ((struct path *)raw, mnt);
		}
		__builtin_memcpy(dst, &raw, 8);
		h->st.ival[idx] = spec->type == GT_FD ? (__s64)(__s32)raw : (__s64)raw;
		len = 8;
		if (d && mnt) {
			plen = path_render(d, mnt);
			if (plen) {
				struct path_scratch *ps = path_scratch();

				if (ps && plen < GEN_ARG_MAX) {
					h = heap();
					if (!h)
						return 1;
					bpf_probe_read_kernel(&h->st.data[(off + 8) & TAIL_MASK], plen & (GEN_ARG_MAX - 1), ps->buf);
					len += plen & (GEN_ARG_MAX - 1);
				}
			}
		}
		break;
	}
	case GT_SOCKADDR: {
		struct gen_sockaddr sa = {};
		__u16 fam = 0;

		read_mem(&fam, 2, (void *)raw, spec->user);
		sa.family = fam;
		if (fam == AF_INET) {
			__u16 port = 0;
			__u32 a = 0;

			read_mem(&port, 2, (void *)(raw + 2), spec->user);
			read_mem(&a, 4, (void *)(raw + 4), spec->user);
			sa.port = bpf_ntohs(port);
			map_v4(sa.addr, a);
		} else if (fam == AF_INET6) {
			__u16 port = 0;

			read_mem(&port, 2, (void *)(raw + 2), spec->user);
			read_mem(sa.addr, 16, (void *)(raw + 8), spec->user);
			sa.port = bpf_ntohs(port);
		}
		__builtin_memcpy(dst, &sa, sizeof(sa));
		len = sizeof(sa);
		h->st.ival[idx] = fam;
		break;
	}
	case GT_SOCK:
	case GT_KSOCK: {
		struct gen_sock gs = {};
		struct sock *sk = NULL;

		if (spec->type == GT_KSOCK) {
			sk = (struct sock *)raw;
		} else {
			struct file *f = fd_file((int)raw);

			if (f && (BPF_CORE_READ(f, f_inode, i_mode) & S_IFMT) == S_IFSOCK) {
				struct socket *so = BPF_CORE_READ(f, private_data);

				sk = BPF_CORE_READ(so, sk);
			}
		}
		if (sk) {
			gs.family = BPF_CORE_READ(sk, __sk_common.skc_family);
			gs.type = BPF_CORE_READ(sk, sk_type);
			gs.protocol = BPF_CORE_READ(sk, sk_protocol);
			gs.state = BPF_CORE_READ(sk, __sk_common.skc_state);
			gs.sport = BPF_CORE_READ(sk, __sk_common.skc_num);
			gs.dport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
			gs.cookie = (__u64)sk; /* as Tetragon: the socket's address identifies it */
			if (gs.family == AF_INET) {
				map_v4(gs.saddr, BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr));
				map_v4(gs.daddr, BPF_CORE_READ(sk, __sk_common.skc_daddr));
			} else if (gs.family == AF_INET6) {
				BPF_CORE_READ_INTO(&gs.saddr, sk, __sk_common.skc_v6_rcv_saddr);
				BPF_CORE_READ_INTO(&gs.daddr, sk, __sk_common.skc_v6_daddr);
			}
		}
		__builtin_memcpy(dst, &gs, sizeof(gs));
		len = sizeof(gs);
		h->st.ival[idx] = (__s32)raw;
		break;
	}
	default: {
		__s64 v = extend(raw, spec->type);

		h->st.ival[idx] = v;
		__builtin_memcpy(dst, &v, 8);
		len = 8;
	}
	}
	h = heap();
	if (!h)
		return 1;
	h->st.m.arg_len[idx] = len;
	h->st.off = (off + len + 7) & ~7U;
	if (h->st.off > GEN_TAIL - GEN_ARG_MAX - 64)
		h->st.off = GEN_TAIL - GEN_ARG_MAX - 64; /* later args overwrite; flagged */
	return 0;
}

/* ------------------------------------------------------------------ */
/* filters                                                             */

FUNC_INLINE int int_match_op(struct gen_filter *f, __u8 op, __s64 v, int is_unsigned)
{
	int j, hit = 0;

	switch (op) {
	case GOP_EQ:
	case GOP_NEQ:
		for (j = 0; j < GEN_MAX_VALUES; j++)
			if (j < f->nvals && (__s64)f->vals[j] == v)
				hit = 1;
		return op == GOP_EQ ? hit : !hit;
	case GOP_GT:
		return is_unsigned ? (__u64)v > f->vals[0] : v > (__s64)f->vals[0];
	case GOP_LT:
		return is_unsigned ? (__u64)v < f->vals[0] : v < (__s64)f->vals[0];
	case GOP_MASK:
		for (j = 0; j < GEN_MAX_VALUES; j++)
			if (j < f->nvals && (v & f->vals[j]))
				hit = 1;
		return hit;
	case GOP_RANGE:
	case GOP_NOT_RANGE:
		for (j = 0; j + 1 < GEN_MAX_VALUES; j += 2)
			if (j < f->nvals && (__s64)f->vals[j] <= v && v <= (__s64)f->vals[j + 1])
				hit = 1;
		return op == GOP_RANGE ? hit : !hit;
	case GOP_IN_MAP:
	case GOP_NOT_IN_MAP: {
		struct gen_int_key k = { .id = f->id, .val = v };

		hit = bpf_map_lookup_elem(&kerneye_int_set, &k) != NULL;
		return op == GOP_IN_MAP ? hit : !hit;
	}
	}
	return 0;
}

FUNC_INLINE int int_match(struct gen_filter *f, __s64 v, int is_unsigned)
{
	return int_match_op(f, f->op, v, is_unsigned);
}

FUNC_INLINE int port_match(struct gen_filter *f, __u16 port)
{
	int j, hit = 0;

	for (j = 0; j + 1 < GEN_MAX_VALUES; j += 2)
		if (j < f->nvals && f->vals[j] <= port && port <= f->vals[j + 1])
			hit = 1;
	return hit;
}

FUNC_INLINE int addr_match(struct gen_heap *h, struct gen_filter *f, __u8 *addr16)
{
	h->akey.prefixlen = 32 + 128;
	h->akey.id = f->id;
	__builtin_memcpy(h->akey.addr, addr16, 16);
	return bpf_map_lookup_elem(&kerneye_addr, &h->akey) != NULL;
}

static long rev_cb(__u64 i, void *unused)
{
	struct gen_heap *h = heap();
	__u32 src;

	if (!h || i >= h->slen || i >= GEN_POSTFIX_MAX)
		return 1;
	src = h->soff + h->slen - 1 - i;
	h->rkey.s[i & (GEN_POSTFIX_MAX - 1)] = h->st.data[src & TAIL_MASK];
	return 0;
}

/* String operators on the tail bytes at (soff, slen). */
FUNC_INLINE int str_match(struct gen_heap *h, struct gen_filter *f)
{
	__u32 len = h->slen;
	int hit = 0;

	switch (f->op) {
	case GOP_EQ:
	case GOP_NEQ:
		if (len < GEN_STR_MAX) {
			__u64 n = len;

			ASM_BOUND(n, 0xff);
			__builtin_memset(&h->key, 0, sizeof(h->key));
			h->key.id = f->id;
			if (n)
				bpf_probe_read_kernel(h->key.s, n, &h->st.data[h->soff & TAIL_MASK]);
			hit = bpf_map_lookup_elem(&kerneye_str_eq, &h->key) != NULL;
		}
		return f->op == GOP_EQ ? hit : !hit;
	case GOP_PREFIX:
	case GOP_NOT_PREFIX: {
		__u64 n = len < GEN_STR_MAX - 1 ? len : GEN_STR_MAX - 1;

		__builtin_memset(&h->key, 0, sizeof(h->key));
		h->key.id = f->id;
		h->key.prefixlen = 32 + n * 8;
		ASM_BOUND(n, 0xff);
		if (n)
			bpf_probe_read_kernel(h->key.s, n, &h->st.data[h->soff & TAIL_MASK]);
		hit = bpf_map_lookup_elem(&kerneye_str_prefix, &h->key) != NULL;
		return f->op == GOP_PREFIX ? hit : !hit;
	}
	case GOP_POSTFIX:
	case GOP_NOT_POSTFIX: {
		__u32 n = len < GEN_POSTFIX_MAX ? len : GEN_POSTFIX_MAX;

		__builtin_memset(&h->rkey, 0, sizeof(h->rkey));
		h->rkey.id = f->id;
		h->rkey.prefixlen = 32 + n * 8;
		bpf_loop(GEN_POSTFIX_MAX, rev_cb, NULL, 0);
		h = heap();
		if (!h)
			return 0;
		hit = bpf_map_lookup_elem(&kerneye_str_postfix, &h->rkey) != NULL;
		return f->op == GOP_POSTFIX ? hit : !hit;
	}
	}
	return 0;
}

static long pid_walk(__u64 i, void *unused)
{
	struct gen_heap *h = heap();
	struct task_struct *t, *cur;

	if (!h || !h->walk_task)
		return 1;
	cur = h->walk_task;
	t = BPF_CORE_READ(cur, real_parent);
	if (!t || t == cur)
		return 1;
	h->walk_task = t;
	if ((__u32)BPF_CORE_READ(t, tgid) == h->walk_pid) {
		h->walk_hit = 1;
		return 1;
	}
	return 0;
}

FUNC_INLINE __u32 ns_pid_of(struct task_struct *t)
{
	struct pid *p = BPF_CORE_READ(t, group_leader, thread_pid);
	unsigned int level = BPF_CORE_READ(p, level);
	struct upid up = {};

	bpf_probe_read_kernel(&up, sizeof(up), &p->numbers[level & 31]);
	return up.nr;
}

FUNC_INLINE __u32 ns_inum(struct task_struct *t, __u8 which)
{
	struct nsproxy *p = BPF_CORE_READ(t, nsproxy);

	switch (which) {
	case 0: return BPF_CORE_READ(p, uts_ns, ns.inum);
	case 1: return BPF_CORE_READ(p, ipc_ns, ns.inum);
	case 2: return BPF_CORE_READ(p, mnt_ns, ns.inum);
	case 3: {
		struct pid *tp = BPF_CORE_READ(t, thread_pid);
		unsigned int level = BPF_CORE_READ(tp, level);
		struct upid up = {};

		bpf_probe_read_kernel(&up, sizeof(up), &tp->numbers[level & 31]);
		return BPF_CORE_READ(up.ns, ns.inum);
	}
	case 4: return BPF_CORE_READ(p, pid_ns_for_children, ns.inum);
	case 5: return BPF_CORE_READ(p, net_ns, ns.inum);
	case 6: return ns_time(p, 0);
	case 7: return ns_time(p, 1);
	case 8: return BPF_CORE_READ(p, cgroup_ns, ns.inum);
	case 9: return BPF_CORE_READ(t, cred, user_ns, ns.inum);
	}
	return 0;
}

FUNC_INLINE __u64 cap_set(struct task_struct *t, __u8 which)
{
	const struct cred *c = BPF_CORE_READ(t, cred);
	__u64 v = 0;

	if (which == 1)
		bpf_probe_read_kernel(&v, 8, &c->cap_inheritable);
	else if (which == 2)
		bpf_probe_read_kernel(&v, 8, &c->cap_permitted);
	else
		bpf_probe_read_kernel(&v, 8, &c->cap_effective);
	return v;
}

static long filter_cb(__u64 i, void *unused)
{
	struct gen_heap *h = heap();
	struct gen_selector *sel;
	struct gen_filter *f;
	struct gen_hook *hook;
	struct task_struct *task;
	__u32 key, tgid;
	int ok = 0;

	if (!h || i >= GEN_MAX_FILTERS)
		return 1;
	key = h->hook_id * GEN_MAX_SELECTORS + h->sel;
	sel = bpf_map_lookup_elem(&kerneye_selectors, &key);
	hook = bpf_map_lookup_elem(&kerneye_hooks, &h->hook_id);
	if (!sel || !hook)
		return 1;
	f = &sel->f[i & (GEN_MAX_FILTERS - 1)];
	task = (struct task_struct *)bpf_get_current_task();
	tgid = bpf_get_current_pid_tgid() >> 32;

	switch (f->kind) {
	case FK_ARG: {
		__u32 a = f->arg;
		__u8 type;
		__u32 off;

		if (a >= GEN_MAX_ARGS)
			break;
		type = hook->args[a].type;
		off = h->st.m.arg_off[a];
		if (type == GT_STRING || type == GT_CHAR_BUF || is_pathish(type)) {
			if (is_pathish(type) && (f->op < GOP_EQ || f->op > GOP_NOT_POSTFIX)) {
				ok = int_match(f, h->st.ival[a], 0);
				break;
			}
			h->soff = off + (is_pathish(type) ? 8 : 0);
			h->slen = h->st.m.arg_len[a] - (is_pathish(type) ? 8 : 0);
			if ((__s32)h->slen < 0)
				h->slen = 0;
			ok = str_match(h, f);
		} else if (type == GT_SOCKADDR || type == GT_SOCK || type == GT_KSOCK) {
			struct gen_sockaddr sa;
			struct gen_sock gs;
			int is_sock = type != GT_SOCKADDR;
			__u8 *a_s, *a_d;
			__u16 p_s, p_d, fam, proto = 0, state = 0;

			if (is_sock) {
				bpf_probe_read_kernel(&gs, sizeof(gs), &h->st.data[off & TAIL_MASK]);
				a_s = gs.saddr; a_d = gs.daddr; p_s = gs.sport; p_d = gs.dport;
				fam = gs.family; proto = gs.protocol; state = gs.state;
			} else {
				bpf_probe_read_kernel(&sa, sizeof(sa), &h->st.data[off & TAIL_MASK]);
				/* a sockaddr has one address: S* and D* both mean it */
				a_s = sa.addr; a_d = sa.addr; p_s = sa.port; p_d = sa.port; fam = sa.family;
			}
			switch (f->op) {
			case GOP_SADDR: ok = addr_match(h, f, a_s); break;
			case GOP_NOT_SADDR: ok = !addr_match(h, f, a_s); break;
			case GOP_DADDR: ok = addr_match(h, f, a_d); break;
			case GOP_NOT_DADDR: ok = !addr_match(h, f, a_d); break;
			case GOP_SPORT: ok = port_match(f, p_s); break;
			case GOP_NOT_SPORT: ok = !port_match(f, p_s); break;
			case GOP_DPORT: ok = port_match(f, p_d); break;
			case GOP_NOT_DPORT: ok = !port_match(f, p_d); break;
			case GOP_FAMILY: ok = int_match_op(f, GOP_EQ, fam, 1); break;
			case GOP_PROTOCOL: ok = int_match_op(f, GOP_EQ, proto, 1); break;
			case GOP_STATE: ok = int_match_op(f, GOP_EQ, state, 1); break;
			}
		} else {
			ok = int_match(f, h->st.ival[a], type == GT_U64 || type == GT_U32 || type == GT_U16 || type == GT_U8);
		}
		break;
	}
	case FK_RET:
		if (h->phase != PH_EXIT)
			ok = 1; /* decided at exit */
		else
			ok = int_match(f, h->st.m.ret, 0);
		break;
	case FK_PID: {
		__u32 pid = (f->flags & FF_NSPID) ? ns_pid_of(task) : tgid;
		int j, hit = 0;

		for (j = 0; j < GEN_MAX_VALUES; j++)
			if (j < f->nvals && f->vals[j] == pid)
				hit = 1;
		if (!hit && (f->flags & FF_FOLLOW)) {
			for (j = 0; j < 4; j++) {
				if (j >= f->nvals)
					break;
				h->walk_task = task;
				h->walk_pid = f->vals[j];
				h->walk_hit = 0;
				bpf_loop(32, pid_walk, NULL, 0);
				h = heap();
				if (!h)
					return 1;
				if (h->walk_hit)
					hit = 1;
			}
		}
		ok = f->op == GOP_IN ? hit : !hit;
		break;
	}
	case FK_BIN: {
		struct execve_map_value *v = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);
		int hit = v && ((v->bin_match >> (f->vals[0] & 63)) & 1);

		ok = f->op == GOP_IN ? hit : !hit;
		break;
	}
	case FK_NS: {
		__u32 inum = ns_inum(task, f->arg);
		int j, hit = 0;

		for (j = 0; j < GEN_MAX_VALUES; j++)
			if (j < f->nvals && f->vals[j] == inum)
				hit = 1;
		ok = f->op == GOP_IN ? hit : !hit;
		break;
	}
	case FK_CAP: {
		int hit = (cap_set(task, f->arg) & f->vals[0]) != 0;

		ok = f->op == GOP_IN ? hit : !hit;
		break;
	}
	case FK_CAP_CHANGE: {
		struct execve_map_value *v = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);
		int hit = v && ((cap_set(task, 0) ^ v->exec_caps_effective) & f->vals[0]);

		ok = f->op == GOP_IN ? hit : !hit;
		break;
	}
	case FK_NS_CHANGE: {
		struct execve_map_value *v = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);
		int hit = 0;

		/* vals[0]: bit 2 mnt, 3 pid, 5 net, 9 user (msg_ns order) */
		if (v) {
			if ((f->vals[0] & (1 << 2)) && ns_inum(task, 2) != v->exec_ns_mnt)
				hit = 1;
			if ((f->vals[0] & (1 << 3)) && ns_inum(task, 3) != v->exec_ns_pid)
				hit = 1;
			if ((f->vals[0] & (1 << 5)) && ns_inum(task, 5) != v->exec_ns_net)
				hit = 1;
			if ((f->vals[0] & (1 << 9)) && ns_inum(task, 9) != v->exec_ns_user)
				hit = 1;
		}
		ok = f->op == GOP_IN ? hit : !hit;
		break;
	}
	default:
		ok = 1;
	}
	h = heap();
	if (!h)
		return 1;
	if (!ok) {
		h->ok = 0;
		return 1; /* AND: stop at the first failing filter */
	}
	return 0;
}

/* Evaluate selector s; 1 if all its filters pass in this phase. */
static long sel_cb(__u64 s, void *ctx)
{
	struct gen_heap *h = heap();
	struct gen_selector *sel;
	__u32 key, *res = ctx;

	if (!h || s >= GEN_MAX_SELECTORS)
		return 1;
	if (h->phase == PH_EXIT && !((h->st.mask >> s) & 1))
		return 0;
	key = h->hook_id * GEN_MAX_SELECTORS + s;
	sel = bpf_map_lookup_elem(&kerneye_selectors, &key);
	if (!sel)
		return 1;
	h->sel = s;
	h->ok = 1;
	bpf_loop(sel->nfilters & (GEN_MAX_FILTERS * 2 - 1), filter_cb, NULL, 0);
	h = heap();
	if (!h)
		return 1;
	if (h->ok) {
		if (h->phase == PH_ENTRY && (res[1] & 1)) {
			/* return hook: remember every selector that passed so far */
			res[0] |= 1 << s;
			return 0;
		}
		res[0] = s + 1;
		return 1;
	}
	return 0;
}

static long hash_cb(__u64 i, void *unused)
{
	struct gen_heap *h = heap();
	__u32 off, len;
	int k;

	if (!h || i >= GEN_MAX_ARGS)
		return 1;
	off = h->st.m.arg_off[i];
	len = h->st.m.arg_len[i];
	/* the first 40 bytes of each argument, as Tetragon's rate limit; bytes
	 * past the argument's length are masked (the scratch is not cleared) */
	for (k = 0; k < 5; k++) {
		__u64 v = 0;
		__u32 valid = len > (__u32)k * 8 ? len - k * 8 : 0;

		if (!valid)
			break;
		bpf_probe_read_kernel(&v, 8, &h->st.data[(off + k * 8) & TAIL_MASK]);
		if (valid < 8)
			v &= (1ULL << (valid * 8)) - 1;
		h->hash = (h->hash ^ v) * 0x100000001b3ULL;
	}
	h->hash = (h->hash ^ len) * 0x100000001b3ULL;
	return 0;
}

/* Actions of the matching selector, then the event. */
FUNC_INLINE int act_and_post(struct gen_heap *h, struct gen_hook *hook, __u32 s)
{
	struct gen_hook_stats *st = hstats(h->hook_id);
	struct gen_selector *sel = NULL;
	__u32 key, actions = AF_POST, size;
	__u64 tgid_pid = bpf_get_current_pid_tgid();
	__u32 tgid = tgid_pid >> 32;
	struct execve_map_value *pv;

	if (s < GEN_MAX_SELECTORS && hook->nsel) {
		key = h->hook_id * GEN_MAX_SELECTORS + s;
		sel = bpf_map_lookup_elem(&kerneye_selectors, &key);
		if (sel)
			actions = sel->actions;
	}
	h->st.m.sel = s;
	if (sel && (actions & AF_SIGNAL)) {
		h->st.m.signal = sel->signal;
		if (hook->flags & HF_ENFORCE) {
			bpf_send_signal(sel->signal);
			h->st.m.flags |= GF_SIGNALED;
			if (st)
				__sync_fetch_and_add(&st->enforced, 1);
		} else {
			h->st.m.flags |= GF_MONITOR;
			if (st)
				__sync_fetch_and_add(&st->monitored, 1);
		}
	}
	if (actions & AF_NOPOST)
		return 0;
	if (sel && sel->rate_limit_ms) {
		/* policy_id is the install generation: a re-added policy that gets
		 * the same hook id starts with a clean rate-limit state */
		struct rate_key rk = { .hook_id = h->hook_id, .sel = (hook->policy_id << 4) | s };
		__u64 now = bpf_ktime_get_ns(), *last;

		rk.scope = sel->rate_scope == 0 ? tgid_pid : sel->rate_scope == 1 ? tgid : 0;
		h->hash = 0xcbf29ce484222325ULL;
		bpf_loop(hook->nargs & 7, hash_cb, NULL, 0);
		h = heap();
		if (!h)
			return 0;
		rk.hash = h->hash;
		last = bpf_map_lookup_elem(&kerneye_rate, &rk);
		if (last && now - *last < (__u64)sel->rate_limit_ms * 1000000) {
			if (st)
				__sync_fetch_and_add(&st->rate_limited, 1);
			return 0;
		}
		bpf_map_update_elem(&kerneye_rate, &rk, &now, BPF_ANY);
	}
	h->st.m.common.op = MSG_OP_GENERIC;
	h->st.m.common.ktime = bpf_ktime_get_ns();
	pv = bpf_map_lookup_elem(&kerneye_execve_map, &tgid);
	if (pv) {
		h->st.m.key = pv->key;
	} else {
		h->st.m.key.pid = tgid;
		h->st.m.key.ktime = 0;
	}
	h->st.m.tid = (__u32)tgid_pid;
	h->st.m.hook_id = h->hook_id;
	size = sizeof(struct msg_generic) + (h->st.off & TAIL_MASK);
	h->st.m.common.size = size;
	if (bpf_ringbuf_output(&kerneye_events_rb, &h->st.m, size & (TAIL_MASK | GEN_TAIL | 0x1ff), rb_flags())) {
		stat_inc(STAT_RB_LOST_GENERIC);
		if (st)
			__sync_fetch_and_add(&st->lost, 1);
	} else if (st) {
		__sync_fetch_and_add(&st->posted, 1);
	}
	return 0;
}

/* Entry half: args are in h->raw. */
FUNC_INLINE int gen_entry(struct gen_heap *h, struct gen_hook *hook)
{
	__u32 res[2] = {0, 0};

	h->phase = PH_ENTRY;
	h->st.off = 0;
	h->st.mask = 0;
	__builtin_memset(&h->st.m, 0, sizeof(h->st.m));
	bpf_loop(hook->nargs & 7, read_arg, NULL, 0);
	h = heap();
	if (!h)
		return 0;
	if (hook->flags & HF_RETURN) {
		__u64 key = (bpf_get_current_pid_tgid() << 32) | h->hook_id;

		if (hook->nsel) {
			res[1] = 1;
			bpf_loop(hook->nsel & 7, sel_cb, res, 0);
			h = heap();
			if (!h || !res[0])
				return 0;
			h->st.mask = res[0];
		} else {
			h->st.mask = 1;
		}
		if (bpf_map_update_elem(&kerneye_stash, &key, &h->st, BPF_ANY))
			stat_inc(STAT_GEN_STASH_FULL);
		return 0;
	}
	if (hook->nsel) {
		bpf_loop(hook->nsel & 7, sel_cb, res, 0);
		h = heap();
		if (!h || !res[0])
			return 0;
		return act_and_post(h, hook, res[0] - 1);
	}
	return act_and_post(h, hook, 0);
}

FUNC_INLINE int gen_exit(struct gen_heap *h, struct gen_hook *hook, __s64 ret)
{
	__u64 key = (bpf_get_current_pid_tgid() << 32) | h->hook_id;
	struct gen_stash *st = bpf_map_lookup_elem(&kerneye_stash, &key);
	__u32 res[2] = {0, 0};

	if (!st)
		return 0;
	bpf_probe_read_kernel(&h->st, sizeof(h->st), st);
	bpf_map_delete_elem(&kerneye_stash, &key);
	h->phase = PH_EXIT;
	h->st.m.ret = ret;
	h->st.m.flags |= GF_RETURN;
	if (hook->nsel) {
		bpf_loop(hook->nsel & 7, sel_cb, res, 0);
		h = heap();
		if (!h || !res[0])
			return 0;
		return act_and_post(h, hook, res[0] - 1);
	}
	return act_and_post(h, hook, 0);
}

/* The agent's own tgid: its syscalls are never reported (no feedback loop
 * when a policy watches writes or bpf(2), which the agent itself does). */
const volatile __u32 cfg_self_tgid = 0;

/* Run hook i of the current slot: read its raw arguments for the program
 * kind, then the entry or exit half of the pipeline. */
static long hook_cb(__u64 i, void *unused)
{
	struct gen_heap *h = heap();
	struct gen_slot *slot;
	struct gen_hook *hook;
	__u32 hid;
	int j;

	if (!h || i >= GEN_HOOKS_PER_SLOT)
		return 1;
	slot = bpf_map_lookup_elem(&kerneye_slots, &h->slot);
	if (!slot)
		return 1;
	hid = slot->hooks[i & (GEN_HOOKS_PER_SLOT - 1)];
	hook = bpf_map_lookup_elem(&kerneye_hooks, &hid);
	if (!hook || !(hook->flags & HF_ENABLED))
		return 0;
	/* a hook being (re)installed may briefly sit in a slot it does not
	 * belong to: check both ends agree */
	if (h->src == SRC_SYS_EXIT || h->src == SRC_URETPROBE || h->src == SRC_KRETPROBE) {
		if (hook->exit_slot != h->slot)
			return 0;
	} else if (hook->slot != h->slot) {
		return 0;
	}
	h->hook_id = hid;
	switch (h->src) {
	case SRC_SYS_ENTER: {
		struct trace_event_raw_sys_enter *ctx = h->ctx;

		for (j = 0; j < GEN_MAX_ARGS; j++) {
			__u8 idx = hook->args[j].index;

			h->raw[j] = 0;
			if (hook->args[j].src == GS_SYSCALL && idx < 6)
				bpf_probe_read_kernel(&h->raw[j], 8, &ctx->args[idx]);
		}
		gen_entry(h, hook);
		break;
	}
	case SRC_TP: {
		void *ctx = h->ctx;

		for (j = 0; j < GEN_MAX_ARGS; j++) {
			struct gen_arg_spec *a = &hook->args[j];
			__u64 v = 0;

			if (a->src == GS_TP_FIELD) {
				bpf_probe_read_kernel(&v, a->fsize > 8 ? 8 : a->fsize & 15, ctx + (a->offset & 0xfff));
			} else if (a->src == GS_TP_DATALOC) {
				__u32 dl = 0;

				bpf_probe_read_kernel(&dl, 4, ctx + (a->offset & 0xfff));
				v = (__u64)(ctx + (dl & 0xffff));
			} else if (a->src == GS_TP_ARRAY) {
				v = (__u64)(ctx + (a->offset & 0xfff));
			}
			h->raw[j] = v;
		}
		gen_entry(h, hook);
		break;
	}
	case SRC_RAWTP: {
		struct bpf_raw_tracepoint_args *ctx = h->ctx;

		for (j = 0; j < GEN_MAX_ARGS; j++) {
			__u8 idx = hook->args[j].index;

			h->raw[j] = 0;
			if (idx < 12)
				bpf_probe_read_kernel(&h->raw[j], 8, &ctx->args[idx]);
		}
		gen_entry(h, hook);
		break;
	}
	case SRC_UPROBE:
	case SRC_KPROBE: /* the same registers; kernel pointers (spec->user = 0) */
		for (j = 0; j < GEN_MAX_ARGS; j++) {
			__u64 v = 0;

			switch (hook->args[j].index) {
			case 0: v = PT_REGS_PARM1(&h->regs); break;
			case 1: v = PT_REGS_PARM2(&h->regs); break;
			case 2: v = PT_REGS_PARM3(&h->regs); break;
			case 3: v = PT_REGS_PARM4(&h->regs); break;
			case 4: v = PT_REGS_PARM5(&h->regs); break;
			}
			h->raw[j] = v;
		}
		gen_entry(h, hook);
		break;
	case SRC_SYS_EXIT:
	case SRC_URETPROBE:
	case SRC_KRETPROBE:
		gen_exit(h, hook, h->exit_ret);
		break;
	}
	return 0;
}

FUNC_INLINE int run_slot(void *ctx, __u32 src)
{
	__u32 sid = bpf_get_attach_cookie(ctx);
	struct gen_slot *slot;
	struct gen_heap *h;

	if (cfg_self_tgid && (bpf_get_current_pid_tgid() >> 32) == cfg_self_tgid)
		return 0;
	slot = bpf_map_lookup_elem(&kerneye_slots, &sid);
	if (!slot || !slot->n)
		return 0;
	h = heap();
	if (!h)
		return 0;
	h->slot = sid;
	h->src = src;
	h->ctx = ctx;
	if (src == SRC_SYS_EXIT) {
		long ret = 0;

		bpf_probe_read_kernel(&ret, sizeof(ret), &((struct trace_event_raw_sys_exit *)ctx)->ret);
		h->exit_ret = ret;
	} else if (src == SRC_UPROBE || src == SRC_URETPROBE || src == SRC_KPROBE || src == SRC_KRETPROBE) {
		/* a copy: the verifier forbids variable-offset loads from ctx */
		bpf_probe_read_kernel(&h->regs, sizeof(h->regs), ctx);
		h->exit_ret = PT_REGS_RC(&h->regs);
	}
	bpf_loop(slot->n & (GEN_HOOKS_PER_SLOT * 2 - 1), hook_cb, NULL, 0);
	return 0;
}

SEC("tracepoint")
int kerneye_gen_sys_enter(void *ctx)
{
	return run_slot(ctx, SRC_SYS_ENTER);
}

SEC("tracepoint")
int kerneye_gen_sys_exit(void *ctx)
{
	return run_slot(ctx, SRC_SYS_EXIT);
}

SEC("tracepoint")
int kerneye_gen_tp(void *ctx)
{
	return run_slot(ctx, SRC_TP);
}

/* Raw tracepoints: attached with a cookie through BPF_RAW_TRACEPOINT_OPEN
 * (v6.10+); arguments are the tracepoint's C arguments. */
SEC("raw_tp")
int kerneye_gen_rawtp(struct bpf_raw_tracepoint_args *ctx)
{
	return run_slot(ctx, SRC_RAWTP);
}

SEC("uprobe")
int kerneye_gen_uprobe(struct pt_regs *ctx)
{
	return run_slot(ctx, SRC_UPROBE);
}

SEC("uretprobe")
int kerneye_gen_uretprobe(struct pt_regs *ctx)
{
	return run_slot(ctx, SRC_URETPROBE);
}

/* Kernel functions (v5.15+ for the perf-event kprobe cookie). Not loaded
 * where the kprobe feature probe fails (sensors/generic.py). */
SEC("kprobe")
int kerneye_gen_kprobe(struct pt_regs *ctx)
{
	return run_slot(ctx, SRC_KPROBE);
}

SEC("kretprobe")
int kerneye_gen_kretprobe(struct pt_regs *ctx)
{
	return run_slot(ctx, SRC_KRETPROBE);
}
