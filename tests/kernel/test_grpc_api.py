"""The gRPC API against a real agent: GetEvents filters (each kind, positive
and negative), field filters, concurrent and slow clients, policy RPCs,
health, root-only local access, TCP with mutual TLS, and the promise that an
event's protobuf JSON form is exactly its export line.

Negative checks use ordering: a stream delivers events in the order the
agent emits them, so once an event caused *after* the unwanted one has
arrived, the unwanted one would have arrived too.
"""
from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import Any, Callable, Iterator

import pytest
from google.protobuf import json_format

from agentctl import AgentProc, env, kerneye_cmd
from kerneye.api import convert
from kerneye.api.grpc_client import Client, Endpoint
from kerneye.api.v1 import events_pb2 as pb
from kerneye.errors import ApiError, KerneyeError

pytestmark = pytest.mark.kernel

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGS = os.path.join(ROOT, "tests", "progs", ".output")
EXIT_CODE = os.path.join(PROGS, "exit_code")
KTRIG = os.path.join(PROGS, "ktrig")
PTRIG = os.path.join(PROGS, "ptrig")
OPEN_LOOP = os.path.join(PROGS, "open_loop")
POLICIES = os.path.join(ROOT, "policies")
Ev = dict[str, Any]


# --- fixtures and helpers ------------------------------------------------------

@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProc]:
    """One agent for the module, with the policy library (events of many
    argument kinds) and ancestors (for ancestor_binary_regex)."""
    d = tempfile.mkdtemp(prefix="kerneye-grpc-")
    os.chmod(d, 0o755)  # only the run dir's 0700 keeps other users out
    a = AgentProc(d, "--tracing-policy-dir", POLICIES, "--enable-ancestors").start()
    try:
        yield a
    finally:
        a.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def body(e: Ev) -> Ev:
    return next(v for k, v in e.items() if k not in ("node_name", "time", "aggregation_info"))


def kind(e: Ev) -> str:
    return next(k for k in e if k not in ("node_name", "time", "aggregation_info"))


def args_of(e: Ev) -> str:
    return body(e).get("process", {}).get("arguments", "")


class Sub:
    """A GetEvents stream read by a background thread into .events (dicts)."""

    def __init__(self, sock: str, req: Any = None, **filt: Any) -> None:
        if req is None:
            req = pb.GetEventsRequest()
            if filt.get("allow"):
                req.allow_list.append(pb.Filter(**filt["allow"]))
            if filt.get("deny"):
                req.deny_list.append(pb.Filter(**filt["deny"]))
        self.client = Client(Endpoint(socket=sock))
        self.stream = self.client.events(req)  # returns once the agent has registered it
        self.events: list[Ev] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for m in self.stream:
                self.events.append(convert.to_dict(m))
        except BaseException as e:  # noqa: BLE001
            self.error = e

    def wait(self, pred: Callable[[Ev], bool], count: int = 1, timeout: float = 30) -> list[Ev]:
        deadline = time.monotonic() + timeout
        while True:
            got = [e for e in list(self.events) if pred(e)]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def close(self) -> None:
        self.stream.cancel()
        self.thread.join(5)
        self.client.close()

    def __enter__(self) -> "Sub":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def run_exit_code(*args: str, code: int = 0) -> None:
    subprocess.run([EXIT_CODE, str(code), *args], check=False)


def tagged(t: str, k: str | None = None) -> Callable[[Ev], bool]:
    return lambda e: (k is None or kind(e) == k) and t in args_of(e)


def expect(sub: Sub, want: Callable[[Ev], bool], unwanted: Callable[[Ev], bool], count: int = 1) -> list[Ev]:
    """The stream got `want` (caused last) and nothing matching `unwanted`."""
    got = sub.wait(want, count)
    assert len(got) >= count, f"wanted event not delivered; stream had {len(sub.events)} events, error {sub.error}"
    bad = [e for e in sub.events if unwanted(e)]
    assert not bad, f"filtered-out event delivered: {json.dumps(bad[0])[:400]}"
    return got


def add_policy(c: Client, name: str, prefix: str) -> None:
    y = f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: {name}
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Prefix"
        values: ["{prefix}"]
"""
    r = c.add_policy(y, "monitor", f"{name}.yaml")
    assert r["name"] == name and r["mode"] == "monitor" and r["hooks"] >= 1


# --- health, version, info, policies ------------------------------------------------

def test_health_version_info(agent: AgentProc) -> None:
    with Client(Endpoint(socket=agent.socket)) as c:
        assert c.check() == "SERVING"  # grpc.health.v1
        assert c.check("kerneye.v1.FineGuidanceSensors") == "SERVING"
        with pytest.raises(KerneyeError, match="unknown service"):
            c.check("no.such.Service")
        hs = {h.name: h for h in c.health()}
        assert hs["agent"].status == 1 and hs["sensor/base"].status == 1  # HEALTH_STATUS_RUNNING
        from kerneye import __version__

        assert c.version() == __version__
        info = c.info()
        assert info.kernel == os.uname().release and info.name
        probes = {p.name: p for p in info.probes}
        assert probes["tracepoint"].enabled
    r = subprocess.run(kerneye_cmd("version", "--socket", agent.socket), env=env(), capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.splitlines() == [f"kerneye {__version__}", f"server: kerneye {__version__}"]
    r = subprocess.run(kerneye_cmd("status", "--socket", agent.socket), env=env(), capture_output=True, text=True)
    assert r.returncode == 0 and "health: agent RUNNING, sensor/base RUNNING" in r.stdout


def test_policy_rpcs(agent: AgentProc, tag: str) -> None:
    name = f"grpc-rpc-{tag}"
    with Client(Endpoint(socket=agent.socket)) as c:
        add_policy(c, name, f"/nonexistent/{tag}/")
        pol = {p["name"]: p for p in c.list_policies()["policies"]}[name]
        assert pol["state"] == "enabled" and pol["mode"] == "monitor" and pol["npost"] == 0
        c.configure_policy(name, enable=False)
        assert {p["name"]: p for p in c.list_policies()["policies"]}[name]["state"] == "disabled"
        c.configure_policy(name, enable=True, mode="enforce")
        pol = {p["name"]: p for p in c.list_policies()["policies"]}[name]
        assert pol["state"] == "enabled" and pol["mode"] == "enforce"
        c.delete_policy(name)
        assert name not in {p["name"] for p in c.list_policies()["policies"]}
        with pytest.raises(KerneyeError, match="no policy named"):
            c.delete_policy(name)
        with pytest.raises(KerneyeError) as ei:
            c.add_policy("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: x}\nspec: {bogus: 1}\n")
        assert not isinstance(ei.value, ApiError)  # refused (exit 1), not unreachable (exit 3)


# --- GetEvents filters ------------------------------------------------------------------

def test_binary_regex(agent: AgentProc, tag: str) -> None:
    with Sub(agent.socket, allow={"binary_regex": ["/exit_code$"], "event_set": [pb.PROCESS_EXEC]}) as s:
        subprocess.run(["/bin/true", f"neg-{tag}"])
        run_exit_code(f"pos-{tag}")
        got = expect(s, tagged(f"pos-{tag}"), tagged(f"neg-{tag}"))
    assert body(got[0])["process"]["binary"] == EXIT_CODE
    assert all(body(e)["process"]["binary"] == EXIT_CODE and kind(e) == "process_exec" for e in s.events)


def test_pid(agent: AgentProc, tag: str) -> None:
    # ktrig prints its pid, waits, then execs exit_code in the same process
    p = subprocess.Popen([KTRIG, "pid", "wait", "exec", EXIT_CODE, "0", f"pos-{tag}"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline().split()[1])
        with Sub(agent.socket, allow={"pid": [pid]}) as s:
            run_exit_code(f"neg-{tag}")
            p.stdin.write("go\n")
            p.stdin.flush()
            p.wait(10)
            got = expect(s, tagged(f"pos-{tag}", "process_exit"), tagged(f"neg-{tag}"))
        assert all(body(e)["process"]["pid"] == pid for e in s.events)
        mine = [kind(e) for e in s.events if body(e)["process"]["binary"] == EXIT_CODE]
        assert mine == ["process_exec", "process_exit"]  # (ktrig's own exec may show up too: same pid)
        assert got
    finally:
        p.kill()
        p.wait()


def test_pid_set(agent: AgentProc, tag: str) -> None:
    # the children of a shell whose pid we know
    p = subprocess.Popen(["bash", "-c", f'echo $$; read x; {EXIT_CODE} 0 pos-{tag}; /bin/true'], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline())
        with Sub(agent.socket, allow={"pid_set": [pid], "event_set": [pb.PROCESS_EXEC],
                                      "binary_regex": ["/exit_code$"]}) as s:
            run_exit_code(f"neg-{tag}")
            p.stdin.write("go\n")
            p.stdin.flush()
            p.wait(10)
            got = expect(s, tagged(f"pos-{tag}"), tagged(f"neg-{tag}"))
        assert body(got[0])["parent"]["pid"] == pid
    finally:
        p.kill()
        p.wait()


def test_event_set(agent: AgentProc, tag: str) -> None:
    with Sub(agent.socket, allow={"event_set": [pb.PROCESS_EXIT], "arguments_regex": [tag]}) as s:
        run_exit_code(f"pos-{tag}", code=7)
        got = expect(s, tagged(f"pos-{tag}", "process_exit"), lambda e: kind(e) != "process_exit")
    assert body(got[0])["status"] == 7


def test_arguments_regex(agent: AgentProc, tag: str) -> None:
    with Sub(agent.socket, allow={"arguments_regex": [f"(^| )pos-{tag}$"], "event_set": [pb.PROCESS_EXEC]}) as s:
        run_exit_code(f"xpos-{tag}")
        run_exit_code(f"pos-{tag}")
        got = expect(s, tagged(f"pos-{tag}"), tagged(f"xpos-{tag}"))
    assert args_of(got[0]) == f"0 pos-{tag}"


def test_parent_binary_regex(agent: AgentProc, tag: str) -> None:
    with Sub(agent.socket, allow={"parent_binary_regex": ["/bash$"], "arguments_regex": [tag],
                                  "event_set": [pb.PROCESS_EXEC]}) as s:
        run_exit_code(f"neg-{tag}")  # parent: this python
        subprocess.run(["bash", "-c", f"{EXIT_CODE} 0 pos-{tag}; /bin/true"])
        got = expect(s, tagged(f"pos-{tag}"), tagged(f"neg-{tag}"))
    assert body(got[0])["parent"]["binary"].endswith("/bash")


def test_ancestor_binary_regex(agent: AgentProc, tag: str) -> None:
    # exit_code <- bash <- sh: only the sh ancestry matches
    with Sub(agent.socket, allow={"ancestor_binary_regex": ["/dash$|/sh$"], "arguments_regex": [tag],
                                  "event_set": [pb.PROCESS_EXEC], "binary_regex": ["/exit_code$"]}) as s:
        subprocess.run(["bash", "-c", f"{EXIT_CODE} 0 neg-{tag}; /bin/true"])
        subprocess.run(["sh", "-c", f"bash -c '{EXIT_CODE} 0 pos-{tag}; /bin/true'; true"])
        got = expect(s, tagged(f"pos-{tag}"), tagged(f"neg-{tag}"))
    assert any(a["binary"].endswith("sh") for a in body(got[0])["ancestors"])


def test_capabilities(agent: AgentProc, tag: str) -> None:
    caps = pb.CapFilter(effective=pb.CapFilterSet(any=["CAP_SYS_ADMIN"]))
    with Sub(agent.socket, allow={"capabilities": caps, "arguments_regex": [tag], "binary_regex": ["/exit_code$"],
                                  "event_set": [pb.PROCESS_EXEC]}) as s:
        subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", EXIT_CODE, "0",
                        f"neg-{tag}"])
        run_exit_code(f"pos-{tag}")
        got = expect(s, tagged(f"pos-{tag}"), tagged(f"neg-{tag}"))
    assert "CAP_SYS_ADMIN" in body(got[0])["process"]["cap"]["effective"]


def test_container_id(agent: AgentProc, tag: str) -> None:
    root = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(root, "cgroup.procs")):
        pytest.skip("no writable cgroup-v2 hierarchy")
    cid = uuid.uuid4().hex + uuid.uuid4().hex
    parent = os.path.join(root, f"kerneye-grpc-{cid[:8]}")
    cg = os.path.join(parent, f"docker-{cid}.scope")
    os.makedirs(cg)
    try:
        with Sub(agent.socket, allow={"container_id": [cid[:12]], "event_set": [pb.PROCESS_EXEC]}) as s, \
             Sub(agent.socket, allow={"container_id": ["^ffff"], "arguments_regex": [tag]}) as other:
            run_exit_code(f"neg-{tag}")
            subprocess.run(["bash", "-c", f'echo $$ > {cg}/cgroup.procs && exec {EXIT_CODE} 0 pos-{tag}'],
                           check=True)
            got = expect(s, tagged(f"pos-{tag}"), tagged(f"neg-{tag}"))
            assert body(got[0])["process"]["docker"] == cid[:31]
            time.sleep(0.5)
            assert other.events == []  # another container id: nothing
    finally:
        os.rmdir(cg)
        os.rmdir(parent)


def test_cel_expression(agent: AgentProc, tag: str) -> None:
    expr = f'process_exec.process.arguments.endsWith("cel-{tag}") && process_exec.process.uid == 0'
    with Sub(agent.socket, allow={"cel_expression": [expr]}) as s:
        run_exit_code(f"cel-{tag}-no")
        run_exit_code(f"cel-{tag}")
        got = expect(s, tagged(f"0 cel-{tag}", "process_exec"), tagged(f"cel-{tag}-no"))
    assert all(kind(e) == "process_exec" for e in s.events) and len(got) == 1


def test_policy_names(agent: AgentProc, tag: str, tmp_path: Any) -> None:
    d = str(tmp_path)
    for f in ("a-1", "b-1"):
        open(os.path.join(d, f), "w").close()
    a, b = f"grpc-a-{tag}", f"grpc-b-{tag}"
    with Client(Endpoint(socket=agent.socket)) as c:
        add_policy(c, a, os.path.join(d, "a-"))
        add_policy(c, b, os.path.join(d, "b-"))
        try:
            with Sub(agent.socket, allow={"policy_names": [a]}) as s:
                subprocess.run([KTRIG, "open", os.path.join(d, "b-1")], check=True)
                subprocess.run([KTRIG, "open", os.path.join(d, "a-1")], check=True)
                got = expect(s, lambda e: body(e).get("policy_name") == a,
                             lambda e: body(e).get("policy_name") != a)
            e = body(got[0])
            assert e["args"] == [{"string_arg": os.path.join(d, "a-1")}]
            assert kind(got[0]) in ("process_kprobe", "process_tracepoint")
        finally:
            c.delete_policy(a)
            c.delete_policy(b)


def test_deny_list_wins_over_allow_list(agent: AgentProc, tag: str) -> None:
    with Sub(agent.socket, allow={"binary_regex": ["/exit_code$"], "event_set": [pb.PROCESS_EXEC]},
             deny={"arguments_regex": [f"deny-{tag}"]}) as s:
        run_exit_code(f"deny-{tag}")
        run_exit_code(f"ok-{tag}")
        expect(s, tagged(f"ok-{tag}"), tagged(f"deny-{tag}"))
    # a deny list alone: everything else passes
    with Sub(agent.socket, deny={"arguments_regex": [f"deny-{tag}"]}) as s:
        run_exit_code(f"deny-{tag}")
        run_exit_code(f"ok2-{tag}")
        expect(s, tagged(f"ok2-{tag}", "process_exit"), tagged(f"deny-{tag}"))


def test_bad_filters_are_refused(agent: AgentProc) -> None:
    with Client(Endpoint(socket=agent.socket)) as c:
        req = pb.GetEventsRequest(allow_list=[pb.Filter(binary_regex=["(unclosed"])])
        with pytest.raises(KerneyeError, match="bad GetEvents request") as ei:
            list(c.events(req))
        assert not isinstance(ei.value, ApiError)
    # the CLI validates first: a usage error, exit 2
    r = subprocess.run(kerneye_cmd("getevents", "--socket", agent.socket, "--process", "(unclosed"), env=env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "regex" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run(kerneye_cmd("getevents", "--socket", agent.socket, "-e", "PROCESS_NOPE"), env=env(),
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "unknown event type" in r.stderr


def test_aggregation(agent: AgentProc) -> None:
    """Identical events (here: three opens of /etc/shadow by one process,
    posted by the library's file-integrity policy) within a window arrive
    once, with aggregation_info.count."""
    from google.protobuf.duration_pb2 import Duration

    p = subprocess.Popen([KTRIG, "pid", "wait", "open", "/etc/shadow", "open", "/etc/shadow", "open", "/etc/shadow"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(p.stdout.readline().split()[1])
        req = pb.GetEventsRequest(
            allow_list=[pb.Filter(pid=[pid], policy_names=["file-integrity"])],
            aggregation_options=pb.AggregationOptions(window_size=Duration(seconds=1)))
        with Sub(agent.socket, req) as s:
            p.stdin.write("go\n")
            p.stdin.flush()
            p.wait(10)
            got = s.wait(lambda e: True)
            time.sleep(1.5)  # a second window: nothing more
        assert len(s.events) == 1, s.events
        assert got[0]["aggregation_info"] == {"count": "3"}
        assert body(got[0])["process"]["pid"] == pid
    finally:
        p.kill()
        p.wait()


# --- field filters, concurrent clients, the CLI ------------------------------------------------

def test_field_filters(agent: AgentProc, tag: str) -> None:
    inc = pb.GetEventsRequest(allow_list=[pb.Filter(arguments_regex=[tag])], field_filters=[
        pb.FieldFilter(event_set=[pb.PROCESS_EXEC], fields="process.binary,process.arguments", action=pb.INCLUDE)])
    exc = pb.GetEventsRequest(allow_list=[pb.Filter(arguments_regex=[tag])], field_filters=[
        pb.FieldFilter(fields="process.cap,process.ns,parent", action=pb.EXCLUDE)])
    with Sub(agent.socket, inc) as a, Sub(agent.socket, exc) as b:
        run_exit_code(f"ff-{tag}")
        ea = a.wait(lambda e: kind(e) == "process_exit")
        eb = b.wait(lambda e: kind(e) == "process_exit")
    assert ea and eb
    ex = [e for e in a.events if kind(e) == "process_exec"][0]
    assert ex["process_exec"] == {"process": {"binary": EXIT_CODE, "arguments": f"0 ff-{tag}"}}
    assert ex["node_name"] and ex["time"]  # the envelope is never filtered
    assert "parent" in ea[0]["process_exit"]  # exit events untouched by an exec-only filter
    for e in b.events:
        p = body(e)["process"]
        assert "cap" not in p and "ns" not in p and "parent" not in body(e) and p["binary"] == EXIT_CODE


def test_two_concurrent_clients_with_different_filters(agent: AgentProc, tag: str) -> None:
    with Sub(agent.socket, allow={"arguments_regex": [f"one-{tag}"], "event_set": [pb.PROCESS_EXEC]}) as one, \
         Sub(agent.socket, allow={"arguments_regex": [f"two-{tag}"], "event_set": [pb.PROCESS_EXIT]}) as two:
        cli = subprocess.Popen(kerneye_cmd("getevents", "--socket", agent.socket, "-o", "json", "--process",
                                           "exit_code$", "-e", "PROCESS_EXIT", "--cel-expression",
                                           f'process_exit.process.arguments.contains("{tag}")',
                                           "-F", "process.cap,process.ns,process.process_credentials"),
                               env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(1.5)  # the CLI subscribes
            for i in range(3):
                run_exit_code(f"one-{tag}-{i}")
                run_exit_code(f"two-{tag}-{i}", code=i)
            g1 = one.wait(tagged(f"one-{tag}-2"))
            g2 = two.wait(tagged(f"two-{tag}-2"))
            lines = [json.loads(cli.stdout.readline()) for _ in range(6)]
        finally:
            cli.kill()
            cli.wait()
    assert g1 and g2
    assert [args_of(e) for e in one.events] == [f"0 one-{tag}-{i}" for i in range(3)]
    assert [(args_of(e), body(e)["status"]) for e in two.events] == [(f"{i} two-{tag}-{i}", i) for i in range(3)]
    assert all(kind(e) == "process_exit" for e in lines)
    assert sorted(args_of(e).split()[1] for e in lines) == sorted(
        [f"one-{tag}-{i}" for i in range(3)] + [f"two-{tag}-{i}" for i in range(3)])
    assert all("cap" not in body(e)["process"] and "binary" in body(e)["process"] for e in lines)


def test_cli_reconnect(tmp_path: Any) -> None:
    """getevents --reconnect waits for the agent and follows it across a restart."""
    d = str(tmp_path)
    sock = os.path.join(d, "run", "kerneye.sock")
    g = subprocess.Popen(kerneye_cmd("getevents", "--socket", sock, "--reconnect", "--reconnect-wait", "200ms",
                                     "-o", "compact", "--process", "exit_code$", "-e", "PROCESS_EXIT"),
                         env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for n in (1, 2):
            agent = AgentProc(d).start()
            try:
                deadline = time.monotonic() + 10
                while agent.status()["api"]["streams"] == [] and time.monotonic() < deadline:
                    time.sleep(0.1)
                run_exit_code(f"recon-{n}", code=n)
                assert g.stdout.readline().rstrip("\n") == f"💥 exit    host {EXIT_CODE} {n} recon-{n} {n}"
            finally:
                agent.stop()
    finally:
        g.kill()
        g.wait()
    err = g.stderr.read()
    # said once per outage (two restarts, one more under load), not on every retry
    assert err.count("not running") <= 4 and "closed the event stream" in err and "connected" in err, err


# --- the JSON form of a gRPC event is its export line ---------------------------------------

def test_grpc_events_equal_export_lines(agent: AgentProc, tag: str, tmp_path: Any) -> None:
    """Real events of every kind the library policies produce: the stream's
    messages, rendered with json_format, equal the export file's lines; and
    every exported line survives JSON -> proto -> JSON unchanged."""
    with Sub(agent.socket) as s:
        run_exit_code(f"rt-{tag}", code=3)
        subprocess.run(["bash", "-c", f"{EXIT_CODE} 0 rt-{tag} & wait; timeout -s KILL 0.2 sleep 5; true"])
        subprocess.run([KTRIG, "open", "/etc/shadow", "connect", "tcp", "10.254.0.2", "80", "unshare", "uts"],
                       capture_output=True)
        subprocess.run([PTRIG, "setuid", "0", "capset", "bpf", "0", "0", "memfd", f"m-{tag}", "1",
                        "memexec", f"x-{tag}", "/bin/true"], capture_output=True)
        subprocess.run(["setpriv", "--reuid", "65534", "true"])
        run_exit_code(f"end-{tag}")
        assert s.wait(tagged(f"end-{tag}", "process_exit"))
        received = list(s.events)
    # compare what came before the sentinel (later events may not be in the file yet)
    received = received[:next(i for i, e in enumerate(received) if tagged(f"end-{tag}", "process_exit")(e)) + 1]
    exported = agent.wait_for(tagged(f"end-{tag}", "process_exit"))
    assert exported
    lines = agent.events()
    by_key = {}
    for e in lines:
        b = body(e)
        by_key[(kind(e), b.get("process", {}).get("exec_id"), e["time"], json.dumps(b.get("args"), sort_keys=True))] = e
    kinds = set()
    missing = []
    for e in received:
        b = body(e)
        key = (kind(e), b.get("process", {}).get("exec_id"), e["time"], json.dumps(b.get("args"), sort_keys=True))
        if key in by_key:
            assert e == by_key[key]
            kinds.add(kind(e))
        else:
            missing.append(e)
    assert not missing and len(received) > 20, (len(missing), len(received), json.dumps(missing[:1])[:1500])
    assert {"process_exec", "process_exit"} <= kinds and kinds & {"process_kprobe", "process_tracepoint"}, kinds
    arg_kinds = set()
    for e in lines:
        msg = json_format.ParseDict(e, pb.GetEventsResponse())
        assert json_format.MessageToDict(msg, preserving_proto_field_name=True) == e
        assert convert.to_dict(convert.to_message(e, pb.GetEventsResponse)) == e
        for a in body(e).get("args", []):
            arg_kinds |= set(a) - {"label"}
    # the library policies and triggers above give a wide mix of argument kinds
    assert {"int_arg", "string_arg", "uint_arg", "sock_arg", "sockaddr_arg", "bpf_cmd_arg"} <= arg_kinds, arg_kinds


# --- slow clients ------------------------------------------------------------------------------------

def test_slow_client_loses_events_alone(tmp_path: Any) -> None:
    """A client that stops reading fills its own queue; its drops are
    counted (status: lost.api_clients and api.streams[].dropped); the agent,
    its export file and another client go on."""
    d = str(tmp_path)
    target = os.path.join(d, "target")
    open(target, "w").close()
    pf = os.path.join(d, "open.yaml")
    with open(pf, "w") as f:
        f.write(f"""apiVersion: cilium.io/v1alpha1
kind: TracingPolicy
metadata:
  name: grpc-storm
spec:
  kprobes:
  - call: "sys_openat"
    syscall: true
    args:
    - index: 1
      type: "string"
    selectors:
    - matchArgs:
      - index: 1
        operator: "Equal"
        values: ["{target}"]
""")
    agent = AgentProc(d, "--tracing-policy", pf, "--api-client-queue-size", "200", "--rb-size", "64M").start()
    n = 100_000
    try:
        slow = Client(Endpoint(socket=agent.socket)).events(pb.GetEventsRequest())  # never read
        tag = uuid.uuid4().hex[:10]
        with Sub(agent.socket, allow={"arguments_regex": [f"after-{tag}"], "event_set": [pb.PROCESS_EXIT]}) as fast:
            subprocess.run([OPEN_LOOP, str(n), target], check=True)
            run_exit_code(f"after-{tag}")
            got = fast.wait(tagged(f"after-{tag}"), timeout=60)
            assert got, "the agent stopped serving the other client"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                st = agent.status()
                if st["events"]["by_type"].get("process_kprobe", 0) >= n:
                    break
                time.sleep(0.5)
            streams = st["api"]["streams"]
            assert len(streams) == 2
            slow_st = max(streams, key=lambda x: x["dropped"])
            fast_st = min(streams, key=lambda x: x["dropped"])
            assert slow_st["dropped"] > n // 2, streams
            assert fast_st["dropped"] == 0
            assert st["events"]["lost"]["api_clients"] >= slow_st["dropped"]
            assert st["events"]["lost"]["ringbuf"] == 0 and st["events"]["lost"]["queue"] == 0
            human = subprocess.run(kerneye_cmd("status", "--socket", agent.socket), env=env(), capture_output=True,
                                   text=True, timeout=30)
            assert f"api clients {st['events']['lost']['api_clients']}" in human.stdout or "api clients" in human.stdout
        slow.cancel()
        # the export file got every event: the slow client never blocked the agent
        kp = agent.wait_for(lambda e: "process_kprobe" in e, count=n, timeout=60)
        assert len(kp) == n
    finally:
        agent.stop()


# --- access control --------------------------------------------------------------------------------

_NOBODY = r"""
import json, sys, grpc
sys.path.insert(0, {src!r})
from kerneye.api.grpc_client import Client, Endpoint
from kerneye.api.v1 import sensors_pb2, sensors_pb2_grpc
from kerneye.errors import ApiError
import os
ch = grpc.insecure_channel("unix:" + {sock!r})  # created (not connected) while imports still work
stub = sensors_pb2_grpc.FineGuidanceSensorsStub(ch)
os.setgroups([]); os.setgid(65534); os.setuid(65534)
out = {{}}
try:
    Client(Endpoint(socket={sock!r})).status()
    out["client"] = "ok"
except ApiError as e:
    out["client"] = str(e)
try:
    stub.GetStatus(sensors_pb2.GetStatusRequest(), timeout=5)
    out["raw"] = "ok"
except grpc.RpcError as e:
    out["raw"] = e.code().name + " " + (e.details() or "")
print(json.dumps(out))
"""


def test_api_refused_to_non_root_user(agent: AgentProc) -> None:
    script = _NOBODY.format(src=os.path.join(ROOT, "src"), sock=agent.socket)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "permission denied" in out["client"] and "root" in out["client"], out
    assert out["raw"].startswith("UNAVAILABLE") and "ermission denied" in out["raw"], out
    assert os.stat(agent.socket).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(agent.socket)).st_mode & 0o777 == 0o700
    # and the CLI as nobody: exit 3, "root" in the message
    r = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "/usr/bin/env",
                        f"PYTHONPATH={os.path.join(ROOT, 'src')}", "/usr/bin/python3", "-m", "kerneye", "status",
                        "--socket", agent.socket], capture_output=True, text=True, timeout=60)
    if "No module named" in r.stderr or "can't open" in r.stderr:
        return  # no system python with grpc for nobody: the in-process check above stands
    assert r.returncode == 3 and "root" in r.stderr, (r.returncode, r.stderr)


# --- TCP with TLS ----------------------------------------------------------------------------------------

def _certs(d: str) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def key() -> Any:
        return ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def cert(subject: str, k: Any, issuer: str, ik: Any, ca: bool, eku: Any = None, san: Any = None) -> Any:
        b = (x509.CertificateBuilder().subject_name(name(subject)).issuer_name(name(issuer))
             .public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return b.sign(ik, hashes.SHA256())

    import ipaddress

    out = {}

    def write(n: str, k: Any, c: Any) -> None:
        for suffix, data in (("key", k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption())),
                             ("pem", c.public_bytes(serialization.Encoding.PEM))):
            p = os.path.join(d, f"{n}.{suffix}")
            with open(p, "wb") as f:
                f.write(data)
            out[f"{n}.{suffix}"] = p

    cak = key()
    ca = cert("kerneye test CA", cak, "kerneye test CA", cak, True)
    write("ca", cak, ca)
    sk = key()
    write("server", sk, cert("localhost", sk, "kerneye test CA", cak, False, ExtendedKeyUsageOID.SERVER_AUTH,
                             [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]))
    ck = key()
    write("client", ck, cert("kerneye-cli", ck, "kerneye test CA", cak, False, ExtendedKeyUsageOID.CLIENT_AUTH))
    ok = key()  # a client certificate from another CA
    write("rogue", ok, cert("rogue", ok, "rogue", ok, False, ExtendedKeyUsageOID.CLIENT_AUTH))
    return out


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_tcp_with_mutual_tls(tmp_path: Any) -> None:
    pytest.importorskip("cryptography")
    d = str(tmp_path)
    c = _certs(d)
    addr = f"127.0.0.1:{_free_port()}"
    agent = AgentProc(d, "--server-address", addr, "--server-tls-cert-file", c["server.pem"],
                      "--server-tls-key-file", c["server.key"], "--server-tls-client-ca-files", c["ca.pem"]).start()
    try:
        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(kerneye_cmd("status", "--json", "--server-address", addr, "--timeout", "10s", *args),
                                  env=env(), capture_output=True, text=True, timeout=60)

        good = cli("--tls-ca-file", c["ca.pem"], "--tls-cert-file", c["client.pem"], "--tls-key-file", c["client.key"])
        assert good.returncode == 0, good.stderr
        assert json.loads(good.stdout)["ready"] is True
        # events over TLS too
        with Client(Endpoint(server_address=addr, tls_ca_file=c["ca.pem"], tls_cert_file=c["client.pem"],
                             tls_key_file=c["client.key"])) as cl:
            stream = cl.events(pb.GetEventsRequest(allow_list=[pb.Filter(arguments_regex=["tls-check"])]))
            run_exit_code("tls-check")
            first = next(iter(stream))
            stream.cancel()
            assert "tls-check" in args_of(convert.to_dict(first))
        for args in [("--tls-ca-file", c["ca.pem"]),  # no client certificate
                     ("--tls-ca-file", c["ca.pem"], "--tls-cert-file", c["rogue.pem"], "--tls-key-file",
                      c["rogue.key"]),  # a certificate the agent's CA did not sign
                     ()]:  # no TLS at all
            bad = cli(*args)
            assert bad.returncode == 3, (args, bad.stdout, bad.stderr)
            assert "Traceback" not in bad.stderr and bad.stderr.startswith("kerneye: error:")
        # the Unix socket keeps working alongside
        assert agent.status()["ready"] is True
    finally:
        agent.stop()


def test_plain_tcp_needs_explicit_insecure(tmp_path: Any) -> None:
    d = str(tmp_path)
    addr = f"127.0.0.1:{_free_port()}"
    r = subprocess.run(kerneye_cmd("agent", "-o", "none", "--run-dir", os.path.join(d, "run"),
                                   "--server-address", addr), env=env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--server-insecure" in r.stderr and "Traceback" not in r.stderr
    agent = AgentProc(d, "--server-address", addr, "--server-insecure").start()
    try:
        assert "WITHOUT TLS" in agent.stderr()
        r = subprocess.run(kerneye_cmd("status", "--json", "--server-address", addr), env=env(), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0 and json.loads(r.stdout)["ready"] is True
    finally:
        agent.stop()
