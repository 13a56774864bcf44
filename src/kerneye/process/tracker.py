"""Turns base-sensor messages (exec, clone, exit) into processes and events.

One code path for every source: live kernel messages and the synthetic
/proc messages of process/procfs.py are the same bytes (struct msg_exec) and
go through `handle_exec`. Missing parents or processes are parked in the
event cache and retried, never dropped.
"""
from __future__ import annotations

import ctypes
import os
from typing import Callable

from ..abi.types import ExecFlag, MsgClone, MsgExec, MsgExit
from ..eventcache import EventCache
from ..events.event import Event
from .cache import ProcessCache
from .container import DOCKER_ID_LEN, container_id
from .identity import Clock, exec_id, rfc3339
from .model import NS_NAMES, Cred, Process, quote_arg, split_args, unknown_process

_EXEC_SIZE = ctypes.sizeof(MsgExec)

# exec_flag bits -> Tetragon's words for process.flags
_FLAG_WORDS = [
    (ExecFlag.EXECVE, "execve"),
    (ExecFlag.PROCFS, "procFS"),
    (ExecFlag.TRUNC_FILENAME, "truncFilename"),
    (ExecFlag.TRUNC_ARGS, "truncArgs"),
    (ExecFlag.ERROR_FILENAME, "errorFilename"),
    (ExecFlag.ERROR_ARGS, "errorArgs"),
    (ExecFlag.TRUNC_CWD, "truncCWD"),
    (ExecFlag.ERROR_CWD, "errorCWD"),
    (ExecFlag.ROOT_CWD, "rootcwd"),
    (ExecFlag.CLONE, "clone"),
]

_SIGNALS = {getattr(__import__("signal"), n).value: n for n in dir(__import__("signal"))
            if n.startswith("SIG") and not n.startswith("SIG_") and n not in ("SIGIOT", "SIGPOLL", "SIGCLD")}


def signal_name(sig: int) -> str:
    return _SIGNALS.get(sig, f"SIG{sig}")


def parse_exec(raw: bytes) -> tuple[MsgExec, bytes, bytes, str, str, str]:
    """Split a msg_exec into (fixed part, filename, args, cwd, cgroup path,
    dentry name), undoing the kernel's leaf-first path encoding."""
    m = MsgExec.from_buffer_copy(raw)
    tail = raw[_EXEC_SIZE:]
    o1 = m.size_filename
    o2 = o1 + m.size_args
    o3 = o2 + m.size_cwd
    o4 = o3 + m.size_cgroup
    filename = tail[:o1]
    args = tail[o1:o2]
    if m.flags & ExecFlag.PROCFS:
        cwd = tail[o2:o3].rstrip(b"\0").decode("utf-8", "backslashreplace")
        cgroup = tail[o3:o4].rstrip(b"\0").decode("utf-8", "backslashreplace") or "/"
    else:
        comps = tail[o2:o3].split(b"\0")[:-1]
        cwd = "/" + "/".join(c.decode("utf-8", "backslashreplace") for c in reversed(comps))
        gcomps = tail[o3:o4].split(b"\0")[:-1]
        cgroup = "/" + "/".join(c.decode("utf-8", "backslashreplace") for c in reversed(gcomps))
    dname = tail[o4 : o4 + m.size_dname].decode("utf-8", "backslashreplace")
    return m, filename, args, cwd, cgroup, dname


class ProcessTracker:
    def __init__(
        self,
        node: str,
        clock: Clock,
        host_ns: dict[str, int],
        cache: ProcessCache,
        eventcache: EventCache,
        emit: Callable[[Event], None],
        ancestors: bool = False,
    ) -> None:
        self.node = node
        self.clock = clock
        self.host_ns = host_ns
        self.cache = cache
        self.eventcache = eventcache
        self.emit = emit
        self.ancestors = ancestors
        self.missing_parent = 0
        self.missing_process = 0

    # --- exec -----------------------------------------------------------
    def handle_exec(self, raw: bytes) -> None:
        proc = self._build_exec(raw)
        # The image this exec replaces (a fork child, or an earlier exec of
        # the same pid) is gone: release it without an exit event.
        prev = self.cache.get_by_pid(proc.pid)
        if prev is not None and prev.exec_id != proc.exec_id and not (proc.flags and proc.flags[0] == "procFS"):
            self.cache.release(prev)
        self.cache.add(proc)
        # Start-up (procFS) records are reported too, as Tetragon does, so a
        # consumer sees every process that can appear as a parent.
        if not self._try_exec(proc, False):
            self.eventcache.park(lambda final: self._try_exec(proc, final))

    def _try_exec(self, proc: Process, final: bool) -> bool:
        parent = self._parent_of(proc)
        if parent is None and not final:
            return False
        if parent is None:
            self.missing_parent += 1
        self.emit(Event("process_exec", proc, parent, self.clock.wall(proc.ktime), self.node,
                        ancestors=self.cache.ancestors(proc) if self.ancestors else None))
        return True

    def _parent_of(self, proc: Process) -> Process | None:
        if not proc.parent_exec_id:
            # the kernel did not know the parent (PARENT_MISS): late-bind by pid
            pp = self.cache.get_by_pid(proc.ppid) if proc.ppid else None
            if pp is not None and pp.exec_id != proc.exec_id:
                self.cache.adopt(proc, pp)
            return pp
        return self.cache.get(proc.parent_exec_id)

    def _build_exec(self, raw: bytes) -> Process:
        m, filename, args_raw, cwd, cgroup, dname = parse_exec(raw)
        node = self.node
        binary = filename.decode("utf-8", "backslashreplace")
        if binary and not binary.startswith(("/", "[")):
            binary = os.path.normpath(os.path.join(cwd, binary))
        argv = split_args(args_raw)
        arguments = " ".join(quote_arg(a) for a in argv[1:])
        flags = [w for bit, w in _FLAG_WORDS if m.flags & bit]
        if m.parent.ktime:
            parent_eid = exec_id(node, m.parent.ktime, m.parent.pid)
        else:
            pp = self.cache.get_by_pid(m.parent.pid) if m.parent.pid else None
            parent_eid = pp.exec_id if pp else ""
        c = m.cred
        ns = {name: getattr(m.ns, name) for name in NS_NAMES}
        bp: dict[str, object] = {}
        if m.flags & ExecFlag.SETUID:
            bp["setuid"] = m.bin_uid
        if m.flags & ExecFlag.SETGID:
            bp["setgid"] = m.bin_gid
        priv = []
        if m.flags & ExecFlag.PRIV_FILECAP:
            priv.append("PRIVILEGES_RAISED_EXEC_FILE_CAP")
        if m.flags & ExecFlag.PRIV_SETUID:
            priv.append("PRIVILEGES_RAISED_EXEC_FILE_SETUID")
        if m.flags & ExecFlag.PRIV_SETGID:
            priv.append("PRIVILEGES_RAISED_EXEC_FILE_SETGID")
        if priv:
            bp["privileges_changed"] = priv
        if m.bin_nlink == 0 or dname.startswith("memfd:"):
            bp["file"] = {"inode": {"number": str(m.bin_ino), "links": m.bin_nlink}, "path": dname}
        cid = container_id(cgroup)
        return Process(
            exec_id=exec_id(node, m.key.ktime, m.key.pid),
            parent_exec_id=parent_eid,
            pid=m.key.pid,
            tid=m.tid,
            ktime=m.key.ktime,
            nspid=m.nspid,
            auid=m.auid,
            cwd=cwd,
            binary=binary,
            arguments=arguments,
            flags=flags,
            start_time_ns=self.clock.wall(m.key.ktime),
            cred=Cred(c.uid, c.gid, c.euid, c.egid, c.suid, c.sgid, c.fsuid, c.fsgid, c.securebits),
            cap_permitted=c.cap_permitted,
            cap_effective=c.cap_effective,
            cap_inheritable=c.cap_inheritable,
            ns=ns,
            ns_is_host={k: v == self.host_ns.get(k) for k, v in ns.items()},
            cgroup_id=m.cgroup_id,
            cgroup_path=cgroup,
            docker=cid[:DOCKER_ID_LEN],
            binary_properties=bp or None,
            ppid=m.ppid,
        )

    # --- clone ----------------------------------------------------------
    def handle_clone(self, raw: bytes) -> None:
        m = MsgClone.from_buffer_copy(raw)
        if not self._try_clone(m, False):
            self.eventcache.park(lambda final: self._try_clone(m, final))

    def _try_clone(self, m: MsgClone, final: bool) -> bool:
        parent = None
        if m.parent.ktime:
            parent = self.cache.get(exec_id(self.node, m.parent.ktime, m.parent.pid))
        if parent is None:
            parent = self.cache.get_by_pid(m.parent.pid) if (final or not m.parent.ktime) else None
        if parent is None:
            if not final:
                return False
            self.missing_parent += 1
            return True  # a fork of an unknown process: its exec will still be reported
        cur = self.cache.get_by_pid(m.key.pid)
        if cur is not None and cur.ktime >= m.key.ktime:
            return True  # resolved late: the child has exec'd since; that image wins
        child = Process(
            exec_id=exec_id(self.node, m.key.ktime, m.key.pid),
            parent_exec_id=parent.exec_id,
            pid=m.key.pid,
            tid=m.tid,
            ktime=m.key.ktime,
            nspid=0,
            auid=parent.auid,
            cwd=parent.cwd,
            binary=parent.binary,
            arguments=parent.arguments,
            flags=["clone"],
            start_time_ns=self.clock.wall(m.key.ktime),
            cred=parent.cred,
            cap_permitted=parent.cap_permitted,
            cap_effective=parent.cap_effective,
            cap_inheritable=parent.cap_inheritable,
            ns=parent.ns,
            ns_is_host=parent.ns_is_host,
            cgroup_id=parent.cgroup_id,
            cgroup_path=parent.cgroup_path,
            docker=parent.docker,
            ppid=parent.pid,
        )
        self.cache.add(child)
        return True

    # --- exit -----------------------------------------------------------
    def handle_exit(self, raw: bytes) -> None:
        m = MsgExit.from_buffer_copy(raw)
        if not self._try_exit(m, False):
            self.eventcache.park(lambda final: self._try_exit(m, final))

    def _try_exit(self, m: MsgExit, final: bool) -> bool:
        proc = None
        if m.key.ktime:
            proc = self.cache.get(exec_id(self.node, m.key.ktime, m.key.pid))
        else:
            cand = self.cache.get_by_pid(m.key.pid)
            if cand is not None and not cand.exited:
                proc = cand
        if proc is None:
            if not final:
                return False
            self.missing_process += 1
            proc = self._unknown(m.key.pid, m.key.ktime)
        parent = self.cache.get(proc.parent_exec_id) if proc.parent_exec_id else None
        code = m.code
        extra: dict[str, object] = {}
        if code & 0x7F:
            extra["signal"] = signal_name(code & 0x7F)
        extra["status"] = (code >> 8) & 0xFF
        t = self.clock.wall(m.common.ktime)
        extra["time"] = rfc3339(t)
        self.emit(Event("process_exit", proc, parent, t, self.node, extra,
                        ancestors=self.cache.ancestors(proc) if self.ancestors else None))
        self.cache.release(proc)
        return True

    def _unknown(self, pid: int, ktime: int) -> Process:
        return unknown_process(exec_id(self.node, ktime, pid), pid, ktime)
