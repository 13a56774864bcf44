"""Which operation can be prevented, by which mechanism, on which kernel.

`CAPABILITIES` is the single source of the table in
docs/concepts/enforcement.md (tools/gen_enforce_docs.py renders it;
tests/unit/test_enforce_docs.py fails when the committed doc is stale).
For every operation the mechanisms are listed strongest first; `best()`
picks the first one a probe found available, which is how the agent is
meant to choose a back end at start (issue 4).

Vocabulary of the fields:
  prevents   "yes": the syscall fails and has no effect; "reaction": the
             operation happens and the process is signalled afterwards.
  on_exit    what happens to the enforcement when the agent stops or dies.
  status     "implemented" (a kerneye module does it, with kernel tests),
             "planned" (no back end yet), or "action" (policy actions that
             react after the fact).
  here       measured on the project's reference machine (kernel 6.18 PVM
             guest: no BPF-LSM, no kprobes; shared/reference/kernel-facts.md).

Pure data plus two small helpers: importing this module touches no kernel.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable


@dataclass(frozen=True)
class Mechanism:
    key: str
    name: str
    min_kernel: str
    on_exit: str
    here: bool
    notes: str = ""


MECHANISMS: dict[str, Mechanism] = {m.key: m for m in (
    Mechanism("bpf-lsm", "BPF-LSM program (`lsm/<hook>`)", "5.7, `bpf` in `lsm=`",
              "detached (fails open) unless pinned", False,
              "loads with EPERM on the reference machine although `bpf` is in the LSM list; tested in a "
              "qemu VM with Debian's kernel (docs/reference/vm-tests.md)"),
    Mechanism("fanotify", "fanotify permission event", "2.6.37 (open), 5.0 (exec)",
              "fails open: the kernel allows pending and later events", True,
              "needs a live responder; kerneye answers on (device, inode)"),
    Mechanism("cgroup-bpf", "cgroup BPF program",
              "4.10 (sock_create), 4.17 (connect, bind), 4.18 (sendmsg); kerneye's object 5.18 "
              "(bpf_loop, bpf_set_retval)",
              "detached (fails open); stays with keep_on_exit (pinned links)", True,
              "scoped to a cgroup-v2 subtree: the host (root) or one container; rules can be limited to "
              "binaries (bits of the agent's execve map)"),
    Mechanism("signal", "`Sigkill`/`Signal` action at syscall entry", "5.3 (bpf_send_signal)",
              "stops with the agent", True,
              "a reaction, not prevention: most syscalls complete before the signal lands"),
)}


@dataclass(frozen=True)
class Capability:
    operation: str
    mechanism: str      # key of MECHANISMS
    hook: str
    prevents: str       # "yes" | "reaction"
    errno: str
    scope: str
    status: str         # "implemented" | "planned" | "action"
    module: str = ""
    notes: str = ""


def _c(*a: str, **kw: str) -> Capability:
    return Capability(*a, **kw)


# operation -> mechanisms, strongest first
LSM = "kerneye.enforce.lsm"
FAN = "kerneye.enforce.fanotify"
CGN = "kerneye.enforce.cgroup_net"
CGS = "kerneye.enforce.cgroup_sys"

CAPABILITIES: dict[str, list[Capability]] = {
    "file open": [
        _c("file open", "bpf-lsm", "`file_open`", "yes", "any (argError)",
           "any task, or cgroup subtrees (optionally chosen binaries)",
           "implemented", LSM, "inode rules (hard links, symlinks, renames, bind mounts covered); write-only rules "
           "from f_mode; directory trees go to fanotify"),
        _c("file open", "fanotify", "`FAN_OPEN_PERM` inode marks; directories recursively with "
           "`FAN_EVENT_ON_CHILD`", "yes", "EPERM", "marked inodes and trees; optionally chosen binaries",
           "implemented", FAN, "write-only rules read the open flags from a syscall tracepoint (io_uring opens "
           "fail closed); a mark costs every open on its filesystem ~0.01 µs"),
        _c("file open", "signal", "`sys_enter_openat`", "reaction", "-", "any task", "action",
           notes="`open(O_CREAT)` still creates the file"),
    ],
    "exec": [
        _c("exec", "bpf-lsm", "`bprm_check_security`", "yes", "any (argError)",
           "any task, or cgroup subtrees (optionally chosen callers)", "implemented", LSM,
           "deny list by inode; allow list host-wide or per cgroup subtree, memfd and copies included"),
        _c("exec", "fanotify", "`FAN_OPEN_EXEC_PERM`: inode marks, filesystem marks with sha256 of the content "
           "(copies), mount marks for allow lists, allow-cache of ignore marks", "yes", "EPERM (shell: 126)",
           "host; allow lists per mount", "implemented", FAN,
           "memfd exec, `ld.so ./x` and `sh script` are not exec of the file (see the evasion table)"),
        _c("exec", "signal", "`sys_enter_execve`", "reaction", "-", "any task", "action",
           notes="the new image never runs: the kill lands first"),
    ],
    "connect": [
        _c("connect", "cgroup-bpf", "`cgroup/connect4`, `cgroup/connect6`", "yes", "EPERM or the rule's errno",
           "host or cgroup subtree; optionally chosen binaries", "implemented", CGN,
           "IPv4-mapped IPv6 matched by IPv4 rules; TCP, UDP and ICMP sockets"),
        _c("connect", "bpf-lsm", "`socket_connect`", "yes", "any", "any task", "planned",
           notes="not needed while cgroup BPF is available (it is wherever BPF-LSM is)"),
        _c("connect", "signal", "`sys_enter_connect`", "reaction", "-", "any task", "action",
           notes="the SYN is already sent"),
    ],
    "UDP send to an address": [
        _c("UDP send to an address", "cgroup-bpf", "`cgroup/sendmsg4`, `cgroup/sendmsg6`", "yes",
           "EPERM or the rule's errno", "host or cgroup subtree", "implemented", CGN,
           "sends on a connected socket pass the connect hook instead"),
        _c("UDP send to an address", "bpf-lsm", "`socket_sendmsg`", "yes", "any", "any task", "planned"),
    ],
    "bind": [
        _c("bind", "cgroup-bpf", "`cgroup/bind4`, `cgroup/bind6`", "yes", "EPERM or the rule's errno",
           "host or cgroup subtree", "implemented", CGN),
        _c("bind", "bpf-lsm", "`socket_bind`", "yes", "any", "any task", "planned"),
    ],
    "socket creation (raw sockets)": [
        _c("socket creation (raw sockets)", "bpf-lsm", "`socket_create`", "yes", "any",
           "any task, or cgroup subtrees", "implemented", LSM, "AF_INET, AF_INET6 and AF_PACKET"),
        _c("socket creation (raw sockets)", "cgroup-bpf", "`cgroup/sock_create`", "yes", "EPERM",
           "host or cgroup subtree", "implemented", CGN, "AF_INET/AF_INET6 only: AF_PACKET sockets are not seen"),
    ],
    "sysctl write": [
        _c("sysctl write", "cgroup-bpf", "`cgroup/sysctl`", "yes", "EPERM or the rule's errno",
           "host or cgroup subtree", "implemented", CGS,
           "exact names and prefixes; the write(2) fails and nothing changes (the open succeeds)"),
    ],
    "device access": [
        _c("device access", "cgroup-bpf", "`cgroup/dev`", "yes", "EPERM or the rule's errno",
           "host or cgroup subtree", "implemented", CGS,
           "type, major:minor (wildcards), access r/w/m; checked at open and mknod (open fds stay usable)"),
    ],
    "kernel module load": [
        _c("kernel module load", "bpf-lsm", "`kernel_read_file`, `kernel_load_data`", "yes", "any",
           "any task, or cgroup subtrees", "implemented", LSM),
        _c("kernel module load", "signal", "`sys_enter_finit_module`", "reaction", "-", "any task", "action",
           notes="not measured here (no module support on the reference kernel); assume the module loads"),
    ],
    "BPF program load": [
        _c("BPF program load", "bpf-lsm", "`bpf` (BPF_PROG_LOAD)", "yes", "any",
           "any task but the agent, or cgroup subtrees", "implemented", LSM),
        _c("BPF program load", "signal", "`sys_enter_bpf`", "reaction", "-", "any task", "action",
           notes="the program is loaded before the signal lands"),
    ],
    "unlink, rename, chmod": [
        _c("unlink, rename, chmod", "bpf-lsm", "`path_unlink`, `path_rename`, `path_chmod`", "yes", "any",
           "any task, or cgroup subtrees", "implemented", LSM, "needs CONFIG_SECURITY_PATH (Debian, Ubuntu, RHEL have it)"),
        _c("unlink, rename, chmod", "signal", "`sys_enter_unlinkat` ...", "reaction", "-", "any task", "action",
           notes="the change is made"),
    ],
    "ptrace, kill": [
        _c("ptrace, kill", "bpf-lsm", "`ptrace_access_check`, `task_kill`", "yes", "any",
           "protected tasks, from any task or cgroup subtrees", "implemented", LSM, "used to protect the agent itself"),
        _c("ptrace, kill", "signal", "`sys_enter_ptrace`, `sys_enter_kill`", "reaction", "-", "any task",
           "action"),
    ],
}


def best(operation: str, available: Callable[[str], bool] | Iterable[str]) -> Capability | None:
    """The strongest mechanism for operation that `available` accepts
    (a predicate or a collection of mechanism keys); None if none prevents."""
    ok = available if callable(available) else set(available).__contains__
    for cap in CAPABILITIES.get(operation, []):
        if cap.prevents == "yes" and ok(cap.mechanism):
            return cap
    return None


def probe(bpf_dir: str | None = None) -> dict[str, str | None]:
    """{mechanism key: None if usable here, else why not}. Loads a probe
    program (BPF-LSM) and opens a fanotify group; needs root."""
    import os

    from .. import config
    from ..bpf import features
    from ..system import mount_points
    from .fanotify import Fanotify, FanotifyError

    out: dict[str, str | None] = {}
    out["bpf-lsm"] = features.probe(bpf_dir or config.default_bpf_dir(), "lsm")
    try:
        Fanotify().close()
        out["fanotify"] = None
    except FanotifyError as e:
        out["fanotify"] = str(e)
    cg2 = mount_points("cgroup2")
    out["cgroup-bpf"] = None if cg2 and os.geteuid() == 0 else "no cgroup-v2 mount (or not root)"
    out["signal"] = None
    return out


def render_markdown() -> str:
    """The generated part of docs/concepts/enforcement.md."""
    lines = [
        "| operation | mechanism (strongest first) | hook | prevents | errno | scope | when the agent dies "
        "| reference machine | kerneye | notes |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for op, caps in CAPABILITIES.items():
        for i, c in enumerate(caps):
            m = MECHANISMS[c.mechanism]
            status = f"{c.status}: `{c.module}`" if c.module else c.status
            lines.append("| " + " | ".join([
                f"**{op}**" if i == 0 else "", m.name, c.hook, c.prevents, c.errno, c.scope, m.on_exit,
                "yes" if m.here else "no", status, c.notes,
            ]) + " |")
    lines += ["", "| mechanism | needs | notes |", "|---|---|---|"]
    for m in MECHANISMS.values():
        lines.append(f"| {m.name} | Linux {m.min_kernel} | {m.notes} |")
    return "\n".join(lines) + "\n"
