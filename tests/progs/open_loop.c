// SPDX-License-Identifier: Apache-2.0
// kerneye bench trigger: open_loop N PATH — N x open(PATH, O_RDONLY) + close.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	long n, i;

	if (argc < 3) {
		fprintf(stderr, "usage: open_loop N PATH\n");
		return 2;
	}
	n = atol(argv[1]);
	for (i = 0; i < n; i++) {
		int fd = open(argv[2], O_RDONLY);

		if (fd < 0) {
			perror("open");
			return 1;
		}
		close(fd);
	}
	return 0;
}
