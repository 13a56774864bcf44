// SPDX-License-Identifier: Apache-2.0
// kerneye test trigger: fork_worker PATH [ARGS...]
// The process forks a worker that does NOT exec; the worker forks a child
// that execs PATH. Checks that the exec'd child's parent is the worker (a
// "clone" process) whose parent is this program. Prints "<worker pid>".
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	pid_t w;
	int st;

	if (argc < 2)
		return 2;
	fflush(stdout);
	w = fork();
	if (w == 0) {
		pid_t c = fork();

		if (c == 0) {
			execv(argv[1], &argv[1]);
			_exit(127);
		}
		waitpid(c, &st, 0);
		_exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
	}
	printf("%d\n", w);
	fflush(stdout);
	waitpid(w, &st, 0);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
