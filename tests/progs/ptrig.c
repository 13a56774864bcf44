// SPDX-License-Identifier: Apache-2.0
// kerneye test trigger for the shipped policy library (policies/*.yaml):
// makes the precise syscalls a test names, one op after another, printing
// "OP ... = RESULT" (negative errno on failure) for each.
//
//   ptrig OP [ARGS] [OP [ARGS]]...
//
//   pid                        print "pid <pid>"
//   bpf CMD SIZE               raw bpf(CMD, NULL, SIZE)
//   ptrace-attach              fork a sleeping child, PTRACE_ATTACH it, wait for the
//                              stop, PTRACE_DETACH, kill and reap it ("attach CHILD = R")
//   ptrace-traceme             fork a child that calls PTRACE_TRACEME and exits
//   delete-module NAME         raw delete_module(NAME, O_NONBLOCK)
//   finit-module FD            raw finit_module(FD, "", 0)
//   setuid|setgid|setfsuid|setfsgid ID
//   setreuid|setregid R E
//   setresuid|setresgid R E S  raw set*id syscalls (IDs may be -1)
//   capset                     capset() of the current capabilities (capget first)
//   setns NSFILE               open NSFILE, setns(fd, 0), close
//   memfd NAME FLAGS           memfd_create(NAME, FLAGS), close
//   execfd PATH                in a child: open PATH, execveat(fd, "", AT_EMPTY_PATH)
//   memexec NAME PATH          in a child: copy PATH into memfd NAME, execveat(fd, "", AT_EMPTY_PATH)
//   execat PATH                in a child: execveat(AT_FDCWD, PATH, flags 0)
//   accept4 HOST               listen on HOST (ephemeral port), connect, accept4(2)
//   accept4-fail               accept4(2) on a socket that is not listening (EINVAL)
//   openat PATH FLAGS | fchmodat PATH MODE | renameat2 FROM TO | unlinkat PATH
//                              the *at syscalls, relative to AT_FDCWD
//   chmod PATH MODE | rename FROM TO | unlink PATH | open PATH FLAGS
//                              the legacy (non-*at) syscalls glibc's chmod(),
//                              rename(), unlink() use on x86-64
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AT_EMPTY_PATH
#define AT_EMPTY_PATH 0x1000
#endif

static char **g_argv;
extern char **environ;

static void out(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void out(const char *fmt, ...)
{
	char buf[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n > 0)
		(void)!write(1, buf, n < (int)sizeof(buf) ? n : (int)sizeof(buf) - 1);
}

static long res(long r)
{
	return r < 0 ? -errno : r;
}

static void need(int i, int argc, int n, const char *op)
{
	if (i + n >= argc) {
		fprintf(stderr, "%s needs %d arguments\n", op, n);
		exit(2);
	}
}

static long num(const char *s)
{
	return strtol(s, NULL, 0);
}

/* Run fn(arg) in a child; return its exit status (128+sig if killed). */
static int in_child(void (*fn)(const char *, const char *), const char *a, const char *b)
{
	pid_t p;
	int st;

	p = fork();
	if (p < 0)
		return -1;
	if (p == 0) {
		fn(a, b);
		_exit(127);
	}
	if (waitpid(p, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

static void do_execfd(const char *path, const char *unused)
{
	char *argv[] = { (char *)path, NULL };
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	(void)unused;
	if (fd < 0)
		_exit(126);
	syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
	_exit(127);
}

static void do_memexec(const char *name, const char *path)
{
	char *argv[] = { (char *)name, NULL };
	char buf[65536];
	int src, fd;
	ssize_t n;

	src = open(path, O_RDONLY);
	fd = syscall(SYS_memfd_create, name, MFD_CLOEXEC);
	if (src < 0 || fd < 0)
		_exit(126);
	while ((n = read(src, buf, sizeof(buf))) > 0)
		if (write(fd, buf, n) != n)
			_exit(126);
	close(src);
	syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
	_exit(127);
}

static void do_execat(const char *path, const char *unused)
{
	char *argv[] = { (char *)path, NULL };

	(void)unused;
	syscall(SYS_execveat, AT_FDCWD, path, argv, environ, 0);
	_exit(127);
}

static void do_traceme(const char *a, const char *b)
{
	(void)a;
	(void)b;
	_exit(syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0) ? 1 : 0);
}

static int ptrace_attach(void)
{
	pid_t p;
	int st;
	long r;

	p = fork();
	if (p < 0)
		return 1;
	if (p == 0) {
		for (;;)
			pause();
	}
	r = res(syscall(SYS_ptrace, PTRACE_ATTACH, p, 0, 0));
	if (r == 0)
		waitpid(p, &st, 0);
	out("attach %d = %ld\n", p, r);
	if (r == 0)
		syscall(SYS_ptrace, PTRACE_DETACH, p, 0, 0);
	kill(p, SIGKILL);
	waitpid(p, &st, 0);
	return r != 0;
}

static int accept4_op(const char *host)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int l, c, a;

	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		return 2;
	l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&sa, len) || listen(l, 1))
		return 1;
	getsockname(l, (struct sockaddr *)&sa, &len);
	c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&sa, len))
		return 1;
	a = accept4(l, NULL, NULL, SOCK_CLOEXEC);
	out("accept4 port %d = %d\n", ntohs(sa.sin_port), a < 0 ? -errno : a);
	close(c);
	if (a >= 0)
		close(a);
	close(l);
	return a < 0;
}

static int capset_op(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];

	if (syscall(SYS_capget, &h, d))
		return 1;
	out("capset = %ld\n", res(syscall(SYS_capset, &h, d)));
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1, rc;

	g_argv = argv;
	while (i < argc) {
		const char *op = argv[i];

		if (!strcmp(op, "pid")) {
			out("pid %d\n", getpid());
			i += 1;
		} else if (!strcmp(op, "bpf")) {
			need(i, argc, 2, op);
			out("bpf %s = %ld\n", argv[i + 1], res(syscall(SYS_bpf, num(argv[i + 1]), NULL, num(argv[i + 2]))));
			i += 3;
		} else if (!strcmp(op, "ptrace-attach")) {
			if (ptrace_attach())
				return 1;
			i += 1;
		} else if (!strcmp(op, "ptrace-traceme")) {
			out("traceme = %d\n", in_child(do_traceme, NULL, NULL));
			i += 1;
		} else if (!strcmp(op, "delete-module")) {
			need(i, argc, 1, op);
			out("delete_module %s = %ld\n", argv[i + 1],
			    res(syscall(SYS_delete_module, argv[i + 1], O_NONBLOCK)));
			i += 2;
		} else if (!strcmp(op, "finit-module")) {
			need(i, argc, 1, op);
			out("finit_module %s = %ld\n", argv[i + 1], res(syscall(SYS_finit_module, num(argv[i + 1]), "", 0)));
			i += 2;
		} else if (!strcmp(op, "setuid") || !strcmp(op, "setgid") || !strcmp(op, "setfsuid") ||
			   !strcmp(op, "setfsgid")) {
			long nr = !strcmp(op, "setuid") ? SYS_setuid : !strcmp(op, "setgid") ? SYS_setgid :
				  !strcmp(op, "setfsuid") ? SYS_setfsuid : SYS_setfsgid;

			need(i, argc, 1, op);
			out("%s = %ld\n", op, res(syscall(nr, num(argv[i + 1]))));
			i += 2;
		} else if (!strcmp(op, "setreuid") || !strcmp(op, "setregid")) {
			need(i, argc, 2, op);
			out("%s = %ld\n", op, res(syscall(!strcmp(op, "setreuid") ? SYS_setreuid : SYS_setregid,
						       num(argv[i + 1]), num(argv[i + 2]))));
			i += 3;
		} else if (!strcmp(op, "setresuid") || !strcmp(op, "setresgid")) {
			need(i, argc, 3, op);
			out("%s = %ld\n", op, res(syscall(!strcmp(op, "setresuid") ? SYS_setresuid : SYS_setresgid,
						       num(argv[i + 1]), num(argv[i + 2]), num(argv[i + 3]))));
			i += 4;
		} else if (!strcmp(op, "capset")) {
			if (capset_op())
				return 1;
			i += 1;
		} else if (!strcmp(op, "setns")) {
			int fd;

			need(i, argc, 1, op);
			fd = open(argv[i + 1], O_RDONLY | O_CLOEXEC);
			if (fd < 0) {
				perror(argv[i + 1]);
				return 1;
			}
			out("setns %s fd %d = %ld\n", argv[i + 1], fd, res(syscall(SYS_setns, fd, 0)));
			close(fd);
			i += 2;
		} else if (!strcmp(op, "memfd")) {
			long fd;

			need(i, argc, 2, op);
			fd = res(syscall(SYS_memfd_create, argv[i + 1], (unsigned int)num(argv[i + 2])));
			out("memfd %s = %ld\n", argv[i + 1], fd);
			if (fd >= 0)
				close(fd);
			i += 3;
		} else if (!strcmp(op, "execfd") || !strcmp(op, "execat")) {
			need(i, argc, 1, op);
			rc = in_child(!strcmp(op, "execfd") ? do_execfd : do_execat, argv[i + 1], NULL);
			out("%s %s = %d\n", op, argv[i + 1], rc);
			i += 2;
		} else if (!strcmp(op, "memexec")) {
			need(i, argc, 2, op);
			rc = in_child(do_memexec, argv[i + 1], argv[i + 2]);
			out("memexec %s = %d\n", argv[i + 1], rc);
			i += 3;
		} else if (!strcmp(op, "accept4")) {
			need(i, argc, 1, op);
			if (accept4_op(argv[i + 1]))
				return 1;
			i += 2;
		} else if (!strcmp(op, "accept4-fail")) {
			int s = socket(AF_INET, SOCK_STREAM, 0);

			out("accept4-fail = %ld\n", res(accept4(s, NULL, NULL, 0)));
			close(s);
			i += 1;
		} else if (!strcmp(op, "openat")) {
			long fd;

			need(i, argc, 2, op);
			fd = res(syscall(SYS_openat, AT_FDCWD, argv[i + 1], num(argv[i + 2]), 0600));
			out("openat %s = %ld\n", argv[i + 1], fd);
			if (fd >= 0)
				close(fd);
			i += 3;
		} else if (!strcmp(op, "fchmodat")) {
			need(i, argc, 2, op);
			out("fchmodat %s = %ld\n", argv[i + 1],
			    res(syscall(SYS_fchmodat, AT_FDCWD, argv[i + 1], num(argv[i + 2]))));
			i += 3;
		} else if (!strcmp(op, "renameat2")) {
			need(i, argc, 2, op);
			out("renameat2 %s = %ld\n", argv[i + 1],
			    res(syscall(SYS_renameat2, AT_FDCWD, argv[i + 1], AT_FDCWD, argv[i + 2], 0)));
			i += 3;
		} else if (!strcmp(op, "unlinkat")) {
			need(i, argc, 1, op);
			out("unlinkat %s = %ld\n", argv[i + 1], res(syscall(SYS_unlinkat, AT_FDCWD, argv[i + 1], 0)));
			i += 2;
		} else if (!strcmp(op, "chmod")) {
			need(i, argc, 2, op);
			out("chmod %s = %ld\n", argv[i + 1], res(syscall(SYS_chmod, argv[i + 1], num(argv[i + 2]))));
			i += 3;
		} else if (!strcmp(op, "rename")) {
			need(i, argc, 2, op);
			out("rename %s = %ld\n", argv[i + 1], res(syscall(SYS_rename, argv[i + 1], argv[i + 2])));
			i += 3;
		} else if (!strcmp(op, "unlink")) {
			need(i, argc, 1, op);
			out("unlink %s = %ld\n", argv[i + 1], res(syscall(SYS_unlink, argv[i + 1])));
			i += 2;
		} else if (!strcmp(op, "open")) {
			long fd;

			need(i, argc, 2, op);
			fd = res(syscall(SYS_open, argv[i + 1], num(argv[i + 2]), 0600));
			out("open %s = %ld\n", argv[i + 1], fd);
			if (fd >= 0)
				close(fd);
			i += 3;
		} else {
			fprintf(stderr, "unknown op %s\n", op);
			return 2;
		}
	}
	return 0;
}
