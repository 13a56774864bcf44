#!/usr/bin/env python3
"""Exec-storm benchmark: fork+exec of /bin/true without and with the agent.

Prints, for paired runs in one invocation (the machine is noisy, so only
ratios measured side by side mean anything):
  ratio          storm time with the agent (exporting JSON) / without
  cpu_per_1000   agent CPU seconds (user+sys) per 1000 execs
  lost           events lost (ring buffer + queue) as the agent reports them
  delivered      exec+exit events exported / expected
  rss_mib        agent resident memory after the storm

Usage: bench/exec_storm.py [--n 5000] [--rounds 3]  (root; `make bench`)
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))
from agentctl import AgentProc  # noqa: E402
from benchutil import cpu_s  # noqa: E402

FORKEXEC = os.path.join(ROOT, "tests", "progs", ".output", "forkexec")


def storm(n: int, tag: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([FORKEXEC, str(n), "1", "/bin/true", tag], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0




def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def count_events(path: str, tag: str) -> int:
    """Events of /bin/true runs carrying exactly this tag as arguments."""
    needle = b'"binary":"/usr/bin/true","arguments":"' + tag.encode() + b'"'
    alt = b'"binary":"/bin/true","arguments":"' + tag.encode() + b'"'
    n = 0
    with open(path, "rb") as f:
        for line in f:
            # the first "process" object in a line is the event's own process
            head = line[:600]
            if needle in head or alt in head:
                n += 1
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="kerneye-bench-")
    base, withagent, cpu, lost, delivered, rss = [], [], [], [], [], []
    storm(500, "warmup")
    try:
        for r in range(a.rounds):
            base.append(storm(a.n, f"base-{r}"))
            agent = AgentProc(os.path.join(work, str(r)))
            os.makedirs(agent.workdir)
            agent.start()
            try:
                pid = agent.proc.pid
                c0 = cpu_s(pid)
                tag = f"agent-{r}-{os.getpid()}"
                withagent.append(storm(a.n, tag))
                # let the agent drain and export before reading its CPU time
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    st = agent.status()
                    if st["events"]["by_type"].get("process_exit", 0) >= a.n and st["events"]["parked"] == 0:
                        break
                    time.sleep(0.2)
                cpu.append((cpu_s(pid) - c0) / a.n * 1000)
                st = agent.status()
                lost.append(st["events"]["lost"]["ringbuf"] + st["events"]["lost"]["queue"])
                rss.append(rss_mib(pid))
            finally:
                agent.stop()
            delivered.append(count_events(agent.export, tag) / (2 * a.n))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    ratios = [w / b for w, b in zip(withagent, base)]
    out = {
        "workload": f"{a.n} x fork+exec /bin/true, {a.rounds} paired rounds",
        "baseline_s": [round(x, 3) for x in base],
        "agent_s": [round(x, 3) for x in withagent],
        "ratio_median": round(statistics.median(ratios), 3),
        "ratios": [round(x, 3) for x in ratios],
        "agent_cpu_s_per_1000_execs": round(statistics.median(cpu), 3),
        "events_lost": sum(lost),
        "delivered": round(min(delivered), 4),
        "agent_rss_mib": round(max(rss), 1),
    }
    print(json.dumps(out, indent=2))
    print(f"exec storm: ratio {out['ratio_median']}x (target <= 1.05), agent CPU {out['agent_cpu_s_per_1000_execs']} s"
          f" per 1000 execs, lost {out['events_lost']}, delivered {out['delivered']:.2%}, RSS {out['agent_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
