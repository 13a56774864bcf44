"""Enforcement rules as data: what a policy asks to prevent, before any
back end is chosen.

Both policy surfaces end here:

* a TracingPolicy selector with the `Override` action on a recognised hook
  (`sys_openat`, `security_file_open`, `lsmhooks: bprm_check_security`,
  `tcp_connect`, ...), translated by kerneye.enforce.translate;
* a kerneye `EnforcementPolicy` (kerneye.policy.enforcement), which names
  operations directly: exec, files, network, raw sockets, modules, BPF,
  sysctls, devices.

kerneye.enforce.manager then picks, per operation, the strongest mechanism
the kernel offers (kerneye.enforce.capabilities) and installs the rule
there. Pure Python: importing this module touches no kernel.
"""
from __future__ import annotations

import errno as _errno
from dataclasses import dataclass, field

#: operation -> the row of kerneye.enforce.capabilities.CAPABILITIES
OPERATIONS: dict[str, str] = {
    "exec": "exec",
    "open": "file open",
    "write": "file open",
    "connect": "connect",
    "sendmsg": "UDP send to an address",
    "bind": "bind",
    "raw_socket": "socket creation (raw sockets)",
    "module": "kernel module load",
    "bpf": "BPF program load",
    "sysctl": "sysctl write",
    "device": "device access",
    "protect": "unlink, rename, chmod",
}

#: the LSM hook that stands for each operation in process_lsm events
LSM_HOOK: dict[str, str] = {
    "exec": "bprm_check_security", "open": "file_open", "write": "file_open", "connect": "socket_connect",
    "sendmsg": "socket_sendmsg", "bind": "socket_bind", "raw_socket": "socket_create",
    "module": "kernel_read_file", "bpf": "bpf", "sysctl": "cgroup_sysctl", "device": "cgroup_dev",
    "protect": "path_unlink",
}


@dataclass(frozen=True)
class Report:
    """How a decision of this rule is reported: the event kind and the
    fields a Tetragon user expects for the hook the policy named."""

    kind: str = "process_lsm"          # process_kprobe | process_lsm
    function_name: str = ""            # __x64_sys_openat, security_file_open, file_open, ...
    message: str = ""
    tags: tuple[str, ...] = ()
    #: position of each known value in the policy's declared args, e.g.
    #: {"path": 0} for security_file_open(file); args the back end cannot
    #: see are left out
    arg_slots: tuple[tuple[str, str, str], ...] = ()  # (value name, arg type, label)


@dataclass(frozen=True)
class Rule:
    """One thing to prevent. Fields not used by `op` stay at their defaults.

    op: a key of OPERATIONS. action: "deny", or "allow" (exec allowlists,
    network exceptions). binaries / binaries_not: the rule applies only to
    processes running (or not running) one of these executables.
    paths: files or directories (exec: also "sha256:<hex>"); a directory,
    or a path ending in "/", covers everything below it.
    scope: cgroup-v2 directories; empty = the whole host.
    """

    op: str
    action: str = "deny"
    paths: tuple[str, ...] = ()
    binaries: tuple[str, ...] = ()
    binaries_not: bool = False
    cidrs: tuple[str, ...] = ()
    ports: tuple[tuple[int, int], ...] = ()
    except_cidrs: tuple[str, ...] = ()  # network: exceptions carved out of cidrs/ports
    except_ports: tuple[tuple[int, int], ...] = ()
    protocol: str = "any"
    family: str = "any"
    mounts: tuple[str, ...] = ()  # exec allow lists: only these mounts (default: every exec-capable one)
    sysctls: tuple[str, ...] = ()
    devices: tuple[tuple[str, int, int, str], ...] = ()  # (type a|b|c, major, minor, access); -1 = any
    errno: int = _errno.EPERM
    scope: tuple[str, ...] = ()
    report: Report = field(default_factory=Report)
    where: str = ""  # policy path of the selector / section, for errors

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown enforcement operation {self.op!r}; known: {', '.join(OPERATIONS)}")


@dataclass
class RulePlan:
    """A policy's rules, ready for the manager."""

    policy: str
    mode: str                       # monitor | enforce
    rules: list[Rule]
    source: str = "<api>"
    kind: str = "EnforcementPolicy"  # or TracingPolicy (Override selectors)
    warnings: list[str] = field(default_factory=list)


def errno_name(err: int) -> str:
    return _errno.errorcode.get(abs(err), str(abs(err)))
