"""The closed vocabularies and numeric limits of Tetragon's TracingPolicy, and
the value parsers the loader and the compiler must agree on.

Names follow Tetragon's CRD (``cilium.io/v1alpha1``) and its selector parser;
the limits follow Tetragon's documentation (selectors.md "Limitations") and
the BPF-side constants it cites. Everything here is kernel-independent: limits
that depend on the running kernel (small programs before 5.3) are the
compiler's business, this module states the large-program values.
"""
from __future__ import annotations

import re

from kerneye.process.caps import CAP_NAMES

# --------------------------------------------------------------------------
# Selector operators

# Canonical argument-filter operators (matchArgs, matchData, matchReturnArgs),
# in the CRD's order. ``NotSPortPriv`` is canonical although the CRD enum
# spells it ``NotSportPriv``: every sibling uses ``SPort``.
ARG_OPERATORS: tuple[str, ...] = (
    "Equal", "NotEqual", "Prefix", "NotPrefix", "Postfix", "NotPostfix",
    "GreaterThan", "LessThan", "Mask",
    "SPort", "NotSPort", "SPortPriv", "NotSPortPriv",
    "DPort", "NotDPort", "DPortPriv", "NotDPortPriv",
    "SAddr", "NotSAddr", "DAddr", "NotDAddr",
    "Protocol", "Family", "State",
    "InMap", "NotInMap", "CapabilitiesGained", "InRange", "NotInRange",
    "SubString", "SubStringIgnCase", "CelExpr", "FileType", "NotFileType",
)

# Every spelling Tetragon's parser accepts, mapped to the canonical name. The
# match is case-sensitive, exactly like Tetragon: "EQ" or "equals" are errors.
OPERATOR_ALIASES: dict[str, str] = {
    **{op: op for op in ARG_OPERATORS},
    "In": "In", "NotIn": "NotIn",
    "eq": "Equal", "neq": "NotEqual",
    "gt": "GreaterThan", "GT": "GreaterThan",
    "lt": "LessThan", "LT": "LessThan",
    "prefix": "Prefix", "notprefix": "NotPrefix",
    "postfix": "Postfix", "notpostfix": "NotPostfix",
    "mask": "Mask",
    "saddr": "SAddr", "Saddr": "SAddr", "daddr": "DAddr", "Daddr": "DAddr",
    "notsaddr": "NotSAddr", "NotSaddr": "NotSAddr",
    "notdaddr": "NotDAddr", "NotDaddr": "NotDAddr",
    "sport": "SPort", "Sport": "SPort", "dport": "DPort", "Dport": "DPort",
    "notsport": "NotSPort", "NotSport": "NotSPort",
    "notdport": "NotDPort", "NotDport": "NotDPort",
    "sportpriv": "SPortPriv", "SportPriv": "SPortPriv",
    "dportpriv": "DPortPriv", "DportPriv": "DPortPriv",
    "notsportpriv": "NotSPortPriv", "NotSportPriv": "NotSPortPriv",
    "notdportpriv": "NotDPortPriv", "NotDportPriv": "NotDPortPriv",
    "protocol": "Protocol", "family": "Family", "state": "State",
}

SET_OPERATORS: tuple[str, ...] = ("In", "NotIn")
"""Operators of matchPIDs, matchNamespaces, matchNamespaceChanges, matchCapabilities."""

BINARY_OPERATORS: tuple[str, ...] = ("In", "NotIn", "Prefix", "NotPrefix", "Postfix", "NotPostfix")
"""Operators of matchBinaries and matchParentBinaries."""

# Operators whose values Tetragon stores inline in the selector blob, where
# the BPF side loops over at most MAX_MATCH_VALUES of them. Everything else
# (InMap, addresses, ports, prefixes/postfixes, string equality) lives in BPF
# maps and has no count limit: Tetragon's own docs filter on 14 Prefix values.
# Equal/NotEqual are inline only on non-string arguments (see inline_values).
INLINE_VALUE_OPERATORS: frozenset[str] = frozenset({
    "Equal", "NotEqual", "Mask", "GreaterThan", "LessThan", "InRange", "NotInRange", "FileType", "NotFileType",
})
NO_VALUE_OPERATORS: frozenset[str] = frozenset({"SPortPriv", "NotSPortPriv", "DPortPriv", "NotDPortPriv", "CapabilitiesGained"})
"""Operators that take no ``values``."""


def inline_values(op: str, arg_type: str | None) -> bool:
    """Whether ``op``'s values count against MAX_MATCH_VALUES; ``arg_type``
    None means unknown (auto/BTF-resolved), where Equal cannot be decided."""
    if op not in INLINE_VALUE_OPERATORS:
        return False
    if op in ("Equal", "NotEqual"):
        return arg_type is not None and arg_type not in STRING_ARG_TYPES
    return True


def canonical_operator(op: str) -> str | None:
    """Canonical name of an operator spelling, or None if Tetragon rejects it."""
    return OPERATOR_ALIASES.get(op)


# --------------------------------------------------------------------------
# Actions (parsed case-insensitively by Tetragon)

ACTIONS: tuple[str, ...] = (
    "Post", "Sigkill", "Override", "GetUrl", "DnsLookup", "NoPost", "Signal",
    "TrackSock", "UntrackSock", "NotifyEnforcer", "CleanupEnforcerNotification", "Set",
)
_ACTIONS_LOWER: dict[str, str] = {a.lower(): a for a in ACTIONS}
REMOVED_ACTIONS: frozenset[str] = frozenset({"followfd", "unfollowfd", "copyfd"})
"""Actions older Tetragon releases had; named in the error so users know why."""

RETURN_ARG_ACTIONS: tuple[str, ...] = ("TrackSock", "UntrackSock")
RATE_LIMIT_SCOPES: tuple[str, ...] = ("thread", "process", "global")


def canonical_action(action: str) -> str | None:
    """Canonical action name (``"sigkill"`` → ``"Sigkill"``), or None."""
    return _ACTIONS_LOWER.get(action.lower())


# --------------------------------------------------------------------------
# Argument types

# The CRD enum. Several spellings share one kernel type; ARG_TYPE_CANONICAL
# folds them to the name Tetragon itself prints (int32, not sint32).
ARG_TYPE_NAMES: tuple[str, ...] = (
    "auto", "int", "sint8", "int8", "uint8", "sint16", "int16", "uint16", "uint32",
    "sint32", "int32", "ulong", "uint64", "size_t", "long", "sint64", "int64",
    "char_buf", "char_iovec", "skb", "sock", "sockaddr", "socket", "sockaddr_un",
    "string", "fd", "file", "filename", "path", "nop", "bpf_attr", "perf_event",
    "bpf_map", "user_namespace", "capability", "kiocb", "iov_iter", "cred",
    "const_buf", "load_info", "module", "syscall64", "kernel_cap_t",
    "cap_inheritable", "cap_permitted", "cap_effective", "linux_binprm",
    "data_loc", "net_device", "bpf_cmd", "dentry", "bpf_prog",
)
ARG_TYPE_CANONICAL: dict[str, str] = {
    **{t: t for t in ARG_TYPE_NAMES},
    "sint8": "int8", "sint16": "int16", "sint32": "int32", "sint64": "int64",
    "long": "int64", "ulong": "uint64", "unsigned long": "uint64",
}


def canonical_arg_type(name: str) -> str | None:
    """Canonical lower-case type (``"SInt32"`` → ``"int32"``), or None."""
    return ARG_TYPE_CANONICAL.get(name.lower())


# (bits, signed) of the integer types, as Tetragon parses their filter values.
# int, size_t and the 8/16-bit signed types are compared as 32-bit signed.
INT_TYPE_WIDTH: dict[str, tuple[int, bool]] = {
    "int": (32, True), "int8": (32, True), "int16": (32, True), "int32": (32, True),
    "size_t": (32, True),
    "uint8": (32, False), "uint16": (32, False), "uint32": (32, False),
    "int64": (64, True), "syscall64": (64, True),
    "uint64": (64, False),
}
CAP_ARG_TYPES: frozenset[str] = frozenset({"kernel_cap_t", "cap_inheritable", "cap_permitted", "cap_effective"})
STRING_ARG_TYPES: frozenset[str] = frozenset({
    "fd", "file", "path", "dentry", "string", "char_buf", "linux_binprm",
    "data_loc", "net_device", "sockaddr_un",
})
"""Types whose Equal/NotEqual/SubString filters compare strings."""
SOCK_ARG_TYPES: frozenset[str] = frozenset({"sock", "skb", "sockaddr", "socket"})
SIZED_BUFFER_TYPES: frozenset[str] = frozenset({"char_buf", "char_iovec"})
"""Types that may use sizeArgIndex/returnCopy."""
DATA_SOURCES: tuple[str, ...] = ("current_task", "pt_regs")
FILE_TYPE_VALUES: tuple[str, ...] = (
    "reg", "regular", "dir", "lnk", "link", "sock", "socket", "blk", "block", "chr", "char", "fifo", "pipe",
)

# --------------------------------------------------------------------------
# Namespaces and capabilities

NAMESPACES: tuple[str, ...] = (
    "Uts", "Ipc", "Mnt", "Pid", "PidForChildren", "Net", "Time", "TimeForChildren", "Cgroup", "User",
)
_NAMESPACES_LOWER: dict[str, str] = {n.lower(): n for n in NAMESPACES}
HOST_NS = "host_ns"
"""matchNamespaces value meaning "the host's namespace of this type"."""

CAPABILITY_TYPES: tuple[str, ...] = ("Effective", "Inheritable", "Permitted")
_CAP_TYPES_LOWER: dict[str, str] = {t.lower(): t for t in CAPABILITY_TYPES}
CAPABILITIES: tuple[str, ...] = tuple(CAP_NAMES)


def canonical_namespace(name: str) -> str | None:
    """``"pid"`` → ``"Pid"`` (case-insensitive, as Tetragon), or None."""
    return _NAMESPACES_LOWER.get(name.lower())


def canonical_capability_type(name: str) -> str | None:
    return _CAP_TYPES_LOWER.get(name.lower())


def canonical_capability(name: str) -> str | None:
    """``"cap_sys_admin "`` → ``"CAP_SYS_ADMIN"``, or None.

    Tetragon upper-cases and trims the value. Its capability enum spells
    bit 1 ``DAC_OVERRIDE`` (no ``CAP_`` prefix), so both spellings are
    accepted here and folded to ``CAP_DAC_OVERRIDE``.
    """
    v = name.strip().upper()
    if v == "DAC_OVERRIDE":
        v = "CAP_DAC_OVERRIDE"
    return v if v in CAPABILITIES else None


# --------------------------------------------------------------------------
# Lists and options

LIST_TYPES: tuple[str, ...] = ("syscalls", "generated_syscalls", "generated_ftrace")
SYSCALL_LIST_TYPES: frozenset[str] = frozenset({"syscalls", "generated_syscalls"})
GENERATED_LIST_TYPES: frozenset[str] = frozenset({"generated_syscalls", "generated_ftrace"})
LIST_PREFIX = "list:"

POLICY_MODES: tuple[str, ...] = ("monitor", "enforce")
GO_BOOLS: frozenset[str] = frozenset({"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"})
"""Spellings Go's strconv.ParseBool accepts (option values)."""
OPTIONS: dict[str, str] = {
    "disable-kprobe-multi": "bool",
    "disable-uprobe-multi": "bool",
    "override-method": "fmod-ret|override-return",
    "policy-mode": "monitor|enforce",
    "sleepable-preload-size": "positive integer",
}
"""spec.options names and the shape of their value."""

# --------------------------------------------------------------------------
# Limits (Tetragon docs selectors.md "Limitations" and the BPF constants)

MAX_SELECTORS = 5
"""Selectors per hook."""
MAX_ARG_FILTERS = 5
"""matchArgs + matchData entries per selector."""
MAX_MATCH_VALUES = 4
"""Values per argument filter for inline operators (see inline_values)."""
MAX_PID_VALUES = 4
"""PID values per selector (over all its matchPIDs)."""
MAX_BINARY_FILTERS = 1
"""matchBinaries (and matchParentBinaries) entries per selector."""
MAX_BINARY_PATH_LEN = 255
"""matchBinaries In/NotIn path length (a 256-byte buffer with its NUL)."""
MAX_PREFIX_LEN = 256
MAX_POSTFIX_LEN = 128
MAX_SUBSTRING_LEN = 99
MAX_FOLLOW_CHILDREN = 64
"""matchBinaries sections with followChildren per policy."""
MAX_NAMESPACE_FILTERS = 10
MAX_NAMESPACE_VALUES = 4
MAX_NAMESPACE_CHANGE_FILTERS = 1
MAX_TAGS = 16
MAX_MESSAGE_LEN = 256
MAX_HOOK_ARGS = 5
"""args + data entries per hook (EventConfigMaxArgs)."""
MAX_FUNC_ARG_INDEX = 4
"""Highest function-argument index of kprobes, fentries, uprobes and LSM hooks."""
MAX_RAW_TP_ARG_INDEX = 5
MAX_SIZE_ARG_INDEX = 15
"""sizeArgIndex is 1-based and stored in 4 bits."""
MAX_ENFORCERS = 1

# --------------------------------------------------------------------------
# Value parsers


_GO_INT_BASE0 = re.compile(
    r"[+-]?(?:0[xX](?:_?[0-9a-fA-F])+|0[bB](?:_?[01])+|0[oO](?:_?[0-7])+|0(?:_?[0-7])*|[1-9](?:_?[0-9])*)\Z"
)
_GO_INT_BASE10 = re.compile(r"[+-]?[0-9]+\Z")


def parse_int(text: str, *, bits: int = 64, signed: bool = True, base0: bool = True) -> int:
    """Parse an integer the way Go's strconv.ParseInt/ParseUint do.

    With ``base0`` (Tetragon's choice for matchArgs values of integer types and
    ranges) ``0x1f``, ``0o17``, ``017`` (octal), ``0b101`` and ``1_000`` are
    accepted; otherwise only decimal digits (InMap values, namespace inodes).
    Unsigned parsing rejects any sign. Raises ValueError with a short reason.
    """
    t = text
    if not signed and t.startswith(("+", "-")):
        raise ValueError(f"{text!r} is not an unsigned integer")
    if base0:
        if not _GO_INT_BASE0.match(t):
            raise ValueError(f"{text!r} is not an integer (decimal, 0x hex, 0o/0 octal or 0b binary)")
        sign = -1 if t.startswith("-") else 1
        body = t.lstrip("+-").replace("_", "")
        if len(body) > 1 and body[0] == "0" and body[1].isdigit():
            value = int(body, 8)
        else:
            value = int(body, 0)
        value *= sign
    else:
        if not _GO_INT_BASE10.match(t):
            raise ValueError(f"{text!r} is not a decimal integer")
        value = int(t)
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if not lo <= value <= hi:
        kind = f"int{bits}" if signed else f"uint{bits}"
        raise ValueError(f"{text!r} is out of range for {kind}")
    return value


_RATE_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_rate_limit(text: str | int) -> float:
    """``"5m"`` → 300.0 seconds. Units s/m/h (either case); a bare number is
    seconds. Tetragon accepts only whole numbers of a unit, so does this."""
    t = str(text)
    unit = t[-1:].lower()
    mult = _RATE_UNITS.get(unit)
    digits = t[:-1] if mult else t
    if not digits.isdigit() or not digits.isascii():
        raise ValueError(f"{text!r} is not a duration: use a whole number with an optional s, m or h suffix")
    return float(int(digits) * (mult or 1))
