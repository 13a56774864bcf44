"""BPF-LSM enforcement against real processes, inside the qemu VM.

Every test makes a real process (cat, sh, python, modprobe, kill) attempt the
operation and asserts on its outcome (errno, exit status, stderr) and on the
decision the kernel reported. Runs only in the VM (tests/vm/conftest.py);
the host-side driver is tests/kernel/test_vm_lsm.py.
"""
from __future__ import annotations

import ctypes
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Iterator

import pytest

from kerneye import config
from kerneye.abi._generated import ExecveMapValue
from kerneye.bpf import features, maps
from kerneye.enforce.lsm import MAPS, PROGRAMS, LsmDecision, LsmEnforcer, release_pinned
from kerneye.enforce.netrules import EnforceError

PY = sys.executable
BPF_DIR = config.default_bpf_dir()
TRUE = os.path.realpath(shutil.which("true") or "/bin/true")
SH = os.path.realpath("/bin/sh")
EPERM_TEXT = "Operation not permitted"


def run(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, **kw)  # type: ignore[call-overload]


def pyrun(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run([PY, "-c", code, *args])


def decisions(enf: LsmEnforcer, want: int = 1, timeout_s: float = 5.0) -> list[LsmDecision]:
    """Decisions until at least `want` arrived or timeout_s passed (the
    deadline only bounds waiting; nothing asserts on time)."""
    out: list[LsmDecision] = []
    end = time.monotonic() + timeout_s
    while len(out) < want and time.monotonic() < end:
        out += enf.read_decisions(0.2)
    return out


@pytest.fixture(scope="module")
def enf() -> Iterator[LsmEnforcer]:
    with LsmEnforcer(mode="enforce") as e:
        yield e


@pytest.fixture
def lsm(enf: LsmEnforcer) -> Iterator[LsmEnforcer]:
    """The module's enforcer with no rules and an empty ring."""
    enf.read_decisions()
    yield enf
    for r in enf.rules():
        enf.remove_rule(r.id)
    enf.set_mode("enforce")
    enf.read_decisions()


@pytest.fixture
def tmp() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="lsm-")
    try:
        yield d
    finally:
        run(["umount", "-l", os.path.join(d, "bind")])
        shutil.rmtree(d, ignore_errors=True)


def mkfile(d: str, name: str = "secret", text: str = "hello\n") -> str:
    p = os.path.join(d, name)
    with open(p, "w") as f:
        f.write(text)
    return p


# --- the probes pick the right back ends on a real kernel ---------------------

@pytest.mark.parametrize("backend", ["kprobe", "fentry", "lsm"])
def test_feature_probe_finds_backend(backend: str) -> None:
    assert features.probe(BPF_DIR, backend) is None


def test_lsm_available() -> None:
    assert "bpf" in open("/sys/kernel/security/lsm").read().split(",")
    assert LsmEnforcer.available() is None


# --- file_open ---------------------------------------------------------------

def test_open_denied_and_reported(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    assert run(["cat", f]).stdout == "hello\n"
    lsm.deny_open(11, f)
    r = run(["cat", f])
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    d = [x for x in decisions(lsm) if x.comm == "cat"][0]
    st = os.stat(f)
    assert (d.hook, d.kind, d.rule_id, d.verdict, d.monitor, d.errno) == ("file_open", "open", 11, "deny", False, 1)
    assert (d.dev, d.ino, d.path, d.filename) == (st.st_dev, st.st_ino, f, "secret")
    assert d.pid != os.getpid() and d.tid == d.pid and d.cgroup_id > 0
    assert lsm.stats()["denied"] >= 1
    assert lsm.remove_rule(11)
    assert run(["cat", f]).returncode == 0


def test_open_custom_errno(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    lsm.deny_open(12, f, err=errno.EACCES)
    r = pyrun("import sys\ntry: open(sys.argv[1])\nexcept OSError as e: print(e.errno)", f)
    assert r.stdout.strip() == str(errno.EACCES)
    assert decisions(lsm)[0].errno == errno.EACCES


def test_open_by_other_names_is_denied(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    hard, sym, moved, bind = (os.path.join(tmp, n) for n in ("hard", "sym", "moved", "bind"))
    os.link(f, hard)
    os.symlink(f, sym)
    open(bind, "w").close()
    assert run(["mount", "--bind", f, bind]).returncode == 0
    copy = os.path.join(tmp, "copy")
    shutil.copy2(f, copy)
    lsm.deny_open(13, f)
    for p in (f, hard, sym, bind):
        r = run(["cat", p])
        assert r.returncode != 0 and EPERM_TEXT in r.stderr, p
    os.rename(f, moved)
    r = run(["cat", moved])
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    # a copy is another inode: not covered (the rule names inodes, not paths)
    assert run(["cat", copy]).stdout == "hello\n"
    assert len(decisions(lsm, want=5)) >= 5


def test_open_write_only(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    lsm.deny_open(14, f, write_only=True)
    assert run(["cat", f]).stdout == "hello\n"
    r = run(["sh", "-c", f"echo more >> {f}"])
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    assert open(f).read() == "hello\n"
    d = decisions(lsm)[0]
    assert d.hook == "file_open" and d.arg & 0x2  # FMODE_WRITE


def test_open_monitor_allows_and_reports(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    lsm.deny_open(15, f, mode="monitor")
    r = run(["cat", f])
    assert r.returncode == 0 and r.stdout == "hello\n"
    d = [x for x in decisions(lsm) if x.comm == "cat"][0]
    assert (d.rule_id, d.verdict, d.monitor, d.errno) == (15, "allow", True, 0)
    assert lsm.stats()["monitored"] >= 1


def test_set_mode_switches_rules_without_a_mode(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    lsm.deny_open(16, f)
    assert run(["cat", f]).returncode != 0
    lsm.set_mode("monitor")
    assert run(["cat", f]).returncode == 0
    lsm.set_mode("enforce")
    assert run(["cat", f]).returncode != 0


def test_binary_qualifier_uses_the_execve_map(tmp: str) -> None:
    """bin_mask: the rule applies only to processes whose entry in the base
    sensor's kerneye_execve_map has a matching bin_match bit. A map of the
    same layout stands in for the base sensor's here."""
    f = mkfile(tmp)
    fd = maps.create(maps.BPF_MAP_TYPE_HASH, 4, ctypes.sizeof(ExecveMapValue), 65536, "test_execve")
    code = "import sys\nsys.stdin.readline()\ntry: open(sys.argv[1]); print('opened')\nexcept OSError as e: print(e.errno)"
    try:
        with LsmEnforcer(execve_map_fd=fd) as enf:
            enf.deny_open(17, f, bin_mask=0b10)
            enf.deny_open(18, f, bin_mask=0b100, bin_not=True, mode="monitor")
            kids = [subprocess.Popen([PY, "-c", code, f], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                    for _ in range(2)]
            maps.update(fd, ctypes.c_uint32(kids[0].pid), ExecveMapValue(bin_match=0b110))
            maps.update(fd, ctypes.c_uint32(kids[1].pid), ExecveMapValue(bin_match=0b001))
            outs = [k.communicate("go\n", timeout=60)[0].strip() for k in kids]
            assert outs == [str(errno.EPERM), "opened"]
            ds = decisions(enf, want=2)
            by_pid = {(d.pid, d.rule_id): d for d in ds}
            assert by_pid[(kids[0].pid, 17)].verdict == "deny"
            # bin_not: the second child lacks bit 0b100, so the monitor rule reports it
            assert by_pid[(kids[1].pid, 18)].monitor
            assert (kids[0].pid, 18) not in by_pid
    finally:
        os.close(fd)


# --- bprm_check_security -----------------------------------------------------

def test_exec_denied_by_inode(lsm: LsmEnforcer, tmp: str) -> None:
    t = os.path.join(tmp, "mytrue")
    shutil.copy2(TRUE, t)
    link = os.path.join(tmp, "link")
    os.link(t, link)
    sym = os.path.join(tmp, "sym")
    os.symlink(t, sym)
    assert run([t]).returncode == 0
    lsm.deny_exec(21, t)
    for p in (t, link, sym):
        with pytest.raises(PermissionError):
            run([p])
    r = run(["sh", "-c", f"{t}; echo rc=$?"])
    assert "rc=126" in r.stdout  # sh: permission denied
    assert run([TRUE]).returncode == 0  # the original is another inode
    ds = decisions(lsm, want=4)
    assert {d.filename for d in ds} >= {t, link, sym}
    assert all(d.hook == "bprm_check_security" and d.rule_id == 21 and d.errno == errno.EPERM for d in ds)


def test_exec_allowlist_denies_copies_and_memfd(lsm: LsmEnforcer, tmp: str) -> None:
    copy = os.path.join(tmp, "true-copy")
    shutil.copy2(TRUE, copy)
    with open(TRUE, "rb") as src:
        image = src.read()
    mfd = os.memfd_create("payload", 0)
    os.write(mfd, image)
    memfd_path = f"/proc/{os.getpid()}/fd/{mfd}"
    try:
        assert run([memfd_path], pass_fds=(mfd,)).returncode == 0  # memfd exec works without the rule
        mine = os.path.join(tmp, "mine")
        shutil.copy2(TRUE, mine)
        lsm.exec_allowlist(22, [TRUE, SH, mine])
        assert run([TRUE]).returncode == 0
        # the list names inodes: a hard link to an allowed file is that file
        os.link(mine, os.path.join(tmp, "mine-link"))
        assert run([os.path.join(tmp, "mine-link")]).returncode == 0
        with pytest.raises(PermissionError):
            run([copy])
        with pytest.raises(PermissionError):
            run([memfd_path], pass_fds=(mfd,))
        with pytest.raises(PermissionError):
            run([PY, "-c", "pass"])  # not on the list
        r = run([SH, "-c", f"{TRUE} && echo ok"])
        assert r.stdout.strip() == "ok"
    finally:
        lsm.remove_rule(22)
        os.close(mfd)
    ds = decisions(lsm, want=3)
    names = [d.filename for d in ds]
    assert copy in names and memfd_path in names
    assert all(d.verdict == "deny" and d.kind == "exec_allow" for d in ds)


def test_exec_allowlist_monitor(lsm: LsmEnforcer, tmp: str) -> None:
    copy = os.path.join(tmp, "true-copy")
    shutil.copy2(TRUE, copy)
    lsm.exec_allowlist(23, [TRUE], mode="monitor")
    assert run([copy]).returncode == 0
    d = [x for x in decisions(lsm) if x.filename == copy][0]
    assert d.monitor and d.verdict == "allow" and d.rule_id == 23


# --- socket_create -----------------------------------------------------------

RAW = """import socket, sys
fam = getattr(socket, sys.argv[1]); typ = getattr(socket, sys.argv[2]); proto = int(sys.argv[3])
try:
    socket.socket(fam, typ, proto).close(); print("ok")
except OSError as e:
    print(e.errno)
"""


def test_raw_sockets_denied(lsm: LsmEnforcer) -> None:
    cases = [("AF_INET", "SOCK_RAW", socket.IPPROTO_ICMP), ("AF_INET6", "SOCK_RAW", socket.IPPROTO_ICMPV6),
             ("AF_PACKET", "SOCK_RAW", 0), ("AF_PACKET", "SOCK_DGRAM", 0)]
    for c in cases:
        assert pyrun(RAW, c[0], c[1], str(c[2])).stdout.strip() == "ok", c
    lsm.deny_raw_sockets(31)
    for c in cases:
        assert pyrun(RAW, c[0], c[1], str(c[2])).stdout.strip() == str(errno.EPERM), c
    assert pyrun(RAW, "AF_INET", "SOCK_STREAM", "0").stdout.strip() == "ok"
    assert pyrun(RAW, "AF_INET", "SOCK_DGRAM", "0").stdout.strip() == "ok"
    ds = decisions(lsm, want=4)
    assert {(d.family, d.sock_type) for d in ds} == {(socket.AF_INET, socket.SOCK_RAW),
                                                     (socket.AF_INET6, socket.SOCK_RAW),
                                                     (socket.AF_PACKET, socket.SOCK_RAW),
                                                     (socket.AF_PACKET, socket.SOCK_DGRAM)}
    assert all(d.hook == "socket_create" and d.rule_id == 31 for d in ds)


# --- kernel modules ------------------------------------------------------------

def test_module_load_denied(lsm: LsmEnforcer) -> None:
    ko = f"/lib/modules/{os.uname().release}/kernel/drivers/net/dummy.ko"
    if not os.path.exists(ko):
        pytest.skip(f"{ko} is not installed")
    run(["modprobe", "-r", "dummy"])
    lsm.deny_module_load(41)
    r = run(["modprobe", "dummy"])
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    assert "dummy" not in open("/proc/modules").read()
    d = [x for x in decisions(lsm) if x.hook == "kernel_read_file"][0]
    assert d.rule_id == 41 and d.filename.startswith("dummy.ko") and d.comm == "modprobe"
    lsm.remove_rule(41)
    assert run(["modprobe", "dummy"]).returncode == 0  # the rule, nothing else, stopped it
    assert run(["modprobe", "-r", "dummy"]).returncode == 0


# --- bpf ---------------------------------------------------------------------

# BPF_PROG_LOAD of "r0 = 0; exit" as a socket filter, straight through bpf(2)
PROG_LOAD = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
insns = (ctypes.c_uint64 * 2)(0xb7, 0x95)  # mov64 r0, 0 ; exit
lic = ctypes.create_string_buffer(b"GPL")
attr = (ctypes.c_uint8 * 128)()
ctypes.memmove(ctypes.addressof(attr), ctypes.byref(ctypes.c_uint32(1)), 4)  # prog_type SOCKET_FILTER
ctypes.memmove(ctypes.addressof(attr) + 4, ctypes.byref(ctypes.c_uint32(2)), 4)  # insn_cnt
ctypes.memmove(ctypes.addressof(attr) + 8, ctypes.byref(ctypes.c_uint64(ctypes.addressof(insns))), 8)
ctypes.memmove(ctypes.addressof(attr) + 16, ctypes.byref(ctypes.c_uint64(ctypes.addressof(lic))), 8)
fd = libc.syscall(321, 5, attr, 128)
if fd < 0:
    print(ctypes.get_errno())
else:
    os.close(fd); print("ok")
"""


def test_bpf_load_denied_except_for_the_agent(lsm: LsmEnforcer) -> None:
    assert pyrun(PROG_LOAD).stdout.strip() == "ok"
    lsm.deny_bpf_load(51)  # exempt: this process
    assert pyrun(PROG_LOAD).stdout.strip() == str(errno.EPERM)
    ns: dict[str, object] = {}
    exec_out: list[str] = []
    ns["print"] = lambda *a: exec_out.append(" ".join(map(str, a)))
    exec(PROG_LOAD, ns)  # noqa: S102 - the same load in this (exempt) process
    assert exec_out == ["ok"]
    # and the agent can still load whole objects (the probes)
    features.probe.cache_clear()
    assert features.probe(BPF_DIR, "kprobe") is None
    d = [x for x in decisions(lsm) if x.hook == "bpf"][0]
    assert d.rule_id == 51 and d.arg == 5 and d.pid != os.getpid()


# --- path_unlink / path_rename / path_chmod ------------------------------------

def test_protected_file_cannot_be_removed_renamed_or_chmodded(lsm: LsmEnforcer, tmp: str) -> None:
    f = mkfile(tmp)
    other = mkfile(tmp, "other")
    lsm.protect_files(61, f)
    for argv in (["rm", "-f", f], ["mv", f, os.path.join(tmp, "new")], ["chmod", "600", f], ["mv", other, f]):
        r = run(argv)
        assert r.returncode != 0 and EPERM_TEXT in r.stderr, argv
    assert os.path.exists(f) and open(f).read() == "hello\n" and os.path.exists(other)
    assert run(["cat", f]).returncode == 0  # reading is not affected
    ds = decisions(lsm, want=4)
    assert sorted(d.hook for d in ds) == ["path_chmod", "path_rename", "path_rename", "path_unlink"]
    assert all(d.path == f for d in ds)
    lsm.remove_rule(61)
    assert run(["rm", f]).returncode == 0


# --- task_kill / ptrace_access_check --------------------------------------------

PTRACE = """import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.ptrace(16, int(sys.argv[1]), 0, 0)  # PTRACE_ATTACH
print("ok" if r == 0 else ctypes.get_errno())
"""


def test_protected_task_survives_kill_and_ptrace(lsm: LsmEnforcer) -> None:
    victim = subprocess.Popen(["sleep", "1000"])
    try:
        lsm.protect_tasks(71, [victim.pid])
        for sig in ("-9", "-TERM", "-STOP", "-INT"):
            r = run(["sh", "-c", f"kill {sig} {victim.pid}"])
            assert r.returncode != 0 and EPERM_TEXT in r.stderr, sig
        assert run(["kill", "-0", str(victim.pid)]).returncode == 0  # the probe is allowed
        assert victim.poll() is None
        assert pyrun(PTRACE, str(victim.pid)).stdout.strip() == str(errno.EPERM)
        ds = decisions(lsm, want=5)
        kills = [d for d in ds if d.hook == "task_kill"]
        assert {d.arg for d in kills} == {9, 15, 19, 2} and all(d.target_pid == victim.pid for d in kills)
        assert [d for d in ds if d.hook == "ptrace_access_check"][0].target_pid == victim.pid
        # a protected sender may signal its own kind
        lsm.protect_tasks(71, [victim.pid, os.getpid()])
        os.kill(victim.pid, signal.SIGTERM)
        assert victim.wait(timeout=30) == -signal.SIGTERM
    finally:
        lsm.remove_rule(71)
        if victim.poll() is None:
            victim.kill()
            victim.wait()


# --- keep_on_exit ------------------------------------------------------------------

AGENT = """import sys, time
from kerneye.enforce.lsm import LsmEnforcer
e = LsmEnforcer(keep_on_exit=True, pin_dir=sys.argv[2]).start()
e.deny_open(81, sys.argv[1])
print("ready", flush=True)
time.sleep(1000)
"""


def test_keep_on_exit_survives_sigkill(tmp: str) -> None:
    f = mkfile(tmp)
    pin = "/sys/fs/bpf/kerneye/enforce/lsm-test"
    agent = subprocess.Popen([PY, "-c", AGENT, f, pin], stdout=subprocess.PIPE, text=True)
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"
        assert run(["cat", f]).returncode != 0
        agent.kill()
        agent.wait()
        r = run(["cat", f])
        assert r.returncode != 0 and EPERM_TEXT in r.stderr  # the agent is dead, the deny holds
        assert set(os.listdir(pin)) == set(PROGRAMS) | set(MAPS) | {"kerneye_execve_map"}
        with pytest.raises(EnforceError, match="already pinned"):
            LsmEnforcer(keep_on_exit=True, pin_dir=pin).start()
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
        released = release_pinned(pin)
    assert released
    assert run(["cat", f]).stdout == "hello\n"
    assert not os.path.exists(pin)


# --- cgroup scope ------------------------------------------------------------------

CGROUP2 = "/sys/fs/cgroup/unified"


@pytest.fixture
def cg() -> Iterator[str]:
    """A fresh cgroup-v2 directory with a nested child; removed afterwards
    (the processes the tests put there have exited by then)."""
    d = os.path.join(CGROUP2, f"kerneye-lsm-{os.getpid()}")
    os.makedirs(os.path.join(d, "nested"))
    try:
        yield d
    finally:
        for p in (os.path.join(d, "nested"), d):
            os.rmdir(p)


def in_cgroup(cg_dir: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run argv as a process that first moves itself into cg_dir."""
    return run(["sh", "-c", f'echo $$ > {cg_dir}/cgroup.procs && exec "$@"', "sh", *argv])


def slot_is_empty(enf: LsmEnforcer, slot: int) -> bool:
    """The cgroup array refuses lookups from user space; deleting an empty
    slot fails with ENOENT (and deleting a filled one would empty it)."""
    assert enf._obj is not None  # noqa: SLF001
    return not maps.delete(enf._obj.map_fd("kerneye_lsm_cgroups"), ctypes.c_uint32(slot))  # noqa: SLF001


def test_cgroup_scoped_open_denied_inside_only(lsm: LsmEnforcer, tmp: str, cg: str) -> None:
    f = mkfile(tmp)
    nested = os.path.join(cg, "nested")
    lsm.deny_open(91, f, cgroups=[cg])
    slot = lsm.cgroup_slots()[cg]
    r = in_cgroup(cg, ["cat", f])
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    r = in_cgroup(nested, ["cat", f])  # a child cgroup is covered
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    assert run(["cat", f]).stdout == "hello\n"  # outside: allowed
    assert in_cgroup(CGROUP2, ["cat", f]).stdout == "hello\n"  # the parent is outside too
    ds = [d for d in decisions(lsm, want=2) if d.comm == "cat"]
    assert sorted(d.cgroup_id for d in ds) == sorted([os.stat(cg).st_ino, os.stat(nested).st_ino])
    assert all((d.rule_id, d.verdict, d.errno) == (91, "deny", errno.EPERM) for d in ds)
    # removing the rule frees its cgroup slot, and the cgroup may open again
    assert lsm.remove_rule(91)
    assert lsm.cgroup_slots() == {} and slot_is_empty(lsm, slot)
    assert in_cgroup(cg, ["cat", f]).stdout == "hello\n"


def test_cgroup_scoped_raw_sockets_and_shared_slots(lsm: LsmEnforcer, tmp: str, cg: str) -> None:
    nested = os.path.join(cg, "nested")
    f = mkfile(tmp)
    icmp = ["AF_INET", "SOCK_RAW", str(socket.IPPROTO_ICMP)]
    packet = ["AF_PACKET", "SOCK_DGRAM", "0"]
    lsm.deny_raw_sockets(92, cgroups=nested)
    lsm.deny_open(93, f, cgroups=[cg, nested])  # shares nested's slot
    slots = lsm.cgroup_slots()
    assert set(slots) == {cg, nested} and len(set(slots.values())) == 2
    for argv in (icmp, packet):
        assert in_cgroup(nested, [PY, "-c", RAW, *argv]).stdout.strip() == str(errno.EPERM), argv
        assert in_cgroup(cg, [PY, "-c", RAW, *argv]).stdout.strip() == "ok", argv  # only the child is scoped
        assert pyrun(RAW, *argv).stdout.strip() == "ok", argv
    ds = [d for d in decisions(lsm, want=2) if d.hook == "socket_create"]
    assert len(ds) == 2 and all(d.rule_id == 92 and d.cgroup_id == os.stat(nested).st_ino for d in ds)
    # the slot of nested is held by both rules: it stays until the second goes
    lsm.remove_rule(92)
    assert lsm.cgroup_slots() == slots
    assert in_cgroup(nested, [PY, "-c", RAW, *icmp]).stdout.strip() == "ok"
    r = in_cgroup(nested, ["cat", f])  # rule 93 still sees nested's slot
    assert r.returncode != 0 and EPERM_TEXT in r.stderr
    assert run(["cat", f]).stdout == "hello\n"
    lsm.remove_rule(93)
    assert lsm.cgroup_slots() == {}
    assert all(slot_is_empty(lsm, s) for s in slots.values())


def test_cgroup_scoped_module_load(lsm: LsmEnforcer, cg: str) -> None:
    ko = f"/lib/modules/{os.uname().release}/kernel/drivers/net/dummy.ko"
    if not os.path.exists(ko):
        pytest.skip(f"{ko} is not installed")
    run(["modprobe", "-r", "dummy"])
    lsm.deny_module_load(94, cgroups=[cg])
    try:
        r = in_cgroup(os.path.join(cg, "nested"), ["modprobe", "dummy"])
        assert r.returncode != 0 and EPERM_TEXT in r.stderr
        assert "dummy" not in open("/proc/modules").read()
        d = [x for x in decisions(lsm) if x.hook == "kernel_read_file"][0]
        assert d.rule_id == 94 and d.comm == "modprobe"
        assert run(["modprobe", "dummy"]).returncode == 0  # outside the cgroup: loads
    finally:
        run(["modprobe", "-r", "dummy"])
        lsm.remove_rule(94)


def test_cgroup_scope_refuses_what_is_not_cgroup_v2(lsm: LsmEnforcer, tmp: str) -> None:
    with pytest.raises(EnforceError, match="not a cgroup-v2 directory"):
        lsm.deny_module_load(95, cgroups=tmp)
    assert lsm.rules() == [] and lsm.cgroup_slots() == {}
