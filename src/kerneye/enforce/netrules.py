"""Network rules as data: validation, LPM-trie contents and event decoding.

Pure Python, no kernel access (the spec half of kerneye.enforce.cgroup_net,
which owns the loaded object): unit tests use this module directly.
"""
from __future__ import annotations

import ctypes
import ipaddress
import socket
from dataclasses import dataclass, field
from typing import Any, Iterable

from ..errors import KerneyeError
from . import _abi as A

HOOK_NAMES = {"connect": A.EnfNetHook.CONNECT, "sendmsg": A.EnfNetHook.SENDMSG, "bind": A.EnfNetHook.BIND,
              "sock_create": A.EnfNetHook.SOCK_CREATE}
_HOOK_BY_INDEX = ["connect", "sendmsg", "bind", "sock_create"]
PROTOS = {"any": 0, "icmp": socket.IPPROTO_ICMP, "tcp": socket.IPPROTO_TCP, "udp": socket.IPPROTO_UDP,
          "icmpv6": socket.IPPROTO_ICMPV6, "raw": socket.IPPROTO_RAW}
SOCK_TYPES = {"any": 0, "stream": socket.SOCK_STREAM, "dgram": socket.SOCK_DGRAM, "raw": socket.SOCK_RAW}
FAMILIES = {"any": 0, "inet": socket.AF_INET, "inet6": socket.AF_INET6}
MODES = {"off": A.EnfMode.OFF, "monitor": A.EnfMode.MONITOR, "enforce": A.EnfMode.ENFORCE}

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


class EnforceError(KerneyeError):
    """An enforcement rule or attachment is unusable."""


# --- rules ------------------------------------------------------------------

@dataclass
class NetRule:
    """One network rule. Fields left at their defaults match anything.

    action: "deny" or "allow" (an allow rule with a lower priority number
    carves an exception out of a deny rule). cidrs: IPv4/IPv6 networks; empty
    means every address. ports: inclusive (lo, hi) in host order. hooks: any
    of "connect", "sendmsg", "bind", "sock_create". err: errno the operation
    fails with (default EPERM). ruleset: which rule set (and so which mode)
    the rule belongs to. report: also report matches of an allow rule.
    bin_mask: "for these binaries", a bitmask of binary-filter slots (the
    agent's matchBinaries slots, execve_map_value.bin_match); 0 = every
    process. The rule applies when the process's binary matched one of them,
    or with bin_not=True when it matched none (a process the process map
    does not know matched none).
    """

    id: int
    action: str = "deny"
    cidrs: list[str] = field(default_factory=list)
    ports: tuple[int, int] | None = None
    proto: str | int = "any"
    sock_type: str | int = "any"
    family: str | int = "any"  # only checked by sock_create rules
    hooks: tuple[str, ...] = ("connect", "sendmsg", "bind")
    priority: int = 100
    ruleset: int = 0
    err: int = 0
    report: bool = False
    bin_mask: int = 0
    bin_not: bool = False

    @classmethod
    def deny_raw_sockets(cls, id: int, family: str = "any", ruleset: int = 0) -> "NetRule":
        """socket(AF_INET/AF_INET6, SOCK_RAW, *) fails."""
        return cls(id=id, sock_type="raw", family=family, hooks=("sock_create",), ruleset=ruleset)

    def networks(self) -> list[Net]:
        """The rule's CIDRs, mapped IPv6 turned into IPv4; [] for sock_create-only rules."""
        if not set(self.hooks) - {"sock_create"}:
            return []
        if not self.cidrs:
            return [ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")]
        out: list[Net] = []
        for c in self.cidrs:
            try:
                n = ipaddress.ip_network(c, strict=False)
            except ValueError as e:
                raise EnforceError(f"rule {self.id}: bad CIDR {c!r}: {e}") from None
            if isinstance(n, ipaddress.IPv6Network) and n.prefixlen >= 96 and n.network_address.ipv4_mapped:
                n = ipaddress.ip_network(f"{n.network_address.ipv4_mapped}/{n.prefixlen - 96}")
            out.append(n)
        return out

    def to_struct(self) -> A.EnfNetRule:
        check_action(self)
        unknown = set(self.hooks) - set(HOOK_NAMES)
        if unknown or not self.hooks:
            raise EnforceError(f"rule {self.id}: hooks must be among {sorted(HOOK_NAMES)}, got {self.hooks!r}")
        lo, hi = self.ports if self.ports is not None else (0, 65535)
        if not 0 <= lo <= hi <= 65535:
            raise EnforceError(f"rule {self.id}: bad port range {self.ports!r}")
        check_common(self, A.ENF_NET_MAX_SETS)
        r = A.EnfNetRule()
        fill_common(r, self)
        r.proto = _lookup(PROTOS, self.proto, "proto", self.id)
        r.sock_type = _lookup(SOCK_TYPES, self.sock_type, "sock_type", self.id)
        r.family = _lookup(FAMILIES, self.family, "family", self.id)
        r.port_lo, r.port_hi = lo, hi
        r.hooks = sum(int(HOOK_NAMES[h]) for h in set(self.hooks))
        return r


# --- what every cgroup rule type (NetRule, sysrules' SysctlRule and
# DeviceRule) has: id, action, priority, ruleset, err, report, bin_mask,
# bin_not; checked and written the same way ------------------------------------

def check_action(rule: Any) -> None:
    if rule.action not in ("deny", "allow"):
        raise EnforceError(f"rule {rule.id}: action must be 'deny' or 'allow', not {rule.action!r}")


def check_common(rule: Any, max_sets: int) -> None:
    """ruleset, id, priority, err and the binary qualifier (the action is
    check_action's, which each rule type calls first)."""
    if not 0 <= rule.ruleset < max_sets:
        raise EnforceError(f"rule {rule.id}: ruleset must be 0..{max_sets - 1}")
    if not 0 <= rule.id < 2**32 or not 0 <= rule.priority < 2**32:
        raise EnforceError(f"rule {rule.id}: id and priority are u32")
    if not 0 <= rule.err < 4096:
        raise EnforceError(f"rule {rule.id}: err must be an errno number")
    check_bin_mask(rule.id, rule.bin_mask, rule.bin_not)


def fill_common(r: A.EnfNetRule | A.EnfSysRule, rule: Any) -> None:
    """Write the common fields into a struct enf_net_rule / enf_sys_rule."""
    r.id, r.priority, r.set, r.err = rule.id, rule.priority, rule.ruleset, rule.err
    r.action = A.EnfAction.DENY if rule.action == "deny" else A.EnfAction.ALLOW
    r.flags = A.EnfRuleFlag.USED | (A.EnfRuleFlag.REPORT if rule.report else 0) | \
        (A.EnfRuleFlag.BIN_NOT if rule.bin_not else 0)
    r.bin_mask = rule.bin_mask


def check_bin_mask(rid: int, bin_mask: int, bin_not: bool) -> None:
    """Shared by every rule type with a binary qualifier."""
    if isinstance(bin_mask, bool) or not isinstance(bin_mask, int) or not 0 <= bin_mask < 2**64:
        raise EnforceError(f"rule {rid}: bin_mask must be a 64-bit mask of binary-filter slots, not {bin_mask!r}")
    if bin_not and not bin_mask:
        raise EnforceError(f"rule {rid}: bin_not needs a bin_mask (which binaries the rule must NOT apply to)")


def _lookup(table: dict[str, int], v: str | int, what: str, rid: int) -> int:
    if isinstance(v, int):
        return v
    if v not in table:
        raise EnforceError(f"rule {rid}: {what} must be one of {sorted(table)} or a number, not {v!r}")
    return table[v]


def merge_prefixes(rules: Iterable[tuple[int, list[Net]]]) -> dict[Net, int]:
    """{prefix: bitmask of slots whose networks contain it} for the LPM tries.

    Pure function (unit-tested): for every prefix any rule uses, OR the bits
    of every rule with a network that is a supernet of (or equal to) it."""
    by_slot = [(slot, nets) for slot, nets in rules]
    prefixes = {n for _, nets in by_slot for n in nets}
    out: dict[Net, int] = {}
    for p in prefixes:
        mask = 0
        for slot, nets in by_slot:
            if any(p.version == n.version and p.subnet_of(n) for n in nets):  # type: ignore[arg-type]
                mask |= 1 << slot
        out[p] = mask
    return out


def lpm_key(n: Net) -> A.EnfLpm4Key | A.EnfLpm6Key:
    k: A.EnfLpm4Key | A.EnfLpm6Key = A.EnfLpm4Key() if n.version == 4 else A.EnfLpm6Key()
    k.prefixlen = n.prefixlen
    packed = n.network_address.packed
    ctypes.memmove(k.addr, packed, len(packed))
    return k


# --- decisions --------------------------------------------------------------

@dataclass
class NetDecision:
    """One decision the kernel reported."""

    hook: str
    verdict: str          # "deny" or "allow" (what happened)
    monitor: bool         # a monitor-mode rule would have denied
    rule_id: int
    action: str           # the rule's action
    family: int
    addr: str
    port: int
    proto: int
    sock_type: int
    pid: int
    tgid: int
    comm: str
    err: int
    cgroup_id: int
    mapped: bool
    ktime: int

    @classmethod
    def decode(cls, raw: bytes) -> "NetDecision":
        e = A.EnfNetEvent.from_buffer_copy(raw[: ctypes.sizeof(A.EnfNetEvent)])
        if e.common.op != A.EnfMsgOp.NET:
            raise EnforceError(f"unexpected message op {e.common.op}")
        mapped = bool(e.flags & A.EnfEventFlag.MAPPED)
        a = bytes(e.addr)
        if e.hook == 3:  # sock_create has no address
            addr = ""
        elif e.family == socket.AF_INET6 and not mapped:
            addr = socket.inet_ntop(socket.AF_INET6, a)
        elif mapped:
            addr = "::ffff:" + socket.inet_ntop(socket.AF_INET, a[12:16])
        else:
            addr = socket.inet_ntop(socket.AF_INET, a[:4])
        return cls(hook=_HOOK_BY_INDEX[e.hook] if e.hook < 4 else str(e.hook),
                   verdict="deny" if e.verdict == A.EnfVerdict.DENY else "allow",
                   monitor=bool(e.flags & A.EnfEventFlag.MONITOR), rule_id=e.rule_id,
                   action="deny" if e.action == A.EnfAction.DENY else "allow", family=e.family, addr=addr,
                   port=e.port, proto=e.proto, sock_type=e.sock_type, pid=e.pid, tgid=e.tgid,
                   comm=e.comm.decode(errors="replace"), err=e.err, cgroup_id=e.cgroup_id, mapped=mapped,
                   ktime=e.common.ktime)

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)
