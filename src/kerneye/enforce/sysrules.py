"""sysctl and device rules as data: validation, LPM-trie contents, decoding.

Pure Python, no kernel access (the spec half of kerneye.enforce.cgroup_sys);
unit tests use this module directly.
"""
from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field
from typing import Iterable

from . import _abi as A
from .netrules import EnforceError, check_action, check_common, fill_common

#: longest rule name: an exact name needs its NUL inside the key, and a name
#: the kernel truncates (ENF_SYSCTL_NAME_MAX - 1 bytes + NUL) must not match
NAME_MAX = A.ENF_SYSCTL_NAME_MAX - 2
ACCESS = {"m": A.EnfSysAccess.MKNOD, "r": A.EnfSysAccess.READ, "w": A.EnfSysAccess.WRITE}
SYSCTL_ACCESS = {"read": A.EnfSysAccess.READ, "write": A.EnfSysAccess.WRITE}
DEV_TYPES = {"a": 0, "b": A.EnfDevType.BLOCK, "c": A.EnfDevType.CHAR}
_DEV_TYPE_NAME = {0: "a", int(A.EnfDevType.BLOCK): "b", int(A.EnfDevType.CHAR): "c"}


def sysctl_name(name: str) -> str:
    """The kernel's form of a sysctl name: '/' separated, as under
    /proc/sys. "net.ipv4.ip_forward" (sysctl(8) style) is accepted when it
    has no '/'; interface names with dots need the '/' form."""
    name = name.strip()
    if name.startswith("/proc/sys/"):
        name = name[len("/proc/sys/"):]
    if "/" not in name:
        name = name.replace(".", "/")
    return name


@dataclass
class _Common:
    id: int
    action: str = "deny"
    priority: int = 100
    ruleset: int = 0
    err: int = 0
    report: bool = False
    bin_mask: int = 0
    bin_not: bool = False

    def _base(self, kind: A.EnfSysKind, access: int) -> A.EnfSysRule:
        check_action(self)
        check_common(self, A.EnfSysConst.MAX_SETS)
        r = A.EnfSysRule()
        fill_common(r, self)
        r.kind, r.access = kind, access
        r.major = r.minor = A.ENF_DEV_ANY
        return r


@dataclass
class SysctlRule(_Common):
    """Reads and/or writes of sysctls, by exact name or by name prefix.

    names: exact names ("kernel/modprobe" or "kernel.modprobe"); prefixes:
    name prefixes, compared byte by byte ("kernel/" covers every kernel
    sysctl, "" covers all). access: any of "write" (default) and "read".
    The other fields are as in NetRule (action, priority, ruleset, err,
    report, bin_mask, bin_not).
    """

    names: list[str] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    access: tuple[str, ...] = ("write",)

    def keys(self) -> list[bytes]:
        """LPM keys as bytes: prefixes bare, exact names with their NUL."""
        if not self.names and not self.prefixes:
            raise EnforceError(f"rule {self.id}: give names and/or prefixes (prefixes=[''] means every sysctl)")
        out = []
        for n, exact in [(n, True) for n in self.names] + [(p, False) for p in self.prefixes]:
            if not isinstance(n, str):
                raise EnforceError(f"rule {self.id}: sysctl names are strings, not {n!r}")
            b = sysctl_name(n).encode()
            if exact and not b:
                raise EnforceError(f"rule {self.id}: an empty name matches nothing; use prefixes=[''] for all")
            if len(b) > NAME_MAX or b"\0" in b:
                raise EnforceError(f"rule {self.id}: sysctl name {n!r} is longer than {NAME_MAX} bytes or has NUL")
            out.append(b + b"\0" if exact else b)
        return out

    def to_struct(self) -> A.EnfSysRule:
        bad = set(self.access) - set(SYSCTL_ACCESS)
        if bad or not self.access or isinstance(self.access, str):
            raise EnforceError(f"rule {self.id}: access must be a tuple of 'read'/'write', not {self.access!r}")
        self.keys()
        return self._base(A.EnfSysKind.SYSCTL, sum(int(SYSCTL_ACCESS[a]) for a in set(self.access)))


@dataclass
class DeviceRule(_Common):
    """Device access, like a cgroup-v1 devices.deny line ("c 1:3 rwm").

    type: "c" (char), "b" (block) or "a" (both); major/minor: a number or
    None for any; access: a string of "r" (open for reading), "w" (open for
    writing) and "m" (mknod). An operation matches when it requests any of
    the rule's access bits (so a "w" rule denies an O_RDWR open).
    """

    type: str = "a"
    major: int | None = None
    minor: int | None = None
    access: str = "rwm"

    @classmethod
    def parse(cls, id: int, line: str, **kw: object) -> "DeviceRule":
        """DeviceRule.parse(1, "c 1:3 rw") (v1 syntax; '*' is a wildcard)."""
        m = re.fullmatch(r"\s*([abc])\s+(\*|\d+):(\*|\d+)(?:\s+([rwm]+))?\s*", line)
        if not m:
            raise EnforceError(f"rule {id}: {line!r} is not a device entry like 'c 1:3 rwm' or 'b *:* m'")
        t, maj, mnr, acc = m.groups()
        return cls(id=id, type=t, major=None if maj == "*" else int(maj), minor=None if mnr == "*" else int(mnr),
                   access=acc or "rwm", **kw)  # type: ignore[arg-type]

    def to_struct(self) -> A.EnfSysRule:
        if self.type not in DEV_TYPES:
            raise EnforceError(f"rule {self.id}: device type must be 'c', 'b' or 'a', not {self.type!r}")
        if not isinstance(self.access, str) or not self.access or set(self.access) - set(ACCESS):
            raise EnforceError(f"rule {self.id}: device access must be letters of 'rwm', not {self.access!r}")
        for what, v in (("major", self.major), ("minor", self.minor)):
            if v is not None and (not isinstance(v, int) or not 0 <= v < A.ENF_DEV_ANY):
                raise EnforceError(f"rule {self.id}: {what} must be a device number or None (any), not {v!r}")
        r = self._base(A.EnfSysKind.DEV, sum(int(ACCESS[a]) for a in set(self.access)))
        r.dev_type = DEV_TYPES[self.type]
        r.major = A.ENF_DEV_ANY if self.major is None else self.major
        r.minor = A.ENF_DEV_ANY if self.minor is None else self.minor
        return r


def merge_names(rules: Iterable[tuple[int, list[bytes]]]) -> dict[bytes, int]:
    """{LPM key bytes: bitmask of the slots of every rule with a key that is
    a prefix of (or equal to) it}. One longest-prefix lookup of a name then
    yields all the rules that cover it. Pure (unit-tested)."""
    by_slot = list(rules)
    out: dict[bytes, int] = {}
    for k in {k for _, ks in by_slot for k in ks}:
        mask = 0
        for slot, ks in by_slot:
            if any(k.startswith(p) for p in ks):
                mask |= 1 << slot
        out[k] = mask
    return out


def sysctl_key(k: bytes) -> A.EnfSysctlKey:
    key = A.EnfSysctlKey()
    key.prefixlen = 8 * len(k)
    ctypes.memmove(ctypes.addressof(key) + A.EnfSysctlKey.name.offset, k, len(k))
    return key


@dataclass
class SysDecision:
    """One decision the kernel reported."""

    kind: str             # "sysctl" or "device"
    verdict: str          # "deny" or "allow" (what happened)
    monitor: bool         # a monitor-mode rule would have denied
    rule_id: int
    action: str           # the rule's action
    access: str           # sysctl: "read"/"write"; device: letters of "rwm"
    name: str             # sysctl name ('/' separated); "" for devices
    dev_type: str         # "c"/"b"; "" for sysctls
    major: int
    minor: int
    pid: int
    tgid: int
    comm: str
    err: int
    cgroup_id: int
    ktime: int

    @classmethod
    def decode(cls, raw: bytes) -> "SysDecision":
        e = A.EnfSysEvent.from_buffer_copy(raw[: ctypes.sizeof(A.EnfSysEvent)])
        if e.common.op == A.EnfSysConst.MSG_SYSCTL:
            kind, dev_type = "sysctl", ""
            access = "write" if e.access & A.EnfSysAccess.WRITE else "read"
        elif e.common.op == A.EnfSysConst.MSG_DEV:
            kind, dev_type = "device", _DEV_TYPE_NAME.get(e.dev_type, str(e.dev_type))
            access = "".join(c for c, bit in (("r", A.EnfSysAccess.READ), ("w", A.EnfSysAccess.WRITE),
                                              ("m", A.EnfSysAccess.MKNOD)) if e.access & bit)
        else:
            raise EnforceError(f"unexpected message op {e.common.op}")
        return cls(kind=kind, verdict="deny" if e.verdict == A.EnfVerdict.DENY else "allow",
                   monitor=bool(e.flags & A.EnfEventFlag.MONITOR), rule_id=e.rule_id,
                   action="deny" if e.action == A.EnfAction.DENY else "allow", access=access,
                   name=e.name.decode(errors="replace"), dev_type=dev_type,
                   major=e.major if kind == "device" else 0, minor=e.minor if kind == "device" else 0,
                   pid=e.pid, tgid=e.tgid, comm=e.comm.decode(errors="replace"), err=e.err,
                   cgroup_id=e.cgroup_id, ktime=e.common.ktime)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)
