#!/usr/bin/env python3
"""Event delivery benchmark: JSON file vs gRPC GetEvents streams.

A policy posts every openat(2) of tests/progs/.output/open_loop; open_loop
then opens one file N times. Measured, each with a fresh agent:
  file     JSON export file only
  grpc1    one GetEvents client (no export file)
  grpc4    four GetEvents clients (no export file)
For each: events/s delivered (N per sink / time from the start of the loop
to the last event delivered), the agent's CPU seconds per 1000 events, and
what was lost (must be 0: ring buffer, queue and per-client queues are sized
for the burst). The clients are separate processes that parse every message
(GetEventsResponse.FromString) and count the process_kprobe ones.

Usage: bench/grpc_stream.py [--n 100000] [--rounds 1] [--only file,grpc1,grpc4]   (root)
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
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
sys.path.insert(0, os.path.join(ROOT, "tests"))
from agentctl import AgentProc  # noqa: E402
from benchutil import cpu_s  # noqa: E402

OPEN_LOOP = os.path.join(ROOT, "tests", "progs", ".output", "open_loop")

POLICY = """apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: bench-grpc-openat
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 0
      type: "int"
    - index: 1
      type: "string"
    - index: 2
      type: "int"
    selectors:
    - matchBinaries:
      - operator: "In"
        values: ["{binary}"]
"""




# --- client process ---------------------------------------------------------------

def client_main(sock: str, n: int, idle_s: float) -> int:
    sys.path.insert(0, SRC)
    import grpc

    from kerneye.api.v1 import events_pb2, sensors_pb2_grpc

    ch = grpc.insecure_channel("unix:" + sock, options=[("grpc.max_receive_message_length", 16 << 20)])
    stub = sensors_pb2_grpc.FineGuidanceSensorsStub(ch)
    call = stub.GetEvents(events_pb2.GetEventsRequest())
    call.initial_metadata()  # registered with the agent
    state = {"got": 0, "first": 0.0, "last": 0.0, "msgs": 0, "bytes": 0}
    print("ready", flush=True)

    def watchdog() -> None:
        seen = -1
        while True:
            time.sleep(idle_s)
            if state["got"] == seen:
                call.cancel()  # no progress: some events were lost
                return
            seen = state["got"]

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        for msg in call:
            state["msgs"] += 1
            state["bytes"] += msg.ByteSize()
            if msg.HasField("process_kprobe"):
                now = time.monotonic()
                if not state["got"]:
                    state["first"] = now
                state["got"] += 1
                state["last"] = now
                if state["got"] >= n:
                    break
    except grpc.RpcError:
        pass
    call.cancel()
    print(json.dumps(state), flush=True)
    return 0


# --- driver -----------------------------------------------------------------------------

def scenario(work: str, name: str, n: int, clients: int) -> dict[str, float]:
    d = os.path.join(work, name)
    os.makedirs(d)
    pf = os.path.join(d, "policy.yaml")
    with open(pf, "w") as f:
        f.write(POLICY.format(binary=OPEN_LOOP))
    target = os.path.join(d, "target")
    open(target, "w").close()
    extra = ["--tracing-policy", pf, "--rb-size", "256M", "--rb-queue-size", "65536",
             "--api-client-queue-size", str(n + 10000)]
    if clients:
        extra += ["--export-file", ""]  # gRPC only
    agent = AgentProc(d, *extra).start()
    procs = []
    try:
        for _ in range(clients):
            p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--client", agent.socket, str(n)],
                                 stdout=subprocess.PIPE, text=True)
            assert p.stdout.readline().strip() == "ready"
            procs.append(p)
        pid = agent.proc.pid
        c0 = cpu_s(pid)
        t0 = time.monotonic()
        subprocess.run([OPEN_LOOP, str(n), target], check=True)
        loop_s = time.monotonic() - t0
        if clients:
            outs = [json.loads(p.communicate(timeout=600)[0].splitlines()[-1]) for p in procs]
            end = max(o["last"] for o in outs)
            delivered = [o["got"] for o in outs]
        else:
            # the file listener writes on the agent's thread: all are in the
            # file (buffer) once the agent has counted them
            end = t0
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                st = agent.status()
                if st["events"]["by_type"].get("process_kprobe", 0) >= n:
                    end = time.monotonic()
                    break
                time.sleep(0.02)
            delivered = [st["events"]["by_type"].get("process_kprobe", 0)]
        cpu = cpu_s(pid) - c0
        st = agent.status()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        agent.stop()
    if not clients:
        with open(agent.export, "rb") as f:
            delivered = [sum(1 for line in f if b'"process_kprobe"' in line)]
    lost = st["events"]["lost"]
    dt = max(end - t0, 1e-9)
    return {
        "sinks": max(clients, 1),
        "delivered_min": min(delivered),
        "lost": lost["ringbuf"] + lost["queue"] + lost.get("api_clients", 0),
        "seconds": round(dt, 3),
        "loop_seconds": round(loop_s, 3),
        "events_per_s_per_sink": round(min(delivered) / dt),
        "events_per_s_total": round(sum(delivered) / dt),
        "agent_cpu_ms_per_1000": round(cpu / max(n, 1) * 1e6, 1),
        "agent_cpu_s": round(cpu, 2),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--only", default="file,grpc1,grpc4")
    ap.add_argument("--client", nargs=2, metavar=("SOCKET", "N"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client:
        return client_main(a.client[0], int(a.client[1]), idle_s=20.0)
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 2
    work = tempfile.mkdtemp(prefix="kerneye-bench-grpc-")
    os.chmod(work, 0o755)
    plan = {"file": 0, "grpc1": 1, "grpc4": 4}
    results: dict[str, list[dict[str, float]]] = {k: [] for k in a.only.split(",")}
    try:
        for r in range(a.rounds):
            for name in results:
                results[name].append(scenario(work, f"{name}-{r}", a.n, plan[name]))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out: dict[str, object] = {"workload": f"{a.n} x openat posted by a matchBinaries policy, {a.rounds} round(s)",
                              "cpus": os.cpu_count()}
    for name, rows in results.items():
        best = max(rows, key=lambda x: x["events_per_s_per_sink"])
        best["events_per_s_per_sink_median"] = round(statistics.median(x["events_per_s_per_sink"] for x in rows))
        out[name] = best
    print(json.dumps(out, indent=2))
    f = out.get("file")
    line = []
    for name in results:
        x = out[name]
        assert isinstance(x, dict)
        line.append(f"{name}: {x['events_per_s_per_sink']} ev/s per sink ({x['events_per_s_total']} total), "
                    f"agent {x['agent_cpu_ms_per_1000']} ms CPU/1000 ev, lost {x['lost']}, "
                    f"delivered {x['delivered_min']}/{a.n}")
    print("\n".join(line))
    if isinstance(f, dict):
        for name in ("grpc1", "grpc4"):
            x = out.get(name)
            if isinstance(x, dict):
                print(f"{name}/file throughput ratio per sink: {x['events_per_s_per_sink'] / f['events_per_s_per_sink']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
