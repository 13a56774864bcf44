"""Process exec/exit events from the real kernel, asserted field by field."""
from __future__ import annotations

import base64
import os
import shutil
import signal
import subprocess
import time
import uuid

import pytest

from agentctl import AgentProc, is_exec, is_exit

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGS = os.path.join(ROOT, "tests", "progs", ".output")
NOBODY = 65534


def prog(name: str) -> str:
    return os.path.join(PROGS, name)


def my_exec_id(agent: AgentProc) -> str:
    """exec_id of this test process, as the agent knows it."""
    me = os.getpid()
    ev = agent.wait_for(lambda e: "process_exec" in e and e["process_exec"]["process"]["pid"] == me, timeout=5)
    assert ev, "the test runner itself is not in the agent's process table"
    return ev[-1]["process_exec"]["process"]["exec_id"]


def test_exec_and_exit_field_by_field(agent: AgentProc, world_dir: str) -> None:
    exe = os.path.join(world_dir, "exit code")  # a space in the binary path, too
    shutil.copy(prog("exit_code"), exe)
    os.chmod(exe, 0o755)
    tag = uuid.uuid4().hex[:8]
    args = ["7", f"tag-{tag}", "with space", 'dq"uote', "sq'uote", "ünïcødé-日本", "", "back\\slash"]
    args += [f"a{i}" for i in range(200 - len(args))]
    assert len(args) == 200
    rc = subprocess.run([exe, *args], cwd=world_dir, user=NOBODY, group=NOBODY).returncode
    assert rc == 7

    pred = lambda e: (  # noqa: E731
        ("process_exec" in e or "process_exit" in e)
        and f"tag-{tag}" in (e.get("process_exec") or e.get("process_exit"))["process"]["arguments"]
    )
    evs = agent.wait_for(pred, count=2)
    execs = [e["process_exec"] for e in evs if "process_exec" in e]
    exits = [e["process_exit"] for e in evs if "process_exit" in e]
    assert len(execs) == 1 and len(exits) == 1, evs

    p = execs[0]["process"]
    assert p["binary"] == exe
    expected_args = ('7 tag-{} "with space" "dq\\"uote" sq\'uote ünïcødé-日本 "" "back\\\\slash" '.format(tag)
                     + " ".join(f"a{i}" for i in range(192)))
    assert p["arguments"] == expected_args
    assert p["cwd"] == world_dir
    assert p["uid"] == NOBODY
    assert p["process_credentials"]["uid"] == NOBODY and p["process_credentials"]["euid"] == NOBODY
    assert p["process_credentials"]["gid"] == NOBODY
    assert "execve" in p["flags"].split() and "clone" in p["flags"].split()
    assert "truncArgs" not in p["flags"]
    assert p["pid"] == p["tid"] and p["pid"] > 0
    node, ktime, pid = base64.b64decode(p["exec_id"]).decode().rsplit(":", 2)
    assert int(pid) == p["pid"] and int(ktime) > 0 and node
    assert "effective" not in p["cap"]  # nobody has no capabilities (empty lists are left out)
    assert p["ns"]["pid"]["is_host"] and p["ns"]["mnt"]["is_host"]
    assert p["start_time"].endswith("Z") and len(p["start_time"]) == 30

    # parent: this test process (python), with the same exec_id it has as a
    # process of its own
    parent = execs[0]["parent"]
    assert parent["pid"] == os.getpid()
    assert p["parent_exec_id"] == parent["exec_id"] == my_exec_id(agent)
    assert os.path.basename(parent["binary"]).startswith("python")

    x = exits[0]
    assert x["process"]["exec_id"] == p["exec_id"]
    assert x["parent"]["exec_id"] == parent["exec_id"]
    assert x["status"] == 7
    assert "signal" not in x
    assert x["time"] >= p["start_time"]


def test_long_argv_is_truncated_with_flag(agent: AgentProc) -> None:
    tag = uuid.uuid4().hex[:8]
    big = ["x" * 1000 for _ in range(40)]  # 40 KB > the 16 KiB kernel limit
    subprocess.run([prog("exit_code"), "0", f"big-{tag}", *big], check=True)
    ev = agent.wait_for(lambda e: "process_exec" in e and f"big-{tag}" in e["process_exec"]["process"]["arguments"])
    assert ev
    p = ev[0]["process_exec"]["process"]
    assert "truncArgs" in p["flags"].split()
    assert len(p["arguments"]) < 17000


def test_setuid_binary_shows_privilege_change(agent: AgentProc, world_dir: str) -> None:
    exe = os.path.join(world_dir, "suid_exit")
    shutil.copy(prog("exit_code"), exe)
    os.chown(exe, 0, 0)
    os.chmod(exe, 0o4755)
    tag = uuid.uuid4().hex[:8]
    subprocess.run([exe, "0", f"suid-{tag}"], user=NOBODY, group=NOBODY, check=True)
    ev = agent.wait_for(is_exec(exe, f"0 suid-{tag}"))
    assert ev, f"no exec of {exe}"
    p = ev[0]["process_exec"]["process"]
    assert p["process_credentials"]["uid"] == NOBODY
    assert p["process_credentials"]["euid"] == 0
    assert p["uid"] == 0  # Tetragon: process.uid is the effective uid
    assert p["binary_properties"]["setuid"] == 0
    assert "PRIVILEGES_RAISED_EXEC_FILE_SETUID" in p["binary_properties"]["privileges_changed"]

    # and the same binary without the bit shows none of it
    os.chmod(exe, 0o755)
    subprocess.run([exe, "0", f"nosuid-{tag}"], user=NOBODY, group=NOBODY, check=True)
    ev = agent.wait_for(is_exec(exe, f"0 nosuid-{tag}"))
    assert ev
    p = ev[0]["process_exec"]["process"]
    assert p["process_credentials"]["euid"] == NOBODY
    assert "binary_properties" not in p


def test_new_namespaces_are_not_host(agent: AgentProc) -> None:
    tag = uuid.uuid4().hex[:8]
    subprocess.run(["unshare", "--pid", "--mount", "--net", "--uts", "--fork", prog("exit_code"), "0", f"ns-{tag}"],
                   check=True)
    ev = agent.wait_for(lambda e: "process_exec" in e and e["process_exec"]["process"]["arguments"] == f"0 ns-{tag}")
    assert ev
    ns = ev[0]["process_exec"]["process"]["ns"]
    for kind in ("pid", "mnt", "net", "uts"):
        assert ns[kind]["is_host"] is False, kind
    for kind in ("ipc", "user", "cgroup"):
        assert ns[kind]["is_host"] is True, kind
    # a host process for contrast
    subprocess.run([prog("exit_code"), "0", f"host-{tag}"], check=True)
    ev = agent.wait_for(lambda e: "process_exec" in e and e["process_exec"]["process"]["arguments"] == f"0 host-{tag}")
    assert all(v["is_host"] for v in ev[0]["process_exec"]["process"]["ns"].values())


def test_fork_without_exec_keeps_parentage(agent: AgentProc) -> None:
    tag = uuid.uuid4().hex[:8]
    out = subprocess.run([prog("fork_worker"), prog("exit_code"), "3", f"fw-{tag}"], capture_output=True, text=True)
    assert out.returncode == 3
    worker_pid = int(out.stdout.strip())
    ev = agent.wait_for(is_exec(prog("exit_code"), f"3 fw-{tag}"))
    assert ev
    child = ev[0]["process_exec"]
    # the exec'd child's parent is the worker, a fork of fork_worker that never exec'd
    assert child["parent"]["pid"] == worker_pid
    assert child["parent"]["binary"] == prog("fork_worker")
    assert "clone" in child["parent"]["flags"].split()
    # ... whose own parent is fork_worker's exec
    fw = agent.wait_for(is_exec(prog("fork_worker")))
    fw = [e for e in fw if f"fw-{tag}" in e["process_exec"]["process"]["arguments"]]
    assert fw
    assert child["parent"]["parent_exec_id"] == fw[0]["process_exec"]["process"]["exec_id"]
    # the worker's exit is reported too, with the child's status
    wx = agent.wait_for(lambda e: "process_exit" in e and e["process_exit"]["process"]["pid"] == worker_pid)
    assert wx and wx[0]["process_exit"]["status"] == 3


def test_killed_process_reports_sigkill(agent: AgentProc) -> None:
    tag = uuid.uuid4().hex[:8]
    p = subprocess.Popen(["sleep", "30", f"--kill-{tag}"[:0] or "30"])
    try:
        agent.wait_for(lambda e: "process_exec" in e and e["process_exec"]["process"]["pid"] == p.pid)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    ev = agent.wait_for(lambda e: "process_exit" in e and e["process_exit"]["process"]["pid"] == p.pid)
    assert ev
    x = ev[0]["process_exit"]
    assert x["signal"] == "SIGKILL"
    assert x["status"] == 0
    assert x["process"]["binary"].endswith("/sleep")


def test_threads_do_not_create_process_events(agent: AgentProc) -> None:
    tag = uuid.uuid4().hex[:8]
    code = ("import threading, os, sys\n"
            "ts=[threading.Thread(target=lambda: None) for _ in range(20)]\n"
            "[t.start() for t in ts]; [t.join() for t in ts]\n")
    p = subprocess.run([os.path.realpath("/proc/self/exe"), "-c", code, f"threads-{tag}"], check=True)
    assert p.returncode == 0
    time.sleep(0.5)
    agent.wait_for(lambda e: False, timeout=0.5)
    evs = [e for e in agent.events() if (e.get("process_exec") or e.get("process_exit") or {}).get("process", {}).get("arguments", "").endswith(f"threads-{tag}")]
    kinds = sorted(k for e in evs for k in e if k.startswith("process_"))
    assert kinds == ["process_exec", "process_exit"], kinds


def test_burst_of_2000_processes_loses_nothing(agent: AgentProc) -> None:
    tag = uuid.uuid4().hex[:8]
    before = agent.status()["events"]["lost"]
    out = subprocess.run([prog("forkexec"), "2000", "4", prog("exit_code"), "0", f"burst-{tag}"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    mine = lambda e: (  # noqa: E731
        ("process_exec" in e or "process_exit" in e)
        and (e.get("process_exec") or e.get("process_exit"))["process"]["arguments"] == f"0 burst-{tag}"
    )
    evs = agent.wait_for(mine, timeout=60, count=4000)
    execs = sum(1 for e in evs if "process_exec" in e)
    exits = sum(1 for e in evs if "process_exit" in e)
    after = agent.status()["events"]["lost"]
    assert (execs, exits) == (2000, 2000)
    assert after["ringbuf"] == before["ringbuf"] and after["queue"] == before["queue"]
    # every exit pairs with an exec of the same process
    ids = {e["process_exec"]["process"]["exec_id"] for e in evs if "process_exec" in e}
    assert ids == {e["process_exit"]["process"]["exec_id"] for e in evs if "process_exit" in e}
