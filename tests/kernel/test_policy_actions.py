"""TracingPolicy actions and policy life cycle, against a real agent.

Post, NoPost, Sigkill and Signal (enforce and monitor mode), rate limits,
and the runtime commands (set-mode, enable/disable, delete) of `kerneye
tracingpolicy`, with the per-policy counters of `tracingpolicy list -o json`.
Each test loads its own policy into one module-wide agent; the trigger is
tests/progs/ktrig, which makes exactly the syscalls it is told to.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import uuid
from typing import Any, Callable, Iterator

import pytest
import yaml

from agentctl import AgentProc, env, kerneye_cmd, tp
from agentctl import listed as tp_list
from kerneye.api import client as api


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KTRIG = os.path.join(ROOT, "tests", "progs", ".output", "ktrig")
FORKEXEC = os.path.join(ROOT, "tests", "progs", ".output", "forkexec")

Ev = dict[str, Any]

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not os.path.exists(KTRIG), reason="make -C tests/progs builds ktrig")]


def openat_hook(*selectors: dict, call: str = "sys_openat") -> dict:
    return {"call": call, "syscall": True, "args": [{"index": 1, "type": "string"}], "selectors": list(selectors)}


def write_hook(*selectors: dict) -> dict:
    return {"call": "sys_write", "syscall": True, "args": [{"index": 0, "type": "fd"}], "selectors": list(selectors)}


def prefix(p: str, *actions: dict, index: int = 1) -> dict:
    s: dict[str, Any] = {"matchArgs": [{"index": index, "operator": "Prefix", "values": [p]}]}
    if actions:
        s["matchActions"] = list(actions)
    return s


class ActionTest:
    def __init__(self, agent: AgentProc, root: str, test_name: str) -> None:
        self.agent = agent
        self.root = root
        self.tag = uuid.uuid4().hex[:8]
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
        self.name = f"{slug}-{self.tag}"
        self.d = os.path.join(root, f"t-{self.tag}")
        os.mkdir(self.d)
        self.loaded: list[str] = []
        self.base: dict[str, tuple[int, ...]] = {}

    def path(self, n: str) -> str:
        return os.path.join(self.d, n)

    def write_policy(self, name: str, kprobes: list[dict], options: dict[str, str] | None = None) -> str:
        spec: dict[str, Any] = {"kprobes": kprobes}
        if options:
            spec["options"] = [{"name": k, "value": v} for k, v in options.items()]
        doc = {"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicy", "metadata": {"name": name}, "spec": spec}
        f = os.path.join(self.root, f"{name}.yaml")
        with open(f, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        return f

    def add(self, kprobes: list[dict], *, name: str | None = None, mode: str | None = None,
            options: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        name = name or self.name
        f = self.write_policy(name, kprobes, options)
        r = tp(self.agent, "add", f, *(["--mode", mode] if mode else []))
        if r.returncode == 0:
            self.loaded.append(name)
            # counters as the policy starts (see test_counters_start_at_zero)
            self.base[name] = _counters(self.stats(name)) + (self.stats(name)["nratelimited"],)
        if check:
            assert r.returncode == 0, f"tracingpolicy add {name} failed: {r.stderr}"
        return r

    def delete(self, name: str | None = None) -> None:
        name = name or self.name
        r = tp(self.agent, "delete", name)
        assert r.returncode == 0, r.stderr
        self.loaded.remove(name)

    def cleanup(self) -> None:
        for n in list(self.loaded):
            tp(self.agent, "delete", n)
        self.loaded.clear()

    def stats(self, name: str | None = None) -> dict[str, Any]:
        return tp_list(self.agent)[name or self.name]

    def counted(self, name: str | None = None) -> dict[str, Any]:
        """The policy's summary with npost/nenforce/nmonitor/nratelimited
        counted from when it was added."""
        n = name or self.name
        s = dict(self.stats(n))
        for k, b in zip(("npost", "nenforce", "nmonitor", "nratelimited"), self.base[n]):
            s[k] -= b
        return s

    def run(self, *ops: Any, rc: int | None = 0, prefix_cmd: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        cmd = [*prefix_cmd, KTRIG, *[str(o) for o in ops]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        if rc is not None:
            assert r.returncode == rc, f"{cmd} exited {r.returncode}: {r.stdout} {r.stderr}"
        return r

    def events(self, name: str | None = None) -> list[Ev]:
        n = name or self.name
        return [e["process_kprobe"] for e in self.agent.events()
                if "process_kprobe" in e and e["process_kprobe"].get("policy_name") == n]

    def wait_path(self, path: str, name: str | None = None, count: int = 1, timeout: float = 10) -> list[Ev]:
        n = name or self.name
        found = self.agent.wait_for(lambda e: "process_kprobe" in e and e["process_kprobe"].get("policy_name") == n
                                    and _path(e["process_kprobe"]) == path, timeout=timeout, count=count)
        return [e["process_kprobe"] for e in found]

    def exactly(self, want: list[str], name: str | None = None) -> list[Ev]:
        """Wait for the last of `want`, then check that the policy reported
        exactly `want`, in order, under the test directory."""
        assert self.wait_path(want[-1], name), f"no event for {want[-1]}"
        got = [e for e in self.events(name) if (_path(e) or "").startswith(self.d)]
        assert [_path(e) for e in got] == want
        return got


def _path(e: Ev) -> str | None:
    a = e.get("args") or [{}]
    return a[0].get("string_arg") or (a[0].get("file_arg") or {}).get("path")


@pytest.fixture(scope="module")
def root() -> Iterator[str]:
    d = os.path.realpath(tempfile.mkdtemp(prefix="kerneye-act-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def A(agent: AgentProc, root: str, request: pytest.FixtureRequest) -> Iterator[ActionTest]:
    t = ActionTest(agent, root, request.node.name)
    try:
        yield t
    finally:
        t.cleanup()


def _counters(s: dict[str, Any]) -> tuple[int, int, int]:
    return s["npost"], s["nenforce"], s["nmonitor"]


# ---------------------------------------------------------------------------
# Post and NoPost


@pytest.mark.parametrize("explicit", [False, True], ids=["default", "explicit"])
def test_post(A: ActionTest, explicit: bool) -> None:
    acts = [{"action": "Post"}] if explicit else []
    A.add([openat_hook(prefix(A.path("p-"), *acts))])
    A.run("open", A.path("other"), "open", A.path("p-1"), "open", A.path("p-2"))
    got = A.exactly([A.path("p-1"), A.path("p-2")])
    assert [e["action"] for e in got] == ["KPROBE_ACTION_POST"] * 2
    assert all(e["function_name"] == "__x64_sys_openat" and e["policy_name"] == A.name for e in got)
    assert _counters(A.counted()) == (2, 0, 0)


def test_nopost_suppresses_the_event(A: ActionTest) -> None:
    quiet = {"matchArgs": [{"index": 1, "operator": "Postfix", "values": [".quiet"]}],
             "matchActions": [{"action": "NoPost"}]}
    A.add([openat_hook(quiet, prefix(A.d + "/"))])
    A.run("open", A.path("a.quiet"), "open", A.path("b.loud"), "open", A.path("c.quiet"), "open", A.path("d.loud"))
    A.exactly([A.path("b.loud"), A.path("d.loud")])
    assert _counters(A.counted()) == (2, 0, 0)


@pytest.mark.parametrize("mode", ["enforce", "monitor"])
def test_nopost_still_runs_sigkill(A: ActionTest, mode: str) -> None:
    kill_quietly = prefix(A.path("kill"), {"action": "NoPost"}, {"action": "Sigkill"})
    A.add([openat_hook(kill_quietly, prefix(A.d + "/"))], mode=mode)
    r = A.run("open", A.path("kill"), "open", A.path("after"), rc=None)
    if mode == "enforce":
        assert r.returncode == -signal.SIGKILL
        assert A.path("after") not in r.stdout
        A.run("open", A.path("sentinel"))
        A.exactly([A.path("sentinel")])
        assert _counters(A.counted()) == (1, 1, 0)
    else:
        assert r.returncode == 0
        A.exactly([A.path("after")])
        assert _counters(A.counted()) == (1, 0, 1)


# ---------------------------------------------------------------------------
# Sigkill and Signal, enforce and monitor


def _kill_policy(A: ActionTest) -> list[dict]:
    return [openat_hook(prefix(A.path("kill"), {"action": "Sigkill"}), prefix(A.d + "/"))]


def test_sigkill_enforce_kills(A: ActionTest) -> None:
    A.add(_kill_policy(A))
    assert A.stats()["mode"] == "enforce"  # kerneye's default, as Tetragon's
    r = A.run("pid", "open", A.path("ok"), "open", A.path("kill"), "open", A.path("after"), rc=None)
    assert r.returncode == -signal.SIGKILL, r
    assert A.path("after") not in r.stdout
    got = A.exactly([A.path("ok"), A.path("kill")])
    assert [e["action"] for e in got] == ["KPROBE_ACTION_POST", "KPROBE_ACTION_SIGKILL"]
    pid = int(r.stdout.split()[1])
    assert got[1]["process"]["pid"] == pid
    assert _counters(A.counted()) == (2, 1, 0)
    # the exit event says how it died
    ex = A.agent.wait_for(lambda e: "process_exit" in e and e["process_exit"]["process"]["pid"] == pid)
    assert ex and ex[0]["process_exit"].get("signal") == "SIGKILL"


@pytest.mark.parametrize("how", ["cli-mode", "policy-option", "option-and-cli-enforce"])
def test_sigkill_monitor_mode_does_not_kill(A: ActionTest, how: str) -> None:
    if how == "cli-mode":
        A.add(_kill_policy(A), mode="monitor")
    elif how == "policy-option":
        A.add(_kill_policy(A), options={"policy-mode": "monitor"})
    else:
        # `tracingpolicy add --mode` wins over the policy's own option
        A.add(_kill_policy(A), options={"policy-mode": "monitor"}, mode="enforce")
    enforce = how == "option-and-cli-enforce"
    assert A.stats()["mode"] == ("enforce" if enforce else "monitor")
    r = A.run("open", A.path("ok"), "open", A.path("kill"), "open", A.path("after"), rc=None)
    if enforce:
        assert r.returncode == -signal.SIGKILL
        A.exactly([A.path("ok"), A.path("kill")])
        assert _counters(A.counted()) == (2, 1, 0)
        return
    assert r.returncode == 0
    got = A.exactly([A.path("ok"), A.path("kill"), A.path("after")])
    assert [e["action"] for e in got] == ["KPROBE_ACTION_POST"] * 3
    assert _counters(A.counted()) == (3, 0, 1)


@pytest.mark.parametrize("handled", [True, False], ids=["handler", "default-disposition"])
def test_signal_action(A: ActionTest, handled: bool) -> None:
    sig = signal.SIGUSR1
    A.add([openat_hook(prefix(A.path("sig"), {"action": "Signal", "argSig": int(sig)}), prefix(A.d + "/"))])
    ops = (["handler", int(sig)] if handled else []) + ["open", A.path("ok"), "open", A.path("sig"),
                                                         "open", A.path("after")]
    r = A.run(*ops, rc=None)
    if handled:
        assert r.returncode == 0
        lines = r.stdout.splitlines()
        # delivered as the hooked open returns, once
        assert lines.count(f"caught {int(sig)}") == 1
        assert lines.index(f"caught {int(sig)}") == lines.index(f"open {A.path('sig')} = -2") - 1
        want = [A.path("ok"), A.path("sig"), A.path("after")]
    else:
        assert r.returncode == -sig
        want = [A.path("ok"), A.path("sig")]
        A.run("open", A.path("sentinel"))
        want.append(A.path("sentinel"))
    got = A.exactly(want)
    assert got[1]["action"] == "KPROBE_ACTION_SIGNAL"
    assert all(e["action"] == "KPROBE_ACTION_POST" for i, e in enumerate(got) if i != 1)
    assert A.counted()["nenforce"] == 1


# ---------------------------------------------------------------------------
# rate limits
#
# Paths are longer than the 40 bytes the rate limit compares, so only their
# own bytes count (see test_rate_limit_ignores_bytes_past_the_argument).


def test_rate_limit(A: ActionTest) -> None:
    A.add([openat_hook(prefix(A.d + "/", {"action": "Post", "rateLimit": "1m"}))])
    same = A.path("same-" + "s" * 40)
    other = A.path("other-" + "o" * 40)
    A.run(*(["open", same] * 10), "open", other, "open", same)
    got = A.exactly([same, other])
    assert [e["action"] for e in got] == ["KPROBE_ACTION_POST"] * 2
    s = A.counted()
    assert (s["npost"], s["nratelimited"]) == (2, 10)


@pytest.mark.parametrize("scope,want", [("thread", 3), ("process", 2), ("global", 1)])
def test_rate_limit_scope(A: ActionTest, scope: str, want: int) -> None:
    act = {"action": "Post", "rateLimit": "1m", "rateLimitScope": scope}
    A.add([openat_hook(prefix(A.d + "/", act))])
    same = A.path("scoped-" + "s" * 40)
    # two threads of one process, then a second process
    A.run("open", same, "open", same, "thread", "open", same, "open", same)
    A.run("open", same, "open", A.path("sentinel-" + "z" * 40))
    assert A.wait_path(A.path("sentinel-" + "z" * 40))
    got = [e for e in A.events() if _path(e) == same]
    assert len(got) == want, [(e["process"]["pid"], e["process"]["tid"]) for e in got]
    assert A.counted()["nratelimited"] == 5 - want


def test_rate_limit_ignores_bytes_past_the_argument(A: ActionTest) -> None:
    short = f"/tmp/krl-{A.tag}"  # shorter than 40 bytes
    A.add([openat_hook(prefix(short, {"action": "Post", "rateLimit": "1m"}))])
    # pinned to one CPU: the long non-matching open in between refills the
    # per-CPU scratch the next identical open is read into
    A.run("open", short, "open", "/tmp/" + "L" * 100, "open", short, "open", short + "-end",
          prefix_cmd=("taskset", "-c", "0"))
    assert A.wait_path(short + "-end")
    assert [_path(e) for e in A.events()] == [short, short + "-end"]


def test_rate_limit_state_does_not_outlive_the_policy(A: ActionTest) -> None:
    # global scope: the two rounds run in different processes
    hook = openat_hook(prefix(A.d + "/", {"action": "Post", "rateLimit": "1m", "rateLimitScope": "global"}))
    same = A.path("again-" + "s" * 40)
    for round_ in range(2):
        A.add([hook])
        # (the sentinels differ within the 40 bytes the rate limit compares)
        A.run("open", same, "open", A.path(f"{round_}-sentinel-" + "z" * 40))
        assert A.wait_path(A.path(f"{round_}-sentinel-" + "z" * 40))
        A.delete()
    # the policy was loaded twice: each load reports the first open
    assert [_path(e) for e in A.events()].count(same) == 2


# ---------------------------------------------------------------------------
# counters


def test_counters_start_at_zero(A: ActionTest) -> None:
    first = f"{A.name}-first"
    A.add([openat_hook(prefix(A.path("f-")))], name=first)
    A.run("open", A.path("f-1"))
    assert A.wait_path(A.path("f-1"), name=first)
    assert A.stats(first)["npost"] == 1
    A.delete(first)
    A.add([openat_hook(prefix(A.path("s-")))])
    assert _counters(A.stats()) == (0, 0, 0)
    assert A.stats()["nratelimited"] == 0


# ---------------------------------------------------------------------------
# runtime policy commands


def test_set_mode_at_runtime(A: ActionTest) -> None:
    A.add(_kill_policy(A), mode="monitor")
    r = A.run("open", A.path("kill"), "open", A.path("m1"), rc=None)
    assert r.returncode == 0
    assert tp(A.agent, "set-mode", A.name, "enforce").returncode == 0
    assert A.stats()["mode"] == "enforce"
    r = A.run("open", A.path("kill"), "open", A.path("e1"), rc=None)
    assert r.returncode == -signal.SIGKILL
    assert tp(A.agent, "set-mode", A.name, "monitor").returncode == 0
    assert A.stats()["mode"] == "monitor"
    r = A.run("open", A.path("kill"), "open", A.path("m2"), rc=None)
    assert r.returncode == 0
    got = A.exactly([A.path("kill"), A.path("m1"), A.path("kill"), A.path("kill"), A.path("m2")])
    assert [e["action"] for e in got] == ["KPROBE_ACTION_POST", "KPROBE_ACTION_POST", "KPROBE_ACTION_SIGKILL",
                                          "KPROBE_ACTION_POST", "KPROBE_ACTION_POST"]
    assert _counters(A.counted()) == (5, 1, 2)


def test_set_mode_rejects_unknown_policy(A: ActionTest) -> None:
    r = tp(A.agent, "set-mode", f"no-such-{A.tag}", "enforce")
    assert r.returncode != 0 and f"no-such-{A.tag}" in r.stderr


def test_disable_and_enable(A: ActionTest) -> None:
    sentinel = f"{A.name}-sentinel"
    A.add([openat_hook(prefix(A.path("a-")))])
    A.add([write_hook(prefix(A.path("b-"), index=0))], name=sentinel)
    r = tp(A.agent, "disable", A.name)
    assert r.returncode == 0, r.stderr
    assert A.stats()["state"] == "disabled"
    A.run("open", A.path("a-while-disabled"), "write", A.path("b-1"), "x")
    assert A.wait_path(A.path("b-1"), name=sentinel)
    assert A.events() == []
    r = tp(A.agent, "enable", A.name)
    assert r.returncode == 0, r.stderr
    assert A.stats()["state"] == "enabled"
    A.run("open", A.path("a-enabled"))
    A.exactly([A.path("a-enabled")])
    assert A.counted()["npost"] == 1


def _steady_with_churn(A: ActionTest, churn_hook: Callable[[str], dict], churn_ops: Callable[[str], list[str]]) -> None:
    """Policy B reports a steady stream of opens while policy A is added
    and deleted five times; B must lose nothing, A must stop at delete."""
    b_name, a_name = f"{A.name}-b", f"{A.name}-a"
    os.mkdir(A.path("b"))
    A.add([openat_hook(prefix(A.path("b") + "/"))], name=b_name)
    n = 150
    steady = subprocess.Popen([KTRIG, "loop", str(n), "10", A.path("b/x")], stdout=subprocess.DEVNULL)
    try:
        for k in range(5):
            A.add([churn_hook(A.path("a-"))], name=a_name)
            A.run(*churn_ops(A.path(f"a-{k}")))
            assert A.wait_path(A.path(f"a-{k}"), name=a_name), f"policy A round {k}: no event"
            A.delete(a_name)
            A.run(*churn_ops(A.path(f"a-after-delete-{k}")))
        assert steady.wait(timeout=60) == 0
    finally:
        if steady.poll() is None:
            steady.kill()
            steady.wait()
    want = [A.path(f"b/x.{i}") for i in range(n)]
    assert A.wait_path(want[-1], name=b_name)
    assert [_path(e) for e in A.events(b_name)] == want
    assert [_path(e) for e in A.events(a_name)] == [A.path(f"a-{k}") for k in range(5)]
    assert a_name not in tp_list(A.agent)


def test_delete_stops_events_and_spares_other_policies(A: ActionTest) -> None:
    _steady_with_churn(A, lambda p: write_hook(prefix(p, index=0)), lambda p: ["write", p, "x"])


def test_delete_spares_other_policies_on_the_same_syscall(A: ActionTest) -> None:
    _steady_with_churn(A, lambda p: openat_hook(prefix(p)), lambda p: ["open", p])


def test_matchbinaries_policy_churn_spares_other_policies(A: ActionTest) -> None:
    bindir = A.path("bin")
    os.mkdir(bindir)
    kb = os.path.join(bindir, "kb")
    shutil.copy(KTRIG, kb)
    b_name, a_name = f"{A.name}-b", f"{A.name}-a"
    b_sel = {"matchArgs": [{"index": 1, "operator": "Prefix", "values": [A.path("b-")]}],
             "matchBinaries": [{"operator": "In", "values": [kb]}]}
    A.add([openat_hook(b_sel)], name=b_name)
    # many paths make each rewrite of the maps take a while
    a_bins = [os.path.join(bindir, f"ka{i}") for i in range(1000)]
    a_sel = {"matchArgs": [{"index": 0, "operator": "Prefix", "values": [A.path("a-")]}],
             "matchBinaries": [{"operator": "In", "values": a_bins}]}
    a_yaml = open(A.write_policy(a_name, [write_hook(a_sel)])).read()
    n = 10000
    steady = subprocess.Popen([FORKEXEC, str(n), "2", kb, "open", A.path("b-x")], stdout=subprocess.DEVNULL)
    cycles = 0
    try:
        # the API requests `tracingpolicy add/delete` send, without a CLI
        # process each time: many more cycles while the execs run
        while steady.poll() is None:
            api.request(A.agent.socket, {"cmd": "tp_add", "yaml": a_yaml, "source": "a.yaml", "mode": None})
            api.request(A.agent.socket, {"cmd": "tp_delete", "name": a_name})
            cycles += 1
        assert steady.wait() == 0
    finally:
        if steady.poll() is None:
            steady.kill()
            steady.wait()
    assert cycles >= 3, "the exec stream ended before policy A could churn"
    # every exec of kb opened once: the kernel must have posted all of them
    assert A.counted(b_name)["npost"] == n


def test_delete_unknown_policy_fails(A: ActionTest) -> None:
    r = tp(A.agent, "delete", f"no-such-{A.tag}")
    assert r.returncode != 0 and "no policy named" in r.stderr


# ---------------------------------------------------------------------------
# Override


def test_unenforceable_override_is_rejected_with_a_clear_message(A: ActionTest) -> None:
    # Override works on hooks that mean an operation kerneye can prevent
    # (tests/kernel/test_enforce_agent.py); a partial file name cannot be
    # enforced on inodes, and the refusal loads nothing
    hook = openat_hook(prefix(A.path("x"), {"action": "Override", "argError": -1}))
    r = A.add([hook], check=False)
    assert r.returncode != 0
    msg = r.stderr
    assert "Override" in msg and "must name a directory" in msg, msg
    assert "Traceback" not in msg
    assert A.name not in tp_list(A.agent)
    # nothing half-loaded: the same syscall can still be hooked
    A.add([openat_hook(prefix(A.path("y")))], name=f"{A.name}-ok")
    A.run("open", A.path("y"))
    A.exactly([A.path("y")], name=f"{A.name}-ok")


# ---------------------------------------------------------------------------
# the agent's --policy-mode flag


def test_agent_policy_mode_flag_forces_monitor(A: ActionTest) -> None:
    f = A.write_policy(A.name, _kill_policy(A))
    work = tempfile.mkdtemp(prefix="kerneye-act-agent-")
    other = AgentProc(work, "--tracing-policy", f, "--policy-mode", "monitor")
    try:
        other.start()
        r = subprocess.run(kerneye_cmd("tracingpolicy", "list", "-o", "json", "--socket", other.socket),
                           env=env(), capture_output=True, text=True, timeout=60)
        pol = {p["name"]: p for p in json.loads(r.stdout)["policies"]}[A.name]
        assert pol["mode"] == "monitor" and pol["state"] == "enabled"
        r2 = A.run("open", A.path("kill"), "open", A.path("after"), rc=None)
        assert r2.returncode == 0
        ev = other.wait_for(lambda e: "process_kprobe" in e and _path(e["process_kprobe"]) == A.path("after"))
        assert ev
        kill = [e["process_kprobe"] for e in other.events()
                if "process_kprobe" in e and _path(e["process_kprobe"]) == A.path("kill")]
        assert len(kill) == 1 and kill[0]["action"] == "KPROBE_ACTION_POST"
    finally:
        other.stop()
        shutil.rmtree(work, ignore_errors=True)
