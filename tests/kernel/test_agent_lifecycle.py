"""Agent start-up, shutdown, bad conditions and the local API, for real."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from typing import Iterator

import pytest

from agentctl import AgentProc, env, is_exec, kerneye_cmd

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGS = os.path.join(ROOT, "tests", "progs", ".output")
BPF_DIR = os.path.join(ROOT, "bpf", ".output")


@pytest.fixture
def workdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="kerneye-life-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def kerneye_prog_ids() -> dict[int, str]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    return {p["id"]: p.get("name", "") for p in json.loads(out.stdout) if p.get("name", "").startswith("kerneye")}


def kerneye_programs() -> list[str]:
    return list(kerneye_prog_ids().values())


# Programs that belong to other agents (another test session, a developer's
# `make run`) are not ours to judge: tests compare against what was loaded
# before they started.
_BASELINE: set[int] = set()


def baseline() -> None:
    _BASELINE.clear()
    _BASELINE.update(kerneye_prog_ids())


def wait_no_programs(timeout: float = 5) -> list[str]:
    """kerneye programs loaded since baseline() that are still there.
    Program memory is freed after an RCU grace period: poll briefly."""
    deadline = time.monotonic() + timeout
    while True:
        left = [n for i, n in kerneye_prog_ids().items() if i not in _BASELINE]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.1)


@pytest.fixture(autouse=True)
def _programs_baseline() -> None:
    baseline()


def run_agent(workdir: str, *args: str, timeout: float = 30, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, *kerneye_cmd("agent", "-o", "none", "--run-dir", os.path.join(workdir, "run"), *args)],
                          env=env(), capture_output=True, text=True, timeout=timeout)


def as_nobody(fn) -> int:  # type: ignore[no-untyped-def]
    """Run fn() in a forked child with uid/gid 65534; return its exit code."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os._exit(fn())
        except BaseException:
            os._exit(99)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def assert_one_line_error(p: subprocess.CompletedProcess[str], needle: str) -> None:
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    errs = [ln for ln in p.stderr.splitlines() if ln.startswith("kerneye: error:")]
    assert len(errs) == 1, p.stderr
    assert needle in errs[0], errs[0]


def test_process_started_before_agent_is_procfs_parent(workdir: str) -> None:
    fifo = os.path.join(workdir, "go")
    os.mkfifo(fifo)
    tag = uuid.uuid4().hex[:8]
    exe = os.path.join(PROGS, "exit_code")
    # bash waits on the fifo, then forks+execs the child, then exits
    pre = subprocess.Popen(["bash", "-c", f'read x < {fifo}; {exe} 0 pre-{tag}; exit 0', f"pre-{tag}"])
    agent = AgentProc(workdir)
    try:
        agent.start()
        with open(fifo, "w") as f:
            f.write("go\n")
        pre.wait(10)
        ev = agent.wait_for(is_exec(exe, f"0 pre-{tag}"))
        assert ev, agent.stderr()
        child = ev[0]["process_exec"]
        assert child["parent"]["pid"] == pre.pid
        assert child["parent"]["flags"].split()[0] == "procFS"
        assert child["parent"]["binary"].endswith("/bash")
        assert child["parent"]["arguments"].startswith("-c ")
        assert child["parent"]["cwd"] == os.getcwd()
        # the pre-existing process is reported once as a procFS exec and its
        # exit carries the same exec_id
        px = agent.wait_for(lambda e: "process_exit" in e and e["process_exit"]["process"]["pid"] == pre.pid)
        assert px and px[0]["process_exit"]["process"]["exec_id"] == child["parent"]["exec_id"]
        pe = [e for e in agent.events() if "process_exec" in e and e["process_exec"]["process"]["pid"] == pre.pid]
        assert len(pe) == 1 and "procFS" in pe[0]["process_exec"]["process"]["flags"]
    finally:
        if pre.poll() is None:
            pre.kill()
            pre.wait()
        assert agent.stop() == 0


def test_sigterm_and_sigint_leave_nothing_behind(workdir: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        agent = AgentProc(workdir).start()
        try:
            assert {"kerneye_execve", "kerneye_fork", "kerneye_exit", "kerneye_gen_sys_enter"} <= set(kerneye_programs())
            agent.proc.send_signal(sig)
            assert agent.proc.wait(30) == 0
        finally:
            agent.stop()
        assert wait_no_programs() == []
        assert not [p for p in os.listdir("/sys/fs/bpf") if "kerneye" in p]
        assert not os.path.exists(agent.socket)


def test_sigkill_leaves_no_programs(workdir: str) -> None:
    agent = AgentProc(workdir).start()
    agent.proc.kill()
    agent.proc.wait()
    agent.stop()
    # nothing is pinned: the kernel frees everything with the last fd
    assert wait_no_programs() == []


def test_second_agent_is_refused(workdir: str) -> None:
    agent = AgentProc(workdir).start()
    try:
        p = run_agent(workdir)
        assert_one_line_error(p, "already running")
        assert f"pid {agent.proc.pid}" in p.stderr
    finally:
        agent.stop()


def test_unwritable_export_file(workdir: str) -> None:
    p = run_agent(workdir, "--export-file", "/proc/kerneye/events.json")
    assert_one_line_error(p, "/proc/kerneye/events.json")
    assert wait_no_programs() == []


def test_without_capabilities_is_refused(workdir: str) -> None:
    # uid 0 but an empty capability bounding set: what a non-root user or a
    # locked-down container gets
    p = run_agent(workdir, prefix=("setpriv", "--bounding-set=-all", "--inh-caps=-all"))
    assert_one_line_error(p, "run it as root")
    assert "CAP_BPF" in p.stderr


def test_bad_rb_size(workdir: str) -> None:
    p = run_agent(workdir, "--rb-size", "3000")
    assert_one_line_error(p, "power of two")


def test_missing_objects(workdir: str) -> None:
    p = run_agent(workdir, "--bpf-lib", os.path.join(workdir, "nowhere"))
    assert_one_line_error(p, "make -C bpf")


def test_abi_mismatch_refuses_start(workdir: str) -> None:
    """A base object whose msg_exit layout differs from the Python mirror."""
    src = os.path.join(workdir, "bpf")
    shutil.copytree(os.path.join(ROOT, "bpf"), src, ignore=shutil.ignore_patterns(".output"))
    hdr = os.path.join(src, "include", "kerneye", "abi.h")
    text = open(hdr).read()
    marker = "\t__u32 code;  /* task->exit_code"
    assert marker in text
    open(hdr, "w").write(text.replace(marker, "\t__u64 code;  /* task->exit_code"))
    subprocess.run(["make", "-s", "-C", src], check=True, capture_output=True)
    p = run_agent(workdir, "--bpf-lib", os.path.join(src, ".output"))
    assert_one_line_error(p, "ABI mismatch")
    assert "msg_exit" in p.stderr
    assert wait_no_programs() == []


def test_getevents_and_status_api(workdir: str) -> None:
    agent = AgentProc(workdir).start()
    tag = uuid.uuid4().hex[:8]
    exe = os.path.join(PROGS, "exit_code")
    clients = []
    try:
        # two concurrent clients with different filters
        j = subprocess.Popen(kerneye_cmd("getevents", "-o", "json", "--socket", agent.socket, "--process", "exit_code$",
                                         "-e", "PROCESS_EXEC"),
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        c = subprocess.Popen(kerneye_cmd("getevents", "-o", "compact", "--socket", agent.socket,
                                         "--event-types", "process_exit", "--process", "exit_code$"),
                             env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        clients = [j, c]
        time.sleep(1.0)
        subprocess.run([exe, "5", f"api-{tag}"], check=True if False else False)
        subprocess.run(["/bin/true", f"api-{tag}"])
        line = j.stdout.readline()
        ev = json.loads(line)
        assert ev["process_exec"]["process"]["binary"] == exe
        assert ev["process_exec"]["process"]["arguments"] == f"5 api-{tag}"
        cline = c.stdout.readline().rstrip("\n")
        assert cline == f"💥 exit    host {exe} 5 api-{tag} 5"

        # --pid filter: only that process
        pid_client = subprocess.Popen(kerneye_cmd("getevents", "--socket", agent.socket, "--pid", "1"),
                                      env=env(), stdout=subprocess.PIPE, text=True)
        clients.append(pid_client)

        st = agent.status()
        assert st["ready"] is True
        assert st["events"]["seen"] > 0
        assert st["events"]["lost"]["ringbuf"] == 0
        assert st["process_cache"]["size"] > 0
        assert st["sensors"][0]["name"] == "base"
        assert sorted(st["sensors"][0]["programs"]) == ["kerneye_execve", "kerneye_exit", "kerneye_fork"]
        human = subprocess.run(kerneye_cmd("status", "--socket", agent.socket), env=env(), capture_output=True,
                               text=True)
        assert human.returncode == 0 and "ready" in human.stdout and "lost: ring buffer 0" in human.stdout

        # the API is root-only: a non-root client gets a clear error
        from kerneye.api import client
        from kerneye.errors import ApiError

        def try_status() -> int:
            try:
                client.request(agent.socket, {"cmd": "status"})
                return 0
            except ApiError as e:
                return 3 if "root" in str(e) else 4

        assert as_nobody(try_status) == 3
        assert os.stat(agent.socket).st_mode & 0o777 == 0o600
    finally:
        for cl in clients:
            cl.kill()
            cl.wait()
        agent.stop()
    # with the agent gone, the CLI says so
    gone = subprocess.run(kerneye_cmd("status", "--socket", agent.socket), env=env(), capture_output=True, text=True)
    assert gone.returncode == 3 and "not running" in gone.stderr


def test_getevents_reads_piped_json(workdir: str) -> None:
    ev = {"process_exec": {"process": {"binary": "/usr/bin/curl", "arguments": "https://example.org", "pid": 1},
                           "parent": {}}, "node_name": "n", "time": "2026-01-01T00:00:00.000000000Z"}
    other = {"process_exec": {"process": {"binary": "/usr/bin/wget", "arguments": "x", "pid": 2}},
             "node_name": "n", "time": "2026-01-01T00:00:00.000000000Z"}
    data = json.dumps(ev) + "\n" + json.dumps(other) + "\n"
    p = subprocess.run(kerneye_cmd("getevents", "-o", "compact", "--process", "curl"), env=env(), input=data,
                       capture_output=True, text=True)
    assert p.returncode == 0
    assert p.stdout == "🚀 process host /usr/bin/curl https://example.org\n"


def test_ring_buffer_overflow_is_counted_and_reported(workdir: str) -> None:
    # one page of ring and a wake-up threshold far above it: a burst must
    # overflow, and the loss must show in status and in the log
    agent = AgentProc(workdir, "--rb-size", "4096").start()
    try:
        subprocess.run([os.path.join(PROGS, "forkexec"), "300", "4", os.path.join(PROGS, "exit_code"), "0", "flood"],
                       check=True, capture_output=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lost = agent.status()["events"]["lost"]["ringbuf"]
            if lost and "lost " in agent.stderr():
                break
            time.sleep(0.2)
        assert lost > 0
        assert "raise --rb-size" in agent.stderr()
    finally:
        agent.stop()


def test_container_id_from_cgroup_path(workdir: str) -> None:
    root = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(root, "cgroup.procs")):
        pytest.skip("no writable cgroup-v2 hierarchy")
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    parent = os.path.join(root, f"kerneye-test-{cid[:8]}")
    cg = os.path.join(parent, f"docker-{cid}.scope")
    os.makedirs(cg)
    exe = os.path.join(PROGS, "exit_code")
    agent = AgentProc(workdir).start()
    try:
        # the shell moves itself into the container's cgroup, then execs
        subprocess.run(["bash", "-c", f'echo $$ > {cg}/cgroup.procs && exec {exe} 0 ctr-{cid[:8]}'], check=True)
        ev = agent.wait_for(is_exec(exe, f"0 ctr-{cid[:8]}"))
        assert ev
        p = ev[0]["process_exec"]["process"]
        assert p["docker"] == cid[:31]
        assert p["cgroup_path"].endswith(f"/kerneye-test-{cid[:8]}/docker-{cid}.scope")
        assert p["cgroup_id"] == str(os.stat(cg).st_ino)
        # filtered by container through the API
        out = subprocess.run(kerneye_cmd("getevents", "-o", "compact", "--container", cid[:12]), env=env(),
                             input=open(agent.export).read(), capture_output=True, text=True)
        assert f"🚀 process {cid[:12]} {exe} 0 ctr-{cid[:8]}" in out.stdout.splitlines()
        assert all(cid[:12] in ln for ln in out.stdout.splitlines())
    finally:
        agent.stop()
        os.rmdir(cg)
        os.rmdir(parent)


def test_ancestors_behind_an_option(workdir: str) -> None:
    agent = AgentProc(workdir, "--enable-ancestors").start()
    tag = uuid.uuid4().hex[:8]
    exe = os.path.join(PROGS, "exit_code")
    try:
        # pytest -> fork_worker -> worker (clone) -> exit_code
        subprocess.run([os.path.join(PROGS, "fork_worker"), exe, "0", f"anc-{tag}"], capture_output=True)
        ev = agent.wait_for(is_exec(exe, f"0 anc-{tag}"))
        assert ev, agent.stderr()
        x = ev[0]["process_exec"]
        anc = x["ancestors"]
        # the parent is the worker; ancestors start at the parent's parent
        assert anc[0]["binary"] == os.path.join(PROGS, "fork_worker") and "execve" in anc[0]["flags"].split()
        assert x["parent"]["flags"] == "clone"
        assert anc[0]["exec_id"] == x["parent"]["parent_exec_id"]
        assert anc[1]["pid"] == os.getpid()
        for a, b in zip(anc, anc[1:]):
            assert a["parent_exec_id"] == b["exec_id"]
    finally:
        agent.stop()
