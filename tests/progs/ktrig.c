// SPDX-License-Identifier: Apache-2.0
// kerneye test trigger for policy selector/action tests: runs a sequence of
// precise syscalls given on the command line, so a test knows exactly which
// calls (and arguments) the process makes.
//
//   ktrig OP [ARGS] [OP [ARGS]]...
//
//   pid                       print "pid <pid>"
//   wait                      block until a line arrives on stdin
//   open PATH [FLAGS]         openat(AT_FDCWD, PATH, FLAGS (default O_RDONLY), 0644), close
//   write PATH TEXT           open(PATH, O_WRONLY|O_CREAT|O_TRUNC), write(TEXT), close
//   chdir DIR
//   lseek FD OFF WHENCE       raw lseek(2) (any values; EBADF is fine)
//   setuid UID                raw setuid(2)
//   unshare mnt|net|uts       unshare(2)
//   connect tcp|udp HOST PORT non-blocking connect(2) (UDP sends nothing)
//   udp LHOST LPORT RHOST RPORT TEXT
//                             UDP socket, bind (LHOST "-": no bind), connect, send(TEXT)
//   sendto HOST PORT TEXT     unconnected UDP sendto(2)
//   tcp HOST TEXT             listen on HOST (ephemeral port), connect, accept, send(TEXT)
//   fork                      the rest runs in a child; the parent waits and exits
//                             with the child's status (128+signal if killed)
//   spawn K                   the next K words run in a child; the parent waits
//                             for it, then goes on after them
//   thread                    the rest runs in a new thread; main joins and exits
//   exec PATH [ARGS...]       execv(PATH), consuming the rest of the command line
//   handler SIG               catch SIG, printing "caught SIG"
//   kill SIG                  send SIG to this process
//   probe A B                 call kerneye_probe_me(A, B) (a uprobe target)
//   loop N MS PREFIX          open PREFIX.0 .. PREFIX.N-1, MS milliseconds apart
//   sleep MS
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int g_argc;
static char **g_argv;

__attribute__((noinline, used)) int kerneye_probe_me(int a, int b)
{
	__asm__ volatile("" ::: "memory");
	return a * 31 + b;
}

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

static void on_signal(int sig)
{
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "caught %d\n", sig);

	(void)!write(1, buf, n);
}

static void msleep(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) && errno == EINTR)
		;
}

/* Fill a sockaddr from HOST (IPv6 if it contains ':') and PORT. */
static socklen_t mkaddr(struct sockaddr_storage *ss, const char *host, int port)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(host, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		if (inet_pton(AF_INET6, host, &s6->sin6_addr) != 1) {
			fprintf(stderr, "bad address %s\n", host);
			exit(2);
		}
		return sizeof(*s6);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)ss;

		s4->sin_family = AF_INET;
		s4->sin_port = htons(port);
		if (inet_pton(AF_INET, host, &s4->sin_addr) != 1) {
			fprintf(stderr, "bad address %s\n", host);
			exit(2);
		}
		return sizeof(*s4);
	}
}

static void need(int i, int end, int n, const char *op)
{
	if (i + n >= end) {
		fprintf(stderr, "%s needs %d arguments\n", op, n);
		exit(2);
	}
}

static int run(int i, int end);

static int g_thread_end;

static void *thread_main(void *arg)
{
	return (void *)(long)run((int)(long)arg, g_thread_end);
}

/* Run the ops in argv[i..end); returns the exit status. */
static int run(int i, int end)
{
	while (i < end) {
		const char *op = g_argv[i];

		if (!strcmp(op, "pid")) {
			out("pid %d\n", getpid());
			i += 1;
		} else if (!strcmp(op, "wait")) {
			char c;

			while (read(0, &c, 1) == 1 && c != '\n')
				;
			i += 1;
		} else if (!strcmp(op, "open")) {
			int flags = O_RDONLY, fd;
			const char *path;

			need(i, end, 1, op);
			path = g_argv[i + 1];
			if (i + 2 < end && g_argv[i + 2][0] >= '0' && g_argv[i + 2][0] <= '9') {
				flags = (int)strtol(g_argv[i + 2], NULL, 0);
				i += 1;
			}
			fd = syscall(SYS_openat, AT_FDCWD, path, flags, 0644);
			out("open %s = %d\n", path, fd < 0 ? -errno : fd);
			if (fd >= 0)
				close(fd);
			i += 2;
		} else if (!strcmp(op, "write")) {
			int fd;

			need(i, end, 2, op);
			fd = open(g_argv[i + 1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
			if (fd < 0) {
				perror(g_argv[i + 1]);
				return 1;
			}
			if (write(fd, g_argv[i + 2], strlen(g_argv[i + 2])) < 0)
				perror("write");
			close(fd);
			i += 3;
		} else if (!strcmp(op, "chdir")) {
			need(i, end, 1, op);
			if (chdir(g_argv[i + 1])) {
				perror(g_argv[i + 1]);
				return 1;
			}
			i += 2;
		} else if (!strcmp(op, "lseek")) {
			need(i, end, 3, op);
			syscall(SYS_lseek, strtol(g_argv[i + 1], NULL, 0), strtoll(g_argv[i + 2], NULL, 0),
				strtoul(g_argv[i + 3], NULL, 0));
			i += 4;
		} else if (!strcmp(op, "setuid")) {
			need(i, end, 1, op);
			if (syscall(SYS_setuid, strtoul(g_argv[i + 1], NULL, 0))) {
				perror("setuid");
				return 1;
			}
			i += 2;
		} else if (!strcmp(op, "unshare")) {
			const char *w;
			int fl;

			need(i, end, 1, op);
			w = g_argv[i + 1];
			fl = !strcmp(w, "mnt") ? CLONE_NEWNS : !strcmp(w, "net") ? CLONE_NEWNET :
			     !strcmp(w, "uts") ? CLONE_NEWUTS : 0;
			if (!fl || unshare(fl)) {
				perror("unshare");
				return 1;
			}
			i += 2;
		} else if (!strcmp(op, "connect")) {
			struct sockaddr_storage ss;
			socklen_t len;
			int fd, udp;

			need(i, end, 3, op);
			udp = !strcmp(g_argv[i + 1], "udp");
			len = mkaddr(&ss, g_argv[i + 2], atoi(g_argv[i + 3]));
			fd = socket(ss.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK, 0);
			if (fd < 0) {
				perror("socket");
				return 1;
			}
			if (connect(fd, (struct sockaddr *)&ss, len))
				out("connect %s %s = %d\n", g_argv[i + 2], g_argv[i + 3], -errno);
			close(fd);
			i += 4;
		} else if (!strcmp(op, "udp")) {
			struct sockaddr_storage ss;
			socklen_t len;
			int fd, one = 1;

			need(i, end, 5, op);
			len = mkaddr(&ss, g_argv[i + 3], atoi(g_argv[i + 4]));
			fd = socket(ss.ss_family, SOCK_DGRAM, 0);
			if (fd < 0) {
				perror("socket");
				return 1;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
			if (strcmp(g_argv[i + 1], "-")) {
				struct sockaddr_storage ls;
				socklen_t llen = mkaddr(&ls, g_argv[i + 1], atoi(g_argv[i + 2]));

				if (bind(fd, (struct sockaddr *)&ls, llen)) {
					perror("bind");
					return 1;
				}
			}
			if (connect(fd, (struct sockaddr *)&ss, len)) {
				perror("connect");
				return 1;
			}
			if (send(fd, g_argv[i + 5], strlen(g_argv[i + 5]), 0) < 0)
				out("send = %d\n", -errno);
			close(fd);
			i += 6;
		} else if (!strcmp(op, "sendto")) {
			struct sockaddr_storage ss;
			socklen_t len;
			int fd;

			need(i, end, 3, op);
			len = mkaddr(&ss, g_argv[i + 1], atoi(g_argv[i + 2]));
			fd = socket(ss.ss_family, SOCK_DGRAM, 0);
			if (fd < 0) {
				perror("socket");
				return 1;
			}
			if (sendto(fd, g_argv[i + 3], strlen(g_argv[i + 3]), 0, (struct sockaddr *)&ss, len) < 0)
				out("sendto = %d\n", -errno);
			close(fd);
			i += 4;
		} else if (!strcmp(op, "tcp")) {
			struct sockaddr_storage ss;
			socklen_t len;
			int l, c, a;

			need(i, end, 2, op);
			len = mkaddr(&ss, g_argv[i + 1], 0);
			l = socket(ss.ss_family, SOCK_STREAM, 0);
			if (l < 0 || bind(l, (struct sockaddr *)&ss, len) || listen(l, 1)) {
				perror("listen");
				return 1;
			}
			getsockname(l, (struct sockaddr *)&ss, &len);
			c = socket(ss.ss_family, SOCK_STREAM, 0);
			if (c < 0 || connect(c, (struct sockaddr *)&ss, len)) {
				perror("connect");
				return 1;
			}
			a = accept(l, NULL, NULL);
			out("tcp port %d\n", ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
								       : ((struct sockaddr_in *)&ss)->sin_port));
			if (send(c, g_argv[i + 2], strlen(g_argv[i + 2]), 0) < 0)
				perror("send");
			close(c);
			close(a);
			close(l);
			i += 3;
		} else if (!strcmp(op, "fork")) {
			pid_t p;
			int st;

			fflush(stdout);
			p = fork();
			if (p < 0) {
				perror("fork");
				return 1;
			}
			if (p == 0)
				return run(i + 1, end);
			out("child %d\n", p);
			if (waitpid(p, &st, 0) < 0)
				return 1;
			return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
		} else if (!strcmp(op, "spawn")) {
			pid_t p;
			int k, st;

			need(i, end, 1, op);
			k = atoi(g_argv[i + 1]);
			if (k < 0 || i + 2 + k > end) {
				fprintf(stderr, "spawn %d: not enough words\n", k);
				return 2;
			}
			fflush(stdout);
			p = fork();
			if (p < 0) {
				perror("fork");
				return 1;
			}
			if (p == 0)
				_exit(run(i + 2, i + 2 + k));
			out("child %d\n", p);
			if (waitpid(p, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st))
				return 1;
			i += 2 + k;
		} else if (!strcmp(op, "thread")) {
			pthread_t t;
			void *rc;

			g_thread_end = end;
			if (pthread_create(&t, NULL, thread_main, (void *)(long)(i + 1)))
				return 1;
			pthread_join(t, &rc);
			return (int)(long)rc;
		} else if (!strcmp(op, "exec")) {
			need(i, end, 1, op);
			fflush(stdout);
			execv(g_argv[i + 1], &g_argv[i + 1]);
			perror("execv");
			return 127;
		} else if (!strcmp(op, "handler")) {
			need(i, end, 1, op);
			signal(atoi(g_argv[i + 1]), on_signal);
			i += 2;
		} else if (!strcmp(op, "kill")) {
			need(i, end, 1, op);
			kill(getpid(), atoi(g_argv[i + 1]));
			i += 2;
		} else if (!strcmp(op, "probe")) {
			need(i, end, 2, op);
			out("probe = %d\n", kerneye_probe_me(atoi(g_argv[i + 1]), atoi(g_argv[i + 2])));
			i += 3;
		} else if (!strcmp(op, "loop")) {
			char path[4096];
			int n, k, fd;
			long ms;

			need(i, end, 3, op);
			n = atoi(g_argv[i + 1]);
			ms = atol(g_argv[i + 2]);
			for (k = 0; k < n; k++) {
				snprintf(path, sizeof(path), "%s.%d", g_argv[i + 3], k);
				fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY, 0);
				if (fd >= 0)
					close(fd);
				if (ms)
					msleep(ms);
			}
			i += 4;
		} else if (!strcmp(op, "sleep")) {
			need(i, end, 1, op);
			msleep(atol(g_argv[i + 1]));
			i += 2;
		} else {
			fprintf(stderr, "unknown op %s\n", op);
			return 2;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	g_argc = argc;
	g_argv = argv;
	return run(1, argc);
}
