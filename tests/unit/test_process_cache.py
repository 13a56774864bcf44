"""ProcessCache: refcounts, deferred collection, bounded size, lookups."""
from __future__ import annotations

import time

from kerneye.process.cache import ProcessCache
from kerneye.process.identity import exec_id
from kerneye.process.model import Cred, Process

NODE = "n1"
GRACE = 30.0


def proc(pid: int, ktime: int, parent: Process | None = None) -> Process:
    return Process(
        exec_id=exec_id(NODE, ktime, pid), parent_exec_id=parent.exec_id if parent else "", pid=pid, tid=pid,
        ktime=ktime, nspid=pid, auid=0, cwd="/", binary=f"/bin/p{pid}", arguments="", flags=["execve"],
        start_time_ns=ktime, cred=Cred(0, 0, 0, 0, 0, 0, 0, 0), cap_permitted=0, cap_effective=0,
        cap_inheritable=0, ns={}, ns_is_host={}, cgroup_id=0, cgroup_path="/", docker="",
    )


def later() -> float:
    """A `now` for gc() by which every entry released so far is past grace."""
    return time.monotonic() + GRACE


def test_add_child_and_release_refcounts() -> None:
    c = ProcessCache(grace_s=GRACE)
    parent = proc(100, 1_000)
    c.add(parent)
    assert parent.refcnt == 1 and not parent.exited
    child = proc(101, 2_000, parent)
    c.add(child)
    assert child.refcnt == 1
    assert parent.refcnt == 2  # its own + the child's
    c.release(child)
    assert child.exited and child.refcnt == 0
    assert parent.refcnt == 1
    c.release(child)  # a second exit of the same process changes nothing
    assert child.refcnt == 0 and parent.refcnt == 1
    assert c.stats.adds == 2 and len(c) == 2


def test_duplicate_add_is_ignored() -> None:
    c = ProcessCache()
    parent = proc(100, 1_000)
    c.add(parent)
    c.add(proc(101, 2_000, parent))
    c.add(proc(101, 2_000, parent))  # the same exec reported twice (procfs and kernel)
    assert parent.refcnt == 2 and len(c) == 2 and c.stats.adds == 2


def test_gc_waits_for_grace() -> None:
    c = ProcessCache(grace_s=GRACE)
    p = proc(100, 1_000)
    c.add(p)
    assert c.gc(now=later()) == 0  # referenced: never collected
    c.release(p)
    # still served while pending, so late events resolve
    assert c.gc(now=time.monotonic()) == 0
    assert c.get(p.exec_id) is p
    assert c.gc(now=later()) == 1
    assert c.stats.collected == 1
    assert c.get(p.exec_id) is None and len(c) == 0
    assert c.gc(now=later() + GRACE) == 0


def test_parent_outlives_its_exit_until_children_are_gone() -> None:
    c = ProcessCache(grace_s=GRACE)
    parent = proc(100, 1_000)
    child = proc(101, 2_000, parent)
    c.add(parent)
    c.add(child)
    c.release(parent)  # the parent exits first
    assert parent.refcnt == 1
    assert c.gc(now=later()) == 0 and c.get(parent.exec_id) is parent
    c.release(child)
    assert parent.refcnt == 0
    assert c.gc(now=later()) == 2
    assert len(c) == 0


def test_pending_entry_gaining_a_child_is_kept() -> None:
    c = ProcessCache(grace_s=GRACE)
    parent = proc(100, 1_000)
    c.add(parent)
    c.release(parent)
    c.add(proc(101, 2_000, parent))  # a fork reported after the parent's exit
    assert parent.refcnt == 1
    assert c.gc(now=later()) == 0
    assert c.get(parent.exec_id) is parent


def test_eviction_bound_counts_and_drops_lru() -> None:
    c = ProcessCache(max_size=3)
    a, b, cc, d = proc(1, 10), proc(2, 20), proc(3, 30), proc(4, 40)
    for p in (a, b, cc):
        c.add(p)
    assert c.stats.evictions == 0
    assert c.get(a.exec_id) is a  # a is now the most recently used
    c.add(d)
    assert len(c) == 3 and c.stats.evictions == 1
    assert c.get(b.exec_id) is None  # the least recently used went
    assert c.get_by_pid(2) is None
    assert all(c.get(p.exec_id) is p for p in (a, cc, d))
    for i in range(5, 15):
        c.add(proc(i, i * 10))
    assert len(c) == 3 and c.stats.evictions == 11
    assert c.snapshot_stats().size == 3


def test_eviction_prefers_unreferenced_entries() -> None:
    c = ProcessCache(max_size=3)
    a, b, cc, d = proc(1, 10), proc(2, 20), proc(3, 30), proc(4, 40)
    for p in (a, b, cc):
        c.add(p)
    c.release(b)  # refcnt 0: first to go, though a is older
    c.add(d)
    assert c.stats.evictions == 1
    assert c.get(b.exec_id) is None
    assert all(c.get(p.exec_id) is p for p in (a, cc, d))
    assert c.gc(now=later()) == 0  # the evicted entry is no longer pending


def test_get_by_pid_follows_the_newest_image() -> None:
    c = ProcessCache()
    old = proc(500, 1_000)
    c.add(old)
    assert c.get_by_pid(500) is old
    assert c.get_by_pid(501) is None
    new = proc(500, 9_000)  # exec of the same pid (or pid reuse)
    c.add(new)
    assert c.get_by_pid(500) is new
    c.release(old)  # releasing the older image keeps the newer one indexed
    assert c.get_by_pid(500) is new
    c.release(new)
    assert c.get_by_pid(500) is None
    assert c.get(new.exec_id) is new  # still served by exec_id until gc


def test_get_counts_misses() -> None:
    c = ProcessCache()
    assert c.get("nope") is None and c.get("nope") is None
    assert c.stats.misses == 2
    c.get_by_pid(1)  # a pid lookup is not an exec_id miss
    assert c.stats.misses == 2


def test_ancestors_nearest_first_excluding_parent() -> None:
    c = ProcessCache()
    swapper = proc(0, 1)
    init = proc(1, 10, swapper)
    sh = proc(200, 20, init)
    make = proc(300, 30, sh)
    cc = proc(400, 40, make)
    for p in (swapper, init, sh, make, cc):
        c.add(p)
    # parent excluded; the walk ends after the first pid <= 1 it reaches
    assert c.ancestors(cc) == [sh, init]
    assert c.ancestors(make) == [init]
    assert c.ancestors(sh) == [swapper]
    assert c.ancestors(init) == []
    assert c.ancestors(cc, limit=1) == [sh]


def test_ancestors_stop_at_a_missing_link() -> None:
    c = ProcessCache()
    gone = proc(10, 10)
    a = proc(20, 20, gone)
    b = proc(30, 30, a)
    d = proc(40, 40, b)
    for p in (a, b, d):  # `gone` was never seen
        c.add(p)
    assert c.ancestors(d) == [a]
    c.release(a)
    c.gc(now=later())
    assert a.refcnt == 1  # b still holds it
    assert c.ancestors(d) == [a]
