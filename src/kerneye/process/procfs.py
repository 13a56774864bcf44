"""Start-up scan of /proc: processes that predate the agent.

Each process becomes an ordinary struct msg_exec (flag PROCFS) built with the
generated ctypes mirror, so it travels the same decode path as live kernel
events. The same scan yields the kerneye_execve_map entries the kernel needs
to link later forks, execs and exits to these processes.

ktime: /proc/<pid>/stat's starttime is in clock ticks since boot; times
CLK_TCK it approximates the CLOCK_MONOTONIC time bpf_ktime_get_ns() would
have reported (they differ only by time spent suspended).
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

from ..abi.types import ExecFlag, ExecveMapValue, MsgExec, MsgExecveKey, MsgOp

_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
NS_FILES = {
    "uts": "uts", "ipc": "ipc", "mnt": "mnt", "pid": "pid", "pid_for_children": "pid_for_children",
    "net": "net", "time": "time", "time_for_children": "time_for_children", "cgroup": "cgroup", "user": "user",
}


@dataclass
class ProcRecord:
    pid: int
    ppid: int
    ktime: int
    msg: bytes


def read_ns(pid: int | str) -> dict[str, int]:
    out = {}
    for field, fname in NS_FILES.items():
        try:
            out[field] = os.stat(f"/proc/{pid}/ns/{fname}").st_ino
        except OSError:
            out[field] = 0
    return out


# Inode numbers the kernel gives its initial namespaces
# (include/linux/proc_ns.h, PROC_*_INIT_INO); mnt and net have none.
_INIT_NS_INO = {"ipc": 0xEFFFFFFF, "uts": 0xEFFFFFFE, "user": 0xEFFFFFFD, "pid": 0xEFFFFFFC,
                "pid_for_children": 0xEFFFFFFC, "cgroup": 0xEFFFFFFB, "time": 0xEFFFFFFA,
                "time_for_children": 0xEFFFFFFA}


def host_ns() -> dict[str, int]:
    """The host's namespaces: those of PID 1; where /proc/1/ns is not
    readable (some sandboxes), the kernel's fixed initial-namespace inodes,
    and for mnt/net our own (the agent runs in the host's)."""
    ns = read_ns(1)
    own = read_ns("self")
    for k, v in ns.items():
        if not v:
            ns[k] = _INIT_NS_INO.get(k, own[k])
    return ns


def _stat(pid: int) -> tuple[int, int, str]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # comm may hold spaces and parens: split after the last ')'
    lp, rp = data.index(b"("), data.rindex(b")")
    comm = data[lp + 1 : rp].decode(errors="replace")
    fields = data[rp + 2 :].split()
    return int(fields[1]), int(fields[19]), comm  # ppid, starttime, comm


def _status(pid: int) -> dict[str, list[str]]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.split()
    return out


def ktime_of(pid: int) -> int:
    return _stat(pid)[1] * _TICK_NS


def build(pid: int) -> ProcRecord | None:
    """Build the msg_exec of one live process; None if it vanished."""
    try:
        ppid, start, comm = _stat(pid)
        st = _status(pid)
        if st.get("Tgid", [""])[0] != str(pid):
            return None
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            exe = ""  # kernel thread
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            cwd = ""
        try:
            with open(f"/proc/{pid}/loginuid") as f:
                auid = int(f.read().strip() or 4294967295)
        except OSError:
            auid = 4294967295
        cgroup = ""
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                for line in f:
                    if line.startswith("0::"):
                        cgroup = line[3:].strip()
        except OSError:
            pass
        ns = read_ns(pid)
        try:
            bst = os.stat(f"/proc/{pid}/exe")
        except OSError:
            bst = None
    except (OSError, ValueError, IndexError):
        return None

    m = MsgExec()
    m.common.op = MsgOp.EXECVE
    ktime = start * _TICK_NS
    m.common.ktime = ktime
    m.key.pid = pid
    m.key.ktime = ktime
    m.parent.pid = ppid
    if ppid:
        try:
            m.parent.ktime = ktime_of(ppid)
        except (OSError, ValueError, IndexError):
            m.parent.ktime = 0
    m.tid = pid
    m.ppid = ppid
    nspid = st.get("NSpid", [str(pid)])
    m.nspid = int(nspid[-1])
    m.auid = auid
    flags = ExecFlag.PROCFS
    if not cwd or cwd == "/":
        flags |= ExecFlag.ROOT_CWD
    uid = [int(x) for x in st.get("Uid", ["0"] * 4)]
    gid = [int(x) for x in st.get("Gid", ["0"] * 4)]
    c = m.cred
    c.uid, c.euid, c.suid, c.fsuid = uid
    c.gid, c.egid, c.sgid, c.fsgid = gid
    c.cap_permitted = int(st.get("CapPrm", ["0"])[0], 16)
    c.cap_effective = int(st.get("CapEff", ["0"])[0], 16)
    c.cap_inheritable = int(st.get("CapInh", ["0"])[0], 16)
    for k, v in ns.items():
        setattr(m.ns, k, v)
    try:
        m.cgroup_id = os.stat("/sys/fs/cgroup/unified" + cgroup).st_ino if os.path.isdir("/sys/fs/cgroup/unified") else os.stat("/sys/fs/cgroup" + cgroup).st_ino
    except OSError:
        m.cgroup_id = 0
    if bst is not None:
        m.bin_uid, m.bin_gid, m.bin_mode, m.bin_nlink, m.bin_ino = (
            bst.st_uid, bst.st_gid, bst.st_mode, bst.st_nlink, bst.st_ino)
        if bst.st_mode & 0o4000:
            flags |= ExecFlag.SETUID
        if bst.st_mode & 0o2000:
            flags |= ExecFlag.SETGID
    deleted = exe.endswith(" (deleted)")
    if deleted:
        exe = exe[: -len(" (deleted)")]
    if not exe:
        # kernel thread: Tetragon-style [comm] so it still has a name
        exe = f"[{comm}]"
    dname = os.path.basename(exe) + (" (deleted)" if deleted else "")
    if exe.startswith("/memfd:"):
        dname = exe[1:]
    filename = exe.encode()
    args = cmdline[: 65536]
    if len(args) > 16384:
        args = args[:16384]
        flags |= ExecFlag.TRUNC_ARGS
    cwdb = cwd.encode() + b"\0"
    cgb = cgroup.encode() + b"\0"
    dn = dname.encode()
    m.flags = flags
    m.args_total = len(cmdline)
    m.size_filename = len(filename)
    m.size_args = len(args)
    m.size_cwd = len(cwdb)
    m.size_cgroup = len(cgb)
    m.size_dname = len(dn)
    tail = filename + args + cwdb + cgb + dn
    m.common.size = ctypes.sizeof(m) + len(tail)
    return ProcRecord(pid, ppid, ktime, bytes(m) + tail)


def scan() -> list[ProcRecord]:
    """All processes, oldest first (parents start before their children)."""
    recs = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            r = build(int(name))
            if r is not None:
                recs.append(r)
    recs.sort(key=lambda r: (r.ktime, r.pid))
    return recs


def map_value(r: ProcRecord) -> ExecveMapValue:
    """The kerneye_execve_map entry for a scanned process."""
    m = MsgExec.from_buffer_copy(r.msg)
    v = ExecveMapValue()
    v.key = MsgExecveKey(pid=m.key.pid, ktime=m.key.ktime)
    v.parent = MsgExecveKey(pid=m.parent.pid, ktime=m.parent.ktime)
    v.flags = ExecFlag.PROCFS
    return v
