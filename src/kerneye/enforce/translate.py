"""TracingPolicy `Override` selectors -> enforcement rules.

Tetragon blocks an operation by overriding the return value of a kprobe'd
function (`bpf_override_return`) or an LSM hook. kerneye recognises the
hooks whose meaning is an operation it can prevent — file open, exec,
connect, sendto, bind, socket creation, module and BPF loads, unlink/rename/
chmod — and turns each selector that takes `Override` into a Rule for the
enforcement back ends (BPF-LSM, fanotify, cgroup BPF), whichever is the
strongest this kernel has. `split()` returns the policy without those
selectors (what is left is traced as usual) and the rules.

Within an Override selector, the filters that have a meaning for the
operation are used (path/filename args, DAddr/DPort/Family/Protocol, socket
type, matchBinaries In/NotIn); any other filter would make the rule match
less than the author meant, so it is an error naming the selector.
"""
from __future__ import annotations

import errno as _errno
import ipaddress
import os
import socket
from dataclasses import dataclass, replace

from ..policy.compile import ARCH_PREFIXES, _err, syscall_name
from ..policy.model import ArgFilter, KProbeSpec, LsmHookSpec, Selector, TracingPolicy
from .rules import Report, Rule, RulePlan


@dataclass(frozen=True)
class HookMeaning:
    op: str
    #: function parameter index -> what it is: path | flags | mask | sockaddr | sock | family | type | protocol
    params: dict[int, str]


_OPEN = {"open": HookMeaning("open", {0: "path", 1: "flags"}),
         "openat": HookMeaning("open", {1: "path", 2: "flags"}),
         "openat2": HookMeaning("open", {1: "path"}),
         "creat": HookMeaning("write", {0: "path"})}
_EXEC = {"execve": HookMeaning("exec", {0: "path"}), "execveat": HookMeaning("exec", {1: "path"})}
_NET = {"connect": HookMeaning("connect", {1: "sockaddr"}), "bind": HookMeaning("bind", {1: "sockaddr"}),
        "sendto": HookMeaning("sendmsg", {4: "sockaddr"}),
        "socket": HookMeaning("raw_socket", {0: "family", 1: "type", 2: "protocol"})}
_MOD = {n: HookMeaning("module", {}) for n in ("init_module", "finit_module")}
_BPF = {"bpf": HookMeaning("bpf", {0: "bpf_cmd"})}
_PROTECT = {n: HookMeaning("protect", {}) for n in ("unlink", "unlinkat", "rename", "renameat", "renameat2",
                                                     "chmod", "fchmodat")}
SYSCALLS: dict[str, HookMeaning] = {**_OPEN, **_EXEC, **_NET, **_MOD, **_BPF, **_PROTECT}

#: kernel functions (kprobes) and LSM hooks (lsmhooks, without security_)
FUNCTIONS: dict[str, HookMeaning] = {
    "security_file_open": HookMeaning("open", {0: "path"}),
    "file_open": HookMeaning("open", {0: "path"}),
    "security_file_permission": HookMeaning("open", {0: "path", 1: "mask"}),
    "file_permission": HookMeaning("open", {0: "path", 1: "mask"}),
    "security_bprm_check": HookMeaning("exec", {0: "path"}),
    "bprm_check_security": HookMeaning("exec", {0: "path"}),
    "security_bprm_creds_for_exec": HookMeaning("exec", {0: "path"}),
    "bprm_creds_for_exec": HookMeaning("exec", {0: "path"}),
    "tcp_connect": HookMeaning("connect", {0: "sock"}),
    "security_socket_connect": HookMeaning("connect", {1: "sockaddr"}),
    "socket_connect": HookMeaning("connect", {1: "sockaddr"}),
    "security_socket_bind": HookMeaning("bind", {1: "sockaddr"}),
    "socket_bind": HookMeaning("bind", {1: "sockaddr"}),
    "security_socket_create": HookMeaning("raw_socket", {0: "family", 1: "type", 2: "protocol"}),
    "socket_create": HookMeaning("raw_socket", {0: "family", 1: "type", 2: "protocol"}),
    **{n: HookMeaning("module", {}) for n in (
        "security_kernel_module_request", "kernel_module_request", "security_kernel_read_file", "kernel_read_file",
        "security_kernel_load_data", "kernel_load_data", "do_init_module", "load_module")},
    **{n: HookMeaning("bpf", {0: "bpf_cmd"}) for n in ("security_bpf", "bpf")},
    **{n: HookMeaning("bpf", {}) for n in ("security_bpf_prog_load", "bpf_prog_load", "security_bpf_prog", "bpf_prog")},
    # unlink/rename: (dir, dentry, ...): the file is the second parameter; chmod: (path, mode)
    **{n: HookMeaning("protect", {1: "path"}) for n in (
        "security_path_unlink", "path_unlink", "security_inode_unlink", "inode_unlink",
        "security_path_rename", "path_rename")},
    **{n: HookMeaning("protect", {0: "path"}) for n in ("security_path_chmod", "path_chmod")},
}

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_MAY_WRITE, _MAY_APPEND = 2, 8
_BPF_PROG_LOAD = 5
_FAMILIES = {"AF_INET": socket.AF_INET, "AF_INET6": socket.AF_INET6, "AF_PACKET": 17, "AF_UNIX": socket.AF_UNIX}
_PROTOS = {"IPPROTO_TCP": "tcp", "IPPROTO_UDP": "udp", "IPPROTO_ICMP": "icmp", "IPPROTO_ICMPV6": "icmpv6",
           "6": "tcp", "17": "udp", "1": "icmp", "58": "icmpv6"}


def meaning(section: str, hook: KProbeSpec | LsmHookSpec, call: str) -> HookMeaning | None:
    if section == "lsmhooks":
        return FUNCTIONS.get(call)
    if getattr(hook, "syscall", False) or call.startswith(("sys_",) + ARCH_PREFIXES):
        return SYSCALLS.get(syscall_name(call))
    return FUNCTIONS.get(call)


def has_override(s: Selector) -> bool:
    return any(a.action == "Override" for a in s.match_actions)


def split(tp: TracingPolicy, mode: str) -> tuple[TracingPolicy | None, RulePlan | None]:
    """(the policy without Override selectors, or None if nothing is left to
    trace; the enforcement rules, or None if the policy has no Override)."""
    rules: list[Rule] = []
    new_hooks: dict[str, list[object]] = {}
    changed = False
    for section, i, hook in tp.spec.hooks():
        keep = list(getattr(hook, "selectors", ()) or ())
        ov = [s for s in keep if has_override(s)]
        if ov:
            changed = True
            if section not in ("kprobes", "lsmhooks", "fentries"):
                raise _err(ov[0].loc, "unavailable-hook",
                           f"Override works on kprobes, fentries and lsmhooks, not on {section}")
            calls = [hook.hook] if section == "lsmhooks" else (list(hook.calls) or [hook.call])
            for call in calls:
                m = meaning(section, hook, call)
                if m is None:
                    act = next(a for a in ov[0].match_actions if a.action == "Override")
                    raise _err(act.loc, "unavailable-hook",
                               f"Override on {call}: kerneye enforces Override on hooks that mean file open, exec, "
                               f"connect, sendto, bind, socket creation, module or BPF loads, unlink/rename/chmod "
                               f"(e.g. sys_openat, security_file_open, security_bprm_check, tcp_connect); "
                               f"{call} is not one of them")
                for s in ov:
                    rules += _selector_rules(section, hook, call, m, s)
            rest = [s for s in keep if not has_override(s)]
            if rest:
                new_hooks.setdefault(section, []).append(replace(hook, selectors=tuple(rest)))
        else:
            new_hooks.setdefault(section, []).append(hook)
    if not changed:
        return tp, None
    plan = RulePlan(tp.name, mode, rules, tp.source_file or "<api>", "TracingPolicy")
    sections = {k: tuple(new_hooks.get(k, ())) for k in ("kprobes", "fentries", "tracepoints", "uprobes", "usdts",
                                                        "lsmhooks")}
    if not any(sections.values()):
        return None, plan
    return replace(tp, spec=replace(tp.spec, **sections)), plan


def _selector_rules(section: str, hook: KProbeSpec | LsmHookSpec, call: str, m: HookMeaning,
                    s: Selector) -> list[Rule]:
    where = s.loc.path if s.loc else ""
    for name in ("match_data", "match_return_args", "match_pids", "match_parent_binaries", "match_namespaces",
                 "match_namespace_changes", "match_capabilities", "match_capability_changes", "match_return_actions"):
        if getattr(s, name):
            field_name = "match" + "".join(p.title() for p in name.split("_")[1:])
            field_name = field_name.replace("Pids", "PIDs")
            raise _err(s.loc, "unsupported-filter",
                       f"{field_name} cannot be combined with Override: kerneye enforces Override with "
                       f"matchArgs, matchBinaries (In/NotIn) and matchActions only")
    ov = next(a for a in s.match_actions if a.action == "Override")
    err = abs(ov.arg_error) if ov.arg_error else _errno.EPERM
    binaries: tuple[str, ...] = ()
    bin_not = False
    for b in s.match_binaries:
        if b.operator not in ("In", "NotIn"):
            raise _err(b.loc, "unsupported-filter",
                       f"matchBinaries {b.operator} with Override: use In or NotIn with full paths (the enforcement "
                       f"back ends compare the executable's inode)")
        if binaries:
            raise _err(b.loc, "unsupported-filter", "one matchBinaries entry per Override selector")
        binaries, bin_not = tuple(b.values), b.operator == "NotIn"
    args = list(getattr(hook, "args", ()) or ())
    kind = "process_lsm" if section == "lsmhooks" else "process_kprobe"
    is_sys = kind == "process_kprobe" and SYSCALLS.get(syscall_name(call)) is m
    fname = call if kind == "process_lsm" or not is_sys or call.startswith(ARCH_PREFIXES) \
        else f"__x64_sys_{syscall_name(call)}"
    slots = tuple((m.params.get(a.index, ""), a.type, a.label) for a in args)
    report = Report(kind, fname, hook.message, tuple(hook.tags), slots)
    base = dict(binaries=binaries, binaries_not=bin_not, errno=err, report=report, where=where)
    by_what: dict[str, list[ArgFilter]] = {}
    for f in s.match_args:
        what = m.params.get(f.index)
        if what is None:
            raise _err(f.loc, "unsupported-filter",
                       f"matchArgs index {f.index} of {call}: with Override kerneye can filter on "
                       + (", ".join(f"index {i} ({w})" for i, w in sorted(m.params.items())) or "nothing")
                       + "; other arguments are not visible to the enforcement back ends")
        by_what.setdefault(what, []).append(f)
    op = m.op
    if op in ("open", "write", "exec", "protect"):
        return _path_rules(op, by_what, base, call, s)
    if op in ("connect", "bind", "sendmsg"):
        return [_net_rule(op, by_what, base, call, s)]
    if op == "raw_socket":
        return [_socket_rule(by_what, base, s)]
    if op == "bpf":
        for f in by_what.get("bpf_cmd", []):
            vals = {_int(v, f) for v in f.values}
            if f.operator != "Equal" or vals != {_BPF_PROG_LOAD}:
                raise _err(f.loc, "unsupported-filter",
                           "Override on bpf: kerneye prevents program loads (cmd Equal 5, BPF_PROG_LOAD) only")
        return [Rule("bpf", **base)]
    return [Rule(op, **base)]


def _int(v: str, f: ArgFilter) -> int:
    try:
        return int(v, 0)
    except ValueError:
        raise _err(f.loc, "bad-value", f"{v!r} is not an integer") from None


def _path_rules(op: str, by_what: dict[str, list[ArgFilter]], base: dict, call: str, s: Selector) -> list[Rule]:
    for f in by_what.get("flags", []) + by_what.get("mask", []):
        vals = [_int(v, f) for v in f.values]
        if by_what.get("flags") and f.operator == "Mask" and all(v & _WRITE_FLAGS for v in vals):
            op = "write"
        elif by_what.get("mask") and f.operator in ("Equal", "Mask") and all(v & (_MAY_WRITE | _MAY_APPEND)
                                                                              for v in vals):
            op = "write"
        else:
            raise _err(f.loc, "unsupported-filter",
                       "with Override, open flags/mask filters can only select writes "
                       "(Mask with O_WRONLY/O_RDWR/O_CREAT/O_TRUNC/O_APPEND, or mask Equal 2/MAY_WRITE)")
    paths: list[str] = []
    allow = False
    for f in by_what.get("path", []):
        if f.operator in ("Equal", "Prefix"):
            for v in f.values:
                if f.operator == "Prefix" and not v.endswith("/") and not os.path.isdir(v):
                    raise _err(f.loc, "unsupported-filter",
                               f"Prefix {v!r} with Override must name a directory (end it with '/'): the back ends "
                               f"decide on inodes, so a partial file name cannot be enforced")
                if not v.startswith("/"):
                    raise _err(f.loc, "bad-value", f"{v!r}: enforced paths must be absolute")
                paths.append(v if f.operator == "Equal" or v.endswith("/") else v + "/")
        elif f.operator in ("NotEqual", "NotPrefix") and op == "exec":
            allow = True
            paths += list(f.values)
        else:
            raise _err(f.loc, "unsupported-filter",
                       f"{f.operator} on a path with Override: use Equal or Prefix (a directory)"
                       + ("; NotEqual/NotPrefix turns an exec hook into an allow list" if op == "exec" else ""))
    if not paths and op == "exec" and base["binaries"]:
        # Override on exec for chosen callers, whatever they run: an empty allow list for them
        return [Rule("exec", action="allow", paths=(), **base)]
    if not paths and op != "protect":
        raise _err(s.loc, "unsupported-filter",
                   f"an Override selector on {call} needs a matchArgs path filter (Equal or Prefix): without one "
                   f"it would block every {'exec' if op == 'exec' else 'open'} on the host")
    return [Rule(op, action="allow" if allow else "deny", paths=tuple(paths), **base)]


def _ports(f: ArgFilter) -> list[tuple[int, int]]:
    out = []
    for v in f.values:
        lo, _, hi = v.partition(":")
        try:
            a, b = int(lo, 0), int(hi or lo, 0)
        except ValueError:
            raise _err(f.loc, "bad-value", f"{v!r} is not a port or a lo:hi port range") from None
        if not (0 <= a <= b <= 65535):
            raise _err(f.loc, "bad-value", f"{v!r} is not a port range within 0..65535")
        out.append((a, b))
    return out


def _net_rule(op: str, by_what: dict[str, list[ArgFilter]], base: dict, call: str, s: Selector) -> Rule:
    """DAddr/DPort (SAddr/SPort for bind) give the scope of the deny; their
    Not… forms carve exceptions out of it (NotDAddr 127.0.0.1 alone: deny
    every address but loopback)."""
    sets: dict[bool, tuple[list[str], list[tuple[int, int]]]] = {False: ([], []), True: ([], [])}
    family, proto = "any", "any"
    for f in by_what.get("sockaddr", []) + by_what.get("sock", []):
        negated = f.operator.startswith("Not")
        opname = f.operator.removeprefix("Not")
        cidrs, ports = sets[negated]
        if opname in ("SAddr", "DAddr"):
            for v in f.values:
                try:
                    cidrs.append(str(ipaddress.ip_network(v, strict=False)))
                except ValueError:
                    raise _err(f.loc, "bad-value", f"{v!r} is not an IP address or CIDR") from None
        elif opname in ("SPort", "DPort"):
            ports += _ports(f)
        elif f.operator == "Family":
            fams = {_FAMILIES.get(v, None) or _int(v, f) for v in f.values}
            if len(fams) != 1 or not fams <= {socket.AF_INET, socket.AF_INET6}:
                raise _err(f.loc, "unsupported-filter", "Family with Override: one of AF_INET, AF_INET6")
            family = "inet" if fams == {socket.AF_INET} else "inet6"
        elif f.operator == "Protocol":
            ps = {_PROTOS.get(v.upper() if not v.isdigit() else v) for v in f.values}
            if len(ps) != 1 or None in ps:
                raise _err(f.loc, "unsupported-filter", "Protocol with Override: one of IPPROTO_TCP, IPPROTO_UDP, "
                                                        "IPPROTO_ICMP, IPPROTO_ICMPV6")
            proto = ps.pop() or "any"
        else:
            raise _err(f.loc, "unsupported-filter",
                       f"{f.operator} with Override on {call}: use DAddr/SAddr, DPort/SPort (and Not…), Family, "
                       f"Protocol")
    if family != "any":
        want = socket.AF_INET if family == "inet" else socket.AF_INET6
        for c in sets[False][0] + sets[True][0]:
            if ipaddress.ip_network(c).version != (4 if want == socket.AF_INET else 6):
                raise _err(s.loc, "bad-value", f"{c} is not an address of family {family}")
        if not sets[False][0]:
            sets[False][0].append("0.0.0.0/0" if family == "inet" else "::/0")
    return Rule(op, cidrs=tuple(sets[False][0]), ports=tuple(sets[False][1]), except_cidrs=tuple(sets[True][0]),
                except_ports=tuple(sets[True][1]), protocol=proto, family=family, **base)


def _socket_rule(by_what: dict[str, list[ArgFilter]], base: dict, s: Selector) -> Rule:
    types = [t for f in by_what.get("type", []) for t in (_int(v, f) for v in f.values)]
    if not by_what.get("type") or any(f.operator != "Equal" for f in by_what["type"]) \
            or any(t & 0xF != socket.SOCK_RAW for t in types):
        raise _err(s.loc, "unsupported-filter",
                   "Override on socket creation: kerneye prevents raw sockets; filter the type argument with "
                   "Equal 3 (SOCK_RAW)")
    family = "any"
    for f in by_what.get("family", []):
        fams = {_FAMILIES.get(v, None) or _int(v, f) for v in f.values}
        if f.operator != "Equal" or len(fams) != 1:
            raise _err(f.loc, "unsupported-filter", "family with Override: Equal one of AF_INET, AF_INET6, AF_PACKET")
        family = {socket.AF_INET: "inet", socket.AF_INET6: "inet6", 17: "packet"}.get(fams.pop(), "")
        if not family:
            raise _err(f.loc, "unsupported-filter", "family with Override: AF_INET, AF_INET6 or AF_PACKET")
    if by_what.get("protocol"):
        raise _err(by_what["protocol"][0].loc, "unsupported-filter",
                   "raw sockets are denied whatever their protocol; drop the protocol filter")
    return Rule("raw_socket", family=family, **base)
