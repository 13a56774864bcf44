"""Policy management through `kerneye tracingpolicy`, against a real agent.

(a) Tetragon's example policies are added and deleted one by one: the
    syscall/tracepoint ones load unchanged, the others are refused with one
    line naming file:line and the reason, and leave no BPF link behind;
(b) `tracingpolicy list` (text and JSON) with counters and back-end notes;
(c) hooks needing kprobe/fentry/LSM programs are refused with the reason;
(d) malformed policies through the running agent, each with its message and
    line, and a policy whose second hook is unavailable (all or nothing);
(e) runtime commands on unknown names;
(f) `--tracing-policy-dir` at start with broken files (a second agent).

Links are counted from the agent's own file descriptors (/proc/PID/fdinfo,
which names each link's tracepoint) and cross-checked with `bpftool link
show`, restricted to the agent's programs: other agents may be running on
this kernel.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator

import pytest
import yaml

from agentctl import AgentProc, env, kerneye_cmd
from kerneye.bpf import tracefs

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TETRAGON = os.path.join(ROOT, "tests", "data", "policies", "tetragon")
KTRIG = os.path.join(ROOT, "tests", "progs", ".output", "ktrig")

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not os.path.exists(KTRIG), reason="make -C tests/progs builds ktrig")]

HEADER = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec:\n"


# ---------------------------------------------------------------------------
# helpers


def tp(agent: AgentProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(kerneye_cmd("tracingpolicy", *args, "--socket", agent.socket), env=env(),
                          capture_output=True, text=True, timeout=120)


def tp_json(agent: AgentProc) -> dict[str, Any]:
    r = tp(agent, "list", "-o", "json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def listed(agent: AgentProc) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in tp_json(agent)["policies"]}


def _fdinfos(pid: int) -> Iterator[str]:
    d = f"/proc/{pid}/fdinfo"
    for fd in os.listdir(d):
        try:
            with open(os.path.join(d, fd)) as f:
                yield f.read()
        except OSError:
            continue


def agent_links(agent: AgentProc) -> list[str]:
    """The tracepoint of every BPF link the agent holds, sorted."""
    assert agent.proc is not None
    out = []
    for info in _fdinfos(agent.proc.pid):
        if re.search(r"^link_id:", info, re.M):
            m = re.search(r"^tp_name:\s*(\S+)", info, re.M)
            out.append(m.group(1) if m else "?")
    return sorted(out)


def bpftool_links(agent: AgentProc) -> int | None:
    """How many links `bpftool link show` lists for the agent's programs."""
    if not shutil.which("bpftool"):
        return None
    assert agent.proc is not None
    progs = set()
    for info in _fdinfos(agent.proc.pid):
        if not re.search(r"^link_id:", info, re.M):
            m = re.search(r"^prog_id:\s*(\d+)", info, re.M)
            if m:
                progs.add(int(m.group(1)))
    r = subprocess.run(["bpftool", "link", "show", "-j"], capture_output=True, text=True, timeout=60)
    if r.returncode:
        return None
    return sum(1 for link in json.loads(r.stdout or "[]") if link.get("prog_id") in progs)


@dataclass
class Snapshot:
    links: list[str]
    bpftool: int | None


def snapshot(agent: AgentProc) -> Snapshot:
    return Snapshot(agent_links(agent), bpftool_links(agent))


def settled(agent: AgentProc, want: Snapshot | None = None, timeout: float = 60) -> Snapshot:
    """Deleting a policy makes its hooks inert at once; the links of large
    policies are then closed in the background (each waits for an RCU grace
    period). Wait until the agent's links match `want` (or stop changing)."""
    deadline = time.monotonic() + timeout
    last = snapshot(agent)
    while time.monotonic() < deadline:
        if want is not None and last == want:
            return last
        time.sleep(0.3)
        cur = snapshot(agent)
        if want is None and cur == last:
            return cur
        last = cur
    return last


def one_error_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("kerneye: error: "), r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    return lines[0]


def events_of(agent: AgentProc, policy: str) -> list[dict[str, Any]]:
    return [e["process_kprobe"] for e in agent.events()
            if "process_kprobe" in e and e["process_kprobe"].get("policy_name") == policy]


@pytest.fixture(scope="module")
def work() -> Iterator[str]:
    d = os.path.realpath(tempfile.mkdtemp(prefix="kerneye-mgmt-"))
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def clean(agent: AgentProc) -> Iterator[Snapshot]:
    """The agent's links before the test; afterwards every policy the test
    left behind is deleted and the links must be back to that."""
    before = listed(agent)
    snap = settled(agent)
    yield snap
    for name in set(listed(agent)) - set(before):
        tp(agent, "delete", name)
    assert settled(agent, snap).links == snap.links


def write(work: str, fname: str, text: str) -> str:
    path = os.path.join(work, fname)
    with open(path, "w") as f:
        f.write(text)
    return path


def line_of(text: str, needle: str) -> int:
    for i, ln in enumerate(text.splitlines(), 1):
        if needle in ln:
            return i
    raise AssertionError(f"{needle!r} not in text")


def openat_prefix_policy(name: str, prefix: str) -> str:
    return HEADER.format(name=name) + textwrap.indent(textwrap.dedent(f"""\
          kprobes:
          - call: sys_openat
            syscall: true
            args:
            - index: 1
              type: string
            selectors:
            - matchArgs:
              - index: 1
                operator: Prefix
                values: ["{prefix}"]
        """), "  ")


# ---------------------------------------------------------------------------
# (a) Tetragon's examples


@dataclass
class Example:
    hooks: list[str] | None = None          # as `list` shows them (None: every syscall)
    exits: tuple[str, ...] = ()             # extra exit tracepoints of return probes
    line: int = 0                           # rejected: line of the error
    reasons: tuple[str, ...] = ()           # rejected: message fragments


def _sys(*names: str) -> list[str]:
    return [f"syscalls/sys_enter_{n}" for n in names]


EXAMPLES: dict[str, Example] = {
    "hardlink-override.yaml": Example(line=28, reasons=("Override on sys_linkat", "not one of them")),
    "killer.yaml": Example(line=34, reasons=("NotifyEnforcer", "not supported")),
    # raw tracepoints (raw: true) are supported: the hook reads the raw arguments
    "rawtp.yaml": Example(hooks=["sched/sched_process_exec"]),
    "list-syscalls-generated.yaml": Example(hooks=None),
    "list-syscalls-tracepoint.yaml": Example(hooks=["raw_syscalls/sys_enter"]),
    "list-syscalls.yaml": Example(hooks=_sys("dup", "dup2")),
    "openat_write.yaml": Example(hooks=_sys("openat"), exits=("sys_exit_openat",)),
    "process.credentials.changes.at.syscalls.yaml": Example(
        hooks=_sys("setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setfsuid", "setfsgid")),
    "raw_syscalls.yaml": Example(hooks=["raw_syscalls/sys_enter"]),
    "sys_clock_settime.yaml": Example(hooks=_sys("clock_settime")),
    "sys_mount.yaml": Example(hooks=_sys("mount")),
    "sys_pivot_root.yaml": Example(hooks=_sys("pivot_root")),
    "sys_ptrace.yaml": Example(hooks=_sys("ptrace")),
    "sys_setuid.yaml": Example(hooks=_sys("setuid")),
    "tracepoint-lseek-pid.yaml": Example(hooks=_sys("lseek")),
    "write.yaml": Example(hooks=_sys("write")),
}


def test_every_example_is_covered() -> None:
    assert sorted(f for f in os.listdir(TETRAGON) if f.endswith(".yaml")) == sorted(EXAMPLES)


@pytest.mark.parametrize("fname", sorted(EXAMPLES))
def test_tetragon_example_add_and_delete(agent: AgentProc, clean: Snapshot, fname: str) -> None:
    ex = EXAMPLES[fname]
    path = os.path.join(TETRAGON, fname)
    with open(path) as f:
        name = yaml.safe_load(f)["metadata"]["name"]
    assert name not in listed(agent)
    r = tp(agent, "add", path)
    if ex.reasons:
        err = one_error_line(r)
        assert r.returncode == 1
        assert f"{path}:{ex.line}:" in err, err
        for frag in ex.reasons:
            assert frag in err, err
        assert name not in listed(agent)
        assert settled(agent, clean) == clean
        return
    assert r.returncode == 0, r.stderr
    hooks = ex.hooks if ex.hooks is not None else [f"syscalls/sys_enter_{s}" for s in tracefs.all_syscalls()]
    assert r.stdout.strip() == f"policy {name} loaded in enforce mode ({len(hooks)} hooks)"
    p = listed(agent)[name]
    assert (p["state"], p["mode"], p["error"], p["source"]) == ("enabled", "enforce", "", path)
    assert p["hooks"] == hooks
    # one link per tracepoint (shared by the hooks on it)
    added = sorted((Counter(agent_links(agent)) - Counter(clean.links)).elements())
    want = sorted({h.split("/")[1] for h in hooks} | set(ex.exits))
    assert added == want
    if clean.bpftool is not None:
        assert bpftool_links(agent) == clean.bpftool + len(want)
    r = tp(agent, "delete", name)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"policy {name} deleted"
    assert name not in listed(agent)
    assert settled(agent, clean) == clean


def test_same_name_examples_one_at_a_time(agent: AgentProc, clean: Snapshot) -> None:
    """sys_mount, sys_ptrace and sys_setuid all call themselves "syscalls":
    the second is refused while the first is loaded, and loads after it."""
    first, second = (os.path.join(TETRAGON, f) for f in ("sys_mount.yaml", "sys_setuid.yaml"))
    assert tp(agent, "add", first).returncode == 0
    links = agent_links(agent)
    r = tp(agent, "add", second)
    err = one_error_line(r)
    assert r.returncode == 1
    assert "a policy named syscalls is already loaded" in err and second in err
    assert listed(agent)["syscalls"]["hooks"] == ["syscalls/sys_enter_mount"]
    assert agent_links(agent) == links
    assert tp(agent, "delete", "syscalls").returncode == 0
    assert tp(agent, "add", second).returncode == 0
    assert listed(agent)["syscalls"]["hooks"] == ["syscalls/sys_enter_setuid"]
    assert tp(agent, "delete", "syscalls").returncode == 0


def test_duplicate_name_error_names_the_line(agent: AgentProc, clean: Snapshot) -> None:
    path = os.path.join(TETRAGON, "sys_ptrace.yaml")
    assert tp(agent, "add", path).returncode == 0
    err = one_error_line(tp(agent, "add", path))
    assert f"{path}:{line_of(open(path).read(), 'name:')}:" in err


# ---------------------------------------------------------------------------
# (b) list


def test_list_text_and_json(agent: AgentProc, clean: Snapshot, work: str) -> None:
    tag = uuid.uuid4().hex[:8]
    name = f"listed-{tag}"
    d = os.path.join(work, f"l-{tag}")
    os.mkdir(d)
    path = write(work, f"{name}.yaml", openat_prefix_policy(name, d + "/"))
    r = tp(agent, "add", path, "--mode", "monitor")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"policy {name} loaded in monitor mode (1 hooks)"
    p = listed(agent)[name]
    assert {k: p[k] for k in ("state", "mode", "hooks", "error", "source", "npost", "nenforce", "nmonitor",
                              "nratelimited", "nlost")} == {
        "state": "enabled", "mode": "monitor", "hooks": ["syscalls/sys_enter_openat"], "error": "",
        "source": path, "npost": 0, "nenforce": 0, "nmonitor": 0, "nratelimited": 0, "nlost": 0}
    subprocess.run([KTRIG, "open", "/tmp/not-this", "open", f"{d}/1", "open", f"{d}/2", "open", f"{d}/3"],
                   check=True, capture_output=True, timeout=30)
    got = agent.wait_for(lambda e: "process_kprobe" in e and e["process_kprobe"]["policy_name"] == name, count=3)
    assert len(got) == 3
    assert listed(agent)[name]["npost"] == 3
    # text
    assert tp(agent, "set-mode", name, "enforce").returncode == 0
    assert tp(agent, "disable", name).returncode == 0
    data = tp_json(agent)
    r = tp(agent, "list")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATE", "MODE", "HOOKS", "RULES", "NPOST", "NENFORCE", "NMONITOR", "ERROR"]
    (row,) = [ln for ln in lines if ln.startswith(name + " ")]
    assert row.split() == [name, "disabled", "enforce", "1", "0", "3", "0", "0"]
    # every back end this kernel lacks is named in a note (kprobe, fentry, lsm)
    # hook back ends; enforcement mechanisms ("enforce:...") appear once a policy needed them
    feats = {k: v for k, v in data["features"].items() if not k.startswith("enforce:")}
    assert set(feats) == {"kprobe", "fentry", "lsm"}
    notes = [ln.removeprefix("note: ") for ln in lines if ln.startswith("note: ")]
    missing = [b for b, v in feats.items() if v != "available"]
    assert sorted(notes) == sorted(set(data["features"][b] for b in data["features"]
                                       if data["features"][b] != "available"))
    for b in missing:
        assert feats[b].startswith(f"{b} programs are unavailable"), feats[b]
    assert all(not ln.startswith("note:") for ln in lines[: len(lines) - len(notes)])
    assert tp(agent, "delete", name).returncode == 0


def test_list_notes_the_unavailable_backends_here(agent: AgentProc) -> None:
    """On this test machine kprobe, fentry and LSM programs cannot be used
    (see the agent's start-up log): `list` says so."""
    feats = tp_json(agent)["features"]
    if all(v == "available" for v in feats.values()):
        pytest.skip("every back end is available on this kernel")
    out = tp(agent, "list").stdout
    for b, v in feats.items():
        assert (f"note: {v}" in out) == (v != "available")
        if v != "available":
            assert f"{b} programs are unavailable" in agent.stderr()


def test_list_into_a_closed_pipe_is_quiet(agent: AgentProc) -> None:
    r_fd, w_fd = os.pipe()
    os.close(r_fd)
    try:
        p = subprocess.run(kerneye_cmd("tracingpolicy", "list", "-o", "json", "--socket", agent.socket), env=env(),
                           stdout=w_fd, stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(w_fd)
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr


# ---------------------------------------------------------------------------
# (c) hooks that need kprobe, fentry or LSM programs


UNAVAILABLE = {
    "kernel-function": ("""\
          kprobes:
          - call: security_file_open
            syscall: false
            args:
            - index: 0
              type: file
        """, "kernel function security_file_open (syscall: false)", "spec.kprobes[0]"),
    "lsm-hook": ("""\
          lsmhooks:
          - hook: file_open
            args:
            - index: 0
              type: file
        """, "LSM hook file_open", "spec.lsmhooks[0]"),
    "fentry": ("""\
          fentries:
          - call: security_file_open
            args:
            - index: 0
              type: file
        """, "fentry on security_file_open", "spec.fentries[0]"),
}


@pytest.mark.parametrize("case", sorted(UNAVAILABLE))
def test_unavailable_backend_is_refused(agent: AgentProc, clean: Snapshot, work: str, case: str) -> None:
    body, what, ypath = UNAVAILABLE[case]
    name = f"{case}-{uuid.uuid4().hex[:8]}"
    path = write(work, f"{name}.yaml", HEADER.format(name=name) + textwrap.indent(textwrap.dedent(body), "  "))
    feats = tp_json(agent)["features"]
    backend = {"lsm-hook": "lsm", "fentry": "fentry"}.get(case) or ("fentry" if feats["fentry"] == "available"
                                                                    else "kprobe")
    r = tp(agent, "add", path)
    err = one_error_line(r)
    assert r.returncode == 1
    assert f"{path}:7:" in err and ypath in err, err
    assert what in err and f"needs {backend} programs" in err, err
    if feats[backend] != "available":
        assert feats[backend] in err  # why: the probe's own reason
    assert name not in listed(agent)
    assert settled(agent, clean) == clean


# ---------------------------------------------------------------------------
# (d) malformed policies, through the running agent


def _doc(body: str) -> str:
    """HEADER (5 lines) and `body` from line 6."""
    return HEADER.format(name="bad") + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "  ")


_OPENAT = """
kprobes:
- call: sys_openat
  syscall: true
  args:
  - index: 0
    type: int
  - index: 1
    type: string
  - index: 2
    type: int
"""


def _openat(selectors: str) -> str:
    """A sys_openat hook (lines 6-15) with `selectors` from line 16."""
    return _doc(_OPENAT + textwrap.indent(textwrap.dedent(selectors).lstrip("\n"), "  "))


_H = HEADER.format(name="bad")

# (id, text, message fragment, line)
MALFORMED: list[tuple[str, str, str, int]] = [
    # parsing and schema (the loader)
    ("yaml-syntax", _H + "  kprobes: [\n  - call: x\n", "invalid YAML", 7),
    ("two-documents", _H + "  loader: true\n---\n" + _H, "put one policy per file", 8),
    ("no-document", "# only a comment\n", "holds no policy", 1),
    ("duplicate-key", _doc("""
        kprobes:
        - call: sys_write
          call: sys_read
        """), "duplicate key 'call'", 8),
    ("unknown-top-key", _H.replace("spec:", "specs:") + "  loader: true\n", "did you mean 'spec'", 5),
    ("unknown-filter-key", _openat("""
        selectors:
        - matchArgs:
          - index: 1
            operater: Equal
            values: ["/etc/passwd"]
        """), "did you mean 'operator'?", 19),
    ("index-not-int", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: "x"
            type: int
        """), "must be an integer, got a string ('x')", 9),
    ("api-version", _H.replace("cilium.io/v1alpha1", "cilium.io/v1") + "  loader: true\n",
     "apiVersion must be 'cilium.io/v1alpha1'", 1),
    ("bad-name", _H.replace("name: bad", "name: Bad Name") + "  loader: true\n", "must be a DNS-1123 name", 4),
    ("unknown-operator", _openat("""
        selectors:
        - matchArgs:
          - index: 1
            operator: Equals
            values: ["/etc/passwd"]
        """), "unknown operator 'Equals' for matchArgs", 19),
    ("unknown-action", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Kill
        """), "unknown action 'Kill'", 10),
    ("unknown-arg-type", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 1
            type: charbuf
        """), "did you mean 'char_buf'?", 10),
    ("six-selectors", _doc("""
        kprobes:
        - call: sys_write
          selectors: [{}, {}, {}, {}, {}, {}]
        """), "at most 5 selectors per hook, got 6", 8),
    ("five-int-values", _openat("""
        selectors:
        - matchArgs:
          - index: 0
            operator: Equal
            values: ["1", "2", "3", "4", "5"]
        """), "at most 4 values for operator Equal", 20),
    ("undeclared-index", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 0
            type: int
          selectors:
          - matchArgs:
            - index: 2
              operator: Equal
              values: ["1"]
        """), "matchArgs index 2 does not refer to a declared argument", 13),
    ("signal-without-sig", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Signal
        """), "action Signal needs 'argSig'", 10),
    ("policy-mode", _doc("""
        options:
        - name: policy-mode
          value: audit
        kprobes:
        - call: sys_write
        """), "must be monitor|enforce, got 'audit'", 8),
    ("int-value-not-int", _openat("""
        selectors:
        - matchArgs:
          - index: 2
            operator: Mask
            values: ["O_CREAT"]
        """), "'O_CREAT' is not an integer", 20),
    ("operator-type-mismatch", _openat("""
        selectors:
        - matchArgs:
          - index: 1
            operator: DPort
            values: ["80"]
        """), "operator DPort applies to sock", 19),
    ("missing-list", _doc("""
        kprobes:
        - call: "list:nope"
        """), "'list:nope' names no entry of spec.lists", 7),
    ("rate-limit-format", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Post
              rateLimit: 5 minutes
        """), "is not a duration", 11),
    ("in-range-without-colon", _openat("""
        selectors:
        - matchArgs:
          - index: 0
            operator: InRange
            values: ["5"]
        """), "is not a min:max range", 20),
    # what only the agent knows: this kernel and kerneye's back ends (the compiler)
    ("unknown-syscall", _doc("""
        kprobes:
        - call: sys_definitely_not_a_syscall
          syscall: true
        """), "no syscall tracepoint syscalls/sys_enter_definitely_not_a_syscall", 7),
    ("unknown-tracepoint", _doc("""
        tracepoints:
        - subsystem: syscalls
          event: sys_enter_nothing_here
        """), "tracepoint syscalls/sys_enter_nothing_here does not exist", 7),
    ("tracepoint-field-out-of-range", _doc("""
        tracepoints:
        - subsystem: syscalls
          event: sys_enter_lseek
          args:
          - index: 40
            type: int
        """), "index 40 is out of range", 10),
    ("string-operator-on-int", _openat("""
        selectors:
        - matchArgs:
          - index: 0
            operator: Prefix
            values: ["/etc"]
        """), "operator Prefix does not apply to a int argument", 18),
    ("match-parent-binaries", _doc("""
        kprobes:
        - call: sys_write
          syscall: true
          selectors:
          - matchParentBinaries:
            - operator: In
              values: ["/usr/bin/bash"]
        """), "matchParentBinaries is not supported yet", 11),
    ("override", _doc("""
        kprobes:
        - call: sys_write
          syscall: true
          selectors:
          - matchActions:
            - action: Override
              argError: -1
        """), "Override on sys_write", 11),
    ("uprobe-missing-target", _doc("""
        uprobes:
        - path: /nonexistent/kerneye/binary
          symbols: [main]
        """), "uprobe target /nonexistent/kerneye/binary does not exist", 7),
    ("usdt", _doc("""
        usdts:
        - path: /bin/true
          provider: p
          name: n
        """), "USDT probes are not supported", 7),
]


@pytest.mark.parametrize(("text", "fragment", "line"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_policy_is_refused(agent: AgentProc, clean: Snapshot, work: str, text: str, fragment: str,
                                     line: int) -> None:
    path = write(work, f"bad-{uuid.uuid4().hex[:8]}.yaml", text)
    r = tp(agent, "add", path)
    err = one_error_line(r)
    assert r.returncode == 1
    assert f"{path}:{line}:" in err, err
    assert fragment in err, err
    assert r.stdout == ""
    assert "bad" not in listed(agent)
    assert settled(agent, clean) == clean


def test_malformed_table_is_large() -> None:
    assert len(MALFORMED) >= 20
    assert len({c[0] for c in MALFORMED}) == len(MALFORMED)


def test_missing_file_is_a_usage_error(agent: AgentProc, work: str) -> None:
    path = os.path.join(work, "does-not-exist.yaml")
    r = tp(agent, "add", path)
    err = one_error_line(r)
    assert r.returncode == 2
    assert f"cannot read policy {path}" in err


def test_policy_without_hooks_names_the_file(agent: AgentProc, clean: Snapshot, work: str) -> None:
    path = write(work, f"nohooks-{uuid.uuid4().hex[:8]}.yaml", _doc("""
        options:
        - name: policy-mode
          value: monitor
        """))
    r = tp(agent, "add", path)
    err = one_error_line(r)
    assert r.returncode == 1 and "hooks nothing" in err
    assert f"{path}:5:" in err, err


def test_second_hook_unavailable_refuses_the_whole_policy(agent: AgentProc, clean: Snapshot, work: str) -> None:
    tag = uuid.uuid4().hex[:8]
    d = os.path.join(work, f"half-{tag}")
    os.mkdir(d)
    name = f"half-{tag}"
    text = openat_prefix_policy(name, d + "/") + textwrap.indent(textwrap.dedent("""\
        - call: sys_nonexistent_syscall
          syscall: true
        """), "  ")
    path = write(work, f"{name}.yaml", text)
    assert yaml.safe_load(text)["spec"]["kprobes"][1]["call"] == "sys_nonexistent_syscall"
    r = tp(agent, "add", path)
    err = one_error_line(r)
    assert r.returncode == 1
    assert f"{path}:{line_of(text, 'sys_nonexistent_syscall')}:" in err
    assert "spec.kprobes[1]" in err and "sys_nonexistent_syscall" in err
    assert name not in listed(agent)
    assert settled(agent, clean) == clean
    # the first hook's syscall: nothing attached, nothing reported
    sentinel = f"sentinel-{tag}"
    spath = write(work, f"{sentinel}.yaml", openat_prefix_policy(sentinel, f"{d}/sentinel"))
    assert tp(agent, "add", spath).returncode == 0
    subprocess.run([KTRIG, "open", f"{d}/first", "open", f"{d}/sentinel"], check=True, capture_output=True,
                   timeout=30)
    assert agent.wait_for(lambda e: "process_kprobe" in e and e["process_kprobe"]["policy_name"] == sentinel)
    assert events_of(agent, name) == []
    assert tp(agent, "delete", sentinel).returncode == 0


# ---------------------------------------------------------------------------
# (e) unknown names


@pytest.mark.parametrize("verb", [("enable",), ("disable",), ("delete",), ("set-mode", "enforce"),
                                  ("set-mode", "monitor")], ids=lambda v: "-".join(v))
def test_unknown_policy_name(agent: AgentProc, verb: tuple[str, ...]) -> None:
    name = f"no-such-policy-{uuid.uuid4().hex[:8]}"
    before = listed(agent)
    r = tp(agent, verb[0], name, *verb[1:])
    err = one_error_line(r)
    assert r.returncode == 1
    assert err == (f"kerneye: error: no policy named {name}; `kerneye tracingpolicy list` shows the loaded ones")
    assert r.stdout == ""
    assert listed(agent) == before


def test_set_mode_rejects_a_bad_mode_at_the_cli(agent: AgentProc) -> None:
    r = tp(agent, "set-mode", "whatever", "audit")
    assert r.returncode == 2
    assert "invalid choice: 'audit'" in r.stderr


# ---------------------------------------------------------------------------
# (f) --tracing-policy-dir with broken files


def test_policy_dir_with_broken_files(work: str) -> None:
    tag = uuid.uuid4().hex[:8]
    root = os.path.join(work, f"dir-{tag}")
    pdir = os.path.join(root, "policies")
    target = os.path.join(root, "files")
    os.makedirs(pdir)
    os.mkdir(target)
    good_a = write(pdir, "a-good.yaml", openat_prefix_policy(f"good-a-{tag}", f"{target}/a"))
    write(pdir, "b-good.yaml", openat_prefix_policy(f"good-b-{tag}", f"{target}/b"))
    broken_text = openat_prefix_policy(f"broken-{tag}", target).replace("operator: Prefix", "operator: Prefixx")
    broken = write(pdir, "c-broken.yaml", broken_text)
    nohook_text = openat_prefix_policy(f"nohook-{tag}", target).replace("sys_openat", "sys_no_such_call")
    nohook = write(pdir, "d-nohook.yml", nohook_text)
    write(pdir, "README.md", "not a policy\n")
    a = AgentProc(root, "--tracing-policy-dir", pdir)
    try:
        a.start()
        pols = listed(a)
        assert set(pols) == {f"good-a-{tag}", f"good-b-{tag}", "c-broken.yaml", "d-nohook.yml"}
        for n in (f"good-a-{tag}", f"good-b-{tag}"):
            assert pols[n]["state"] == "enabled" and pols[n]["error"] == ""
        assert pols[f"good-a-{tag}"]["source"] == good_a
        b = pols["c-broken.yaml"]
        assert (b["state"], b["source"], b["hooks"]) == ("error", broken, [])
        assert f"{broken}:{line_of(broken_text, 'Prefixx')}:" in b["error"]
        assert "unknown operator 'Prefixx'" in b["error"]
        c = pols["d-nohook.yml"]
        assert c["state"] == "error"
        assert f"{nohook}:{line_of(nohook_text, 'sys_no_such_call')}:" in c["error"]
        assert "no syscall tracepoint syscalls/sys_enter_no_such_call" in c["error"]
        # the text list shows the error next to the name
        rows = [ln for ln in tp(a, "list").stdout.splitlines() if ln.startswith("c-broken.yaml ")]
        assert len(rows) == 1 and "error" in rows[0].split() and "unknown operator 'Prefixx'" in rows[0]
        # the agent logged one line per broken file and runs the good ones
        log = a.stderr()
        assert f"policy {broken} not loaded: {broken}:" in log
        assert f"policy {nohook} not loaded: {nohook}:" in log
        assert agent_links(a).count("sys_enter_openat") == 1
        subprocess.run([KTRIG, "open", f"{target}/c", "open", f"{target}/b1", "open", f"{target}/a1"], check=True,
                       capture_output=True, timeout=30)
        got = a.wait_for(lambda e: "process_kprobe" in e
                         and e["process_kprobe"]["policy_name"] == f"good-a-{tag}", timeout=10)
        assert len(got) == 1
        reported = [(e["process_kprobe"]["policy_name"], e["process_kprobe"]["args"][0]["string_arg"])
                    for e in a.events() if "process_kprobe" in e]
        assert reported == [(f"good-b-{tag}", f"{target}/b1"), (f"good-a-{tag}", f"{target}/a1")]
    finally:
        rc = a.stop()
    assert rc == 0, a.stderr()
    assert "Traceback" not in a.stderr()
