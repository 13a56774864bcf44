"""Compile a TracingPolicy model into hook configurations and map contents.

Deterministic and kernel-free except for read-only look-ups (tracefs
formats, feature-probe results passed in): the output is plain data that
sensors/generic.py writes into BPF maps and attaches. Anything this kernel
or kerneye cannot do is a PolicyError naming the YAML path.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..abi.types import (GEN_MAX_ARGS, GEN_MAX_FILTERS, GEN_MAX_SELECTORS, GEN_MAX_VALUES, GEN_POSTFIX_MAX,
                         GEN_STR_MAX, GenActionFlag, GenArgSrc, GenArgType, GenFilterFlag, GenFilterKind,
                         GenHookKind, GenOp)
from ..bpf import tracefs
from ..process.caps import CAP_NAMES
from .errors import PolicyError
from .model import ArgFilter, ArgSpec, KProbeSpec, Loc, Selector, TracepointSpec, TracingPolicy, UProbeSpec

ARCH_PREFIXES = ("__x64_", "__ia32_", "__arm64_", "__s390x_", "__riscv_")

# Hook kind of a kprobe on a kernel function (enum gen_hook_kind). The BPF
# side tells hook kinds apart by the program that runs (kerneye_gen_kprobe);
# gen_hook.kind is informational.
HK_KPROBE = GenHookKind.KPROBE
#: where the kernel lists the functions kprobes may attach to
FILTER_FUNCTIONS = ("/sys/kernel/tracing/available_filter_functions",
                    "/sys/kernel/debug/tracing/available_filter_functions")

# Kernel-struct argument types: only where the hook hands us kernel
# pointers (raw tracepoints, kprobes on kernel functions).
KERNEL_ARG_TYPES: dict[str, tuple[int, str]] = {
    "file": (GenArgType.FILE, "file_arg"),
    "path": (GenArgType.PATH, "path_arg"),
    "linux_binprm": (GenArgType.BINPRM, "linux_binprm_arg"),
    "sock": (GenArgType.KSOCK, "sock_arg"),
}

# Tetragon argument type -> (our type, JSON key of the rendered argument)
ARG_TYPES: dict[str, tuple[int, str]] = {
    "auto": (GenArgType.S64, "long_arg"),
    "int": (GenArgType.S32, "int_arg"), "sint32": (GenArgType.S32, "int_arg"), "int32": (GenArgType.S32, "int_arg"),
    "uint32": (GenArgType.U32, "uint_arg"),
    "int8": (GenArgType.S8, "int_arg"), "sint8": (GenArgType.S8, "int_arg"), "uint8": (GenArgType.U8, "uint_arg"),
    "int16": (GenArgType.S16, "int_arg"), "sint16": (GenArgType.S16, "int_arg"),
    "uint16": (GenArgType.U16, "uint_arg"),
    "long": (GenArgType.S64, "long_arg"), "int64": (GenArgType.S64, "long_arg"), "sint64": (GenArgType.S64, "long_arg"),
    "uint64": (GenArgType.U64, "size_arg"), "size_t": (GenArgType.U64, "size_arg"), "ulong": (GenArgType.U64, "size_arg"),
    "string": (GenArgType.STRING, "string_arg"), "filename": (GenArgType.STRING, "string_arg"),
    "char_buf": (GenArgType.CHAR_BUF, "bytes_arg"),
    "fd": (GenArgType.FD, "file_arg"),
    "sockaddr": (GenArgType.SOCKADDR, "sockaddr_arg"),
    "sock": (GenArgType.SOCK, "sock_arg"), "socket": (GenArgType.SOCK, "sock_arg"),
    "bpf_cmd": (GenArgType.BPF_CMD, "bpf_cmd_arg"),
    "capability": (GenArgType.CAP, "capability_arg"),
    "syscall64": (GenArgType.S64, "syscall_id"),  # rendered {"syscall_id": {"id", "abi"}}
    "nop": (GenArgType.NONE, ""),  # declared but not read or reported
}
INT_TYPES = {GenArgType.S64, GenArgType.U64, GenArgType.S32, GenArgType.U32, GenArgType.S16, GenArgType.U16,
             GenArgType.S8, GenArgType.U8, GenArgType.BPF_CMD, GenArgType.CAP}
# file/path/linux_binprm match on the rendered path, as an fd does
STR_TYPES = {GenArgType.STRING, GenArgType.CHAR_BUF, GenArgType.FD, GenArgType.FILE, GenArgType.PATH,
             GenArgType.BINPRM}
NET_TYPES = {GenArgType.SOCKADDR, GenArgType.SOCK, GenArgType.KSOCK}

NS_INDEX = {"uts": 0, "ipc": 1, "mnt": 2, "pid": 3, "pidforchildren": 4, "net": 5, "time": 6,
            "timeforchildren": 7, "cgroup": 8, "user": 9}
NS_CHANGE_SUPPORTED = {"mnt": 2, "pid": 3, "net": 5, "user": 9}
CAP_TYPE = {"effective": 0, "inheritable": 1, "permitted": 2}
CAP_BITS = {n: i for i, n in enumerate(CAP_NAMES)}
AF = {"AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_UNSPEC": 0}
PROTO = {"IPPROTO_IP": 0, "IPPROTO_ICMP": 1, "IPPROTO_TCP": 6, "IPPROTO_UDP": 17, "IPPROTO_ICMPV6": 58,
         "IPPROTO_RAW": 255, "IPPROTO_SCTP": 132}
TCP_STATES = {"TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3, "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5,
              "TCP_TIME_WAIT": 6, "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
              "TCP_CLOSING": 11, "TCP_NEW_SYN_RECV": 12}

_OPS = {
    "Equal": GenOp.EQ, "NotEqual": GenOp.NEQ, "Prefix": GenOp.PREFIX, "NotPrefix": GenOp.NOT_PREFIX,
    "Postfix": GenOp.POSTFIX, "NotPostfix": GenOp.NOT_POSTFIX, "Mask": GenOp.MASK, "GreaterThan": GenOp.GT,
    "LessThan": GenOp.LT, "InRange": GenOp.RANGE, "NotInRange": GenOp.NOT_RANGE, "InMap": GenOp.IN_MAP,
    "NotInMap": GenOp.NOT_IN_MAP, "SPort": GenOp.SPORT, "NotSPort": GenOp.NOT_SPORT, "DPort": GenOp.DPORT,
    "NotDPort": GenOp.NOT_DPORT, "SPortPriv": GenOp.SPORT, "NotSPortPriv": GenOp.NOT_SPORT,
    "DPortPriv": GenOp.DPORT, "NotDPortPriv": GenOp.NOT_DPORT, "SAddr": GenOp.SADDR, "NotSAddr": GenOp.NOT_SADDR,
    "DAddr": GenOp.DADDR, "NotDAddr": GenOp.NOT_DADDR, "Protocol": GenOp.PROTOCOL, "Family": GenOp.FAMILY,
    "State": GenOp.STATE,
}
STR_OPS = {"Equal", "NotEqual", "Prefix", "NotPrefix", "Postfix", "NotPostfix"}
INT_OPS = {"Equal", "NotEqual", "Mask", "GreaterThan", "LessThan", "InRange", "NotInRange", "InMap", "NotInMap"}
NET_OPS = {"SPort", "NotSPort", "DPort", "NotDPort", "SPortPriv", "NotSPortPriv", "DPortPriv", "NotDPortPriv",
           "SAddr", "NotSAddr", "DAddr", "NotDAddr", "Protocol", "Family", "State"}


@dataclass
class ArgInfo:
    """How user space renders one argument of a hook."""
    type: int
    json_key: str
    label: str = ""
    user: bool = True


@dataclass
class FilterC:
    kind: int
    op: int
    arg: int = 0
    vals: list[int] = field(default_factory=list)
    flags: int = 0
    # map contents, keyed later by the allocated filter id
    strs: list[tuple[str, bytes]] = field(default_factory=list)  # (eq|prefix|postfix, bytes)
    addrs: list[tuple[bytes, int]] = field(default_factory=list)  # (16-byte addr, prefix bits)
    ints: list[int] = field(default_factory=list)
    bin_values: tuple[str, list[str], bool] | None = None  # (op kind, paths, followChildren)


@dataclass
class SelectorC:
    filters: list[FilterC]
    actions: int = GenActionFlag.POST
    signal: int = 0
    rate_limit_ms: int = 0
    rate_scope: int = 0
    has_ret: bool = False
    action_name: str = "KPROBE_ACTION_POST"


@dataclass
class HookC:
    """One attachment: what to attach, its config and selectors."""
    kind: int                      # GenHookKind
    attach: tuple[str, ...]        # ("syscalls", "sys_enter_openat") / (path, symbol, offset)
    exit_attach: tuple[str, ...] | None
    args: list[tuple[ArgSpec, ArgInfo, dict[str, int]]]  # spec, render info, gen_arg_spec fields
    ret: ArgInfo | None
    selectors: list[SelectorC]
    is_return: bool
    # rendering
    event_kind: str                # process_kprobe | process_tracepoint | process_uprobe
    header: dict[str, object]      # function_name / subsys+event / path+symbol
    message: str
    tags: tuple[str, ...]
    path: str                      # YAML path of the spec


@dataclass
class CompiledPolicy:
    name: str
    mode: str
    hooks: list[HookC]


def key_line(path: str, key: str, after: str | None = None) -> tuple[int, int]:
    """(line, col) of the first `key:` in a policy file (after the `after:`
    key if given), for errors about a whole section; (0, 0) if unknown."""
    import re

    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return 0, 0
    start = 0
    if after:
        for i, ln in enumerate(lines):
            if re.match(rf"\s*{after}\s*:", ln):
                start = i + 1
                break
    for i in range(start, len(lines)):
        m = re.match(rf"(\s*){key}\s*:", lines[i])
        if m:
            return i + 1, len(m.group(1)) + 1
    return 0, 0


def _err(loc: Loc | None, code: str, msg: str) -> PolicyError:
    if loc is None:
        return PolicyError(code, msg)
    return PolicyError(code, msg, path=loc.path, file=loc.file, line=loc.line, col=loc.col)


def syscall_name(call: str) -> str:
    c = call
    for p in ARCH_PREFIXES:
        if c.startswith(p):
            c = c[len(p):]
            break
    if c.startswith("sys_"):
        c = c[4:]
    return c


def parse_int(v: str | int, loc: Loc | None = None, what: str = "value") -> int:
    if isinstance(v, int):
        return v
    s = str(v).strip()
    try:
        return int(s, 0)
    except ValueError:
        try:
            return int(s, 8) if s.startswith("0") and len(s) > 1 else int(s)
        except ValueError:
            raise _err(loc, "bad-value", f"{what} {v!r} is not an integer") from None


def _addr(v: str, loc: Loc) -> tuple[bytes, int]:
    try:
        net = ipaddress.ip_network(v, strict=False)
    except ValueError:
        raise _err(loc, "bad-value", f"{v!r} is not an IPv4/IPv6 address or CIDR") from None
    if net.version == 4:
        return b"\0" * 10 + b"\xff\xff" + net.network_address.packed, 96 + net.prefixlen
    return net.network_address.packed, net.prefixlen


def _ports(values: tuple[str, ...], loc: Loc) -> list[int]:
    out: list[int] = []
    for v in values:
        lo, _, hi = str(v).partition(":")
        a = parse_int(lo, loc, "port")
        b = parse_int(hi, loc, "port") if hi else a
        if not (0 <= a <= b <= 65535):
            raise _err(loc, "bad-value", f"port range {v!r} is not within 0..65535")
        out += [a, b]
    return out


def _named(v: str, table: dict[str, int], loc: Loc, what: str) -> int:
    if str(v).upper() in table:
        return table[str(v).upper()]
    return parse_int(v, loc, what)


_SYSCALL_NUMBERS: dict[str, int] | None = None


def syscall_numbers() -> dict[str, int]:
    """x86-64 syscall numbers from the kernel UAPI header (linux-libc-dev)."""
    global _SYSCALL_NUMBERS
    if _SYSCALL_NUMBERS is None:
        import re

        out: dict[str, int] = {}
        for path in ("/usr/include/x86_64-linux-gnu/asm/unistd_64.h", "/usr/include/asm/unistd_64.h"):
            try:
                with open(path) as f:
                    for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", f.read()):
                        out[m.group(1)] = int(m.group(2))
                break
            except OSError:
                continue
        _SYSCALL_NUMBERS = out
    return _SYSCALL_NUMBERS


class Compiler:
    def __init__(self, host_ns: dict[str, int], features: dict[str, str | None],
                 kernel_functions: frozenset[str] | set[str] | None = None) -> None:
        self.lists: dict[str, object] = {}
        self.host_ns = host_ns
        self.features = features  # backend -> None (available) or reason
        # functions kprobes may attach to; None: read from the running kernel when first needed
        self._kfuncs = kernel_functions

    def compile(self, tp: TracingPolicy, mode: str | None = None) -> CompiledPolicy:
        spec = tp.spec
        pmode = mode or spec.options.get("policy-mode") or "enforce"
        if pmode not in ("monitor", "enforce"):
            raise PolicyError("bad-value", f"policy mode {pmode!r} must be monitor or enforce")
        hooks: list[HookC] = []
        lists = {lst.name: lst for lst in getattr(spec, "lists", ())}
        self.lists = lists
        for i, kp in enumerate(spec.kprobes):
            hooks += self._kprobe(kp, f"spec.kprobes[{i}]", lists)
        for i, kp in enumerate(getattr(spec, "fentries", ()) or ()):
            raise self._unavailable(kp.loc, f"spec.fentries[{i}]", "fentry", f"fentry on {kp.call}")
        for i, lh in enumerate(getattr(spec, "lsmhooks", ()) or ()):
            raise self._unavailable(lh.loc, f"spec.lsmhooks[{i}]", "lsm", f"LSM hook {lh.hook}")
        for i, t in enumerate(spec.tracepoints):
            hooks.append(self._tracepoint(t, f"spec.tracepoints[{i}]"))
        for i, u in enumerate(spec.uprobes):
            hooks += self._uprobe(u, f"spec.uprobes[{i}]")
        if getattr(spec, "usdts", ()):
            u = spec.usdts[0]
            raise _err(u.loc, "unavailable-hook", "USDT probes are not supported by kerneye yet")
        if not hooks:
            line, col = key_line(tp.source_file, "spec")
            raise PolicyError("missing-field", f"policy {tp.name} hooks nothing (no kprobes, tracepoints or uprobes)",
                              path="spec", file=tp.source_file, line=line, col=col)
        return CompiledPolicy(tp.name, pmode, hooks)

    def _unavailable(self, loc: Loc | None, path: str, backend: str, what: str) -> PolicyError:
        reason = self.features.get(backend)
        if reason is None and backend in self.features:
            # the kernel has them; kerneye traces syscalls, tracepoints and uprobes only
            return _err(loc, "unavailable-hook",
                        f"{what}: tracing with {backend} programs is not implemented by kerneye (this kernel has "
                        f"them); Override selectors on it are enforced, see docs/concepts/enforcement.md")
        return _err(loc, "unavailable-hook", f"{what} needs {backend} programs: "
                                             f"{reason or backend + ' programs are unavailable'}")

    # --- hooks -------------------------------------------------------------
    def _kprobe(self, kp: KProbeSpec, path: str, lists: dict[str, object] | None = None) -> list[HookC]:
        calls = list(kp.calls)
        if not calls and kp.call_list:
            lst = (lists or {}).get(kp.call_list)
            ltype = getattr(lst, "type", None)
            if ltype == "generated_syscalls":
                calls = [f"sys_{n}" for n in tracefs.all_syscalls()]
            else:
                raise _err(kp.loc, "unavailable-hook",
                           f"list {kp.call_list} of type {ltype} (kernel functions) needs kprobes or fentry")
        if not calls:
            calls = [kp.call]
        if not kp.syscall:
            if "kprobe" in self.features and self.features["kprobe"] is None:
                return self._kfunc(kp, calls, path)
            backend = "fentry" if self.features.get("fentry") is None else "kprobe"
            raise self._unavailable(kp.loc, path, backend,
                                    f"kernel function {calls[0]} (syscall: false)")
        out = []
        for call in calls:
            name = syscall_name(call)
            if not tracefs.syscall_exists(name):
                if kp.ignore_call_not_found:
                    continue
                raise _err(kp.loc, "unavailable-hook",
                           f"{call}: no syscall tracepoint syscalls/sys_enter_{name} on this kernel "
                           f"(unknown syscall, or CONFIG_FTRACE_SYSCALLS is off)")
            HKIND = GenHookKind.SYSCALL
            args = self._args(kp.args, kp.loc, HKIND, None)
            ret = None
            is_ret = bool(kp.is_return or kp.return_arg is not None)
            if is_ret:
                rt = kp.return_arg.type if kp.return_arg is not None else "int"
                ret = ArgInfo(*ARG_TYPES.get(rt, ARG_TYPES["int"]))
            sels = self._selectors(kp.selectors, args, path, kp)
            fname = call if call.startswith(ARCH_PREFIXES) else f"__x64_sys_{name}"
            out.append(HookC(HKIND, ("syscalls", f"sys_enter_{name}"),
                             ("syscalls", f"sys_exit_{name}") if is_ret else None, args, ret, sels, is_ret,
                             "process_kprobe", {"function_name": fname}, kp.message, tuple(kp.tags), path))
        return out

    def kernel_functions(self) -> frozenset[str]:
        if self._kfuncs is None:
            self._kfuncs = traceable_functions()
        return frozenset(self._kfuncs)

    def _kfunc(self, kp: KProbeSpec, calls: list[str], path: str) -> list[HookC]:
        """kprobes (and kretprobes) on kernel functions."""
        known = self.kernel_functions()
        out = []
        for call in calls:
            if call not in known:
                if kp.ignore_call_not_found:
                    continue
                raise _err(kp.loc, "unavailable-hook",
                           f"{call}: no traceable kernel function of that name on this kernel (not in "
                           f"available_filter_functions: misspelt, inlined, or notrace); set "
                           f"ignore: {{callNotFound: true}} to skip it")
            args = self._args(kp.args, kp.loc, HK_KPROBE, None)
            ret = None
            is_ret = bool(kp.is_return or kp.return_arg is not None)
            if is_ret:
                rt = kp.return_arg.type if kp.return_arg is not None else "int"
                ret = ArgInfo(*ARG_TYPES.get(rt, ARG_TYPES["int"]), user=False)
            sels = self._selectors(kp.selectors, args, path, kp)
            out.append(HookC(HK_KPROBE, (call,), (call,) if is_ret else None, args, ret, sels, is_ret,
                             "process_kprobe", {"function_name": call}, kp.message, tuple(kp.tags), path))
        return out

    def _tracepoint(self, t: TracepointSpec, path: str) -> HookC:
        if getattr(t, "raw", False):
            if self.features.get("rawtp"):
                raise _err(t.loc, "unavailable-hook", f"tracepoint {t.subsystem}/{t.event}: {self.features['rawtp']}")
            if not tracefs.exists(t.subsystem, t.event):
                raise _err(t.loc, "unavailable-hook", f"tracepoint {t.subsystem}/{t.event} does not exist on this kernel")
            args = self._args(t.args, t.loc, GenHookKind.RAWTP, None)
            sels = self._selectors(t.selectors, args, path, t)
            return HookC(GenHookKind.RAWTP, (t.subsystem, t.event), None, args, None, sels, False,
                         "process_tracepoint", {"subsys": t.subsystem, "event": t.event}, t.message, tuple(t.tags),
                         path)
        if not tracefs.exists(t.subsystem, t.event):
            raise _err(t.loc, "unavailable-hook", f"tracepoint {t.subsystem}/{t.event} does not exist on this kernel")
        flds = tracefs.fields(t.subsystem, t.event)
        args = self._args(t.args, t.loc, GenHookKind.TRACEPOINT, flds)
        sels = self._selectors(t.selectors, args, path, t)
        return HookC(GenHookKind.TRACEPOINT, (t.subsystem, t.event), None, args, None, sels, False,
                     "process_tracepoint", {"subsys": t.subsystem, "event": t.event}, t.message, tuple(t.tags), path)

    def _uprobe(self, u: UProbeSpec, path: str) -> list[HookC]:
        import os

        if not os.path.exists(u.path):
            raise _err(u.loc, "unavailable-hook", f"uprobe target {u.path} does not exist")
        targets: list[tuple[str, int]] = [(s, 0) for s in u.symbols] + [("", o) for o in u.offsets]
        if not targets:
            raise _err(u.loc, "missing-field", "a uprobe needs symbols or offsets")
        out = []
        for sym, off in targets:
            args = self._args(u.args, u.loc, GenHookKind.UPROBE, None)
            is_ret = bool(u.is_return or u.return_arg is not None)
            ret = ArgInfo(*ARG_TYPES.get(u.return_arg.type if u.return_arg else "int", ARG_TYPES["int"])) if is_ret else None
            sels = self._selectors(u.selectors, args, path, u)
            out.append(HookC(GenHookKind.UPROBE, (u.path, sym, str(off)), (u.path, sym, str(off)) if is_ret else None,
                             args, ret, sels, is_ret, "process_uprobe",
                             {"path": u.path, "symbol": sym, "offset": str(off)} if not sym else {"path": u.path, "symbol": sym},
                             u.message, tuple(u.tags), path))
        return out

    def _args(self, specs: tuple[ArgSpec, ...], loc: Loc, kind: int, flds: tuple[tracefs.TpField, ...] | None
              ) -> list[tuple[ArgSpec, ArgInfo, dict[str, int]]]:
        if len(specs) > GEN_MAX_ARGS:
            raise _err(specs[GEN_MAX_ARGS].loc, "limit", f"at most {GEN_MAX_ARGS} args per hook")
        out = []
        for a in specs:
            if kind in (GenHookKind.RAWTP, HK_KPROBE) and a.type in KERNEL_ARG_TYPES:
                gt, key = KERNEL_ARG_TYPES[a.type]
                if kind == HK_KPROBE and a.index > 4:
                    raise _err(a.loc, "limit", "kprobe arguments are read from registers: index must be 0..4")
                out.append((a, ArgInfo(gt, key, a.label, False),
                            {"type": gt, "src": GenArgSrc.RAW if kind == GenHookKind.RAWTP else GenArgSrc.REG,
                             "index": a.index, "size_arg": 0, "offset": 0, "fsize": 8, "max_data": 4096,
                             "user": 0}))
                continue
            if kind == HK_KPROBE and a.type == "socket":
                raise _err(a.loc, "unavailable-hook",
                           "argument type 'socket' (struct socket *) is not read by kerneye's kprobes yet; "
                           "hook a function that takes a struct sock * and use type sock")
            if a.type not in ARG_TYPES:
                raise _err(a.loc, "unavailable-hook",
                           f"argument type {a.type!r} is not available for this hook "
                           f"(kernel-struct types such as file/path need kprobe or fentry hooks)")
            gt, key = ARG_TYPES[a.type]
            g: dict[str, int] = {"type": gt, "src": GenArgSrc.SYSCALL, "index": a.index, "size_arg": 0,
                                 "offset": 0, "fsize": 8, "max_data": 4096 if not a.max_data else 4096, "user": 1}
            if a.size_arg_index:
                # Tetragon's sizeArgIndex is 1-based (0 = unset)
                g["size_arg"] = 0
                pos = next((j for j, s in enumerate(specs) if s.index == a.size_arg_index - 1), None)
                if pos is None:
                    raise _err(a.loc, "bad-value",
                               f"sizeArgIndex {a.size_arg_index} refers to argument index {a.size_arg_index - 1},"
                               " which is not in args")
                g["size_arg"] = pos + 1
            if kind == GenHookKind.UPROBE:
                g["src"] = GenArgSrc.REG
                if a.index > 4:
                    raise _err(a.loc, "limit", "uprobe arguments are read from registers: index must be 0..4")
            elif kind == HK_KPROBE:
                g["src"], g["user"] = GenArgSrc.REG, 0  # kernel pointers and values
                if a.index > 4:
                    raise _err(a.loc, "limit", "kprobe arguments are read from registers: index must be 0..4")
            elif kind == GenHookKind.SYSCALL:
                if a.index > 5:
                    raise _err(a.loc, "bad-value", f"syscalls have at most 6 arguments, index {a.index} is out of range")
            elif kind == GenHookKind.RAWTP:
                g["src"], g["user"] = GenArgSrc.RAW, 0  # kernel pointers and values
                if a.index > 11:
                    raise _err(a.loc, "bad-value", f"raw tracepoint argument index {a.index} is out of range")
            elif kind == GenHookKind.TRACEPOINT:
                assert flds is not None
                if a.index >= len(flds):
                    raise _err(a.loc, "bad-value", f"the tracepoint has {len(flds)} fields; index {a.index} is out of range")
                f = flds[a.index]
                g["offset"], g["fsize"] = f.offset, f.size
                if f.is_data_loc:
                    g["src"], g["user"] = GenArgSrc.TP_DATALOC, 0
                elif f.is_char_array:
                    g["src"], g["user"] = GenArgSrc.TP_ARRAY, 0
                else:
                    g["src"] = GenArgSrc.TP_FIELD
                    g["user"] = 1  # pointers in syscall tracepoints are user addresses
                if gt == GenArgType.STRING and not (f.is_data_loc or f.is_char_array or f.is_pointer):
                    raise _err(a.loc, "bad-value", f"field {f.name} ({f.ctype}) is not a string")
            out.append((a, ArgInfo(gt, key, a.label, bool(g["user"])), g))
        return out

    # --- selectors -------------------------------------------------------
    def _selectors(self, sels: tuple[Selector, ...], args: list, path: str, hook: object) -> list[SelectorC]:
        if len(sels) > GEN_MAX_SELECTORS:
            raise _err(sels[GEN_MAX_SELECTORS].loc, "limit", f"at most {GEN_MAX_SELECTORS} selectors per hook")
        return [self._selector(s, args, hook) for s in sels]

    def _selector(self, s: Selector, args: list, hook: object) -> SelectorC:
        fs: list[FilterC] = []
        for f in s.match_args:
            fs.append(self._arg_filter(f, args, GenFilterKind.ARG, hook))
        for f in s.match_return_args:
            fs.append(self._ret_filter(f))
        if s.match_data:
            raise _err(s.match_data[0].loc, "unavailable-hook", "matchData needs data[] sources, which kerneye does not read yet")
        for p in s.match_pids:
            if len(p.values) > GEN_MAX_VALUES:
                raise _err(p.loc, "limit", f"at most {GEN_MAX_VALUES} PIDs per matchPIDs")
            fs.append(FilterC(GenFilterKind.PID, GenOp.IN if p.operator == "In" else GenOp.NOT_IN,
                              vals=list(p.values),
                              flags=(GenFilterFlag.FOLLOW if p.follow_forks else 0)
                              | (GenFilterFlag.NSPID if p.is_namespace_pid else 0)))
        for b in s.match_binaries:
            neg = b.operator.startswith("Not")
            kind = b.operator.removeprefix("Not") or "In"
            kind = {"In": "eq", "Prefix": "prefix", "Postfix": "postfix"}[kind]
            fc = FilterC(GenFilterKind.BIN, GenOp.NOT_IN if neg else GenOp.IN)
            fc.bin_values = (kind, list(b.values), b.follow_children)
            fs.append(fc)
        if s.match_parent_binaries:
            raise _err(s.match_parent_binaries[0].loc, "unavailable-hook", "matchParentBinaries is not supported yet")
        for n in s.match_namespaces:
            key = n.namespace.lower()
            if key not in NS_INDEX:
                raise _err(n.loc, "bad-value", f"unknown namespace {n.namespace}")
            vals = []
            for v in n.values:
                if str(v) == "host_ns":
                    hk = {"pidforchildren": "pid_for_children", "timeforchildren": "time_for_children"}.get(key, key)
                    vals.append(self.host_ns.get(hk, 0))
                else:
                    vals.append(parse_int(v, n.loc, "namespace inode"))
            fs.append(FilterC(GenFilterKind.NS, GenOp.IN if n.operator == "In" else GenOp.NOT_IN,
                              arg=NS_INDEX[key], vals=vals))
        for c in s.match_capabilities:
            fs.append(FilterC(GenFilterKind.CAP, GenOp.IN if c.operator == "In" else GenOp.NOT_IN,
                              arg=CAP_TYPE.get(c.type.lower(), 0), vals=[self._capmask(c.values, c.loc)]))
        for c in s.match_capability_changes:
            fs.append(FilterC(GenFilterKind.CAP_CHANGE, GenOp.IN if c.operator == "In" else GenOp.NOT_IN,
                              vals=[self._capmask(c.values, c.loc)]))
        for n in s.match_namespace_changes:
            mask = 0
            for v in n.values:
                k = str(v).lower()
                if k not in NS_CHANGE_SUPPORTED:
                    raise _err(n.loc, "bad-value",
                               f"matchNamespaceChanges supports {', '.join(sorted(NS_CHANGE_SUPPORTED))}, not {v}")
                mask |= 1 << NS_CHANGE_SUPPORTED[k]
            fs.append(FilterC(GenFilterKind.NS_CHANGE, GenOp.IN if n.operator == "In" else GenOp.NOT_IN, vals=[mask]))
        if len(fs) > GEN_MAX_FILTERS:
            raise _err(s.loc, "limit", f"a selector can hold at most {GEN_MAX_FILTERS} filters in kerneye (has {len(fs)})")
        sc = SelectorC(fs, has_ret=any(f.kind == GenFilterKind.RET for f in fs))
        self._actions(s, sc)
        return sc

    @staticmethod
    def _capmask(values: tuple[str, ...], loc: Loc) -> int:
        mask = 0
        for v in values:
            name = str(v).upper()
            if not name.startswith("CAP_"):
                name = "CAP_" + name
            if name not in CAP_BITS:
                raise _err(loc, "bad-value", f"unknown capability {v}")
            mask |= 1 << CAP_BITS[name]
        return mask

    def _actions(self, s: Selector, sc: SelectorC) -> None:
        acts = list(s.match_actions) + list(s.match_return_actions)
        flags = 0
        for a in acts:
            name = a.action
            if name == "Post":
                flags |= GenActionFlag.POST
                if a.rate_limit:
                    sc.rate_limit_ms = int(a.rate_limit * 1000)
                    sc.rate_scope = {"thread": 0, "process": 1, "global": 2}.get((a.rate_limit_scope or "thread").lower(), 0)
            elif name == "NoPost":
                flags |= GenActionFlag.NOPOST
            elif name == "Sigkill":
                flags |= GenActionFlag.SIGNAL
                sc.signal = 9
                sc.action_name = "KPROBE_ACTION_SIGKILL"
            elif name == "Signal":
                flags |= GenActionFlag.SIGNAL
                sc.signal = int(a.arg_sig or 0)
                sc.action_name = "KPROBE_ACTION_SIGNAL"
            elif name == "Override":
                raise _err(a.loc, "unavailable-hook",
                           "Override (blocking the operation) is provided by kerneye's enforcement back ends "
                           "(BPF-LSM, fanotify, cgroup BPF), not by tracing hooks; use Sigkill here or a "
                           "kerneye enforcement policy")
            else:
                raise _err(a.loc, "unavailable-hook", f"action {name} is not supported by kerneye yet")
        if not flags & (GenActionFlag.POST | GenActionFlag.NOPOST):
            flags |= GenActionFlag.POST
        sc.actions = flags

    def _slot(self, f: ArgFilter, args: list, hook: object) -> int:
        want = f.args[0] if f.args else None
        if want is not None:
            if want >= len(args):
                raise _err(f.loc, "bad-value", f"args position {want} is out of range")
            return want
        pos = hook.arg_position(f.index) if hasattr(hook, "arg_position") else None
        if pos is None:
            pos = next((p for p, (spec, _i, _g) in enumerate(args) if spec.index == f.index), None)
        if pos is None:
            raise _err(f.loc, "bad-value", f"matchArgs index {f.index} is not one of the hook's args")
        return pos

    def _arg_filter(self, f: ArgFilter, args: list, kind: int, hook: object) -> FilterC:
        slot = self._slot(f, args, hook)
        info: ArgInfo = args[slot][1]
        op = f.operator
        t = info.type
        if op not in _OPS:
            raise _err(f.loc, "unavailable-hook", f"operator {op} is not supported by kerneye's in-kernel filters yet")
        fc = FilterC(kind, _OPS[op], arg=slot)
        if t in STR_TYPES and (op in STR_OPS):
            for v in f.values:
                b = str(v).encode()
                if op in ("Equal", "NotEqual"):
                    if len(b) >= GEN_STR_MAX:
                        raise _err(f.loc, "limit", f"Equal values are limited to {GEN_STR_MAX - 1} bytes")
                    fc.strs.append(("eq", b))
                elif op in ("Prefix", "NotPrefix"):
                    if len(b) >= GEN_STR_MAX:
                        raise _err(f.loc, "limit", f"Prefix values are limited to {GEN_STR_MAX - 1} bytes")
                    fc.strs.append(("prefix", b))
                else:
                    if len(b) > GEN_POSTFIX_MAX:
                        raise _err(f.loc, "limit", f"Postfix values are limited to {GEN_POSTFIX_MAX} bytes")
                    fc.strs.append(("postfix", b[::-1]))
            return fc
        if t in NET_TYPES and op in NET_OPS:
            if op in ("SAddr", "NotSAddr", "DAddr", "NotDAddr"):
                fc.addrs = [_addr(str(v), f.loc) for v in f.values]
            elif op.endswith("PortPriv"):
                fc.vals = [0, 1023]
            elif op.endswith("Port"):
                fc.vals = _ports(f.values, f.loc)
            elif op == "Family":
                fc.vals = [_named(v, AF, f.loc, "family") for v in f.values]
            elif op == "Protocol":
                fc.vals = [_named(v, PROTO, f.loc, "protocol") for v in f.values]
            elif op == "State":
                fc.vals = [_named(v, TCP_STATES, f.loc, "state") for v in f.values]
            if len(fc.vals) > GEN_MAX_VALUES:
                raise _err(f.loc, "limit", f"too many values (kerneye keeps {GEN_MAX_VALUES // 2} ranges inline; use InMap)")
            return fc
        if (t in INT_TYPES or t == GenArgType.FD) and op in INT_OPS:
            self._int_values(f, fc)
            return fc
        raise _err(f.loc, "bad-value", f"operator {op} does not apply to a {args[slot][0].type} argument")

    def _int_values(self, f: ArgFilter, fc: FilterC) -> None:
        op = f.operator
        if op in ("InMap", "NotInMap"):
            for v in f.values:
                if str(v).startswith("list:"):
                    fc.ints += self._list_numbers(str(v)[5:], f.loc)
                    continue
                lo, _, hi = str(v).partition(":")
                a = parse_int(lo, f.loc)
                b = parse_int(hi, f.loc) if hi else a
                if b - a > 65536:
                    raise _err(f.loc, "limit", f"InMap range {v} is larger than 65536 values")
                fc.ints += list(range(a, b + 1))
            return
        if op in ("InRange", "NotInRange"):
            for v in f.values:
                lo, sep, hi = str(v).partition(":")
                if not sep:
                    raise _err(f.loc, "bad-value", f"{op} values are min:max, not {v!r}")
                fc.vals += [parse_int(lo, f.loc), parse_int(hi, f.loc)]
        else:
            fc.vals = [parse_int(v, f.loc) for v in f.values]
        if len(fc.vals) > GEN_MAX_VALUES:
            raise _err(f.loc, "limit", f"at most {GEN_MAX_VALUES} values inline; use InMap for more")

    def _list_numbers(self, name: str, loc: Loc) -> list[int]:
        lst = self.lists.get(name)
        if lst is None:
            raise _err(loc, "unknown-list", f"no list named {name} in spec.lists")
        nums = syscall_numbers()
        if not nums:
            raise _err(loc, "unavailable-hook", "syscall numbers are unknown here (no asm/unistd_64.h; "
                       "apt-get install linux-libc-dev)")
        out = []
        for call in getattr(lst, "values", ()):
            name_ = syscall_name(call)
            if call.startswith("__ia32_"):
                continue  # 32-bit compat entry points have other numbers
            if name_ not in nums:
                raise _err(loc, "bad-value", f"list {name}: unknown syscall {call}")
            out.append(nums[name_])
        return out

    def _ret_filter(self, f: ArgFilter) -> FilterC:
        if f.operator not in INT_OPS:
            raise _err(f.loc, "unavailable-hook", f"matchReturnArgs supports integer operators, not {f.operator}")
        fc = FilterC(GenFilterKind.RET, _OPS[f.operator])
        self._int_values(f, fc)
        return fc


def traceable_functions() -> frozenset[str]:
    """Kernel functions kprobes may attach to: available_filter_functions
    (tracefs), else the text symbols of /proc/kallsyms; empty if neither is
    readable."""
    names: set[str] = set()
    for path in FILTER_FUNCTIONS:
        try:
            with open(path) as f:
                for line in f:
                    if line.strip():
                        names.add(line.split()[0])
            return frozenset(names)
        except OSError:
            continue
    try:
        with open("/proc/kallsyms") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in ("T", "t"):
                    names.add(parts[2])
    except OSError:
        pass
    return frozenset(names)
