#!/usr/bin/env python3
"""Exec-storm benchmark with a fanotify exec allowlist active.

The workload is exec_storm.py's: tests/progs/.output/forkexec runs /bin/true
N times (fork + execv, one at a time). Arms, interleaved per round (order
rotated), median of per-round ratios:
  bare       no enforcer
  allowlist  FanotifyEnforcer.exec_allowlist on the mount holding /usr/bin,
             allowing the workload's files (forkexec, true, the ELF
             interpreter, which execve also opens for exec); with the
             default allow-cache, the first exec of a file puts an ignore
             mark on it and later execs cause no event
  no-cache   the same with cache_limit=0: every exec (and its interpreter)
             waits for the Python responder
The enforcer is started before each of its runs and closed after it. Its
stats show how many exec events the responder answered during that run.
Target (issue): allowlist <= 1.10.

The mount mark covers every process on the machine. In the default
--mode monitor, a program that is not on the list is allowed and reported,
so nothing else running here breaks; the allowed path (the one measured) is
the same in both modes. --mode enforce makes unlisted execs on that mount
fail with EPERM while the benchmark runs.

Usage: bench/exec_allowlist.py [--quick] [--n 5000] [--rounds 5] [--mode monitor|enforce]   (root)
"""
from __future__ import annotations

import json
import os
import statistics
import struct
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))
import benchutil as bu  # noqa: E402
from exec_storm import FORKEXEC, storm  # noqa: E402
from kerneye.enforce.fanotify import FanotifyEnforcer  # noqa: E402

TARGET_RATIO = 1.10
TRUE = "/bin/true"


def elf_interp(path: str) -> str | None:
    """The PT_INTERP path of a 64-bit little-endian ELF file, if any."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:6] != b"\x7fELF\x02\x01":
            return None
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        ph = f.read(phentsize * phnum)
        for i in range(phnum):
            p_type, = struct.unpack_from("<I", ph, i * phentsize)
            if p_type == 3:  # PT_INTERP
                off, = struct.unpack_from("<Q", ph, i * phentsize + 8)
                size, = struct.unpack_from("<Q", ph, i * phentsize + 32)
                f.seek(off)
                return f.read(size).rstrip(b"\0").decode()
    return None


def mount_point(path: str) -> str:
    p = os.path.realpath(path)
    while not os.path.ismount(p):
        p = os.path.dirname(p)
    return p


def main() -> int:
    ap = bu.arg_parser(__doc__, "1000 execs x 3 rounds", "execs per run (default 5000)")
    ap.add_argument("--mode", choices=("monitor", "enforce"), default="monitor",
                    help="what happens to unlisted execs on the mount (default monitor: allowed and reported)")
    a = ap.parse_args()
    n = bu.sized(a, a.n, 1000, 5000)
    rounds = bu.rounds(a)
    if not bu.start():
        return 2
    bu.ensure_prog("tests/progs", "forkexec")
    mount = os.path.dirname(os.path.realpath(TRUE))
    allowed = [os.path.realpath(FORKEXEC), os.path.realpath(TRUE)]
    interp = elf_interp(os.path.realpath(TRUE))
    if interp:
        allowed.append(os.path.realpath(interp))
    same_mount = [p for p in allowed if os.stat(p).st_dev == os.stat(mount).st_dev]
    responder_events: dict[str, list[int]] = {"allowlist": [], "no-cache": []}
    unlisted: dict[str, int] = {}

    def with_allowlist(arm: str, cache_limit: int) -> float:
        enf = FanotifyEnforcer(mode=a.mode, cache_limit=cache_limit, queue_size=4 * n + 1024)
        try:
            enf.start()
            enf.exec_allowlist(1, mount, allowed)
            # the list must be live: the first exec of an allowed file is reported
            if subprocess.run([FORKEXEC, "1", "1", TRUE], stdout=subprocess.DEVNULL).returncode != 0:
                raise SystemExit("bench: setup check failed: an allowed exec failed")
            if not any(d.reason == "allowlist" for d in enf.get_decisions(timeout_s=2.0)):
                raise SystemExit("bench: setup check failed: the allowlist saw no exec")
            e0 = enf.stats["events"]
            dt = storm(n, arm)
            responder_events[arm].append(enf.stats["events"] - e0)
            for d in enf.get_decisions():
                if d.verdict == "deny" or d.monitor:
                    unlisted[d.path] = unlisted.get(d.path, 0) + 1
            return dt
        finally:
            enf.close()

    storm(min(n, 500), "warmup")
    times = bu.interleaved({"bare": lambda: storm(n, "bare"),
                            "allowlist": lambda: with_allowlist("allowlist", 256),
                            "no-cache": lambda: with_allowlist("no-cache", 0)}, rounds)
    base = times["bare"]
    res = {}
    for arm in ("allowlist", "no-cache"):
        res[arm] = {"ratio": bu.ratio_median(times[arm], base), "added_us": bu.added_us(times[arm], base, n),
                    "events_per_run": statistics.median(responder_events[arm])}
    rows = bu.ratio_rows(times, "bare", ("allowlist", "no-cache"), n, per_op=".0f", added="+.1f")
    for row, events in zip(rows, ["-"] + [f"{res[arm]['events_per_run']:.0f}" for arm in ("allowlist", "no-cache")]):
        row.append(events)
    print(f"exec allowlist: {n} x fork+exec {TRUE}, allowlist on mount {mount_point(mount)} ({a.mode} mode) allowing "
          f"{len(same_mount)} files, {rounds} interleaved rounds")
    print(bu.table(rows, ["arm", "best s", "us/exec", "ratio (median)", "added us/exec", "responder events/run"]))
    r = res["allowlist"]["ratio"]
    print(f"exec storm with allowlist: ratio {r:.3f} vs target <= {TARGET_RATIO}: {bu.verdict(r, TARGET_RATIO)}")
    if unlisted:
        top = sorted(unlisted.items(), key=lambda kv: -kv[1])[:5]
        print(f"unlisted execs on the mount while measuring (other processes; {a.mode}): {top}")
    out = {
        "bench": "exec_allowlist", "n": n, "rounds": rounds, "mode": a.mode, "mount": mount_point(mount),
        "allowed": allowed,
        "bare_s": bu.rounded(base), "allowlist_s": bu.rounded(times["allowlist"]),
        "nocache_s": bu.rounded(times["no-cache"]),
        "bare_us_per_exec": round(min(base) / n * 1e6, 1),
        "allowlist_ratio": round(res["allowlist"]["ratio"], 4),
        "allowlist_added_us": round(res["allowlist"]["added_us"], 2),
        "allowlist_responder_events_per_run": res["allowlist"]["events_per_run"],
        "nocache_ratio": round(res["no-cache"]["ratio"], 4),
        "nocache_added_us": round(res["no-cache"]["added_us"], 2),
        "nocache_responder_events_per_run": res["no-cache"]["events_per_run"],
        "unlisted_exec_decisions": sum(unlisted.values()),
        "allowlist_pass": r <= TARGET_RATIO,
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    bu.run_main(main)
