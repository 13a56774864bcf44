"""What the enforcement kernel tests share: child cgroups of the v2
hierarchy, running triggers inside them, checking with bpftool that
programs are gone, waiting for decisions, and pytest fixtures for the
cgroup enforcers.

tests/ is on sys.path (tests/conftest.py), so test modules `import
enfutil` or `from enfutil import ...`. Fixtures are imported into a test
module by name (`from enfutil import cgroup`) so that pytest finds them.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from typing import Any, Callable, Iterator, Sequence

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENFTRIG = os.path.join(ROOT, "tests", "progs", ".output", "enftrig")
CGROUP2 = "/sys/fs/cgroup/unified"
TRUE = shutil.which("true") or "/bin/true"

# `bash -c JOIN cgroup argv...` joins the cgroup, then execs argv: the
# program never runs outside it, and keeps the shell's pid (and tgid)
JOIN = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
JOIN_PARKED = 'echo $$ > "$0/cgroup.procs" && read -r _ && exec "$@"'


# --- cgroups ----------------------------------------------------------------

def make_cgroup(prefix: str = "kerneye-test") -> str:
    """A new child cgroup of CGROUP2; remove it with remove_cgroup()."""
    path = os.path.join(CGROUP2, f"{prefix}-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    return path


def remove_cgroup(path: str, tries: int = 50) -> None:
    """Move stragglers to the parent, then rmdir (retry: exit is async)."""
    for _ in range(tries):
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = f.read().split()
            for pid in pids:
                try:
                    with open(os.path.join(CGROUP2, "cgroup.procs"), "w") as g:
                        g.write(pid)
                except OSError:
                    pass
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"cannot remove {path}")


def in_cgroup(cgroup: str | None, argv: Sequence[str], park: bool = False) -> list[str]:
    """argv run inside cgroup (as is when None). park: the shell waits for
    a line on stdin before exec, so the program's tgid is known before it
    acts (see parked())."""
    if not cgroup:
        return list(argv)
    return ["bash", "-c", JOIN_PARKED if park else JOIN, cgroup, *argv]


# --- triggers ---------------------------------------------------------------

def parse_errnos(stdout: str) -> list[int]:
    """Trigger output ("<op> ok" / "<op> err <errno>" lines): one errno per
    op, 0 = ok. Other lines are ignored."""
    out = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] in ("ok", "err"):
            out.append(0 if parts[1] == "ok" else int(parts[2]))
    return out


def run_trigger(argv: Sequence[str], cgroup: str | None = None, check: bool = True, timeout: float = 20) -> list[int]:
    """Run a trigger program (inside cgroup if given); one errno per op.
    check: the trigger itself must exit 0."""
    r = subprocess.run(in_cgroup(cgroup, argv), capture_output=True, text=True, timeout=timeout)
    if check:
        assert r.returncode == 0, r.stderr
    return parse_errnos(r.stdout)


def enftrig(*ops: object, cgroup: str | None = None, check: bool = True) -> list[int]:
    """tests/progs/enftrig's errno per operation (0 = ok)."""
    return run_trigger([ENFTRIG, *map(str, ops)], cgroup, check)


def parked(argv: Sequence[str], cgroup: str) -> subprocess.Popen[str]:
    """argv in cgroup, held before exec until release()."""
    return subprocess.Popen(in_cgroup(cgroup, argv, park=True), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def release(p: subprocess.Popen[str], timeout: float = 30) -> list[int]:
    out, err = p.communicate("go\n", timeout=timeout)
    assert p.returncode == 0, err
    return parse_errnos(out)


def kill_all(procs: Sequence[subprocess.Popen[str] | None]) -> None:
    """Kill and reap the children that are still running."""
    for p in procs:
        if p and p.poll() is None:
            p.kill()
            p.wait()


# --- files --------------------------------------------------------------------

def write(path: str, text: str = "secret\n", mode: int = 0o644) -> str:
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


def unique_true(path: str) -> str:
    """A working copy of true whose content no other program on the host
    has (exec rules also match copies by content; true itself must never
    be denied)."""
    shutil.copy2(TRUE, path)
    with open(path, "ab") as f:
        f.write(f"kerneye-test {path} {time.time_ns()}".encode())
    return path


# --- sockets ------------------------------------------------------------------

_LISTENERS = {"tcp4": (socket.AF_INET, "127.0.0.1", socket.SOCK_STREAM),
              "tcp4b": (socket.AF_INET, "127.0.0.1", socket.SOCK_STREAM),
              "tcp6": (socket.AF_INET6, "::1", socket.SOCK_STREAM),
              "udp4": (socket.AF_INET, "127.0.0.1", socket.SOCK_DGRAM)}


@contextlib.contextmanager
def listening(*names: str) -> Iterator[dict[str, int]]:
    """Listeners on loopback, name -> port; names from tcp4, tcp4b (a second
    one), tcp6 (::1), udp4."""
    socks = []
    ports = {}
    try:
        for name in names:
            family, addr, kind = _LISTENERS[name]
            s = socket.socket(family, kind)
            socks.append(s)
            s.bind((addr, 0))
            if kind == socket.SOCK_STREAM:
                s.listen(64)
            ports[name] = int(s.getsockname()[1])
        yield ports
    finally:
        for s in socks:
            s.close()


def free_port(addr: str = "0.0.0.0") -> int:
    s = socket.socket()
    s.bind((addr, 0))
    p = int(s.getsockname()[1])
    s.close()
    return p


# --- bpftool ------------------------------------------------------------------

def bpftool_json(*args: str) -> Any:
    r = subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True, timeout=20)
    return json.loads(r.stdout) if r.returncode == 0 and r.stdout.strip() else None


def assert_detached(prog_ids: dict[str, int], cgroup: str | None = None) -> None:
    """No program we loaded exists any more, and none is attached to cgroup."""
    deadline = time.monotonic() + 5  # link and prog release are RCU-deferred
    while True:
        alive = [n for n, i in prog_ids.items() if bpftool_json("prog", "show", "id", str(i)) is not None]
        attached = bpftool_json("cgroup", "show", cgroup) if cgroup else []
        if not alive and not attached:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still loaded: {alive}; attached to {cgroup}: {attached}")
        time.sleep(0.05)


# --- decisions and enforcers ----------------------------------------------------

def wait_decisions(enf: Any, n: int = 1, timeout_s: float = 2.0) -> list[Any]:
    """Decisions until there are n or timeout_s passed (read_decisions of
    the BPF enforcers, get_decisions of the fanotify one)."""
    read: Callable[[float], list[Any]] = getattr(enf, "read_decisions", None) or enf.get_decisions
    out: list[Any] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        out += read(0.1)
    return out


def drain(enf: Any) -> None:
    (getattr(enf, "read_decisions", None) or enf.get_decisions)()


def reset(enf: Any, modes: Callable[[Any], None] | None = None) -> None:
    """Back to no rules (modes(enf) resets the modes) and no queued decisions."""
    for r in enf.rules():
        enf.remove_rule(r.id)
    if modes:
        modes(enf)
    drain(enf)


def reset_sets(enf: Any) -> None:
    """The first rule sets of a cgroup enforcer back to enforce mode."""
    for s in range(4):
        enf.set_mode("enforce", s)


@pytest.fixture(scope="module")
def cgroup() -> Iterator[str]:
    """A child cgroup for the whole test module."""
    path = make_cgroup()
    try:
        yield path
    finally:
        remove_cgroup(path)
        assert not os.path.exists(path)


def cgroup_enforcer_fixtures(cls: type) -> tuple[Any, Any]:
    """(enforcer_mod, enf) fixtures for a cgroup enforcer class: one
    enforcer on the `cgroup` fixture for the module, checked to detach at
    the end; `enf` hands it to a test with no rules, every rule set in
    enforce mode and an empty ring, and puts it back so afterwards."""
    @pytest.fixture(scope="module")
    def enforcer_mod(cgroup: str) -> Iterator[Any]:
        enf = cls(cgroup).start()
        ids = dict(enf.prog_ids)
        try:
            yield enf
        finally:
            enf.close()
            assert_detached(ids, cgroup)

    @pytest.fixture
    def enf(enforcer_mod: Any) -> Iterator[Any]:
        drain(enforcer_mod)
        try:
            yield enforcer_mod
        finally:
            reset(enforcer_mod, reset_sets)

    return enforcer_mod, enf


def fanotify_fixtures(mod_name: str = "enforcer_mod", name: str = "enf") -> tuple[Any, Any]:
    """(module, per-test) fixtures for a FanotifyEnforcer running in the test
    process, named mod_name and name; the per-test one hands it over with
    no rules, enforce mode and no queued decisions, and puts it back so."""
    from kerneye.enforce.fanotify import FanotifyEnforcer

    @pytest.fixture(scope="module", name=mod_name)
    def enforcer_mod() -> Iterator[FanotifyEnforcer]:
        enf = FanotifyEnforcer().start()
        try:
            yield enf
        finally:
            enf.close()

    @pytest.fixture(name=name)
    def enf(request: pytest.FixtureRequest) -> Iterator[FanotifyEnforcer]:
        e = request.getfixturevalue(mod_name)
        drain(e)
        try:
            yield e
        finally:
            reset(e, lambda x: x.set_mode("enforce"))

    return enforcer_mod, enf


# --- "for these binaries" --------------------------------------------------------

@pytest.fixture
def execve_map() -> Iterator[int]:
    """A stand-in for the base sensor's kerneye_execve_map (same layout)."""
    from kerneye.abi._generated import ExecveMapValue
    from kerneye.bpf import maps
    fd = maps.create(maps.BPF_MAP_TYPE_HASH, 4, ctypes.sizeof(ExecveMapValue), 64, "kerneye_test_em")
    try:
        yield fd
    finally:
        os.close(fd)


def set_bin_match(fd: int, tgid: int, bin_match: int) -> None:
    """What the base sensor would record for tgid at exec."""
    from kerneye.abi._generated import ExecveMapValue
    from kerneye.bpf import maps
    v = ExecveMapValue()
    v.key.pid = tgid
    v.bin_match = bin_match
    maps.update(fd, ctypes.c_uint32(tgid), v)
