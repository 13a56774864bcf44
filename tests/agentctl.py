"""Run a real kerneye agent as a subprocess and read what it exports."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any, Callable

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")

Event = dict[str, Any]


def kerneye_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "kerneye", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = SRC + os.pathsep + e.get("PYTHONPATH", "")
    return e


class AgentProc:
    def __init__(self, workdir: str, *extra: str) -> None:
        self.workdir = workdir
        self.export = os.path.join(workdir, "events.json")
        self.run_dir = os.path.join(workdir, "run")
        self.socket = os.path.join(self.run_dir, "kerneye.sock")
        self.stderr_path = os.path.join(workdir, "agent.stderr")
        self.extra = list(extra)
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._events: list[Event] = []

    def start(self, timeout: float = 30) -> "AgentProc":
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            kerneye_cmd("agent", "-o", "none", "--export-file", self.export, "--run-dir", self.run_dir,
                        "--export-file-max-size-mb", "4096",
                        *self.extra),
            env=env(), stdout=subprocess.DEVNULL, stderr=self._stderr,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent exited {self.proc.returncode}: {self.stderr()}")
            if "ready on" in self.stderr():
                return self
            time.sleep(0.05)
        raise RuntimeError(f"agent not ready after {timeout}s: {self.stderr()}")

    def stderr(self) -> str:
        try:
            with open(self.stderr_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def status(self) -> dict[str, Any]:
        out = subprocess.run(kerneye_cmd("status", "--json", "--socket", self.socket), env=env(),
                             capture_output=True, text=True, timeout=30)
        return json.loads(out.stdout)

    def events(self) -> list[Event]:
        """All events exported so far (incrementally read)."""
        try:
            with open(self.export, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return self._events
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            self._events.append(json.loads(line))
        self._offset += end
        return self._events

    def wait_for(self, pred: Callable[[Event], bool], timeout: float = 10, count: int = 1) -> list[Event]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if pred(e)]
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.05)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        rc = self.proc.returncode
        return rc


def exec_of(e: Event) -> dict[str, Any] | None:
    return e.get("process_exec")


def exit_of(e: Event) -> dict[str, Any] | None:
    return e.get("process_exit")


def is_exec(binary: str, args: str | None = None) -> Callable[[Event], bool]:
    def pred(e: Event) -> bool:
        x = e.get("process_exec")
        return bool(x) and x["process"]["binary"] == binary and (args is None or x["process"]["arguments"] == args)
    return pred


def is_exit(binary: str, args: str | None = None) -> Callable[[Event], bool]:
    def pred(e: Event) -> bool:
        x = e.get("process_exit")
        return bool(x) and x["process"]["binary"] == binary and (args is None or x["process"]["arguments"] == args)
    return pred


# --- policies through the CLI (tracingpolicy add/list/delete/...) -----------------

def tp(agent: AgentProc, *args: str) -> subprocess.CompletedProcess[str]:
    """`kerneye tracingpolicy ARGS` against this agent."""
    return subprocess.run(kerneye_cmd("tracingpolicy", *args, "--socket", agent.socket), env=env(),
                          capture_output=True, text=True, timeout=60)


def listed(agent: AgentProc) -> dict[str, dict[str, Any]]:
    """name -> the policy as `tracingpolicy list -o json` shows it."""
    r = tp(agent, "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    return {p["name"]: p for p in json.loads(r.stdout)["policies"]}


def add_policy(agent: AgentProc, d: str, doc: dict[str, Any] | str, *extra: str,
               check: bool = True) -> subprocess.CompletedProcess[str]:
    """Write doc (a dict, dumped as YAML, or text) to a file in d and add it."""
    import uuid

    import yaml

    path = os.path.join(d, f"p-{uuid.uuid4().hex[:8]}.yaml")
    with open(path, "w") as f:
        f.write(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    r = tp(agent, "add", path, *extra)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def enforcement_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "kerneye.io/v1alpha1", "kind": "EnforcementPolicy", "metadata": {"name": name},
            "spec": spec}


def tracing_policy(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicy", "metadata": {"name": name}, "spec": spec}


def body(e: Event) -> tuple[str, dict[str, Any]]:
    """(event kind, its body)."""
    k = next(iter(k for k in e if k not in ("node_name", "time")))
    return k, e[k]


def is_decision(policy: str) -> Callable[[Event], bool]:
    """An enforcement decision of this policy (process_kprobe/process_lsm
    with an `enforcement` block)."""
    def pred(e: Event) -> bool:
        k, b = body(e)
        return k in ("process_kprobe", "process_lsm") and b.get("policy_name") == policy and "enforcement" in b
    return pred


def decisions(agent: AgentProc, policy: str, n: int = 1, timeout: float = 10) -> list[dict[str, Any]]:
    """The bodies of the policy's first n enforcement decisions (fewer on timeout)."""
    return [body(e)[1] for e in agent.wait_for(is_decision(policy), timeout=timeout, count=n)]
