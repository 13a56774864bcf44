"""Shared measurements for the bench/ scripts (run as `python bench/<x>.py`)."""
from __future__ import annotations

import os


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()  # comm may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- helpers for the enforcement benchmarks (connect_storm, enforce_open,
# exec_allowlist): paired timing, CPU pinning, clean interruption ----------

import signal  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Callable, Sequence  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ensure_prog(progdir: str, name: str) -> str:
    """progdir/.output/name, built with `make -C progdir` if missing."""
    path = os.path.join(ROOT, progdir, ".output", name)
    if not os.access(path, os.X_OK):
        subprocess.run(["make", "-s", "-C", os.path.join(ROOT, progdir)], check=True, stdout=subprocess.DEVNULL)
    return path


def timed(argv: Sequence[str]) -> float:
    """Wall seconds of one run of argv (which must succeed)."""
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def interleaved(arms: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run every arm once per round, rotating the order each round so that
    no arm always runs first (warm caches) or last (a drifting machine)."""
    names = list(arms)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(arms[name]())
    return out


def ratio_median(num: list[float], den: list[float]) -> float:
    """Median of per-round ratios (pairs from the same round)."""
    return statistics.median(a / b for a, b in zip(num, den))


def added_us(num: list[float], den: list[float], n: int) -> float:
    """Median per-round extra microseconds per operation."""
    return statistics.median((a - b) / n * 1e6 for a, b in zip(num, den))


def verdict(value: float, target: float) -> str:
    return "PASS" if value <= target else "MISS"


def table(rows: list[Sequence[object]], header: Sequence[str]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in r] for r in rows]
    w = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) for r in cells]
    lines.insert(1, "  ".join("-" * x for x in w))
    return "\n".join(lines)


def pin_self(cpus: set[int]) -> None:
    """Pin every thread of this process (os.sched_setaffinity(0) only
    moves the calling thread; a responder thread must be moved too)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except ProcessLookupError:
            pass  # the thread exited meanwhile


def sigterm_as_interrupt() -> None:
    """Let SIGTERM unwind like Ctrl-C, so `finally` blocks clean up."""
    def _raise(*_: object) -> None:
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, _raise)


def need_root() -> bool:
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return False
    return True


# --- the scripts' common frame: options, start, result table, exit --------------

import argparse  # noqa: E402


def arg_parser(doc: str, quick_help: str, n_help: str) -> argparse.ArgumentParser:
    """--quick, --n and --rounds (None when not given: see sized()); the
    script adds its own options."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--n", type=int, default=None, help=n_help)
    ap.add_argument("--rounds", type=int, default=None, help="rounds (default 5)")
    return ap


def sized(a: argparse.Namespace, value: int | None, quick: int, full: int) -> int:
    """An option's value, else its --quick or its full default."""
    return value or (quick if a.quick else full)


def rounds(a: argparse.Namespace) -> int:
    return sized(a, a.rounds, 3, 5)


def start() -> bool:
    """False (after saying so) unless root; then SIGTERM unwinds like Ctrl-C."""
    if not need_root():
        return False
    sigterm_as_interrupt()
    return True


def ratio_rows(times: dict[str, list[float]], base: str, arms: Sequence[str], n: int, per_op: str = ".2f",
               added: str = "+.3f") -> list[list[str]]:
    """Table rows: arm, best seconds, per-operation microseconds (best run),
    median ratio to the base arm and median added microseconds per operation."""
    b = times[base]
    rows = [[base, f"{min(b):.3f}", f"{min(b) / n * 1e6:{per_op}}", "1.000", "-"]]
    for arm in arms:
        t = times[arm]
        rows.append([arm, f"{min(t):.3f}", f"{min(t) / n * 1e6:{per_op}}", f"{ratio_median(t, b):.3f}",
                     f"{added_us(t, b, n):{added}}"])
    return rows


def rounded(xs: Sequence[float], digits: int = 4) -> list[float]:
    return [round(x, digits) for x in xs]


def run_main(main: Callable[[], int]) -> None:
    """Run a script's main(): its return value is the exit status; an
    interruption exits 130 once the finally blocks have cleaned up."""
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        print("bench: interrupted (cleaned up)", file=sys.stderr)
        raise SystemExit(130)
