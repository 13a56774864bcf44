"""Prometheus metrics of a real agent, scraped over HTTP and checked against
what the test made happen: execs, a policy's posted/enforced/monitored
counters (equal to `tracingpolicy list`), no loss, cache and BPF map fill."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any, Iterator

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agentctl import AgentProc, env, is_exec, kerneye_cmd, tp
from kerneye.metrics import labels as L

pytestmark = pytest.mark.kernel

TRUE = os.path.realpath(shutil.which("true") or "/bin/true")
CAT = os.path.realpath(shutil.which("cat") or "/bin/cat")

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MetricsAgent(AgentProc):
    def __init__(self, workdir: str) -> None:
        self.port = free_port()
        super().__init__(workdir, "--metrics-server", f"127.0.0.1:{self.port}")

    def scrape(self) -> Samples:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=10) as r:
            text = r.read().decode()
        out: Samples = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out[(s.name, frozenset(s.labels.items()))] = s.value
        return out


def val(s: Samples, name: str, **labels: str) -> float:
    return s.get((name, frozenset(labels.items())), 0.0)


def series(s: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {lab: v for (n, lab), v in s.items() if n == name}


@pytest.fixture(scope="module")
def agent() -> Iterator[MetricsAgent]:
    d = tempfile.mkdtemp(prefix="kerneye-metrics-")
    a = MetricsAgent(d).start()
    try:
        yield a
    finally:
        a.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tdir() -> Iterator[str]:
    d = os.path.realpath(tempfile.mkdtemp(prefix="kerneye-mt-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_agent_metrics_after_execs(agent: MetricsAgent) -> None:
    before = agent.scrape()
    n = 25
    for _ in range(n):
        subprocess.run([TRUE], check=True)
    assert len(agent.wait_for(is_exec(TRUE), count=n, timeout=20)) >= n
    s = agent.scrape()

    assert val(s, "kerneye_agent_ready") == 1
    execs = val(s, "kerneye_events_total", type="process_exec")
    assert execs - val(before, "kerneye_events_total", type="process_exec") >= n
    assert val(s, "kerneye_events_total", type="process_exit") >= n
    assert val(s, "kerneye_events_exported_total", sink="export-file") >= execs
    # every record was dispatched; the ones of our execs are in there
    assert val(s, "kerneye_observer_messages_total", op="execve") >= n
    assert val(s, "kerneye_ringbuf_records_total") > 0
    assert 0 <= val(s, "kerneye_ringbuf_fill_ratio") <= 1
    # by binary: `true` ran 2n events (exec + exit); its first few count as "other"
    bins = {dict(k)["binary"]: v for k, v in series(s, "kerneye_events_by_binary_total").items()}
    if len(bins) - 1 < L.BINARY_LIMIT or TRUE in bins:
        assert bins.get(TRUE, 0) >= 2 * n - L.BINARY_PROMOTE_AFTER
    # nothing lost anywhere
    for stage in L.LOSS_STAGES:
        assert val(s, "kerneye_events_lost_total", stage=stage) == 0, stage
    for kind in L.BPF_ERROR_KINDS:
        assert val(s, "kerneye_bpf_errors_total", kind=kind) == 0, kind
    assert sum(series(s, "kerneye_decode_errors_total").values()) == 0
    # process cache and the kernel's process map
    assert val(s, "kerneye_process_cache_size") > 0
    assert val(s, "kerneye_process_cache_capacity") == 65536
    entries = val(s, "kerneye_bpf_map_entries", map="kerneye_execve_map")
    assert 0 < entries <= val(s, "kerneye_bpf_map_capacity", map="kerneye_execve_map")
    # sampled handler latency: some records were timed, all within a second
    count = sum(v for (nm, lab), v in s.items() if nm == "kerneye_handler_latency_seconds_count")
    assert count >= 1
    assert val(s, "kerneye_sensor_state", sensor="base", state="loaded") == 1
    assert val(s, "kerneye_sensor_state", sensor="generic", state="loaded") == 1
    assert val(s, "process_resident_memory_bytes") > 0


def test_policy_counters(agent: MetricsAgent, tdir: str) -> None:
    name = f"metrics-{uuid.uuid4().hex[:8]}"
    kill = os.path.join(tdir, "kill")
    doc = {"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicy", "metadata": {"name": name},
           "spec": {"kprobes": [{"call": "sys_openat", "syscall": True, "args": [{"index": 1, "type": "string"}],
                                 "selectors": [
                                     {"matchArgs": [{"index": 1, "operator": "Prefix", "values": [kill]}],
                                      "matchActions": [{"action": "Sigkill"}]},
                                     {"matchArgs": [{"index": 1, "operator": "Prefix", "values": [tdir + "/"]}]},
                                 ]}]}}
    f = os.path.join(tdir, "policy.yaml")  # written and read before the policy watches tdir
    with open(f, "w") as fh:
        yaml.safe_dump(doc, fh)
    before = agent.scrape()
    hooks_before = val(before, "kerneye_bpf_map_entries", map="kerneye_hooks")
    r = tp(agent, "add", f)
    assert r.returncode == 0, r.stderr
    try:
        s = agent.scrape()
        assert val(s, "kerneye_policy_state", policy=name, state="enabled") == 1
        assert val(s, "kerneye_policy_state", policy=name, state="disabled") == 0
        assert val(s, "kerneye_policy_mode", policy=name, mode="enforce") == 1
        assert val(s, "kerneye_policies_loaded") >= 1
        assert val(s, "kerneye_policy_hooks", kind="syscall") >= 1
        assert val(s, "kerneye_bpf_map_entries", map="kerneye_hooks") == hooks_before + 1
        assert val(s, "kerneye_bpf_map_entries", map="kerneye_str_prefix") >= 2

        # enforce: two posts, then a kill (posted and enforced)
        subprocess.run([CAT, os.path.join(tdir, "a"), os.path.join(tdir, "b")], capture_output=True)
        r = subprocess.run([CAT, kill], capture_output=True)
        assert r.returncode == -9
        # monitor: the kill is only reported
        assert tp(agent, "set-mode", name, "monitor").returncode == 0
        r = subprocess.run([CAT, kill + "-again"], capture_output=True)
        assert r.returncode == 1  # cat: no such file; not killed
        agent.wait_for(lambda e: "process_kprobe" in e and e["process_kprobe"].get("policy_name") == name,
                       count=4, timeout=15)

        lst = json.loads(tp(agent, "list", "-o", "json").stdout)
        pol = next(p for p in lst["policies"] if p["name"] == name)
        s = agent.scrape()
        got = {a: val(s, "kerneye_policy_events_total", policy=name, action=a) for a in L.POLICY_ACTIONS}
        assert got == {"posted": 4, "enforced": 1, "monitored": 1, "ratelimited": 0}
        assert got == {a: pol[L.POLICY_ACTION_KEYS[a]] for a in L.POLICY_ACTIONS}
        assert val(s, "kerneye_policy_events_lost_total", policy=name) == 0
        assert val(s, "kerneye_policy_mode", policy=name, mode="monitor") == 1
        assert val(s, "kerneye_events_total", type="process_kprobe") >= 4

        assert tp(agent, "disable", name).returncode == 0
        assert val(agent.scrape(), "kerneye_policy_state", policy=name, state="disabled") == 1
    finally:
        r = tp(agent, "delete", name)
    assert r.returncode == 0, r.stderr
    s = agent.scrape()
    assert not [k for k in series(s, "kerneye_policy_state") if ("policy", name) in k]
    assert val(s, "kerneye_bpf_map_entries", map="kerneye_hooks") == hooks_before


def test_enforcement_metrics(agent: MetricsAgent, tdir: str) -> None:
    name = f"mt-enf-{uuid.uuid4().hex[:6]}"
    secret = os.path.join(tdir, "secret")
    with open(secret, "w") as fh:
        fh.write("x\n")
    f = os.path.join(tdir, "e.yaml")
    with open(f, "w") as fh:
        yaml.safe_dump({"apiVersion": "kerneye.io/v1alpha1", "kind": "EnforcementPolicy", "metadata": {"name": name},
                        "spec": {"files": [{"paths": [secret]}]}}, fh)
    r = tp(agent, "add", f)
    assert r.returncode == 0, r.stderr
    try:
        assert subprocess.run([CAT, secret], capture_output=True).returncode == 1
        assert tp(agent, "set-mode", name, "monitor").returncode == 0
        assert subprocess.run([CAT, secret], capture_output=True).returncode == 0
        agent.wait_for(lambda e: (e.get("process_lsm") or {}).get("policy_name") == name, count=2, timeout=15)
        s = agent.scrape()
        assert val(s, "kerneye_enforcement_decisions_total", policy=name, verdict="denied") == 1
        assert val(s, "kerneye_enforcement_decisions_total", policy=name, verdict="would_deny") == 1
        assert val(s, "kerneye_enforcement_rules", mechanism="fanotify") >= 1
        assert val(s, "kerneye_enforcement_mechanism_available", mechanism="fanotify") == 1
        assert val(s, "kerneye_enforcement_mechanism_available", mechanism="cgroup-bpf") == 1
        assert val(s, "kerneye_events_total", type="process_lsm") >= 2
    finally:
        r = tp(agent, "delete", name)
    assert r.returncode == 0, r.stderr
    assert not [k for k in series(agent.scrape(), "kerneye_enforcement_decisions_total") if ("policy", name) in k]


def test_metrics_endpoint_stops_with_the_agent() -> None:
    d = tempfile.mkdtemp(prefix="kerneye-metrics-stop-")
    a = MetricsAgent(d).start()
    try:
        assert val(a.scrape(), "kerneye_agent_ready") == 1
    finally:
        rc = a.stop()
        shutil.rmtree(d, ignore_errors=True)
    assert rc == 0, a.stderr()
    deadline = time.monotonic() + 5
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        while time.monotonic() < deadline:
            a.scrape()
            time.sleep(0.1)


def test_bad_metrics_address_is_a_clean_error(tmp_path: Any) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run(kerneye_cmd("agent", "-o", "none", "--run-dir", str(tmp_path / "run"),
                                       "--metrics-server", f"127.0.0.1:{port}"),
                           env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, r.stderr
    assert "cannot serve metrics" in r.stderr and "Traceback" not in r.stderr
