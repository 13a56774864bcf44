// SPDX-License-Identifier: Apache-2.0
// kerneye bench workload: connect_loop N
// Listens on 127.0.0.1:<ephemeral>, then N times: socket(), connect() to the
// listener, accept(), close both. The client sets SO_LINGER {1, 0} so its
// close sends a RST and leaves no TIME_WAIT socket behind: a million
// connections then never run out of ephemeral ports. Every connection goes
// through the cgroup sock_create and connect4 hooks exactly once.
#define _GNU_SOURCE /* accept4 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	socklen_t len = sizeof(sa);
	long n, i;
	int ls, one = 1;

	if (argc < 2) {
		fprintf(stderr, "usage: connect_loop N\n");
		return 2;
	}
	n = atol(argv[1]);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ls = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls < 0 || setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(ls, (struct sockaddr *)&sa, sizeof(sa)) || listen(ls, 128) ||
	    getsockname(ls, (struct sockaddr *)&sa, &len)) {
		perror("listener");
		return 1;
	}
	for (i = 0; i < n; i++) {
		int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), a;

		if (c < 0) {
			perror("socket");
			return 1;
		}
		setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
		if (connect(c, (struct sockaddr *)&sa, sizeof(sa))) {
			fprintf(stderr, "connect #%ld: %s\n", i, strerror(errno));
			return 1;
		}
		a = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
		if (a < 0) {
			perror("accept");
			return 1;
		}
		close(c);
		close(a);
	}
	close(ls);
	return 0;
}
