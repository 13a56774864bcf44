// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* One global per type of kerneye/enforce_abi.h so that all of them land in
 * this object's BTF; tests/unit/test_enforce_abi.py checks the Python mirror
 * (src/kerneye/enforce/_abi.py) against it, as abi_anchor.bpf.c does for
 * abi.h. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "kerneye/enforce_abi.h"

struct enf_net_rule _enf_net_rule = {};
struct enf_net_set _enf_net_set = {};
struct enf_net_config _enf_net_config = {};
struct enf_lpm4_key _enf_lpm4_key = {};
struct enf_lpm6_key _enf_lpm6_key = {};
struct enf_net_event _enf_net_event = {};
enum enf_msg_op _enf_msg_op = ENF_MSG_NET;
enum enf_net_hook _enf_net_hook = ENF_HOOK_CONNECT;
enum enf_action _enf_action = ENF_ACT_DENY;
enum enf_mode _enf_mode = ENF_MODE_OFF;
enum enf_verdict _enf_verdict = ENF_VERDICT_ALLOW;
enum enf_event_flag _enf_event_flag = ENF_EV_MONITOR;
enum enf_rule_flag _enf_rule_flag = ENF_RULE_USED;
enum enf_stat _enf_stat = ENF_STAT_DENIED;

_Static_assert(sizeof(struct enf_net_rule) == 40, "enf_net_rule");
_Static_assert(sizeof(struct enf_net_event) % 8 == 0, "enf_net_event must stay 8-aligned");

/* BPF-LSM section */
struct enf_lsm_rule _enf_lsm_rule = {};
struct enf_lsm_config _enf_lsm_config = {};
struct enf_lsm_inode_key _enf_lsm_inode_key = {};
struct enf_lsm_event _enf_lsm_event = {};
enum enf_lsm_const _enf_lsm_const = ENF_LSM_MSG_OP;
enum enf_lsm_kind _enf_lsm_kind = ENF_LSM_KIND_OPEN;
enum enf_lsm_hook _enf_lsm_hook = ENF_LSM_HOOK_FILE_OPEN;
enum enf_lsm_rule_flag _enf_lsm_rule_flag = ENF_LSM_RULE_USED;
_Static_assert(sizeof(struct enf_lsm_rule) == 32, "enf_lsm_rule");
_Static_assert(sizeof(struct enf_lsm_event) % 8 == 0, "enf_lsm_event must stay 8-aligned");

/* cgroup sysctl / device section */
struct enf_sys_rule _enf_sys_rule = {};
struct enf_sys_config _enf_sys_config = {};
struct enf_sysctl_key _enf_sysctl_key = {};
struct enf_sys_event _enf_sys_event = {};
enum enf_sys_const _enf_sys_const = ENF_SYS_MAX_RULES;
enum enf_sys_kind _enf_sys_kind = ENF_SYS_KIND_SYSCTL;
enum enf_sys_access _enf_sys_access = ENF_ACC_MKNOD;
enum enf_dev_type _enf_dev_type = ENF_DEV_BLOCK;
_Static_assert(sizeof(struct enf_sys_rule) == 40, "enf_sys_rule");
_Static_assert(sizeof(struct enf_sys_event) % 8 == 0, "enf_sys_event must stay 8-aligned");

char LICENSE[] SEC("license") = "GPL";
