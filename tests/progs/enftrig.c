// SPDX-License-Identifier: Apache-2.0
/*
 * Trigger for the enforcement tests: performs the operations named on its
 * command line, in order, and prints one line per operation:
 *   "<op> ok" or "<op> err <errno>"
 * so that a test can tell EPERM (denied by kerneye) from any other failure.
 *
 *   connect4 ADDR PORT     TCP connect over AF_INET
 *   connect6 ADDR PORT     TCP connect over AF_INET6 (ADDR may be ::ffff:a.b.c.d)
 *   udpconnect4 ADDR PORT  UDP connect over AF_INET
 *   sendto4 ADDR PORT      UDP sendto over AF_INET
 *   sendto6 ADDR PORT      UDP sendto over AF_INET6
 *   bind4 ADDR PORT        TCP bind over AF_INET
 *   bind6 ADDR PORT        TCP bind over AF_INET6
 *   raw4 | raw6            socket(AF_INET[6], SOCK_RAW, ICMP[V6])
 *   open PATH              open(PATH, O_RDONLY)
 *   openat DIR NAME        open(DIR, O_PATH|O_DIRECTORY), then openat(dirfd, NAME)
 *   reopen PATH            open(PATH, O_PATH), then open("/proc/self/fd/N")
 *   exec PATH              execv(PATH, {PATH}); only returns on failure
 *   opens PATH N           open+close PATH N times, prints ns per open
 *   connects ADDR PORT N   TCP connect+close over AF_INET N times, prints ns per connect
 */
#define _GNU_SOURCE /* O_PATH */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void result(const char *op, int rc)
{
	if (rc < 0)
		printf("%s err %d\n", op, errno);
	else
		printf("%s ok\n", op);
	fflush(stdout);
}

static int addr_of(int family, const char *ip, int port, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (family == AF_INET) {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;

		s->sin_family = AF_INET;
		s->sin_port = htons(port);
		*len = sizeof(*s);
		return inet_pton(AF_INET, ip, &s->sin_addr) == 1 ? 0 : -1;
	}
	struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;

	s->sin6_family = AF_INET6;
	s->sin6_port = htons(port);
	*len = sizeof(*s);
	return inet_pton(AF_INET6, ip, &s->sin6_addr) == 1 ? 0 : -1;
}

/* what: 'c' connect, 's' sendto, 'b' bind */
static int sock_op(int family, int type, char what, const char *ip, int port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, rc, saved;

	if (addr_of(family, ip, port, &ss, &len)) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(family, type, 0);
	if (fd < 0)
		return -1;
	if (what == 'c')
		rc = connect(fd, (struct sockaddr *)&ss, len);
	else if (what == 's')
		rc = sendto(fd, "x", 1, 0, (struct sockaddr *)&ss, len);
	else
		rc = bind(fd, (struct sockaddr *)&ss, len);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *op = argv[i];
		int rc;

		if (!strcmp(op, "raw4") || !strcmp(op, "raw6")) {
			int v6 = op[3] == '6';

			rc = socket(v6 ? AF_INET6 : AF_INET, SOCK_RAW, v6 ? IPPROTO_ICMPV6 : IPPROTO_ICMP);
			if (rc >= 0)
				close(rc);
			result(op, rc);
		} else if (!strcmp(op, "open") && i + 1 < argc) {
			rc = open(argv[++i], O_RDONLY);
			if (rc >= 0)
				close(rc);
			result(op, rc);
		} else if (!strcmp(op, "openat") && i + 2 < argc) {
			int dfd = open(argv[i + 1], O_PATH | O_DIRECTORY);

			rc = dfd < 0 ? dfd : openat(dfd, argv[i + 2], O_RDONLY);
			if (rc >= 0)
				close(rc);
			if (dfd >= 0)
				close(dfd);
			result(op, rc);
			i += 2;
		} else if (!strcmp(op, "reopen") && i + 1 < argc) {
			char proc[64];
			int pfd = open(argv[++i], O_PATH);

			rc = pfd;
			if (pfd >= 0) {
				snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
				rc = open(proc, O_RDONLY);
				if (rc >= 0)
					close(rc);
				close(pfd);
			}
			result(op, rc);
		} else if (!strcmp(op, "exec") && i + 1 < argc) {
			char *args[] = { argv[i + 1], NULL };

			execv(argv[i + 1], args);
			result(op, -1);
			return 126;
		} else if (!strcmp(op, "opens") && i + 2 < argc) {
			const char *path = argv[++i];
			long n = atol(argv[++i]), denied = 0;
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (long k = 0; k < n; k++) {
				int fd = open(path, O_RDONLY);

				if (fd >= 0)
					close(fd);
				else
					denied++;
			}
			clock_gettime(CLOCK_MONOTONIC, &t1);
			printf("%s ns %ld denied %ld\n", op,
			       ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec) / (n ? n : 1), denied);
			fflush(stdout);
		} else if (!strcmp(op, "connects") && i + 3 < argc) {
			const char *ip = argv[i + 1];
			int port = atoi(argv[i + 2]);
			long n = atol(argv[i + 3]), failed = 0;
			struct timespec t0, t1;

			clock_gettime(CLOCK_MONOTONIC, &t0);
			for (long k = 0; k < n; k++)
				if (sock_op(AF_INET, SOCK_STREAM, 'c', ip, port) < 0)
					failed++;
			clock_gettime(CLOCK_MONOTONIC, &t1);
			printf("%s ns %ld failed %ld\n", op,
			       ((t1.tv_sec - t0.tv_sec) * 1000000000L + t1.tv_nsec - t0.tv_nsec) / (n ? n : 1), failed);
			fflush(stdout);
			i += 3;
		} else if (i + 2 < argc) {
			const char *ip = argv[i + 1];
			int port = atoi(argv[i + 2]);

			if (!strcmp(op, "connect4"))
				rc = sock_op(AF_INET, SOCK_STREAM, 'c', ip, port);
			else if (!strcmp(op, "connect6"))
				rc = sock_op(AF_INET6, SOCK_STREAM, 'c', ip, port);
			else if (!strcmp(op, "udpconnect4"))
				rc = sock_op(AF_INET, SOCK_DGRAM, 'c', ip, port);
			else if (!strcmp(op, "sendto4"))
				rc = sock_op(AF_INET, SOCK_DGRAM, 's', ip, port);
			else if (!strcmp(op, "sendto6"))
				rc = sock_op(AF_INET6, SOCK_DGRAM, 's', ip, port);
			else if (!strcmp(op, "bind4"))
				rc = sock_op(AF_INET, SOCK_STREAM, 'b', ip, port);
			else if (!strcmp(op, "bind6"))
				rc = sock_op(AF_INET6, SOCK_STREAM, 'b', ip, port);
			else {
				fprintf(stderr, "enftrig: unknown operation %s\n", op);
				return 2;
			}
			result(op, rc);
			i += 2;
		} else {
			fprintf(stderr, "enftrig: bad arguments at %s\n", op);
			return 2;
		}
	}
	return 0;
}
