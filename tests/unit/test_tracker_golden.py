"""ProcessTracker on golden ring-buffer captures (no kernel, no root).

tests/data/exec_exit.bin and fork_worker.bin were recorded with
tools/capture.py from the real base sensor:

    tools/capture.py tests/data/exec_exit.bin -- \\
        tests/progs/.output/exit_code 3 "with space" ünï
    tools/capture.py tests/data/fork_worker.bin -- \\
        tests/progs/.output/fork_worker tests/progs/.output/exit_code 0 x

both from /work/main, as root. The first record of each is the clone of the
command's pid from the capture tool, a process the kernel never saw exec
(PARENT_MISS), so most tests put a synthetic /proc-style record of the
capture tool in the cache first, as the agent's start-up scan would.
Values such as pids and ktimes are read from the records themselves; what
the decoders must make of them is spelled out literally.
"""
from __future__ import annotations

import json
import os
import sys
import time

import pytest

from kerneye.abi.types import ExecFlag, MsgClone, MsgCommon, MsgExec, MsgExit, MsgOp
from kerneye.eventcache import EventCache
from kerneye.events.event import Event
from kerneye.process import procfs
from kerneye.process.cache import ProcessCache
from kerneye.process.identity import Clock, decode_exec_id, exec_id, rfc3339
from kerneye.process.model import NS_NAMES, Cred, Process, quote_arg, split_args
from kerneye.process.tracker import ProcessTracker
from unit import golden

NODE = "golden-node"
# The kernel's initial namespaces as seen on the capture host, except net:
# a different inode, so both answers of ns_is_host are exercised.
HOST_NS = {
    "uts": 4026531838, "ipc": 4026531839, "mnt": 4026531832, "pid": 4026531836,
    "pid_for_children": 4026531836, "net": 4026531999, "time": 4026531834,
    "time_for_children": 4026531834, "cgroup": 4026531835, "user": 4026531837,
}
CAPTURE_CWD = "/work/main"
EXIT_CODE = "/work/main/tests/progs/.output/exit_code"
FORK_WORKER = "/work/main/tests/progs/.output/fork_worker"


class Rig:
    """A tracker wired to fresh caches and a list of emitted events."""

    def __init__(self, eventcache: EventCache | None = None, ancestors: bool = False) -> None:
        clock = Clock()
        clock.offset = 0  # event times are then the records' ktimes
        self.cache = ProcessCache()
        self.eventcache = EventCache() if eventcache is None else eventcache  # (empty is falsy)
        self.events: list[Event] = []
        self.tracker = ProcessTracker(NODE, clock, dict(HOST_NS), self.cache, self.eventcache,
                                      self.events.append, ancestors=ancestors)
        self._handlers = {
            MsgOp.EXECVE: self.tracker.handle_exec,
            MsgOp.CLONE: self.tracker.handle_clone,
            MsgOp.EXIT: self.tracker.handle_exit,
        }

    def feed(self, records: list[bytes]) -> None:
        for raw in records:
            self._handlers[MsgOp(raw[0])](raw)

    def seed_parent(self, pid: int) -> Process:
        """The capture tool as the start-up /proc scan would have it."""
        p = Process(
            exec_id=exec_id(NODE, 1_000, pid), parent_exec_id="", pid=pid, tid=pid, ktime=1_000, nspid=pid,
            auid=0xFFFFFFFF, cwd=CAPTURE_CWD, binary="/usr/bin/python3", arguments="tools/capture.py",
            flags=["procFS"], start_time_ns=1_000, cred=Cred(0, 0, 0, 0, 0, 0, 0, 0),
            cap_permitted=0, cap_effective=0, cap_inheritable=0, ns=dict(HOST_NS),
            ns_is_host={k: True for k in HOST_NS}, cgroup_id=1, cgroup_path="/", docker="",
        )
        self.cache.add(p)
        return p

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]


def _capture_tool_pid(records: list[bytes]) -> int:
    first = MsgClone.from_buffer_copy(records[0])
    assert records[0][0] == MsgOp.CLONE
    return first.parent.pid


def _check_json(ev: Event) -> dict:
    """to_json() is one valid JSON document equal to to_dict()."""
    doc = json.loads(ev.to_json())
    assert doc == ev.to_dict()
    assert list(doc) == [ev.kind, "node_name", "time"]
    assert doc["node_name"] == NODE
    assert doc["time"] == rfc3339(ev.time_ns)
    assert doc[ev.kind]["process"] == ev.process.to_dict()
    if ev.parent is None:
        assert "parent" not in doc[ev.kind]
    else:
        assert doc[ev.kind]["parent"] == ev.parent.to_dict()
    return doc


# --- the captures themselves ------------------------------------------------

def test_exec_exit_capture_is_one_process() -> None:
    recs = golden.load("exec_exit.bin")
    assert [MsgOp(r[0]) for r in recs] == [MsgOp.CLONE, MsgOp.EXECVE, MsgOp.EXIT]
    clone, ex, ext = (MsgClone.from_buffer_copy(recs[0]), MsgExec.from_buffer_copy(recs[1]),
                      MsgExit.from_buffer_copy(recs[2]))
    assert clone.key.pid == ex.key.pid == ext.key.pid
    # the capture tool was never seen exec'ing: the kernel flags the miss
    assert clone.parent.ktime == 0 and clone.flags & ExecFlag.PARENT_MISS
    assert ex.parent.pid == clone.parent.pid and ex.parent.ktime == 0
    assert ex.flags & ExecFlag.PARENT_MISS and ex.flags & ExecFlag.CLONE
    # the exit carries the identity of the exec, not of the fork
    assert ext.key.ktime == ex.key.ktime != clone.key.ktime
    for r in recs:
        assert MsgCommon.from_buffer_copy(r).size == len(r)


def test_golden_parse_rejects_truncation() -> None:
    data = open(golden.path("exec_exit.bin"), "rb").read()
    assert golden.parse(data) == golden.load("exec_exit.bin")
    with pytest.raises(ValueError):
        golden.parse(data[:-1])
    with pytest.raises(ValueError):
        golden.parse(data + b"\x01\x00")


# --- exec_exit.bin ------------------------------------------------------------

def test_exec_exit_field_by_field() -> None:
    recs = golden.load("exec_exit.bin")
    rig = Rig()
    seed = rig.seed_parent(_capture_tool_pid(recs))
    rig.feed(recs)

    assert rig.kinds() == ["process_exec", "process_exit"]
    assert len(rig.eventcache) == 0
    assert rig.tracker.missing_parent == 0 and rig.tracker.missing_process == 0
    m = MsgExec.from_buffer_copy(recs[1])
    ext = MsgExit.from_buffer_copy(recs[2])
    pid, ktime = m.key.pid, m.key.ktime

    ex = rig.events[0]
    p = ex.process
    assert p.binary == EXIT_CODE  # relative execve path resolved against cwd
    assert p.arguments == '3 "with space" ünï'
    assert p.cwd == CAPTURE_CWD
    assert p.flags == ["execve", "clone"]
    assert (p.pid, p.tid, p.nspid, p.ktime) == (pid, pid, pid, ktime)
    assert decode_exec_id(p.exec_id) == (NODE, ktime, pid)
    assert p.start_time_ns == ktime and ex.time_ns == ktime
    assert p.auid == 0xFFFFFFFF
    assert p.cred == Cred(0, 0, 0, 0, 0, 0, 0, 0, m.cred.securebits)
    assert (p.cap_permitted, p.cap_effective) == (m.cred.cap_permitted, m.cred.cap_effective)
    assert p.ns == {n: getattr(m.ns, n) for n in NS_NAMES}
    assert p.ns_is_host == {n: n != "net" for n in NS_NAMES}
    assert p.cgroup_path == "/" and p.cgroup_id == m.cgroup_id
    assert p.docker == "" and p.binary_properties is None
    # PARENT_MISS: the parent is bound by pid, to the capture tool
    assert ex.parent is seed and p.parent_exec_id == seed.exec_id
    assert ex.ancestors is None

    d = _check_json(ex)["process_exec"]["process"]
    assert d["binary"] == EXIT_CODE
    assert d["arguments"] == '3 "with space" ünï'
    assert d["flags"] == "execve clone"
    assert d["start_time"] == rfc3339(ktime)
    assert d["ns"]["net"] == {"inum": m.ns.net, "is_host": False}
    assert d["ns"]["pid"] == {"inum": m.ns.pid, "is_host": True}
    assert d["cap"]["effective"][0] == "CAP_CHOWN"

    x = rig.events[1]
    assert x.process is p and x.parent is seed
    assert x.extra == {"status": 3, "time": rfc3339(ext.common.ktime)}
    assert x.time_ns == ext.common.ktime
    xd = _check_json(x)["process_exit"]
    assert xd["status"] == 3 and "signal" not in xd
    assert list(xd) == ["process", "parent", "status", "time"]

    # bookkeeping: the exec replaced the fork's image, the exit released it
    assert p.exited and p.refcnt == 0
    clone_eid = exec_id(NODE, MsgClone.from_buffer_copy(recs[0]).key.ktime, pid)
    fork_image = rig.cache.get(clone_eid)
    assert fork_image is not None and fork_image.exited and fork_image.flags == ["clone"]
    assert seed.refcnt == 1  # only its own reference is left
    assert rig.cache.get_by_pid(pid) is None


def test_exec_exit_unseeded_is_flushed_without_parent() -> None:
    """No record of the capture tool: the fork and the exec wait in the event
    cache and are emitted, parentless, when it is flushed."""
    recs = golden.load("exec_exit.bin")
    rig = Rig()
    rig.feed(recs)
    assert rig.kinds() == ["process_exit"]  # the exec itself is known
    assert len(rig.eventcache) == 2  # the fork and the exec
    rig.eventcache.flush()
    assert sorted(rig.kinds()) == ["process_exec", "process_exit"]
    ex = next(e for e in rig.events if e.kind == "process_exec")
    assert ex.parent is None and ex.process.parent_exec_id == ""
    assert ex.process.arguments == '3 "with space" ünï'
    assert "parent" not in _check_json(ex)["process_exec"]
    assert rig.tracker.missing_parent == 2
    assert rig.eventcache.stats.gave_up == 2 and len(rig.eventcache) == 0


# --- fork_worker.bin ----------------------------------------------------------

def test_fork_worker_parent_linkage() -> None:
    recs = golden.load("fork_worker.bin")
    ops = [MsgOp(r[0]) for r in recs]
    assert ops == [MsgOp.CLONE, MsgOp.EXECVE, MsgOp.CLONE, MsgOp.CLONE, MsgOp.EXECVE,
                   MsgOp.EXIT, MsgOp.EXIT, MsgOp.EXIT]
    rig = Rig(ancestors=True)
    seed = rig.seed_parent(_capture_tool_pid(recs))
    rig.feed(recs)

    fw_msg = MsgExec.from_buffer_copy(recs[1])
    worker_msg = MsgClone.from_buffer_copy(recs[2])
    child_msg = MsgExec.from_buffer_copy(recs[4])
    assert rig.kinds() == ["process_exec", "process_exec", "process_exit", "process_exit", "process_exit"]
    assert len(rig.eventcache) == 0 and rig.tracker.missing_parent == 0

    fw = rig.events[0].process
    assert fw.binary == FORK_WORKER
    assert fw.arguments == "tests/progs/.output/exit_code 0 x"
    assert fw.flags == ["execve", "clone"]
    assert decode_exec_id(fw.exec_id) == (NODE, fw_msg.key.ktime, fw_msg.key.pid)
    assert rig.events[0].parent is seed

    child_ev = rig.events[1]
    child = child_ev.process
    assert child.binary == EXIT_CODE and child.arguments == "0 x"
    assert decode_exec_id(child.exec_id) == (NODE, child_msg.key.ktime, child_msg.key.pid)
    # the exec'd child's parent is the worker: a fork that never exec'd
    worker = child_ev.parent
    assert worker is not None
    assert worker.flags == ["clone"]
    assert decode_exec_id(worker.exec_id) == (NODE, worker_msg.key.ktime, worker_msg.key.pid)
    assert child.parent_exec_id == worker.exec_id
    assert worker.parent_exec_id == fw.exec_id
    # a fork inherits its parent's image
    assert (worker.binary, worker.arguments, worker.cwd) == (fw.binary, fw.arguments, fw.cwd)
    assert worker.pid == worker.tid == worker_msg.key.pid != fw.pid
    assert child_ev.ancestors == [fw, seed]

    doc = _check_json(child_ev)["process_exec"]
    assert doc["parent"]["flags"] == "clone"
    assert doc["parent"]["parent_exec_id"] == fw.exec_id
    assert [a["exec_id"] for a in doc["ancestors"]] == [fw.exec_id, seed.exec_id]

    # exits, innermost first: the exec'd child, the worker, fork_worker
    x_child, x_worker, x_fw = rig.events[2:]
    assert (x_child.process, x_child.parent) == (child, worker)
    assert (x_worker.process, x_worker.parent) == (worker, fw)
    assert (x_fw.process, x_fw.parent) == (fw, seed)
    for x in (x_child, x_worker, x_fw):
        assert x.extra["status"] == 0 and "signal" not in x.extra
        _check_json(x)
    assert _check_json(x_worker)["process_exit"]["process"]["flags"] == "clone"

    # everything but the seed is now unreferenced and collected after grace
    assert all(p.refcnt == 0 for p in (fw, worker, child))
    assert seed.refcnt == 1
    assert rig.cache.gc(now=time.monotonic() + rig.cache.grace_s) == 5  # 3 execs/forks + 2 fork images
    assert len(rig.cache) == 1 and rig.cache.get(seed.exec_id) is seed


# --- /proc-built messages -------------------------------------------------------

def test_procfs_message_of_this_process() -> None:
    me = os.getpid()
    rec = procfs.build(me)
    assert rec is not None and rec.pid == me and rec.ppid == os.getppid()
    parent_rec = procfs.build(os.getppid())
    assert parent_rec is not None
    rig = Rig()
    rig.feed([parent_rec.msg, rec.msg])  # oldest first, as procfs.scan() orders them

    ev = next(e for e in rig.events if e.process.pid == me)
    p = ev.process
    assert ev.kind == "process_exec"
    assert p.flags[0] == "procFS" and "execve" not in p.flags
    assert p.binary == os.readlink("/proc/self/exe")
    assert os.path.samefile(p.binary, sys.executable)
    assert p.cwd == os.getcwd()
    with open("/proc/self/cmdline", "rb") as f:
        argv = split_args(f.read())
    assert p.arguments == " ".join(quote_arg(a) for a in argv[1:])
    assert decode_exec_id(p.exec_id) == (NODE, rec.ktime, me)
    assert p.cred.euid == os.geteuid() and p.cred.gid == os.getgid()
    assert ev.parent is not None and ev.parent.pid == os.getppid()
    assert p.parent_exec_id == ev.parent.exec_id
    _check_json(ev)


# --- out of order ----------------------------------------------------------------

def test_exit_before_exec_is_parked_then_resolved() -> None:
    clone_raw, exec_raw, exit_raw = golden.load("exec_exit.bin")
    rig = Rig()
    rig.seed_parent(MsgClone.from_buffer_copy(clone_raw).parent.pid)

    rig.tracker.handle_exit(exit_raw)
    assert rig.events == [] and len(rig.eventcache) == 1

    rig.tracker.handle_exec(exec_raw)
    assert rig.kinds() == ["process_exec"]

    rig.eventcache.retry()
    assert rig.kinds() == ["process_exec", "process_exit"]
    ex, x = rig.events
    assert x.process is ex.process and x.extra["status"] == 3
    assert rig.tracker.missing_process == 0
    assert rig.eventcache.stats.resolved == 1 and rig.eventcache.stats.gave_up == 0
    assert len(rig.eventcache) == 0


def test_exec_whose_parent_never_arrives_gives_up_after_max_tries() -> None:
    recs = golden.load("fork_worker.bin")
    child_raw = recs[4]
    m = MsgExec.from_buffer_copy(child_raw)
    rig = Rig(EventCache(max_tries=3))

    rig.tracker.handle_exec(child_raw)  # its parent, the worker fork, never comes
    assert rig.events == [] and len(rig.eventcache) == 1
    rig.eventcache.retry()
    rig.eventcache.retry()
    assert rig.events == [] and rig.tracker.missing_parent == 0
    rig.eventcache.retry()  # third try: emit with what we have
    assert rig.kinds() == ["process_exec"]
    ev = rig.events[0]
    assert ev.parent is None
    # the identity the kernel gave the parent is still reported
    assert decode_exec_id(ev.process.parent_exec_id) == (NODE, m.parent.ktime, m.parent.pid)
    assert rig.tracker.missing_parent == 1
    assert rig.eventcache.stats.gave_up == 1 and rig.eventcache.stats.resolved == 0
    assert len(rig.eventcache) == 0
    assert "parent" not in _check_json(ev)["process_exec"]


def test_unknown_exit_after_max_tries_is_reported() -> None:
    _, _, exit_raw = golden.load("exec_exit.bin")
    m = MsgExit.from_buffer_copy(exit_raw)
    rig = Rig(EventCache(max_tries=1))
    rig.tracker.handle_exit(exit_raw)
    rig.eventcache.retry()
    assert rig.kinds() == ["process_exit"]
    p = rig.events[0].process
    assert p.flags == ["unknown"] and p.pid == m.key.pid
    assert decode_exec_id(p.exec_id) == (NODE, m.key.ktime, m.key.pid)
    assert rig.events[0].extra["status"] == 3
    assert rig.tracker.missing_process == 1


# --- regression tests for fixed tracker defects ---------------------------------

def test_parent_miss_exec_binds_parent_that_arrives_later() -> None:
    clone_raw, exec_raw, _ = golden.load("exec_exit.bin")
    rig = Rig()
    rig.tracker.handle_exec(exec_raw)  # parent not known yet: parked
    seed = rig.seed_parent(MsgClone.from_buffer_copy(clone_raw).parent.pid)
    rig.eventcache.retry()
    assert rig.kinds() == ["process_exec"]
    assert rig.events[0].parent is seed


def test_fork_resolved_after_its_exec_does_not_shadow_it() -> None:
    clone_raw, exec_raw, exit_raw = golden.load("exec_exit.bin")
    pid = MsgExec.from_buffer_copy(exec_raw).key.pid
    rig = Rig()
    rig.tracker.handle_clone(clone_raw)  # parked: the capture tool is unknown
    rig.tracker.handle_exec(exec_raw)
    rig.seed_parent(MsgClone.from_buffer_copy(clone_raw).parent.pid)
    rig.eventcache.retry()  # the fork resolves now, after the exec
    live = rig.cache.get_by_pid(pid)
    assert live is not None and live.flags == ["execve", "clone"]
    rig.tracker.handle_exit(exit_raw)
    assert rig.cache.get_by_pid(pid) is None
