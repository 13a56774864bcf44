"""The JSON export pipeline in a real agent: allowlist + redaction + field
filters, the rate limit with rate_limit_info, rotation under load."""
from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentctl import AgentProc

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGS = os.path.join(ROOT, "tests", "progs", ".output")
EXIT_CODE = os.path.join(PROGS, "exit_code")
FORKEXEC = os.path.join(PROGS, "forkexec")

_SUMMARY = re.compile(
    r"export to (?P<path>\S+) closed: received (?P<received>\d+), exported (?P<exported>\d+), "
    r"dropped filtered=(?P<filtered>\d+) rate_limited=(?P<rate_limited>\d+) error=(?P<error>\d+), "
    r"rate_limit_info events (?P<infos>\d+)"
)


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="kerneye-export-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def summary(agent: AgentProc) -> dict[str, int]:
    m = _SUMMARY.search(agent.stderr())
    assert m, f"no export summary in the agent's log:\n{agent.stderr()}"
    return {k: int(v) for k, v in m.groupdict().items() if k != "path"}


def export_files(path: str) -> list[Path]:
    """Backups oldest first, then the live file."""
    p = Path(path)
    rx = re.compile(re.escape(p.name) + r"\.(\d+)(\.gz)?$")
    backups = sorted(((int(m.group(1)), f) for f in p.parent.iterdir() if (m := rx.match(f.name))), reverse=True)
    return [f for _, f in backups] + ([p] if p.exists() else [])


def all_lines(path: str) -> list[str]:
    lines: list[str] = []
    for f in export_files(path):
        data = gzip.decompress(f.read_bytes()) if f.name.endswith(".gz") else f.read_bytes()
        assert not data or data.endswith(b"\n"), f"{f} ends mid-line"
        lines.extend(data.decode().splitlines())
    return lines


def test_allowlist_redaction_and_field_filters(workdir: str) -> None:
    agent = AgentProc(
        workdir,
        "--export-allowlist", '{"event_set":["PROCESS_EXEC"],"binary_regex":["exit_code$"]}',
        "--redaction-filters", '{"redact":["password=(\\\\S+)"]}',
        "--field-filters", '{"fields":"process.binary,process.arguments,process.pid","action":"INCLUDE"}',
    ).start()
    try:
        tag = uuid.uuid4().hex[:8]
        child = subprocess.Popen([EXIT_CODE, "3", "password=secret", f"tag-{tag}"])
        assert child.wait() == 3
        subprocess.run(["/bin/true", "password=secret"], check=True)  # allowed by nothing
        found = agent.wait_for(lambda e: f"tag-{tag}" in e.get("process_exec", {}).get("process", {})
                               .get("arguments", ""))
        assert found, f"exec not exported: {agent.stderr()}"
        time.sleep(0.3)  # let the exit events reach (and be refused by) the exporter
    finally:
        rc = agent.stop()
    assert rc == 0, agent.stderr()

    text = Path(agent.export).read_text()
    assert "secret" not in text
    events = [json.loads(x) for x in text.splitlines()]
    assert events, "nothing exported"
    for e in events:  # only execs of exit_code, reduced to the included fields
        assert set(e) == {"process_exec", "node_name", "time"}, e
        assert set(e["process_exec"]) == {"process"}, e
        assert set(e["process_exec"]["process"]) <= {"binary", "arguments", "pid"}, e
        assert e["process_exec"]["process"]["binary"].endswith("/exit_code"), e
    mine = [e for e in events if f"tag-{tag}" in e["process_exec"]["process"].get("arguments", "")]
    assert len(mine) == 1
    assert mine[0]["process_exec"]["process"] == {
        "pid": child.pid, "binary": EXIT_CODE, "arguments": f"3 password=***** tag-{tag}"}

    s = summary(agent)
    assert s["exported"] == len(events)
    assert s["filtered"] > 0  # the exits, /bin/true, the /proc scan...
    assert s["exported"] + s["filtered"] == s["received"]
    assert s["rate_limited"] == s["error"] == 0


def test_rate_limit_reports_dropped_events(workdir: str) -> None:
    n = 500
    agent = AgentProc(workdir, "--export-rate-limit", "60").start()
    started = time.monotonic()
    try:
        out = subprocess.run([FORKEXEC, str(n), "8", EXIT_CODE, "0"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        # The burst (500 exec + 500 exit, after the /proc scan emptied the
        # bucket) is dropped; the first report comes within the 10 s interval.
        infos = agent.wait_for(lambda e: "rate_limit_info" in e, timeout=15)
        assert infos, "no rate_limit_info event while the agent runs"
        first = int(infos[0]["rate_limit_info"]["number_of_dropped_process_events"])
        assert first > 0
        assert infos[0]["node_name"] and infos[0]["time"].endswith("Z")
        st = agent.status()
        assert st["events"]["export_dropped"]["export-file"]["rate_limited"] >= 2 * n - 60
    finally:
        rc = agent.stop()
    elapsed = time.monotonic() - started
    assert rc == 0, agent.stderr()

    lines = [json.loads(x) for x in Path(agent.export).read_text().splitlines()]
    infos = [e for e in lines if "rate_limit_info" in e]
    events = [e for e in lines if "rate_limit_info" not in e]
    s = summary(agent)
    reported = sum(int(e["rate_limit_info"]["number_of_dropped_process_events"]) for e in infos)
    assert reported == s["rate_limited"]  # every drop reported, once
    assert len(infos) == s["infos"] and int(infos[0]["rate_limit_info"]["number_of_dropped_process_events"]) == first
    assert len(events) == s["exported"]
    assert s["exported"] + s["rate_limited"] == s["received"]  # exported + dropped == total
    assert s["filtered"] == s["error"] == 0
    assert s["received"] >= 2 * n
    # burst of 60, then 1 per second
    assert s["exported"] <= 60 + elapsed + 1
    assert s["rate_limited"] >= 2 * n - 60 - elapsed


def test_rotation_under_load_loses_and_duplicates_nothing(workdir: str) -> None:
    n = 3000
    agent = AgentProc(workdir, "--export-file-max-size-mb", "0.05", "--export-file-max-backups", "100000",
                      "--export-file-compress").start()
    try:
        out = subprocess.run([FORKEXEC, str(n), "16", EXIT_CODE, "0"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        time.sleep(0.5)
    finally:
        rc = agent.stop()
    assert rc == 0, agent.stderr()

    s = summary(agent)
    lines = all_lines(agent.export)
    files = export_files(agent.export)
    assert len(files) > 20, f"expected many rotations, got {len(files)} files"
    assert all(f.name.endswith(".gz") for f in files[:-1])
    assert len(lines) == s["exported"] == s["received"]
    assert len(set(lines)) == len(lines), "a line was exported twice"
    events: list[dict[str, Any]] = [json.loads(x) for x in lines]
    execs = [e for e in events if "process_exec" in e and e["process_exec"]["process"]["binary"] == EXIT_CODE]
    exits = [e for e in events if "process_exit" in e and e["process_exit"]["process"]["binary"] == EXIT_CODE]
    lost = agent_lost(agent)
    if not lost:
        assert len(execs) >= n and len(exits) >= n
    limit = int(0.05 * (1 << 20))
    for f in files[:-1]:
        size = len(gzip.decompress(f.read_bytes()))
        assert size <= limit, f"{f} holds {size} bytes"


def agent_lost(agent: AgentProc) -> int:
    m = re.findall(r"lost (\d+) events", agent.stderr())
    return sum(int(x) for x in m)
