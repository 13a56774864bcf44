"""TracingPolicy selectors filtered in the kernel, against a real agent.

Every argument operator and every filter kind gets a matching and a
non-matching case. The trigger program (tests/progs/ktrig) makes exactly the
syscalls a test names. Each test loads its own small policy through
`kerneye tracingpolicy add` into one module-wide agent and deletes it
afterwards (adding takes ~50 ms).

How a test checks a negative: the non-matching calls come first, then the
matching ones, from the same process (or an earlier one). Once the matching
events have arrived, a wrongly reported non-matching call would already be
in the export too, so there is no need to sleep.
"""
from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import pytest
import yaml

from agentctl import AgentProc, env, kerneye_cmd

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROGS = os.path.join(ROOT, "tests", "progs", ".output")
NOBODY = 65534
SIGWINCH = 28  # ignored by default: harmless to send
SIGURG = 23    # ignored by default too

Ev = dict[str, Any]

KTRIG = os.path.join(PROGS, "ktrig")
pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not os.path.exists(KTRIG), reason="make -C tests/progs builds ktrig")]


# ---------------------------------------------------------------------------
# policy documents


def policy_doc(name: str, *, kprobes: list[dict] | None = None, tracepoints: list[dict] | None = None,
               uprobes: list[dict] | None = None, options: dict[str, str] | None = None) -> dict:
    spec: dict[str, Any] = {}
    if options:
        spec["options"] = [{"name": k, "value": v} for k, v in options.items()]
    if kprobes:
        spec["kprobes"] = kprobes
    if tracepoints:
        spec["tracepoints"] = tracepoints
    if uprobes:
        spec["uprobes"] = uprobes
    return {"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicy", "metadata": {"name": name}, "spec": spec}


def syscall(call: str, args: list[tuple[int, str]], *selectors: dict, **extra: Any) -> dict:
    h: dict[str, Any] = {"call": call, "syscall": True, "args": [{"index": i, "type": t} for i, t in args]}
    h.update(extra)
    if selectors:
        h["selectors"] = list(selectors)
    return h


def margs(index: int, op: str, *values: Any) -> dict:
    d: dict[str, Any] = {"index": index, "operator": op}
    if values:
        d["values"] = [str(v) for v in values]
    return d


def selector(*match_args: dict, **fields: Any) -> dict:
    s: dict[str, Any] = {}
    if match_args:
        s["matchArgs"] = list(match_args)
    s.update(fields)
    return s


def binaries(op: str, *paths: str, follow: bool = False) -> list[dict]:
    b: dict[str, Any] = {"operator": op, "values": list(paths)}
    if follow:
        b["followChildren"] = True
    return [b]


# ---------------------------------------------------------------------------
# fixtures


@dataclass
class Workspace:
    root: str
    bindir: str
    trig: str                      # the trigger every test runs by default
    _copies: dict[str, str] = field(default_factory=dict)

    def binary(self, name: str) -> str:
        """A copy of ktrig under another name (a distinct inode and path)."""
        if name not in self._copies:
            p = os.path.join(self.bindir, name)
            shutil.copy(KTRIG, p)
            os.chmod(p, 0o755)
            self._copies[name] = p
        return self._copies[name]


@pytest.fixture(scope="module")
def ws() -> Iterator[Workspace]:
    root = os.path.realpath(tempfile.mkdtemp(prefix="kerneye-sel-"))
    os.chmod(root, 0o755)
    bindir = os.path.join(root, "bin")
    os.mkdir(bindir, 0o755)
    w = Workspace(root, bindir, "")
    w.trig = w.binary("ktrig")
    try:
        yield w
    finally:
        shutil.rmtree(root, ignore_errors=True)


class PolicyTest:
    """One test's view: its own directory, policy name and events."""

    def __init__(self, agent: AgentProc, ws: Workspace, test_name: str) -> None:
        self.agent = agent
        self.ws = ws
        tag = uuid.uuid4().hex[:8]
        slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower()).strip("-")[:40].strip("-")
        self.name = f"{slug}-{tag}"
        self.tag = tag
        self.d = os.path.join(ws.root, f"t-{tag}")
        os.mkdir(self.d)
        os.chmod(self.d, 0o755)
        self.loaded: list[str] = []

    def path(self, name: str) -> str:
        return os.path.join(self.d, name)

    # --- policies -----------------------------------------------------------
    def add(self, doc: dict, mode: str | None = None) -> subprocess.CompletedProcess[str]:
        f = os.path.join(self.ws.root, f"{doc['metadata']['name']}.yaml")
        with open(f, "w") as fh:
            yaml.safe_dump(doc, fh, sort_keys=False)
        cmd = ["tracingpolicy", "add", f, "--socket", self.agent.socket]
        if mode:
            cmd += ["--mode", mode]
        r = subprocess.run(kerneye_cmd(*cmd), env=env(), capture_output=True, text=True, timeout=60)
        if r.returncode == 0:
            self.loaded.append(doc["metadata"]["name"])
        return r

    def delete(self, name: str) -> None:
        if name in self.loaded:
            self.loaded.remove(name)
            r = subprocess.run(kerneye_cmd("tracingpolicy", "delete", name, "--socket", self.agent.socket),
                               env=env(), capture_output=True, text=True, timeout=60)
            assert r.returncode == 0, r.stderr

    @contextmanager
    def load(self, *, name: str | None = None, mode: str | None = None, **hooks: Any) -> Iterator[str]:
        doc = policy_doc(name or self.name, **hooks)
        r = self.add(doc, mode)
        assert r.returncode == 0, f"tracingpolicy add failed: {r.stderr}\n{yaml.safe_dump(doc)}"
        try:
            yield doc["metadata"]["name"]
        finally:
            self.delete(doc["metadata"]["name"])

    def cleanup(self) -> None:
        for n in list(self.loaded):
            self.delete(n)

    # --- triggers -----------------------------------------------------------
    def run(self, *ops: Any, binary: str | None = None, prefix: tuple[str, ...] = (), rc: int | None = 0,
            **kw: Any) -> subprocess.CompletedProcess[str]:
        cmd = [*prefix, binary or self.ws.trig, *[str(o) for o in ops]]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, **kw)
        if rc is not None:
            assert r.returncode == rc, f"{cmd} exited {r.returncode}: {r.stdout} {r.stderr}"
        return r

    # --- events -------------------------------------------------------------
    def events(self, kind: str = "process_kprobe", policy: str | None = None) -> list[Ev]:
        pol = policy or self.name
        return [e[kind] for e in self.agent.events() if kind in e and e[kind].get("policy_name") == pol]

    def wait(self, pred: Callable[[Ev], bool], count: int = 1, kind: str = "process_kprobe",
             policy: str | None = None, timeout: float = 10) -> list[Ev]:
        pol = policy or self.name
        found = self.agent.wait_for(lambda e: kind in e and e[kind].get("policy_name") == pol and pred(e[kind]),
                                    timeout=timeout, count=count)
        return [e[kind] for e in found]


@pytest.fixture
def T(agent: AgentProc, ws: Workspace, request: pytest.FixtureRequest) -> Iterator[PolicyTest]:
    t = PolicyTest(agent, ws, request.node.name)
    try:
        yield t
    finally:
        t.cleanup()
        shutil.rmtree(t.d, ignore_errors=True)


# ---------------------------------------------------------------------------
# event accessors


def string_arg(e: Ev, i: int = 0) -> str | None:
    return e["args"][i].get("string_arg") if len(e.get("args", [])) > i else None


def file_path(e: Ev, i: int = 0) -> str | None:
    a = e["args"][i] if len(e.get("args", [])) > i else {}
    return (a.get("file_arg") or {}).get("path")


def first_string(e: Ev) -> str | None:
    """The path of a string or fd argument at position 0."""
    return string_arg(e, 0) or file_path(e, 0)


def assert_exactly(T: PolicyTest, expected: list[str], *, within: str | None = None,
                   kind: str = "process_kprobe", get: Callable[[Ev], str | None] = first_string) -> list[Ev]:
    """Wait for the events of `expected` (in order), then check that the
    policy reported nothing else under `within` (default: the test dir)."""
    within = within or T.d
    want = list(expected)
    T.wait(lambda e: get(e) == want[-1], kind=kind)
    got = [e for e in T.events(kind) if (get(e) or "").startswith(within)]
    assert [get(e) for e in got] == want, f"expected exactly {want}, got {[get(e) for e in got]}"
    return got


# ---------------------------------------------------------------------------
# string operators: sys_openat filename (string) and sys_write fd (path)


def _string_cases() -> list[Any]:
    # (operator, values(dir, tag), non-matching names, matching names, needs an
    # identifying filter); names may use {t} (the test's tag) and {t1} (the tag
    # without its last character)
    return [
        pytest.param("Equal", lambda d, t: [f"{d}/eq-a", f"{d}/eq-b"], ["eq-a-x", "eq-", "eq-c"], ["eq-a", "eq-b"],
                     False, id="Equal"),
        pytest.param("NotEqual", lambda d, t: [f"{d}/ne-a", f"{d}/ne-b"], ["ne-a", "ne-b"], ["ne-c", "ne-a-x"],
                     True, id="NotEqual"),
        pytest.param("Prefix", lambda d, t: [f"{d}/pre-", f"{d}/alt-"], ["pr-x", "xpre-1", "pre"],
                     ["pre-1", "pre-", "alt-2"], False, id="Prefix"),
        pytest.param("NotPrefix", lambda d, t: [f"{d}/bad-", f"{d}/worse-"], ["bad-1", "worse-2"], ["good-1", "bad"],
                     True, id="NotPrefix"),
        pytest.param("Postfix", lambda d, t: [f".k{t}", f".j{t}"], ["a.k{t}.x", "a.k{t}x", "a.k{t1}"],
                     ["a.k{t}", "b.j{t}"], False, id="Postfix"),
        pytest.param("NotPostfix", lambda d, t: [".bad", ".worse"], ["x.bad", "y.worse"], ["x.good", "x.bad.ok"],
                     True, id="NotPostfix"),
    ]


def _names(names: list[str], tag: str) -> list[str]:
    return [n.format(t=tag, t1=tag[:-1]) for n in names]


@pytest.mark.parametrize("op,values,nonmatch,match,needs_id", _string_cases())
def test_string_operator_on_openat_filename(T: PolicyTest, op: str, values: Callable[[str, str], list[str]],
                                            nonmatch: list[str], match: list[str], needs_id: bool) -> None:
    nonmatch, match = _names(nonmatch, T.tag), _names(match, T.tag)
    sel = selector(margs(1, op, *values(T.d, T.tag)))
    if needs_id:  # negations match nearly every open on the machine
        sel["matchBinaries"] = binaries("In", T.ws.trig)
    with T.load(kprobes=[syscall("sys_openat", [(1, "string"), (2, "int")], sel)]):
        ops = []
        for n in nonmatch + match:
            ops += ["open", T.path(n)]
        T.run(*ops)
        got = assert_exactly(T, [T.path(n) for n in match])
    for e in got:
        assert e["function_name"] == "__x64_sys_openat"
        assert e["args"][1] == {"int_arg": os.O_RDONLY}
        assert e["action"] == "KPROBE_ACTION_POST"
        assert e["process"]["binary"] == T.ws.trig


@pytest.mark.parametrize("op,values,nonmatch,match,needs_id", _string_cases())
def test_string_operator_on_fd_path(T: PolicyTest, op: str, values: Callable[[str, str], list[str]],
                                    nonmatch: list[str], match: list[str], needs_id: bool) -> None:
    nonmatch, match = _names(nonmatch, T.tag), _names(match, T.tag)
    sel = selector(margs(0, op, *values(T.d, T.tag)))
    if needs_id:
        sel["matchBinaries"] = binaries("In", T.ws.trig)
    with T.load(kprobes=[syscall("sys_write", [(0, "fd"), (2, "size_t")], sel)]):
        ops = []
        for n in nonmatch + match:
            ops += ["write", T.path(n), "hello"]
        T.run(*ops)
        got = assert_exactly(T, [T.path(n) for n in match])
    for e in got:
        assert e["function_name"] == "__x64_sys_write"
        assert e["args"][1] == {"size_arg": "5"}  # uint64: a JSON string, as protobuf JSON


def test_fd_path_of_relative_open_is_absolute(T: PolicyTest) -> None:
    with T.load(kprobes=[syscall("sys_write", [(0, "fd")], selector(margs(0, "Prefix", T.d + "/")))]):
        os.mkdir(T.path("sub"))
        T.run("chdir", T.path("sub"), "write", "rel-file", "x", "write", "../up-file", "y")
        assert_exactly(T, [T.path("sub/rel-file"), T.path("up-file")])


def test_fd_path_through_bind_mount(T: PolicyTest) -> None:
    src, mnt = T.path("src"), T.path("mnt")
    os.mkdir(src)
    os.mkdir(mnt)
    r = subprocess.run(["mount", "--bind", src, mnt], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot bind-mount here: {r.stderr.strip()}")
    try:
        with T.load(kprobes=[syscall("sys_write", [(0, "fd")], selector(margs(0, "Prefix", T.d + "/")))]):
            T.run("write", os.path.join(mnt, "via-mount"), "x", "write", os.path.join(src, "direct"), "y")
            assert_exactly(T, [os.path.join(mnt, "via-mount"), os.path.join(src, "direct")])
    finally:
        subprocess.run(["umount", mnt], check=False)


# ---------------------------------------------------------------------------
# integer operators: sys_lseek(int fd, int64 offset, uint32 whence)

LSEEK_ARGS = [(0, "int"), (1, "int64"), (2, "uint32")]
LSEEK_DEFAULT = [4242, 0, 0]  # an fd that is not open: EBADF, nothing moves


def _lseek_ops(index: int, values: list[int]) -> tuple[list[str], list[tuple[int, int, int]]]:
    ops: list[str] = []
    calls = []
    for v in values:
        a = list(LSEEK_DEFAULT)
        a[index] = v
        ops += ["lseek", *[str(x) for x in a]]
        calls.append((a[0], a[1], a[2] & 0xFFFFFFFF))
    return ops, calls


def _lseek_tuple(e: Ev) -> tuple[int, int, int]:
    a = e["args"]
    return a[0]["int_arg"], int(a[1]["long_arg"]), a[2]["uint_arg"]


def _int_operator_test(T: PolicyTest, op: str, index: int, values: list[str], nonmatch: list[int],
                       match: list[int]) -> None:
    sel = selector(margs(index, op, *values), matchBinaries=binaries("In", T.ws.trig))
    with T.load(kprobes=[syscall("sys_lseek", LSEEK_ARGS, sel)]):
        ops1, _ = _lseek_ops(index, nonmatch)
        ops2, want = _lseek_ops(index, match)
        T.run(*ops1, *ops2)
        T.wait(lambda e: _lseek_tuple(e) == want[-1])
        got = [_lseek_tuple(e) for e in T.events()]
    assert got == want


@pytest.mark.parametrize("op,index,values,nonmatch,match", [
    pytest.param("Equal", 0, ["-7", "12345"], [12346, 7, -8], [-7, 12345], id="Equal-int"),
    pytest.param("Equal", 1, ["0x10000000000"], [0, 1 << 32], [1 << 40], id="Equal-int64"),
    pytest.param("NotEqual", 0, ["100", "200"], [100, 200], [300, -100], id="NotEqual"),
    pytest.param("GreaterThan", 1, ["1000"], [1000, -5000, 0], [1001, 1 << 40], id="GreaterThan"),
    pytest.param("GreaterThan", 2, ["0x7fffffff"], [5, 0x7FFFFFFF], [0x80000000, 0xFFFFFFFF], id="GreaterThan-uint32"),
    pytest.param("LessThan", 1, ["0"], [0, 5, 1 << 40], [-1, -(1 << 40)], id="LessThan"),
    pytest.param("Mask", 2, ["0x10", "0x200"], [0x1, 0x20, 0x100], [0x10, 0x13, 0x200], id="Mask"),
    pytest.param("InRange", 1, ["100:200", "-5:-5"], [99, 201, -4, -6], [100, 150, 200, -5], id="InRange"),
    pytest.param("NotInRange", 1, ["100:200"], [100, 150, 200], [99, 201, -150], id="NotInRange"),
    pytest.param("InMap", 1, ["7", "1000:1002", "-3"], [6, 8, 999, 1003, 3], [7, 1000, 1001, 1002, -3], id="InMap"),
    pytest.param("InMap", 0, ["-3", "40000"], [3, 39999], [-3, 40000], id="InMap-int"),
    pytest.param("NotInMap", 1, ["7", "1000:1002"], [7, 1000, 1002], [8, 999, 1003], id="NotInMap"),
])
def test_int_operator(T: PolicyTest, op: str, index: int, values: list[str], nonmatch: list[int],
                      match: list[int]) -> None:
    _int_operator_test(T, op, index, values, nonmatch, match)


@pytest.mark.parametrize("alias,index,values,nonmatch,match", [
    pytest.param("eq", 1, ["42"], [43, -42], [42], id="eq"),
    pytest.param("neq", 1, ["42"], [42], [43], id="neq"),
    pytest.param("gt", 1, ["42"], [42, 41], [43], id="gt"),
    pytest.param("GT", 1, ["42"], [42], [43], id="GT"),
    pytest.param("lt", 1, ["42"], [42, 43], [41, -1], id="lt"),
    pytest.param("LT", 1, ["42"], [42], [41], id="LT"),
    pytest.param("mask", 2, ["4"], [8, 3], [4, 7], id="mask"),
])
def test_operator_alias(T: PolicyTest, alias: str, index: int, values: list[str], nonmatch: list[int],
                        match: list[int]) -> None:
    _int_operator_test(T, alias, index, values, nonmatch, match)


def test_mask_on_openat_flags(T: PolicyTest) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"), margs(2, "Mask", str(os.O_CREAT)))
    with T.load(kprobes=[syscall("sys_openat", [(1, "string"), (2, "int")], sel)]):
        T.run("open", T.path("ro"), os.O_RDONLY, "open", T.path("wo"), os.O_WRONLY,
              "open", T.path("creat"), os.O_WRONLY | os.O_CREAT)
        got = assert_exactly(T, [T.path("creat")])
    assert got[0]["args"][1] == {"int_arg": os.O_WRONLY | os.O_CREAT}


# ---------------------------------------------------------------------------
# network: sockaddr (sys_connect index 1) and sock (sys_sendto index 0)


def _ip(a: str) -> Any:
    """An address for comparison: an IPv4-mapped IPv6 address as its IPv4."""
    ip = ipaddress.ip_address(a)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        return ip.ipv4_mapped
    return ip


def _family(host: str) -> str:
    return "AF_INET6" if ":" in host else "AF_INET"


def _sockaddr_tuple(e: Ev) -> tuple[str, Any, int]:
    sa = e["args"][0]["sockaddr_arg"]
    return sa["family"], _ip(sa["addr"]), sa["port"]


@pytest.mark.parametrize("op,values,nonmatch,match", [
    pytest.param("SAddr", ["127.0.0.0/16"], [("127.1.0.1", 47001)], [("127.0.5.5", 47001)], id="SAddr-v4-cidr"),
    pytest.param("SAddr", ["::1"], [("::2", 47002), ("127.0.0.1", 47002)], [("::1", 47002)], id="SAddr-v6"),
    pytest.param("SAddr", ["fd00::/8"], [("2001:db8::1", 47003)], [("fd12:3456::1", 47003)], id="SAddr-v6-cidr"),
    pytest.param("SAddr", ["127.0.0.1"], [("::ffff:127.0.0.2", 47004), ("::1", 47004)],
                 [("::ffff:127.0.0.1", 47004), ("127.0.0.1", 47004)], id="SAddr-v4-rule-v4mapped-dest"),
    pytest.param("NotSAddr", ["127.0.0.0/8", "::1"], [("127.0.0.9", 47005), ("::1", 47005)],
                 [("192.0.2.1", 47005), ("::2", 47005)], id="NotSAddr"),
    pytest.param("SPort", ["47100:47110", "47200"], [("127.0.0.1", 47099), ("127.0.0.1", 47111)],
                 [("127.0.0.1", 47100), ("::1", 47110), ("127.0.0.1", 47200)], id="SPort"),
    pytest.param("NotSPort", ["47120"], [("127.0.0.1", 47120), ("::1", 47120)], [("127.0.0.1", 47121)], id="NotSPort"),
    pytest.param("SPortPriv", [], [("127.0.0.1", 1024), ("127.0.0.1", 47130)], [("127.0.0.1", 1023), ("::1", 7)],
                 id="SPortPriv"),
    pytest.param("NotSPortPriv", [], [("127.0.0.1", 1023)], [("127.0.0.1", 1024)], id="NotSPortPriv"),
    pytest.param("Family", ["AF_INET6"], [("127.0.0.1", 47140)], [("::1", 47140)], id="Family"),
    pytest.param("Family", ["2"], [("::1", 47141)], [("127.0.0.1", 47141)], id="Family-number"),
])
def test_sockaddr_operator_on_connect(T: PolicyTest, op: str, values: list[str], nonmatch: list[tuple[str, int]],
                                      match: list[tuple[str, int]]) -> None:
    sel = selector(margs(1, op, *values), matchBinaries=binaries("In", T.ws.trig))
    with T.load(kprobes=[syscall("sys_connect", [(1, "sockaddr")], sel)]):
        ops: list[Any] = []
        for host, port in nonmatch + match:
            ops += ["connect", "udp", host, port]  # a UDP connect sends nothing
        T.run(*ops)
        want = [(_family(h), _ip(h), p) for h, p in match]
        T.wait(lambda e: _sockaddr_tuple(e) == want[-1])
        got = [_sockaddr_tuple(e) for e in T.events()]
    assert got == want


def test_sockaddr_rendering(T: PolicyTest) -> None:
    sel = selector(margs(1, "SPort", "47150"), matchBinaries=binaries("In", T.ws.trig))
    with T.load(kprobes=[syscall("sys_connect", [(0, "int"), (1, "sockaddr")], sel)]):
        T.run("connect", "udp", "127.0.0.3", 47150, "connect", "udp", "fd00::1:2", 47150,
              "connect", "tcp", "::ffff:127.0.0.1", 47150)
        evs = T.wait(lambda e: True, count=3)
    assert [e["args"][1]["sockaddr_arg"] for e in evs[:2]] == [
        {"family": "AF_INET", "addr": "127.0.0.3", "port": 47150},
        {"family": "AF_INET6", "addr": "fd00::1:2", "port": 47150},
    ]
    mapped = evs[2]["args"][1]["sockaddr_arg"]
    assert mapped["family"] == "AF_INET6" and mapped["port"] == 47150
    # Tetragon renders a v4-mapped address the Go way ("127.0.0.1"); the
    # full IPv6 spelling is as good
    assert mapped["addr"] in ("127.0.0.1", "::ffff:127.0.0.1")
    assert len(evs) == 3 and all(e["args"][0]["int_arg"] >= 3 for e in evs)  # the socket fd


@dataclass
class Send:
    """One send from ktrig: its ops and the sock_arg it must render as."""
    ops: list[Any]
    want: dict[str, Any]


def udp(dst: str, dport: int, src: str | None = None, sport: int = 0) -> Send:
    ops = ["udp", src or "-", sport, dst, dport, "payload"]
    w: dict[str, Any] = {"family": _family(dst), "type": "SOCK_DGRAM", "protocol": "IPPROTO_UDP",
                         "daddr": _ip(dst), "dport": dport, "state": "TCP_ESTABLISHED"}
    if src:
        w["saddr"] = _ip(src)
    if sport:
        w["sport"] = sport
    return Send(ops, w)


def udp_unconnected(dst: str, dport: int) -> Send:
    return Send(["sendto", dst, dport, "payload"], {"family": _family(dst), "type": "SOCK_DGRAM", "dport": 0,
                                                      "state": "TCP_CLOSE"})


def tcp(host: str) -> Send:
    return Send(["tcp", host, "payload"], {"family": _family(host), "type": "SOCK_STREAM", "protocol": "IPPROTO_TCP",
                                           "saddr": _ip(host), "daddr": _ip(host), "state": "TCP_ESTABLISHED"})


def _sock_view(e: Ev) -> dict[str, Any]:
    s = dict(e["args"][0]["sock_arg"])
    for k in ("saddr", "daddr"):
        if k in s:
            s[k] = _ip(s[k])
    return s


def _sock_matches(s: dict[str, Any], want: dict[str, Any]) -> bool:
    return all(s.get(k) == v for k, v in want.items())


@pytest.mark.parametrize("op,values,nonmatch,match", [
    pytest.param("DPort", ["47200"], [udp("127.0.0.1", 47201)], [udp("127.0.0.1", 47200), udp("::1", 47200)],
                 id="DPort"),
    pytest.param("NotDPort", ["47210:47212"], [udp("127.0.0.1", 47210), udp("127.0.0.1", 47212)],
                 [udp("127.0.0.1", 47213)], id="NotDPort"),
    pytest.param("DPortPriv", [], [udp("127.0.0.1", 1024)], [udp("127.0.0.1", 1023), udp("::1", 9)], id="DPortPriv"),
    pytest.param("NotDPortPriv", [], [udp("127.0.0.1", 1023)], [udp("127.0.0.1", 1024)], id="NotDPortPriv"),
    pytest.param("SPort", ["47220"], [udp("127.0.0.1", 47299, "127.0.0.1", 47221)],
                 [udp("127.0.0.1", 47299, "127.0.0.1", 47220)], id="SPort"),
    pytest.param("NotSPort", ["47230"], [udp("127.0.0.1", 47299, "127.0.0.1", 47230)],
                 [udp("127.0.0.1", 47299, "127.0.0.1", 47231)], id="NotSPort"),
    pytest.param("SPortPriv", [], [udp("127.0.0.1", 47299, "127.0.0.1", 47240)],
                 [udp("127.0.0.1", 47299, "127.0.0.1", 1000)], id="SPortPriv"),
    pytest.param("SAddr", ["127.0.0.5"], [udp("127.0.0.1", 47250, "127.0.0.6")],
                 [udp("127.0.0.1", 47250, "127.0.0.5")], id="SAddr"),
    pytest.param("NotSAddr", ["127.0.0.5"], [udp("127.0.0.1", 47251, "127.0.0.5")],
                 [udp("127.0.0.1", 47251, "127.0.0.6")], id="NotSAddr"),
    pytest.param("DAddr", ["127.0.0.7", "::1"], [udp("127.0.0.8", 47260)],
                 [udp("127.0.0.7", 47260), udp("::1", 47260), udp("::ffff:127.0.0.7", 47260)], id="DAddr"),
    pytest.param("NotDAddr", ["127.0.0.0/8"], [udp("127.0.0.9", 47261), udp("::ffff:127.0.0.9", 47261)],
                 [udp("::1", 47261)], id="NotDAddr"),
    pytest.param("Family", ["AF_INET6"], [udp("127.0.0.1", 47270)], [udp("::1", 47270)], id="Family"),
    pytest.param("Protocol", ["IPPROTO_TCP"], [udp("127.0.0.1", 47271)], [tcp("127.0.0.1"), tcp("::1")],
                 id="Protocol"),
    pytest.param("State", ["TCP_ESTABLISHED"], [udp_unconnected("127.0.0.1", 47272)], [udp("127.0.0.1", 47272)],
                 id="State"),
])
def test_sock_operator_on_sendto(T: PolicyTest, op: str, values: list[str], nonmatch: list[Send],
                                 match: list[Send]) -> None:
    # at connect entry the socket is not connected yet: the tuple is checked
    # on send on the connected socket
    sel = selector(margs(0, op, *values), matchBinaries=binaries("In", T.ws.trig))
    with T.load(kprobes=[syscall("sys_sendto", [(0, "sock"), (2, "size_t")], sel)]):
        ops: list[Any] = []
        for s in nonmatch + match:
            ops += s.ops
        out = T.run(*ops).stdout
        evs = T.wait(lambda e: _sock_matches(_sock_view(e), match[-1].want))
        assert evs, f"no event like {match[-1].want}"
        got = [_sock_view(e) for e in T.events()]
    assert len(got) == len(match), got
    for s, g in zip(match, got):
        assert _sock_matches(g, s.want), (g, s.want)
        assert g["sport"] > 0
    # TCP sends (all of them matching ones here): the peer is the listener
    # ktrig made, whose port it printed
    tcp_ports = [int(p) for p in re.findall(r"tcp port (\d+)", out)]
    assert [g["dport"] for g in got if g["protocol"] == "IPPROTO_TCP"] == tcp_ports


def test_sock_arg_at_connect_entry_is_not_connected_yet(T: PolicyTest) -> None:
    # sock index 0 at sys_connect entry: family/protocol are known, the peer not
    sel = selector(margs(0, "Protocol", "IPPROTO_UDP"), margs(1, "SPort", "47280"),
                   matchBinaries=binaries("In", T.ws.trig))
    with T.load(kprobes=[syscall("sys_connect", [(0, "sock"), (1, "sockaddr")], sel)]):
        T.run("connect", "tcp", "127.0.0.1", 47280, "connect", "udp", "127.0.0.1", 47280)
        evs = T.wait(lambda e: True)
        assert len(T.events()) == 1
    s = evs[0]["args"][0]["sock_arg"]
    assert s["family"] == "AF_INET" and s["protocol"] == "IPPROTO_UDP" and s["type"] == "SOCK_DGRAM"
    assert s["dport"] == 0 and s["state"] == "TCP_CLOSE"
    assert evs[0]["args"][1]["sockaddr_arg"] == {"family": "AF_INET", "addr": "127.0.0.1", "port": 47280}


# ---------------------------------------------------------------------------
# matchReturnArgs


@pytest.mark.parametrize("op,values,want_existing", [
    pytest.param("LessThan", ["0"], False, id="LessThan"),
    pytest.param("GreaterThan", ["-1"], True, id="GreaterThan"),
    pytest.param("Equal", ["-2"], False, id="Equal-ENOENT"),
])
def test_match_return_args(T: PolicyTest, op: str, values: list[str], want_existing: bool) -> None:
    existing, missing = T.path("exists"), T.path("missing")
    open(existing, "w").close()
    hook = syscall("sys_openat", [(1, "string")],
                   selector(margs(1, "Prefix", T.d + "/"), matchReturnArgs=[margs(0, op, *values)]),
                   **{"return": True, "returnArg": {"index": 0, "type": "int"}})
    with T.load(kprobes=[hook]):
        first, second = (missing, existing) if want_existing else (existing, missing)
        T.run("open", first, "open", second)
        got = assert_exactly(T, [second])
    ret = got[0]["return"]["int_arg"]
    if want_existing:
        assert ret >= 0
    else:
        assert ret == -2  # ENOENT


# ---------------------------------------------------------------------------
# matchPIDs


def _open_self(path: str) -> None:
    try:
        os.close(os.open(path, os.O_RDONLY))
    except FileNotFoundError:
        pass


def test_match_pids_in(T: PolicyTest) -> None:
    me = os.getpid()
    sel = selector(margs(1, "Prefix", T.d + "/"), matchPIDs=[{"operator": "In", "values": [me]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path("child"))   # a child of the listed pid: not followed
        _open_self(T.path("self"))
        got = assert_exactly(T, [T.path("self")])
    assert got[0]["process"]["pid"] == me


def test_match_pids_not_in(T: PolicyTest) -> None:
    me = os.getpid()
    sel = selector(margs(1, "Prefix", T.d + "/"), matchPIDs=[{"operator": "NotIn", "values": [me, 1]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        _open_self(T.path("self"))
        T.run("open", T.path("child"))
        got = assert_exactly(T, [T.path("child")])
    assert got[0]["process"]["pid"] != me


@pytest.mark.parametrize("follow", [True, False], ids=["followForks", "no-followForks"])
def test_match_pids_follow_forks(T: PolicyTest, follow: bool) -> None:
    # the listed process is a ktrig that waits for the policy; then it opens,
    # its forked child opens, and it opens once more after the child exited
    p = subprocess.Popen([T.ws.trig, "pid", "wait", "open", T.path("listed"), "spawn", "2", "open",
                          T.path("forked-child"), "open", T.path("listed-after")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout is not None and p.stdin is not None
        pid = int(p.stdout.readline().split()[1])
        sel = selector(margs(1, "Prefix", T.d + "/"),
                       matchPIDs=[{"operator": "In", "values": [pid], "followForks": follow}])
        with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
            T.run("open", T.path("sibling"))  # a child of the test, not of the listed pid
            p.stdin.write("\n")
            p.stdin.flush()
            assert p.wait(timeout=10) == 0
            want = [T.path("listed")] + ([T.path("forked-child")] if follow else []) + [T.path("listed-after")]
            got = assert_exactly(T, want)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert [e["process"]["pid"] == pid for e in got] == ([True, False, True] if follow else [True, True])


def test_match_pids_namespace_pid(T: PolicyTest) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"),
                   matchPIDs=[{"operator": "In", "values": [1], "isNamespacePID": True}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path("host"))
        T.run("open", T.path("nspid1"), prefix=("unshare", "--pid", "--fork"))
        got = assert_exactly(T, [T.path("nspid1")])
    assert got[0]["process"]["pid"] != 1  # the host pid is shown


# ---------------------------------------------------------------------------
# matchBinaries


@pytest.mark.parametrize("op,values,matching,other", [
    pytest.param("In", lambda w: [f"{w.bindir}/bin-in", f"{w.bindir}/bin-in2"], ["bin-in", "bin-in2"], "bin-in-x",
                 id="In"),
    pytest.param("NotIn", lambda w: [f"{w.bindir}/bin-notin"], ["bin-notin-x"], "bin-notin", id="NotIn"),
    pytest.param("Prefix", lambda w: [f"{w.bindir}/pfx-"], ["pfx-one", "pfx-two"], "xpfx-one", id="Prefix"),
    pytest.param("NotPrefix", lambda w: [f"{w.bindir}/npfx-"], ["other-npfx"], "npfx-one", id="NotPrefix"),
    pytest.param("Postfix", lambda w: ["-sfx"], ["tool-sfx"], "tool-sfx2", id="Postfix"),
    pytest.param("NotPostfix", lambda w: ["-nsfx"], ["tool-nsfx2"], "tool-nsfx", id="NotPostfix"),
])
def test_match_binaries(T: PolicyTest, op: str, values: Callable[[Workspace], list[str]], matching: list[str],
                        other: str) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"), matchBinaries=binaries(op, *values(T.ws)))
    bins = {n: T.ws.binary(n) for n in [*matching, other]}
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path(f"by-{other}"), binary=bins[other])
        for n in matching:
            T.run("open", T.path(f"by-{n}"), binary=bins[n])
        got = assert_exactly(T, [T.path(f"by-{n}") for n in matching])
    assert [e["process"]["binary"] for e in got] == [bins[n] for n in matching]


def _waiting(binary: str, *ops: Any) -> subprocess.Popen[str]:
    """A ktrig that has exec'd and waits for a newline before running ops."""
    p = subprocess.Popen([binary, "pid", "wait", *[str(o) for o in ops]], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    assert p.stdout.readline().startswith("pid ")
    return p


def _release(p: subprocess.Popen[str]) -> None:
    assert p.stdin is not None
    p.stdin.write("\n")
    p.stdin.flush()
    assert p.wait(timeout=10) == 0


def test_match_binaries_process_started_before_policy(T: PolicyTest) -> None:
    # the process exec'd before the policy existed: the policy manager sets
    # its matchBinaries bit when the policy is added
    exe = T.ws.binary("early-bird")
    p = _waiting(exe, "open", T.path("early"))
    try:
        sel = selector(margs(1, "Prefix", T.d + "/"), matchBinaries=binaries("In", exe))
        with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
            T.run("open", T.path("by-ktrig"))
            _release(p)
            got = assert_exactly(T, [T.path("early")])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert got[0]["process"]["binary"] == exe


def test_match_binaries_slot_reuse_leaves_no_stale_match(T: PolicyTest) -> None:
    exe, other = T.ws.binary("stale-bit"), T.ws.binary("someone-else")
    p = _waiting(exe, "open", T.path("stale"))
    try:
        first = selector(margs(1, "Prefix", T.path("never")), matchBinaries=binaries("In", exe))
        with T.load(name=f"{T.name}-first", kprobes=[syscall("sys_openat", [(1, "string")], first)]):
            pass  # the waiting process got this policy's bit
        sel = selector(margs(1, "Prefix", T.d + "/"), matchBinaries=binaries("In", other))
        with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
            _release(p)  # stale-bit is not someone-else
            T.run("open", T.path("sentinel"), binary=other)
            assert_exactly(T, [T.path("sentinel")])
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


@pytest.mark.parametrize("follow", [True, False], ids=["followChildren", "no-followChildren"])
def test_match_binaries_follow_children(T: PolicyTest, follow: bool) -> None:
    parent = T.ws.binary("fc-parent")
    sel = selector(margs(1, "Prefix", T.d + "/"), matchBinaries=binaries("In", parent, follow=follow))
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path("not-a-child"))  # ktrig itself, run by the test
        # parent opens, forks (same image: matches either way), and the fork
        # execs ktrig, which matches only with followChildren; that child
        # execs once more (a grandchild by exec)
        T.run("open", T.path("parent"), "fork", "open", T.path("fork"), "exec", T.ws.trig,
              "open", T.path("exec-child"), "fork", "open", T.path("grandchild"), binary=parent)
        want = [T.path("parent"), T.path("fork")]
        if follow:
            want += [T.path("exec-child"), T.path("grandchild")]
        # the sentinel is the parent itself, after everything else
        T.run("open", T.path("sentinel"), binary=parent)
        want.append(T.path("sentinel"))
        got = assert_exactly(T, want)
    binaries_seen = [e["process"]["binary"] for e in got]
    assert binaries_seen[:2] == [parent, parent]
    if follow:
        assert binaries_seen[2:4] == [T.ws.trig, T.ws.trig]


# ---------------------------------------------------------------------------
# matchNamespaces and matchNamespaceChanges


@pytest.mark.parametrize("ns,unshare", [
    pytest.param("Pid", ("--pid", "--fork"), id="Pid"),
    pytest.param("Mnt", ("--mount",), id="Mnt"),
    pytest.param("Net", ("--net",), id="Net"),
])
@pytest.mark.parametrize("operator", ["In", "NotIn"])
def test_match_namespaces_host_ns(T: PolicyTest, ns: str, unshare: tuple[str, ...], operator: str) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"),
                   matchNamespaces=[{"namespace": ns, "operator": operator, "values": ["host_ns"]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        host = lambda: T.run("open", T.path("host"))  # noqa: E731
        inner = lambda: T.run("open", T.path("new-ns"), prefix=("unshare", *unshare))  # noqa: E731
        if operator == "In":
            inner()
            host()
            want = [T.path("host")]
        else:
            host()
            inner()
            want = [T.path("new-ns")]
        got = assert_exactly(T, want)
    key = {"Pid": "pid", "Mnt": "mnt", "Net": "net"}[ns]
    # policy events carry the lean process record; namespaces are in its
    # process_exec event, joined by exec_id
    eid = got[0]["process"]["exec_id"]
    execs = T.agent.wait_for(lambda e: "process_exec" in e and e["process_exec"]["process"]["exec_id"] == eid)
    assert execs, "no process_exec for the policy event's exec_id"
    assert execs[0]["process_exec"]["process"]["ns"][key]["is_host"] is (operator == "In")


def test_match_namespaces_inode_value(T: PolicyTest) -> None:
    # an explicit inode number (here: the test's own net namespace)
    inum = os.stat("/proc/self/ns/net").st_ino
    sel = selector(margs(1, "Prefix", T.d + "/"),
                   matchNamespaces=[{"namespace": "Net", "operator": "In", "values": [str(inum)]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path("new-net"), prefix=("unshare", "--net"))
        T.run("open", T.path("host"))
        assert_exactly(T, [T.path("host")])


@pytest.mark.parametrize("which", ["Mnt", "Net"])
def test_match_namespace_changes(T: PolicyTest, which: str) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"), matchNamespaceChanges=[{"operator": "In", "values": [which]}])
    flag = {"Mnt": "mnt", "Net": "net"}[which]
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        # the other namespace changing is not this filter's business
        other = "net" if flag == "mnt" else "mnt"
        T.run("open", T.path("unchanged"), "unshare", other, "open", T.path("other-changed"))
        T.run("open", T.path("before"), "unshare", flag, "open", T.path("after"))
        got = assert_exactly(T, [T.path("after")])
    assert got[0]["process"]["binary"] == T.ws.trig


def test_match_namespace_changes_not_in(T: PolicyTest) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"), matchNamespaceChanges=[{"operator": "NotIn", "values": ["Mnt"]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("unshare", "mnt", "open", T.path("changed"))
        T.run("open", T.path("unchanged"))
        assert_exactly(T, [T.path("unchanged")])


# ---------------------------------------------------------------------------
# matchCapabilities and matchCapabilityChanges


def _as_nobody() -> dict[str, Any]:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []}


@pytest.mark.parametrize("operator", ["In", "NotIn"])
def test_match_capabilities(T: PolicyTest, operator: str) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"),
                   matchCapabilities=[{"type": "Effective", "operator": operator, "values": ["CAP_SYS_ADMIN"]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        if operator == "In":
            T.run("open", T.path("nobody"), **_as_nobody())
            T.run("open", T.path("root"))
            want = T.path("root")
        else:
            T.run("open", T.path("root"))
            T.run("open", T.path("nobody"), **_as_nobody())
            want = T.path("nobody")
        got = assert_exactly(T, [want])
    assert got[0]["process"]["uid"] == (0 if operator == "In" else NOBODY)


def test_match_capabilities_permitted_set(T: PolicyTest) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"),
                   matchCapabilities=[{"type": "Permitted", "operator": "In", "values": ["CAP_NET_RAW", "CAP_KILL"]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path("dropped"), prefix=("setpriv", "--bounding-set=-net_raw,-kill", "--"))
        T.run("open", T.path("root"))
        assert_exactly(T, [T.path("root")])


def test_match_capability_changes(T: PolicyTest) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"),
                   matchCapabilityChanges=[{"type": "Effective", "operator": "In", "values": ["CAP_SYS_ADMIN"]}])
    with T.load(kprobes=[syscall("sys_openat", [(1, "string")], sel)]):
        T.run("open", T.path("unchanged"))
        # setuid(nobody) as root drops every capability after exec
        T.run("open", T.path("before"), "setuid", NOBODY, "open", T.path("after-setuid"))
        assert_exactly(T, [T.path("after-setuid")])


# ---------------------------------------------------------------------------
# selectors are ORed, the first match wins


def test_selectors_first_match_wins(T: PolicyTest) -> None:
    hook = syscall("sys_openat", [(1, "string")],
                   selector(margs(1, "Postfix", f".post-{T.tag}"), matchActions=[{"action": "Post"}]),
                   selector(margs(1, "Prefix", T.d + "/"),
                            matchActions=[{"action": "Signal", "argSig": SIGWINCH}]))
    with T.load(kprobes=[hook]):
        out = T.run("handler", SIGWINCH, "open", f"/nonexistent-{T.tag}", "open", T.path(f"both.post-{T.tag}"),
                    "open", T.path("second-only"), "open", f"/elsewhere/x.post-{T.tag}").stdout
        got = assert_exactly(T, [T.path(f"both.post-{T.tag}"), T.path("second-only"),
                                 f"/elsewhere/x.post-{T.tag}"], within="/")
    assert [e["action"] for e in got] == ["KPROBE_ACTION_POST", "KPROBE_ACTION_SIGNAL", "KPROBE_ACTION_POST"]
    # only the second selector's action ran, and only for its own match
    lines = out.splitlines()
    assert lines.count(f"caught {SIGWINCH}") == 1, out
    # the signal arrives as the open returns, before ktrig prints its result
    assert lines.index(f"caught {SIGWINCH}") == lines.index(f"open {T.path('second-only')} = -2") - 1, out


def test_filters_in_one_selector_are_anded(T: PolicyTest) -> None:
    sel = selector(margs(1, "Prefix", T.d + "/"), margs(1, "Postfix", ".yes"), margs(2, "Mask", str(os.O_CREAT)))
    with T.load(kprobes=[syscall("sys_openat", [(1, "string"), (2, "int")], sel)]):
        T.run("open", T.path("a.yes"), os.O_RDONLY, "open", T.path("b.no"), os.O_CREAT | os.O_WRONLY,
              "open", f"/tmp/kerneye-elsewhere-{T.tag}.yes", os.O_CREAT | os.O_WRONLY,
              "open", T.path("c.yes"), os.O_CREAT | os.O_WRONLY)
        assert_exactly(T, [T.path("c.yes")], within="/")
    try:
        os.unlink(f"/tmp/kerneye-elsewhere-{T.tag}.yes")
    except FileNotFoundError:
        pass


# ---------------------------------------------------------------------------
# other hook kinds: tracepoints and uprobes


def test_tracepoint_syscall_enter_openat(T: PolicyTest) -> None:
    fmt = open("/sys/kernel/tracing/events/syscalls/sys_enter_openat/format").read()
    names = re.findall(r"field:[^;]*?(\w+);", fmt)
    assert names[5:7] == ["dfd", "filename"], names  # the 4 common fields come first
    tp = {"subsystem": "syscalls", "event": "sys_enter_openat",
          "args": [{"index": 5, "type": "int"}, {"index": 6, "type": "string"}],
          "selectors": [selector(margs(6, "Prefix", T.d + "/tp-"))]}
    with T.load(tracepoints=[tp]):
        T.run("open", T.path("other"), "open", T.path("tp-hit"))
        got = assert_exactly(T, [T.path("tp-hit")], kind="process_tracepoint",
                             get=lambda e: string_arg(e, 1))
    e = got[0]
    assert e["subsys"] == "syscalls" and e["event"] == "sys_enter_openat"
    assert e["args"][0] == {"int_arg": -100}  # AT_FDCWD
    assert e["process"]["binary"] == T.ws.trig


def test_tracepoint_signal_generate(T: PolicyTest) -> None:
    comm = "ktrig-tpsig"
    exe = T.ws.binary(comm)
    tp = {"subsystem": "signal", "event": "signal_generate",
          "args": [{"index": 4, "type": "int"}, {"index": 7, "type": "string"}, {"index": 8, "type": "int"}],
          "selectors": [selector(margs(4, "Equal", SIGWINCH), margs(7, "Equal", comm))]}
    with T.load(tracepoints=[tp]):
        # another signal from the right comm; then the right signal from another comm
        r = T.run("pid", "handler", SIGURG, "kill", SIGURG, "handler", SIGWINCH, "kill", SIGWINCH, binary=exe)
        T.run("handler", SIGWINCH, "kill", SIGWINCH)
        T.run("handler", SIGWINCH, "kill", SIGWINCH, binary=exe)  # the sentinel
        pid = int(r.stdout.split()[1])
        evs = T.wait(lambda e: True, count=2, kind="process_tracepoint")
    assert len(T.events("process_tracepoint")) == 2
    e = evs[0]
    assert e["subsys"] == "signal" and e["event"] == "signal_generate"
    assert e["args"] == [{"int_arg": SIGWINCH}, {"string_arg": comm}, {"int_arg": pid}]
    assert e["process"]["pid"] == pid


def test_uprobe_with_arg_filter(T: PolicyTest) -> None:
    exe = T.ws.binary("ktrig-uprobe")
    up = {"path": exe, "symbols": ["kerneye_probe_me"],
          "args": [{"index": 0, "type": "int"}, {"index": 1, "type": "int"}],
          "selectors": [selector(margs(0, "Equal", 42))]}
    with T.load(uprobes=[up]):
        T.run("probe", 42, 9)  # the same function in another file (ktrig): not probed
        r = T.run("probe", 41, 7, "probe", -42, 7, "probe", 42, 7, "probe", 42, -8, binary=exe)
        assert "probe = 1309" in r.stdout  # 42 * 31 + 7: the function really ran
        evs = T.wait(lambda e: e["args"][1] == {"int_arg": -8}, kind="process_uprobe")
        assert evs
        got = T.events("process_uprobe")
    assert [e["args"] for e in got] == [[{"int_arg": 42}, {"int_arg": 7}], [{"int_arg": 42}, {"int_arg": -8}]]
    assert got[0]["path"] == exe and got[0]["symbol"] == "kerneye_probe_me"
    assert got[0]["process"]["binary"] == exe


# ---------------------------------------------------------------------------
# several hooks on one syscall


def test_two_hooks_on_the_same_syscall_in_one_policy(T: PolicyTest) -> None:
    a = syscall("sys_openat", [(1, "string")], selector(margs(1, "Prefix", T.path("a-"))), message="hook a")
    b = syscall("sys_openat", [(1, "string")], selector(margs(1, "Prefix", T.path("b-"))), message="hook b")
    with T.load(kprobes=[a, b]):
        T.run("open", T.path("c-1"), "open", T.path("a-1"), "open", T.path("b-1"))
        got = assert_exactly(T, [T.path("a-1"), T.path("b-1")])
    assert [e["message"] for e in got] == ["hook a", "hook b"]
