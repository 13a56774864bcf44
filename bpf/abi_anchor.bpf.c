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
struct gen_arg_spec _gen_arg_spec = {};
struct gen_hook _gen_hook = {};
struct gen_slot _gen_slot = {};
struct gen_filter _gen_filter = {};
struct gen_selector _gen_selector = {};
struct gen_str_key _gen_str_key = {};
struct gen_addr_key _gen_addr_key = {};
struct gen_int_key _gen_int_key = {};
struct gen_sockaddr _gen_sockaddr = {};
struct gen_sock _gen_sock = {};
struct msg_generic _msg_generic = {};
struct gen_config _gen_config = {};
struct gen_hook_stats _gen_hook_stats = {};
enum gen_arg_type _gen_arg_type = GT_NONE;
enum gen_arg_src _gen_arg_src = GS_SYSCALL;
enum gen_hook_kind _gen_hook_kind = HK_SYSCALL;
enum gen_hook_flag _gen_hook_flag = HF_ENABLED;
enum gen_filter_kind _gen_filter_kind = FK_NONE;
enum gen_op _gen_op = GOP_EQ;
enum gen_filter_flag _gen_filter_flag = FF_FOLLOW;
enum gen_action_flag _gen_action_flag = AF_POST;
enum gen_msg_flag _gen_msg_flag = GF_RETURN;
enum msg_op _msg_op = MSG_OP_UNDEF;
enum exec_flag _exec_flag = EXEC_FLAG_EXECVE;
enum stat_idx _stat_idx = STAT_RB_LOST_EXEC;

_Static_assert(sizeof(struct msg_common) == 16, "msg_common");
_Static_assert(sizeof(struct msg_exec) % 8 == 0, "msg_exec must stay 8-aligned");

char LICENSE[] SEC("license") = "GPL";
