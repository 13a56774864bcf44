"""kprobes on kernel functions through a real agent, in the qemu VM.

This host's kernel has no kprobes (CONFIG_KPROBES off); Debian's 6.1 in the
VM of tests/kernel/test_vm_lsm.py has them. One agent starts with its
TracingPolicies in a --tracing-policy-dir (every `kerneye tracingpolicy`
call costs seconds under TCG): a kprobe on security_file_open (a `file`
argument, Prefix on a temp dir), a kretprobe on the same function (return
value filtered at exit), fd_install (an int and a file from two registers),
tcp_connect (a `sock` argument, DAddr and DPort), security_socket_connect
(a kernel `sockaddr`; SAddr/SPort, its one address), and one policy naming a function the kernel lacks, which is
refused with its file:line while the rest load. Real processes (cat, a TCP
connect) trigger them; the tests assert on the exported events.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import textwrap
from typing import Any, Iterator

import pytest

from agentctl import AgentProc, body, listed
from kerneye.bpf import features
from kerneye.config import default_bpf_dir

pytestmark = pytest.mark.kernel

_HEAD = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec:\n"


def _policies(d: str, watched: str, port: int) -> dict[str, str]:
    docs = {
        "kp-open": f"""\
            kprobes:
            - call: security_file_open
              syscall: false
              args:
              - index: 0
                type: file
              selectors:
              - matchArgs:
                - index: 0
                  operator: Prefix
                  values: ["{watched}/"]
            """,
        "kp-open-ret": f"""\
            kprobes:
            - call: security_file_open
              syscall: false
              return: true
              args:
              - index: 0
                type: file
              returnArg:
                index: 0
                type: int
              selectors:
              - matchArgs:
                - index: 0
                  operator: Postfix
                  values: ["/ret-probe"]
                matchReturnArgs:
                - index: 0
                  operator: Equal
                  values: [0]
            """,
        "kp-connect": f"""\
            kprobes:
            - call: tcp_connect
              syscall: false
              args:
              - index: 0
                type: sock
              selectors:
              - matchArgs:
                - index: 0
                  operator: DAddr
                  values: [127.0.0.1]
                - index: 0
                  operator: DPort
                  values: ["{port}"]
            """,
        "kp-fd-install": f"""\
            kprobes:
            - call: fd_install
              syscall: false
              args:
              - index: 0
                type: int
              - index: 1
                type: file
              selectors:
              - matchArgs:
                - index: 1
                  operator: Postfix
                  values: ["/fd-probe"]
            """,
        "kp-sock-connect": f"""\
            kprobes:
            - call: security_socket_connect
              syscall: false
              args:
              - index: 1
                type: sockaddr
              - index: 2
                type: int
              selectors:
              - matchArgs:
                - index: 1
                  operator: SAddr
                  values: [127.0.0.1]
                - index: 1
                  operator: SPort
                  values: ["{port}"]
            """,
        "kp-missing": """\
            kprobes:
            - call: kerneye_no_such_function
              syscall: false
            """,
    }
    paths = {}
    for name, spec in docs.items():
        paths[name] = os.path.join(d, f"{name}.yaml")
        with open(paths[name], "w") as f:
            f.write(_HEAD.format(name=name) + textwrap.indent(textwrap.dedent(spec), "  "))
    return paths


class World:
    def __init__(self, agent: AgentProc, watched: str, port: int, paths: dict[str, str]) -> None:
        self.agent, self.watched, self.port, self.paths = agent, watched, port, paths

    def kprobe_events(self, policy: str, count: int = 1) -> list[dict[str, Any]]:
        evs = self.agent.wait_for(lambda e: "process_kprobe" in e and e["process_kprobe"]["policy_name"] == policy,
                                  timeout=30, count=count)
        return [body(e)[1] for e in evs]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    reason = features.probe(default_bpf_dir(), "kprobe")
    if reason:
        pytest.skip(reason)
    d = tempfile.mkdtemp(prefix="kerneye-kp-")
    watched = os.path.join(d, "watched")
    os.makedirs(watched)
    pol = os.path.join(d, "policies")
    os.makedirs(pol)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    paths = _policies(pol, watched, port)
    agent = AgentProc(d, "--tracing-policy-dir", pol)
    try:
        agent.start(timeout=120)
        yield World(agent, watched, port, paths)
    finally:
        agent.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_security_file_open_reports_the_file(world: World) -> None:
    target = os.path.join(world.watched, "secret")
    other = os.path.join(os.path.dirname(world.watched), "other")
    for p in (target, other):
        with open(p, "w") as f:
            f.write("x\n")
    r = subprocess.run(["cat", other, target], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    evs = world.kprobe_events("kp-open", count=2)  # this test's writes of the file, and cat
    ev = next(e for e in evs if e["process"]["binary"].endswith("/cat"))
    assert ev["function_name"] == "security_file_open"
    assert ev["args"] == [{"file_arg": {"path": target}}]
    assert ev["action"] == "KPROBE_ACTION_POST"
    assert ev["policy_name"] == "kp-open"
    # only the watched file: the other open (and every other one on the box) was filtered in the kernel
    assert all(e["args"][0]["file_arg"]["path"].startswith(world.watched + "/")
               for e in world.kprobe_events("kp-open"))


def test_kretprobe_reports_the_return_value(world: World) -> None:
    target = os.path.join(world.watched, "ret-probe")
    with open(target, "w") as f:
        f.write("x\n")
    assert subprocess.run(["cat", target], capture_output=True, timeout=60).returncode == 0
    evs = world.kprobe_events("kp-open-ret", count=2)  # this test's write of the file, and cat
    ev = next(e for e in evs if e["process"]["binary"].endswith("/cat"))
    assert ev["function_name"] == "security_file_open"
    assert ev["args"] == [{"file_arg": {"path": target}}]
    assert ev["return"] == {"int_arg": 0}
    assert ev["action"] == "KPROBE_ACTION_POST"


def test_second_register_and_int_argument(world: World) -> None:
    """fd_install(fd, file): two arguments from two registers."""
    target = os.path.join(world.watched, "fd-probe")
    with open(target, "w") as f:
        f.write("x\n")
    assert subprocess.run(["cat", target], capture_output=True, timeout=60).returncode == 0
    evs = world.kprobe_events("kp-fd-install", count=2)
    ev = next(e for e in evs if e["process"]["binary"].endswith("/cat"))
    assert ev["function_name"] == "fd_install"
    fd, f = ev["args"]
    assert f == {"file_arg": {"path": target}}
    assert fd == {"int_arg": 3}  # cat's first open: stdin/out/err are taken


def test_tcp_connect_reports_the_socket(world: World) -> None:
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", world.port))
        srv.listen(1)
        with socket.create_connection(("127.0.0.1", world.port), timeout=10) as c:
            sport = c.getsockname()[1]
    [ev] = world.kprobe_events("kp-connect")
    assert ev["function_name"] == "tcp_connect" and ev["action"] == "KPROBE_ACTION_POST"
    [arg] = ev["args"]
    sk = arg["sock_arg"]
    assert sk["family"] == "AF_INET" and sk["type"] == "SOCK_STREAM" and sk["protocol"] == "IPPROTO_TCP"
    assert (sk["daddr"], sk["dport"]) == ("127.0.0.1", world.port)
    assert (sk["saddr"], sk["sport"]) == ("127.0.0.1", sport)
    assert ev["process"]["pid"] == os.getpid()
    # the sockaddr of security_socket_connect is a kernel copy: read as such
    evs = world.kprobe_events("kp-sock-connect")
    assert len(evs) == 1, world.agent.stderr()[-3000:]
    ev = evs[0]
    assert ev["function_name"] == "security_socket_connect"
    assert ev["args"] == [{"sockaddr_arg": {"family": "AF_INET", "addr": "127.0.0.1", "port": world.port}},
                          {"int_arg": 16}]


def test_policies_listed_and_missing_function_refused(world: World) -> None:
    pols = listed(world.agent)
    assert pols["kp-open"]["hooks"] == ["kprobe:security_file_open"] and pols["kp-open"]["state"] == "enabled"
    assert pols["kp-connect"]["hooks"] == ["kprobe:tcp_connect"]
    assert pols["kp-open"]["npost"] >= 1 and pols["kp-connect"]["npost"] == 1
    # refused at load with file:line and the reason; the agent and the other policies run on
    err = world.agent.stderr()
    assert f"{world.paths['kp-missing']}:7:" in err
    assert "kerneye_no_such_function: no traceable kernel function" in err
    assert pols["kp-missing.yaml"]["state"] == "error"
    assert "kerneye_no_such_function" in pols["kp-missing.yaml"]["error"]
