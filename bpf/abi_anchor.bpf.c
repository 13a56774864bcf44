// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* One global per type of kerneye/abi.h so that all of them land in this
 * object's BTF, from which tools/gen_abi.py generates the Python mirror and
 * kerneye.abi.btfcheck verifies it (cf. Tetragon's bpf_alignchecker.c). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kerneye/abi.h"

struct msg_common _msg_common = {};
struct msg_execve_key _msg_execve_key = {};
struct msg_cred _msg_cred = {};
struct msg_ns _msg_ns = {};
struct msg_exec _msg_exec = {};
struct msg_exit _msg_exit = {};
struct msg_clone _msg_clone = {};
struct execve_map_value _execve_map_value = {};
enum msg_op _msg_op = MSG_OP_UNDEF;
enum exec_flag _exec_flag = EXEC_FLAG_EXECVE;
enum stat_idx _stat_idx = STAT_RB_LOST_EXEC;

_Static_assert(sizeof(struct msg_common) == 16, "msg_common");
_Static_assert(sizeof(struct msg_exec) % 8 == 0, "msg_exec must stay 8-aligned");

char LICENSE[] SEC("license") = "GPL";
