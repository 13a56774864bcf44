"""Bypass techniques against kerneye's enforcement, tried for real.

Every test here is named in src/kerneye/enforce/evasions.py. A "blocked"
technique asserts the errno (or exit status) a real child process gets; an
"out of scope" technique asserts that it still works, so the test fails the
day it stops working and the table has to be updated.

The fanotify enforcer runs in this process; the cgroup network enforcer is
attached to a fresh child cgroup. Denied programs are copies of true with a
unique tail, so that no other program on the host shares their content.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Iterator

import pytest
from enfutil import CGROUP2, ENFTRIG, ROOT, enftrig, fanotify_fixtures, listening, make_cgroup, remove_cgroup, \
    unique_true, write
from enfutil import parse_errnos as parse

from kerneye.enforce.fanotify import FanotifyEnforcer

NET_OBJ = os.path.join(ROOT, "bpf", ".output", "enforce_cgroup_net.bpf.o")
LDSO = "/lib64/ld-linux-x86-64.so.2"

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not os.path.exists(ENFTRIG), reason="make -C tests/progs builds enftrig"),
]

needs_cgroup = pytest.mark.skipif(
    not os.path.exists(NET_OBJ) or not os.path.isfile(os.path.join(CGROUP2, "cgroup.procs")),
    reason=f"needs bpf/.output/enforce_cgroup_net.bpf.o (make -C bpf) and cgroup v2 at {CGROUP2}")


# --- helpers -----------------------------------------------------------------

def trig(*ops: object, cgroup: str | None = None) -> list[int]:
    """enftrig in a child (inside cgroup if given); one errno per op."""
    return enftrig(*ops, cgroup=cgroup, check=False)


def run(*argv: str, cwd: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, cwd=cwd)


# exec a program in several ways; prints the errno when the exec fails
_EXECER = r"""
import os, sys
how, path = sys.argv[1], sys.argv[2]
try:
    if how == "fexecve":
        os.execve(os.open(path, os.O_RDONLY), [path], {})   # execveat(fd, "", AT_EMPTY_PATH)
    elif how == "procfd":
        fd = os.open(path, os.O_RDONLY)
        os.execv(f"/proc/self/fd/{fd}", [path])
    elif how == "memfd":
        fd = os.memfd_create("kerneye-evasion", 0)
        with open(path, "rb") as f:
            os.write(fd, f.read())
        os.execve(fd, [path], {})
except OSError as e:
    print(e.errno)
    sys.exit(1)
"""


def execer(how: str, path: str) -> tuple[int, str]:
    r = run(sys.executable, "-c", _EXECER, how, path)
    return r.returncode, r.stdout.strip()


fan_mod, fan = fanotify_fixtures("fan_mod", "fan")


@pytest.fixture
def d() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="kerneye-evasion-")
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- exec deny -----------------------------------------------------------------

def test_exec_copy_is_blocked_by_content_hash(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(1, x, match_content=True)
    os.mkdir(f"{d}/elsewhere")
    assert run("cp", x, f"{d}/elsewhere/copy").returncode == 0  # cp may read it: the rule is on exec
    assert os.stat(f"{d}/elsewhere/copy").st_ino != os.stat(x).st_ino
    assert trig("exec", f"{d}/elsewhere/copy") == [errno.EPERM]
    assert [x.reason for x in fan.get_decisions(1.0) if x.rule_id == 1] == ["content"]


def test_exec_modified_copy_runs(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(2, x, match_content=True)
    shutil.copy2(x, f"{d}/copy")
    with open(f"{d}/copy", "ab") as f:
        f.write(b"\0")
    assert trig("exec", x) == [errno.EPERM]
    assert run(f"{d}/copy").returncode == 0


def test_exec_hard_link_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(3, x)
    os.link(x, f"{d}/link")
    assert trig("exec", f"{d}/link") == [errno.EPERM]


def test_exec_symlink_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(4, x)
    os.symlink(x, f"{d}/sym")
    assert trig("exec", f"{d}/sym") == [errno.EPERM]


def test_exec_rename_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(5, x)
    os.mkdir(f"{d}/other")
    os.rename(x, f"{d}/other/renamed")
    assert trig("exec", f"{d}/other/renamed") == [errno.EPERM]


def test_exec_relative_path_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(6, x)
    r = run("bash", "-c", "cd \"$0\" && ./x", d)
    assert r.returncode == 126 and "Operation not permitted" in r.stderr


def test_exec_through_proc_self_fd_and_fexecve_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    assert execer("fexecve", x) == (0, "")  # works before the rule
    fan.deny_exec(7, x)
    assert execer("fexecve", x) == (1, str(errno.EPERM))
    assert execer("procfd", x) == (1, str(errno.EPERM))


def test_exec_memfd_runs_under_fanotify(fan: FanotifyEnforcer, d: str) -> None:
    """Out of scope for fanotify: even a content rule (which marks every
    filesystem) does not see the memfd's internal mount."""
    x = unique_true(f"{d}/x")
    fan.deny_exec(8, x, match_content=True)
    assert execer("procfd", x) == (1, str(errno.EPERM))
    assert execer("memfd", x) == (0, "")


def test_exec_script_through_interpreter_runs(fan: FanotifyEnforcer, d: str) -> None:
    script = write(f"{d}/script.sh", "#!/bin/sh\necho ran\n", 0o755)
    fan.deny_exec(9, script)
    assert run("bash", "-c", script).returncode == 126
    r = run("sh", script)
    assert (r.returncode, r.stdout) == (0, "ran\n")


def test_exec_script_through_interpreter_blocked_by_open_rule(fan: FanotifyEnforcer, d: str) -> None:
    script = write(f"{d}/script.sh", "#!/bin/sh\necho ran\n", 0o755)
    fan.deny_exec(10, script)
    fan.deny_open(11, script)
    r = run("sh", script)
    assert r.returncode != 0 and r.stdout == "" and "Operation not permitted" in r.stderr
    assert run("bash", "-c", script).returncode == 126


@pytest.mark.skipif(not os.path.exists(LDSO), reason=f"no dynamic loader at {LDSO}")
def test_exec_through_dynamic_loader(fan: FanotifyEnforcer, d: str) -> None:
    x = unique_true(f"{d}/x")
    fan.deny_exec(12, x)
    assert trig("exec", x) == [errno.EPERM]
    assert run(LDSO, x).returncode == 0  # out of scope for an exec rule ...
    fan.deny_open(13, x)
    r = run(LDSO, x)  # ... but an open rule stops it
    assert r.returncode != 0 and "Operation not permitted" in r.stderr


# --- file open deny ----------------------------------------------------------------

def test_open_symlink_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    s = write(f"{d}/secret")
    fan.deny_open(20, s)
    os.symlink(s, f"{d}/sym")
    assert trig("open", f"{d}/sym") == [errno.EPERM]


def test_open_hard_link_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    s = write(f"{d}/secret")
    fan.deny_open(21, s)
    os.link(s, f"{d}/link")
    assert trig("open", f"{d}/link") == [errno.EPERM]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) makes the private mount namespace")
def test_open_bind_mount_in_private_namespace_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    s = write(f"{d}/secret")
    target = write(f"{d}/target", "")
    fan.deny_open(22, s)
    r = run("unshare", "-m", "--propagation", "private", "sh", "-c",
            'mount --bind "$0" "$1" && exec "$2" open "$1"', s, target, ENFTRIG)
    assert parse(r.stdout) == [errno.EPERM], r.stderr
    assert trig("open", target) == [0]  # the bind mount existed only in the child's namespace


def test_open_after_renaming_the_parent_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    os.mkdir(f"{d}/a")
    s = write(f"{d}/a/secret")
    fan.deny_open(23, s)
    os.rename(f"{d}/a", f"{d}/b")
    assert trig("open", f"{d}/b/secret") == [errno.EPERM]


def test_open_with_dirfd_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    s = write(f"{d}/secret")
    fan.deny_open(24, s)
    assert trig("openat", d, "secret") == [errno.EPERM]


def test_open_o_path_reopen_is_blocked(fan: FanotifyEnforcer, d: str) -> None:
    s = write(f"{d}/secret")
    fan.deny_open(25, s)
    assert trig("reopen", s) == [errno.EPERM]


def test_open_hard_link_out_of_a_directory_rule(fan: FanotifyEnforcer, d: str) -> None:
    os.makedirs(f"{d}/vault/sub")
    s = write(f"{d}/vault/sub/secret")
    fan.deny_open(26, f"{d}/vault", recursive=True)
    os.link(s, f"{d}/outside")  # the attacker needs write access to a directory on the same filesystem
    assert trig("open", s, "open", f"{d}/outside") == [errno.EPERM, 0]
    fan.deny_open(27, s)  # an inode rule covers every name
    assert trig("open", f"{d}/outside") == [errno.EPERM]


# --- connect deny (cgroup BPF) -------------------------------------------------------------

@pytest.fixture(scope="module")
def net() -> Iterator[tuple[object, str]]:
    from kerneye.enforce.cgroup_net import CgroupNetEnforcer

    cg = make_cgroup("kerneye-evasion")
    enf = None
    try:
        enf = CgroupNetEnforcer(cg).start()
        yield enf, cg
    finally:
        if enf is not None:
            enf.close()
        remove_cgroup(cg)


@pytest.fixture
def netenf(net: tuple[object, str]) -> Iterator[tuple[object, str]]:
    enf, cg = net
    try:
        yield enf, cg
    finally:
        for r in enf.rules():  # type: ignore[attr-defined]
            enf.remove_rule(r.id)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def listeners() -> Iterator[dict[str, int]]:
    with listening("tcp4", "tcp6", "udp4") as ports:
        yield ports


@needs_cgroup
def test_connect_ipv4_mapped_ipv6_is_blocked(netenf: tuple[object, str], listeners: dict[str, int]) -> None:
    from kerneye.enforce.cgroup_net import NetRule

    enf, cg = netenf
    p = listeners["tcp4"]
    assert trig("connect6", "::ffff:127.0.0.1", p, cgroup=cg) == [0]
    enf.add_rule(NetRule(id=40, cidrs=["127.0.0.1/32"]))  # type: ignore[attr-defined]
    assert trig("connect4", "127.0.0.1", p, "connect6", "::ffff:127.0.0.1", p, cgroup=cg) == [errno.EPERM] * 2


@needs_cgroup
def test_udp_sendto_is_blocked(netenf: tuple[object, str], listeners: dict[str, int]) -> None:
    from kerneye.enforce.cgroup_net import NetRule

    enf, cg = netenf
    u = listeners["udp4"]
    assert trig("sendto4", "127.0.0.1", u, cgroup=cg) == [0]
    enf.add_rule(NetRule(id=41, cidrs=["127.0.0.1/32"], ports=(u, u)))  # type: ignore[attr-defined]
    assert trig("sendto4", "127.0.0.1", u, "sendto6", "::ffff:127.0.0.1", u, cgroup=cg) == [errno.EPERM] * 2


@needs_cgroup
def test_connect_over_an_unlisted_family_is_allowed(netenf: tuple[object, str], listeners: dict[str, int]) -> None:
    from kerneye.enforce.cgroup_net import NetRule

    enf, cg = netenf
    enf.add_rule(NetRule(id=42, cidrs=["127.0.0.1/32"]))  # type: ignore[attr-defined]
    assert trig("connect4", "127.0.0.1", listeners["tcp4"], "connect6", "::1", listeners["tcp6"], cgroup=cg) == \
        [errno.EPERM, 0]


@needs_cgroup
def test_connect_rule_listing_both_families_blocks_both(netenf: tuple[object, str],
                                                        listeners: dict[str, int]) -> None:
    from kerneye.enforce.cgroup_net import NetRule

    enf, cg = netenf
    enf.add_rule(NetRule(id=43, cidrs=["127.0.0.1/32", "::1/128"]))  # type: ignore[attr-defined]
    assert trig("connect4", "127.0.0.1", listeners["tcp4"], "connect6", "::1", listeners["tcp6"], cgroup=cg) == \
        [errno.EPERM, errno.EPERM]
