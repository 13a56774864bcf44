"""Process identity: exec_id = base64("<node>:<ktime>:<pid>") (Tetragon's).

ktime is the kernel's CLOCK_MONOTONIC time of the exec (or fork, or the
start time read from /proc for processes that predate the agent), so a
reused PID never collides with an earlier process.
"""
from __future__ import annotations

import base64
import time


def exec_id(node: str, ktime: int, pid: int) -> str:
    return base64.b64encode(f"{node}:{ktime}:{pid}".encode()).decode()


def decode_exec_id(eid: str) -> tuple[str, int, int]:
    """Inverse of exec_id: (node, ktime, pid)."""
    node, ktime, pid = base64.b64decode(eid).decode().rsplit(":", 2)
    return node, int(ktime), int(pid)


class Clock:
    """Converts bpf_ktime_get_ns() (CLOCK_MONOTONIC) to wall-clock ns.

    The offset is sampled once; wall-clock steps after start are not
    followed, so event times stay monotonic (as in Tetragon)."""

    def __init__(self) -> None:
        best = None
        for _ in range(5):  # take the tightest of a few samples
            m0 = time.monotonic_ns()
            r = time.time_ns()
            m1 = time.monotonic_ns()
            if best is None or m1 - m0 < best[0]:
                best = (m1 - m0, r - (m0 + m1) // 2)
        assert best is not None
        self.offset = best[1]

    def wall(self, ktime: int) -> int:
        return ktime + self.offset


def rfc3339(ns: int) -> str:
    """2026-12-03T08:45:36.123456789Z, exactly as protobuf renders a
    Timestamp in JSON (so the export equals the gRPC event's JSON form)."""
    secs, frac = divmod(ns, 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + frac_suffix(frac) + "Z"


def frac_suffix(nanos: int) -> str:
    """The fraction of a protobuf JSON Timestamp: none for whole seconds,
    else 3, 6 or 9 digits, the fewest that hold the value exactly."""
    if nanos == 0:
        return ""
    if nanos % 1_000_000 == 0:
        return f".{nanos // 1_000_000:03d}"
    if nanos % 1_000 == 0:
        return f".{nanos // 1_000:06d}"
    return f".{nanos:09d}"
