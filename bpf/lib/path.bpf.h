/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Forward path rendering ("/usr/bin/cat") of a (dentry, vfsmount) pair, for
 * programs that cannot call bpf_d_path() (tracepoints, raw tracepoints).
 *
 * Two bpf_loop() passes: the first walks d_parent up to the global root,
 * crossing mount points, and records each component's name pointer; the
 * second writes "/" + name from the root down into this CPU's scratch
 * buffer. The result (NUL-terminated) is at path_scratch()->buf.
 */
#ifndef KERNEYE_PATH_H
#define KERNEYE_PATH_H

#define PATH_DEPTH 64
#define PATH_BUF 4096
#define PATH_NAME 256

struct path_scratch {
	const unsigned char *names[PATH_DEPTH];
	char buf[PATH_BUF + PATH_NAME + 2];
	struct dentry *dentry;
	struct mount *mnt;
	__u32 n;
	__u32 len;
	__u32 trunc;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct path_scratch);
} kerneye_path_scratch SEC(".maps");

FUNC_INLINE struct path_scratch *path_scratch(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&kerneye_path_scratch, &zero);
}

/* Root of a detached or pseudo filesystem (memfd, pipe, socket, nsfs):
 * keep its name, as d_path() does ("/memfd:x (deleted)"). nsfs names are
 * computed by d_dname() and empty in d_name: use the namespace type instead
 * ("/uts"). The global root ("/") adds nothing. */
FUNC_INLINE void path_pseudo_name(struct path_scratch *ps, struct dentry *dentry)
{
	const unsigned char *nm = BPF_CORE_READ(dentry, d_name.name);
	struct inode *ino = BPF_CORE_READ(dentry, d_inode);
	char c = 0;

	/* nsfs dentries are anonymous ("/"): name them after the namespace */
	if (ino && BPF_CORE_READ(ino, i_sb, s_magic) == 0x6e736673 /* NSFS_MAGIC */) {
		struct ns_common *ns = BPF_CORE_READ(ino, i_private);

		nm = (const unsigned char *)BPF_CORE_READ(ns, ops, name);
	}
	bpf_probe_read_kernel(&c, 1, nm);
	if (c == '/' || !c)
		return;
	if (ps->n < PATH_DEPTH) {
		ps->names[ps->n & (PATH_DEPTH - 1)] = nm;
		ps->n++;
	}
}

static long path_collect(__u64 i, void *ctx)
{
	struct path_scratch *ps = path_scratch();
	struct dentry *dentry, *parent;
	struct mount *mnt;

	if (!ps)
		return 1;
	dentry = ps->dentry;
	mnt = ps->mnt;
	if (dentry == BPF_CORE_READ(mnt, mnt.mnt_root)) {
		struct mount *mparent = BPF_CORE_READ(mnt, mnt_parent);

		if (mparent == mnt) {
			/* top of a mount tree. An internal one (nsfs, pipefs,
			 * sockfs, anon inodes) whose root is the file itself: name
			 * it like a pseudo file (below); the real root adds nothing */
			if (ps->n == 0)
				path_pseudo_name(ps, dentry);
			return 1;
		}
		ps->dentry = BPF_CORE_READ(mnt, mnt_mountpoint);
		ps->mnt = mparent;
		return 0;
	}
	parent = BPF_CORE_READ(dentry, d_parent);
	if (dentry == parent) {
		path_pseudo_name(ps, dentry);
		return 1;
	}
	if (ps->n >= PATH_DEPTH) {
		ps->trunc = 1;
		return 1;
	}
	ps->names[ps->n & (PATH_DEPTH - 1)] = BPF_CORE_READ(dentry, d_name.name);
	ps->n++;
	ps->dentry = parent;
	return 0;
}

static long path_emit(__u64 i, void *ctx)
{
	struct path_scratch *ps = path_scratch();
	__u32 idx, len;
	long n;

	if (!ps || i >= ps->n)
		return 1;
	idx = ps->n - 1 - i;
	if (idx >= PATH_DEPTH)
		return 1;
	len = ps->len;
	if (len >= PATH_BUF) {
		ps->trunc = 1;
		return 1;
	}
	ps->buf[len & (PATH_BUF - 1)] = '/';
	len++;
	n = bpf_probe_read_kernel_str(&ps->buf[len & (PATH_BUF - 1)], PATH_NAME, ps->names[idx & (PATH_DEPTH - 1)]);
	if (n <= 1)
		return 1;
	ps->len = len + n - 1;
	return 0;
}

/* Render path into path_scratch()->buf; returns its length (0 on error).
 * The root itself renders as "/". */
FUNC_INLINE __u32 path_render(struct dentry *dentry, struct vfsmount *vfsmnt)
{
	struct path_scratch *ps = path_scratch();

	if (!ps)
		return 0;
	ps->dentry = dentry;
	ps->mnt = container_of(vfsmnt, struct mount, mnt);
	ps->n = 0;
	ps->len = 0;
	ps->trunc = 0;
	bpf_loop(PATH_DEPTH + 8, path_collect, NULL, 0);
	bpf_loop(PATH_DEPTH, path_emit, NULL, 0);
	if (ps->len == 0) {
		ps->buf[0] = '/';
		ps->len = 1;
	}
	ps->buf[ps->len & (PATH_BUF - 1)] = 0;
	return ps->len;
}

#endif
