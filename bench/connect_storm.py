#!/usr/bin/env python3
"""Connect-storm benchmark: TCP connect+close with network deny rules active.

bench/progs/connect_loop makes N TCP connections to its own listener on
127.0.0.1 (socket, connect, accept, close both). Three child cgroups of the
v2 hierarchy are created, and each run of the loop joins one of them:
  base   no programs attached
  far    CgroupNetEnforcer with deny rules whose CIDRs do not contain
         127.0.0.1 (10.0.0.0/8:22, 192.168.0.0/16, ...): the LPM look-up
         finds nothing; this is the case the target is about
  near   the same plus a rule on 127.0.0.0/8 ports 1-1023: every connect
         finds a candidate rule and checks its port before allowing
The arms run interleaved (order rotated each round); the median of the
per-round ratios is reported, with the added microseconds per connect.
Before timing, a connect to a denied address from the far/near cgroups must
fail with EPERM, or the benchmark stops (the rules would not be in effect).
Targets (issue): far <= 1.10 and <= +0.3 us per connect.

Usage: bench/connect_storm.py [--quick] [--n 200000] [--rounds 5]   (root)
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))
import benchutil as bu  # noqa: E402
from kerneye.enforce.cgroup_net import DEFAULT_CGROUP, CgroupNetEnforcer, NetRule  # noqa: E402

TARGET_RATIO = 1.10
TARGET_US = 0.3

FAR_RULES = [
    NetRule(id=1, cidrs=["10.0.0.0/8"], ports=(22, 22)),
    NetRule(id=2, cidrs=["192.168.0.0/16"]),
    NetRule(id=3, cidrs=["172.16.0.0/12"], ports=(3306, 3306), proto="tcp"),
    NetRule(id=4, cidrs=["169.254.169.254/32"]),
    NetRule(id=5, cidrs=["100.64.0.0/10"], ports=(25, 25)),
    NetRule(id=6, cidrs=["2001:db8::/32", "fc00::/7"]),
]
NEAR_RULE = NetRule(id=7, cidrs=["127.0.0.0/8"], ports=(1, 1023), proto="tcp")

# Run in a cgroup, then the rest of argv: join first, so the program's very
# first syscall is already subject to the cgroup's programs.
JOIN = 'echo $$ > "$0" && exec "$@"'

PROBE = """import socket, sys
s = socket.socket(); s.setblocking(False)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except OSError as e:
    print(e.errno)
else:
    print(0)
"""


def in_cgroup(cg: str, argv: list[str]) -> list[str]:
    return ["/bin/sh", "-c", JOIN, os.path.join(cg, "cgroup.procs"), *argv]


def probe(cg: str, addr: str, port: int) -> int:
    """errno of a non-blocking connect from inside cg (0 or EINPROGRESS: allowed)."""
    out = subprocess.run(in_cgroup(cg, [sys.executable, "-c", PROBE, addr, str(port)]), check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip())


def rmdir_cgroup(cg: str) -> None:
    # a child that just exited may keep the cgroup busy for a moment
    for _ in range(50):
        try:
            os.rmdir(cg)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            time.sleep(0.05)
    print(f"bench: could not remove {cg}; remove it with rmdir", file=sys.stderr)


def main() -> int:
    ap = bu.arg_parser(__doc__, "20000 connects x 3 rounds", "connects per run (default 200000)")
    ap.add_argument("--cgroup-root", default=DEFAULT_CGROUP, help="cgroup-v2 directory to create children in")
    a = ap.parse_args()
    n = bu.sized(a, a.n, 20_000, 200_000)
    rounds = bu.rounds(a)
    if not bu.start():
        return 2
    if not os.path.exists(os.path.join(a.cgroup_root, "cgroup.procs")):
        print(f"bench: {a.cgroup_root} is not a cgroup-v2 directory; pass --cgroup-root", file=sys.stderr)
        return 2
    loop = bu.ensure_prog("bench/progs", "connect_loop")
    cgs = {arm: os.path.join(a.cgroup_root, f"kerneye-bench-{arm}-{os.getpid()}") for arm in ("base", "far", "near")}
    enforcers: list[CgroupNetEnforcer] = []
    try:
        for cg in cgs.values():
            os.mkdir(cg)
        for arm, rules in (("far", FAR_RULES), ("near", FAR_RULES + [NEAR_RULE])):
            enf = CgroupNetEnforcer(cgs[arm])
            enforcers.append(enf)
            for r in rules:
                enf.add_rule(r)
            enf.start()
        # the rules must be in effect, and only where attached
        checks = {("base", "10.1.2.3", 22): False, ("far", "10.1.2.3", 22): True,
                  ("near", "10.1.2.3", 22): True, ("near", "127.0.0.1", 22): True}
        for (arm, addr, port), denied in checks.items():
            e = probe(cgs[arm], addr, port)
            if (e == errno.EPERM) != denied:
                print(f"bench: setup check failed: connect {addr}:{port} in {arm} gave errno {e}, expected "
                      f"{'EPERM' if denied else 'no EPERM'}", file=sys.stderr)
                return 1
        bu.timed(in_cgroup(cgs["base"], [loop, str(min(n, 20_000))]))  # warm-up
        times = bu.interleaved({arm: (lambda cg=cg: bu.timed(in_cgroup(cg, [loop, str(n)])))
                                for arm, cg in cgs.items()}, rounds)
        stats = [e.stats() for e in enforcers]
    finally:
        for e in enforcers:
            e.close()
        for cg in cgs.values():
            rmdir_cgroup(cg)

    base = times["base"]
    res = {arm: {"ratio": bu.ratio_median(times[arm], base), "added_us": bu.added_us(times[arm], base, n)}
           for arm in ("far", "near")}
    rows = bu.ratio_rows(times, "base", ("far", "near"), n)
    print(f"connect storm: {n} x TCP connect+accept+close on 127.0.0.1, {rounds} interleaved rounds")
    print(bu.table(rows, ["arm", "best s", "us/connect", "ratio (median)", "added us/connect"]))
    far = res["far"]
    print(f"far (non-matching deny rules): ratio {far['ratio']:.3f} vs target <= {TARGET_RATIO}: "
          f"{bu.verdict(far['ratio'], TARGET_RATIO)}; added {far['added_us']:+.3f} us/connect vs target "
          f"<= +{TARGET_US}: {bu.verdict(far['added_us'], TARGET_US)}")
    out = {
        "bench": "connect_storm", "n": n, "rounds": rounds,
        "base_s": bu.rounded(base), "far_s": bu.rounded(times["far"]), "near_s": bu.rounded(times["near"]),
        "base_us_per_connect": round(min(base) / n * 1e6, 3),
        "far_ratio": round(far["ratio"], 3), "far_added_us": round(far["added_us"], 3),
        "near_ratio": round(res["near"]["ratio"], 3), "near_added_us": round(res["near"]["added_us"], 3),
        "far_pass": far["ratio"] <= TARGET_RATIO and far["added_us"] <= TARGET_US,
        "enforcer_stats": {"far": stats[0], "near": stats[1]},
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    bu.run_main(main)
