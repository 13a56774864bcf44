"""ctypes mirror of bpf/include/kerneye/enforce_abi.h.

Written by hand (the enforcement ABI is small) and verified against the BTF
of bpf/.output/enforce_anchor.bpf.o by tests/unit/test_enforce_abi.py with
kerneye.abi.btfcheck: every class carrying C_NAME must match size, member
names and offsets, every enum its values. Change the header first, then this
file, then run that test.
"""
from __future__ import annotations

import ctypes
import enum

from ..abi._generated import MsgCommon

ENF_NET_MAX_RULES = 64
ENF_NET_MAX_SETS = 16
ENF_COMM_LEN = 16

u8, u16, u32, u64, s32 = ctypes.c_uint8, ctypes.c_uint16, ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int32


class EnfMsgOp(enum.IntEnum):
    NET = 64


class EnfNetHook(enum.IntEnum):
    CONNECT = 1 << 0
    SENDMSG = 1 << 1
    BIND = 1 << 2
    SOCK_CREATE = 1 << 3


class EnfAction(enum.IntEnum):
    DENY = 0
    ALLOW = 1


class EnfMode(enum.IntEnum):
    OFF = 0
    MONITOR = 1
    ENFORCE = 2


class EnfVerdict(enum.IntEnum):
    ALLOW = 0
    DENY = 1


class EnfEventFlag(enum.IntEnum):
    MONITOR = 1 << 0
    MAPPED = 1 << 1


class EnfRuleFlag(enum.IntEnum):
    USED = 1 << 0
    REPORT = 1 << 1
    BIN_NOT = 1 << 2


class EnfStat(enum.IntEnum):
    DENIED = 0
    MONITORED = 1
    ALLOWED = 2
    RB_LOST = 3
    MAX = 4


# btfcheck matches IntEnum classes by C_NAME (plain IntEnum: IntFlag is not one).
for _e, _c in ((EnfMsgOp, "enf_msg_op"), (EnfNetHook, "enf_net_hook"), (EnfAction, "enf_action"),
               (EnfMode, "enf_mode"), (EnfVerdict, "enf_verdict"), (EnfEventFlag, "enf_event_flag"),
               (EnfRuleFlag, "enf_rule_flag"), (EnfStat, "enf_stat")):
    setattr(_e, "C_NAME", _c)


class EnfNetRule(ctypes.Structure):
    C_NAME = "enf_net_rule"
    _fields_ = [
        ("id", u32),
        ("priority", u32),
        ("action", u8),
        ("set", u8),
        ("proto", u8),
        ("sock_type", u8),
        ("port_lo", u16),
        ("port_hi", u16),
        ("family", u16),
        ("hooks", u16),
        ("err", s32),
        ("flags", u32),
        ("pad", u32),
        ("bin_mask", u64),
    ]


class EnfNetSet(ctypes.Structure):
    C_NAME = "enf_net_set"
    _fields_ = [("mode", u32), ("pad", u32)]


class EnfNetConfig(ctypes.Structure):
    C_NAME = "enf_net_config"
    _fields_ = [("create_mask", u64), ("pad", u64)]


class EnfLpm4Key(ctypes.Structure):
    C_NAME = "enf_lpm4_key"
    _fields_ = [("prefixlen", u32), ("addr", u8 * 4)]


class EnfLpm6Key(ctypes.Structure):
    C_NAME = "enf_lpm6_key"
    _fields_ = [("prefixlen", u32), ("addr", u8 * 16)]


class EnfNetEvent(ctypes.Structure):
    C_NAME = "enf_net_event"
    _fields_ = [
        ("common", MsgCommon),
        ("hook", u8),
        ("verdict", u8),
        ("flags", u8),
        ("action", u8),
        ("family", u16),
        ("port", u16),
        ("proto", u32),
        ("sock_type", u32),
        ("rule_id", u32),
        ("pid", u32),
        ("tgid", u32),
        ("err", s32),
        ("cgroup_id", u64),
        ("addr", u8 * 16),
        ("comm", ctypes.c_char * ENF_COMM_LEN),
    ]


# ---- BPF-LSM section (bpf/enforce/lsm.bpf.c, kerneye.enforce.lsm) ----

ENF_LSM_MAX_RULES = 64
ENF_LSM_MAX_CGROUPS = 64
ENF_LSM_NAME_LEN = 256


class EnfLsmConst(enum.IntEnum):
    MSG_OP = 72


class EnfLsmKind(enum.IntEnum):
    OPEN = 0
    EXEC_DENY = 1
    EXEC_ALLOW = 2
    RAW_SOCKET = 3
    MODULE = 4
    BPF = 5
    PROTECT_FILE = 6
    PROTECT_TASK = 7
    MAX = 8


class EnfLsmHook(enum.IntEnum):
    FILE_OPEN = 1
    BPRM_CHECK = 2
    SOCKET_CREATE = 3
    KERNEL_READ_FILE = 4
    KERNEL_LOAD_DATA = 5
    BPF = 6
    PATH_UNLINK = 7
    PATH_RENAME = 8
    PATH_CHMOD = 9
    TASK_KILL = 10
    PTRACE = 11


class EnfLsmRuleFlag(enum.IntEnum):
    USED = 1 << 0
    WRITE_ONLY = 1 << 1
    BIN_NOT = 1 << 2


for _e, _c in ((EnfLsmConst, "enf_lsm_const"), (EnfLsmKind, "enf_lsm_kind"), (EnfLsmHook, "enf_lsm_hook"),
               (EnfLsmRuleFlag, "enf_lsm_rule_flag")):
    setattr(_e, "C_NAME", _c)


class EnfLsmRule(ctypes.Structure):
    C_NAME = "enf_lsm_rule"
    _fields_ = [
        ("id", u32),
        ("kind", u8),
        ("mode", u8),
        ("flags", u16),
        ("err", s32),
        ("pad", u32),
        ("bin_mask", u64),
        ("cgroup_mask", u64),
    ]


class EnfLsmConfig(ctypes.Structure):
    C_NAME = "enf_lsm_config"
    _fields_ = [("kind_mask", u64 * 8)]


class EnfLsmInodeKey(ctypes.Structure):
    C_NAME = "enf_lsm_inode_key"
    _fields_ = [("ino", u64), ("dev", u32), ("kind", u32)]


class EnfLsmEvent(ctypes.Structure):
    C_NAME = "enf_lsm_event"
    _fields_ = [
        ("common", MsgCommon),
        ("hook", u8),
        ("verdict", u8),
        ("flags", u8),
        ("kind", u8),
        ("rule_id", u32),
        ("err", s32),
        ("pid", u32),
        ("tgid", u32),
        ("target", u32),
        ("arg", u32),
        ("dev", u32),
        ("ino", u64),
        ("cgroup_id", u64),
        ("family", u16),
        ("sock_type", u16),
        ("protocol", u16),
        ("pad", u16),
        ("comm", ctypes.c_char * ENF_COMM_LEN),
        ("name", ctypes.c_char * ENF_LSM_NAME_LEN),
    ]
# ---- end of the BPF-LSM section ----


# ---- cgroup sysctl / device section (bpf/enforce/cgroup_sys.bpf.c) ----

class EnfSysConst(enum.IntEnum):
    MAX_RULES = 64
    MAX_SETS = 16
    SYSCTL_NAME_MAX = 128
    MSG_SYSCTL = 80
    MSG_DEV = 81


class EnfSysKind(enum.IntEnum):
    SYSCTL = 1
    DEV = 2


class EnfSysAccess(enum.IntEnum):
    MKNOD = 1 << 0
    READ = 1 << 1
    WRITE = 1 << 2


class EnfDevType(enum.IntEnum):
    BLOCK = 1
    CHAR = 2


for _e, _c in ((EnfSysConst, "enf_sys_const"), (EnfSysKind, "enf_sys_kind"), (EnfSysAccess, "enf_sys_access"),
               (EnfDevType, "enf_dev_type")):
    setattr(_e, "C_NAME", _c)

ENF_DEV_ANY = 0xFFFFFFFF
ENF_SYSCTL_NAME_MAX = int(EnfSysConst.SYSCTL_NAME_MAX)


class EnfSysRule(ctypes.Structure):
    C_NAME = "enf_sys_rule"
    _fields_ = [
        ("id", u32),
        ("priority", u32),
        ("action", u8),
        ("set", u8),
        ("kind", u8),
        ("access", u8),
        ("dev_type", u8),
        ("pad", u8 * 3),
        ("major", u32),
        ("minor", u32),
        ("err", s32),
        ("flags", u32),
        ("bin_mask", u64),
    ]


class EnfSysConfig(ctypes.Structure):
    C_NAME = "enf_sys_config"
    _fields_ = [("dev_mask", u64), ("pad", u64)]


class EnfSysctlKey(ctypes.Structure):
    C_NAME = "enf_sysctl_key"
    _fields_ = [("prefixlen", u32), ("name", ctypes.c_char * ENF_SYSCTL_NAME_MAX)]


class EnfSysEvent(ctypes.Structure):
    C_NAME = "enf_sys_event"
    _fields_ = [
        ("common", MsgCommon),
        ("verdict", u8),
        ("flags", u8),
        ("action", u8),
        ("access", u8),
        ("dev_type", u8),
        ("pad", u8 * 3),
        ("major", u32),
        ("minor", u32),
        ("rule_id", u32),
        ("pid", u32),
        ("tgid", u32),
        ("err", s32),
        ("cgroup_id", u64),
        ("comm", ctypes.c_char * ENF_COMM_LEN),
        ("name", ctypes.c_char * ENF_SYSCTL_NAME_MAX),
    ]
# ---- end of the cgroup sysctl / device section ----
