"""Process cache: exec_id -> Process, refcounted, collected after a delay.

Lifecycle of an entry (cf. Tetragon pkg/process/cache.go):
  add()       refcnt = 1 (the process itself); its parent gains +1
  release()   when the process exits or its image is replaced by exec;
              refcnt -1. Children exiting release their parent too.
  refcnt 0    the entry is 'pending delete': still served, so that events
              that arrive late (an exit racing a child's exec, events parked
              in the event cache) resolve; gc() drops it after `grace_s`.
The cache is bounded: when full, the least recently used entry with
refcnt 0 goes first, else the least recently used at all; both are counted
in `evictions`. Single-threaded: owned by the observer's consumer thread.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from .model import Process


@dataclass
class CacheStats:
    size: int = 0
    adds: int = 0
    evictions: int = 0
    misses: int = 0
    collected: int = 0


class ProcessCache:
    def __init__(self, max_size: int = 65536, grace_s: float = 30.0) -> None:
        self.max_size = max_size
        self.grace_s = grace_s
        self._by_id: OrderedDict[str, Process] = OrderedDict()
        self._by_pid: dict[int, str] = {}
        self._exited_by_pid: dict[int, str] = {}  # pid -> newest exited process, until GC drops it
        self._by_key: dict[tuple[int, int], Process] = {}  # (pid, ktime): the hot-path index
        self._pending: dict[str, float] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, p: Process) -> None:
        old = self._by_id.get(p.exec_id)
        if old is not None:
            return  # already known (duplicate procfs/kernel report)
        p.refcnt = 1
        self._by_id[p.exec_id] = p
        self._by_key[(p.pid, p.ktime)] = p
        self._by_pid[p.pid] = p.exec_id
        parent = self._by_id.get(p.parent_exec_id)
        if parent is not None:
            self._ref(parent, +1)
        self.stats.adds += 1
        if len(self._by_id) > self.max_size:
            self._evict()

    def adopt(self, child: Process, parent: Process) -> None:
        """Link a child whose parent was unknown when it was added."""
        if child.parent_exec_id:
            return
        child.parent_exec_id = parent.exec_id
        child._dict = child._json = child._lean = None
        self._ref(parent, +1)

    def get(self, exec_id: str) -> Process | None:
        p = self._by_id.get(exec_id)
        if p is None:
            self.stats.misses += 1
        else:
            self._by_id.move_to_end(exec_id)
        return p

    def get_by_key(self, pid: int, ktime: int) -> Process | None:
        """Lookup by the kernel's identity, without building the exec_id."""
        return self._by_key.get((pid, ktime))

    def get_by_pid(self, pid: int) -> Process | None:
        """The newest process known for a host PID."""
        eid = self._by_pid.get(pid)
        return self._by_id.get(eid) if eid else None

    def get_recent_by_pid(self, pid: int) -> Process | None:
        """Like get_by_pid, but also a process that exited and is still in
        its grace period (a decision or event reported after the exit)."""
        eid = self._by_pid.get(pid) or self._exited_by_pid.get(pid)
        return self._by_id.get(eid) if eid else None

    def release(self, p: Process) -> None:
        """The process exited (or exec replaced its image): drop its own
        reference; its parent loses the reference this child held."""
        if p.exited:
            return
        p.exited = True
        self._ref(p, -1)
        parent = self._by_id.get(p.parent_exec_id)
        if parent is not None:
            self._ref(parent, -1)
        if self._by_pid.get(p.pid) == p.exec_id:
            del self._by_pid[p.pid]
            self._exited_by_pid[p.pid] = p.exec_id

    def _ref(self, p: Process, delta: int) -> None:
        p.refcnt += delta
        if p.refcnt <= 0:
            self._pending[p.exec_id] = time.monotonic()
        else:
            self._pending.pop(p.exec_id, None)

    def gc(self, now: float | None = None) -> int:
        """Drop entries whose refcnt has been 0 for grace_s. Returns count."""
        now = time.monotonic() if now is None else now
        done = [eid for eid, t in self._pending.items() if now - t >= self.grace_s]
        for eid in done:
            self._drop(eid)
        self.stats.collected += len(done)
        return len(done)

    def _drop(self, eid: str) -> None:
        p = self._by_id.pop(eid, None)
        self._pending.pop(eid, None)
        if p is not None:
            self._by_key.pop((p.pid, p.ktime), None)
        if p is not None and self._by_pid.get(p.pid) == eid:
            del self._by_pid[p.pid]
        if p is not None and self._exited_by_pid.get(p.pid) == eid:
            del self._exited_by_pid[p.pid]

    def _evict(self) -> None:
        victim = next((eid for eid in self._by_id if eid in self._pending), None)
        if victim is None:
            victim = next(iter(self._by_id))
        self._drop(victim)
        self.stats.evictions += 1

    def ancestors(self, p: Process, limit: int = 64) -> list[Process]:
        """Parent's parent and up (the parent itself excluded), nearest first."""
        out: list[Process] = []
        parent = self._by_id.get(p.parent_exec_id)
        cur = self._by_id.get(parent.parent_exec_id) if parent else None
        while cur is not None and len(out) < limit:
            out.append(cur)
            if cur.pid <= 1:
                break
            cur = self._by_id.get(cur.parent_exec_id)
        return out

    def snapshot_stats(self) -> CacheStats:
        self.stats.size = len(self._by_id)
        return self.stats
