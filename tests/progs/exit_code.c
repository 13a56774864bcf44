// SPDX-License-Identifier: Apache-2.0
// kerneye test trigger: exits with the status given as argv[1]; other
// arguments are ignored (they are what the test asserts on).
#include <stdlib.h>

int main(int argc, char **argv)
{
	return argc > 1 ? atoi(argv[1]) : 0;
}
