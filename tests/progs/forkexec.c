// SPDX-License-Identifier: Apache-2.0
// kerneye test/bench trigger: forkexec N PARALLEL PATH [ARGS...]
// Runs PATH N times (fork + execv), at most PARALLEL at once, and waits for
// all of them. Prints the number of children that failed.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	int n, par, running = 0, failed = 0, i, st;

	if (argc < 4) {
		fprintf(stderr, "usage: forkexec N PARALLEL PATH [ARGS...]\n");
		return 2;
	}
	n = atoi(argv[1]);
	par = atoi(argv[2]);
	for (i = 0; i < n; i++) {
		pid_t pid;

		if (running >= par) {
			if (wait(&st) > 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
				failed++;
			running--;
		}
		pid = fork();
		if (pid == 0) {
			execv(argv[3], &argv[3]);
			_exit(127);
		}
		if (pid < 0) {
			perror("fork");
			failed++;
			continue;
		}
		running++;
	}
	while (running-- > 0)
		if (wait(&st) > 0 && (!WIFEXITED(st) || WEXITSTATUS(st)))
			failed++;
	printf("%d\n", failed);
	return failed ? 1 : 0;
}
