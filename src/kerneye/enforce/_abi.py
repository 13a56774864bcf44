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
