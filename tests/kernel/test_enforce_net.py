"""Network enforcement with cgroup BPF (kerneye.enforce.cgroup_net), for real.

Each test runs tests/progs/enftrig inside a fresh child cgroup-v2 (created
under /sys/fs/cgroup/unified and removed afterwards) and checks the errno
it reports, plus the decisions the kernel sent to the ring buffer. The same
trigger run outside the cgroup shows that nothing else is affected. The
listeners live in the test process, outside the cgroup.
"""
from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from typing import Iterator

import pytest
from enfutil import CGROUP2, ENFTRIG, ROOT, assert_detached, bpftool_json, cgroup_enforcer_fixtures, enftrig, \
    free_port, kill_all, listening, make_cgroup, parked, release, remove_cgroup, set_bin_match, wait_decisions
from enfutil import cgroup, execve_map  # noqa: F401 (fixtures, used by name)

from kerneye.enforce.cgroup_net import CgroupNetEnforcer, NetRule, release_pinned

OBJ = os.path.join(ROOT, "bpf", ".output", "enforce_cgroup_net.bpf.o")

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not os.path.exists(ENFTRIG), reason="make -C tests/progs builds enftrig"),
    pytest.mark.skipif(not os.path.exists(OBJ), reason="make -C bpf builds enforce_cgroup_net.bpf.o"),
    pytest.mark.skipif(not os.path.isfile(os.path.join(CGROUP2, "cgroup.procs")),
                       reason=f"no cgroup-v2 hierarchy at {CGROUP2}"),
    pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is needed to verify detaching"),
]


# --- helpers (shared ones in tests/enfutil.py) ----------------------------------

def trig(cgroup: str | None, *ops: object) -> list[int]:
    """Run enftrig (inside cgroup if given); return one errno per op (0 = ok)."""
    return enftrig(*ops, cgroup=cgroup)


enforcer_mod, enf = cgroup_enforcer_fixtures(CgroupNetEnforcer)


@pytest.fixture(scope="module")
def listeners() -> Iterator[dict[str, int]]:
    """TCP on 127.0.0.1 (two ports) and ::1, UDP on 127.0.0.1: name -> port."""
    with listening("tcp4", "tcp4b", "tcp6", "udp4") as ports:
        yield ports


# --- connect --------------------------------------------------------------------

def test_connect_denied_then_allowed_when_rule_removed_live(enf: CgroupNetEnforcer, cgroup: str,
                                                            listeners: dict[str, int]) -> None:
    p = listeners["tcp4"]
    assert trig(cgroup, "connect4", "127.0.0.1", p) == [0]
    enf.add_rule(NetRule(id=11, cidrs=["127.0.0.0/8"]))
    assert trig(cgroup, "connect4", "127.0.0.1", p) == [errno.EPERM]
    assert trig(None, "connect4", "127.0.0.1", p) == [0], "a process outside the cgroup was affected"
    assert enf.remove_rule(11)
    assert trig(cgroup, "connect4", "127.0.0.1", p) == [0]


def test_port_rule_leaves_other_ports_alone(enf: CgroupNetEnforcer, cgroup: str, listeners: dict[str, int]) -> None:
    p, other = listeners["tcp4"], listeners["tcp4b"]
    enf.add_rule(NetRule(id=12, cidrs=["127.0.0.0/8"], ports=(p, p), proto="tcp"))
    assert trig(cgroup, "connect4", "127.0.0.1", p, "connect4", "127.0.0.1", other) == [errno.EPERM, 0]
    d = wait_decisions(enf)
    assert len(d) == 1
    d0 = d[0]
    assert (d0.hook, d0.verdict, d0.rule_id, d0.addr, d0.port, d0.family) == \
        ("connect", "deny", 12, "127.0.0.1", p, socket.AF_INET)
    assert d0.comm == "enftrig" and d0.pid == d0.tgid and d0.err == errno.EPERM and not d0.monitor
    assert enf.hits()[12] == 1


def test_ipv6_rule(enf: CgroupNetEnforcer, cgroup: str, listeners: dict[str, int]) -> None:
    enf.add_rule(NetRule(id=13, cidrs=["::1/128"]))
    assert trig(cgroup, "connect6", "::1", listeners["tcp6"], "connect4", "127.0.0.1", listeners["tcp4"]) == \
        [errno.EPERM, 0]
    (d,) = wait_decisions(enf)
    assert (d.family, d.addr, d.rule_id, d.mapped) == (socket.AF_INET6, "::1", 13, False)


def test_ipv4_mapped_ipv6_is_matched_by_the_ipv4_rule(enf: CgroupNetEnforcer, cgroup: str,
                                                      listeners: dict[str, int]) -> None:
    p = listeners["tcp4"]
    assert trig(cgroup, "connect6", "::ffff:127.0.0.1", p) == [0]
    enf.add_rule(NetRule(id=14, cidrs=["127.0.0.1/32"]))
    assert trig(cgroup, "connect6", "::ffff:127.0.0.1", p, "sendto6", "::ffff:127.0.0.1", listeners["udp4"],
                "bind6", "::ffff:127.0.0.1", 0) == [errno.EPERM] * 3
    ds = wait_decisions(enf, 3)
    assert all(d.rule_id == 14 for d in ds)
    by_hook = {d.hook: d for d in ds}
    for hook in ("connect", "bind"):  # seen by connect6/bind6 as mapped IPv6
        d = by_hook[hook]
        assert d.mapped and d.addr == "::ffff:127.0.0.1" and d.family == socket.AF_INET6, hook
    # udpv6_sendmsg converts to IPv4 before the hook: sendmsg4 sees 127.0.0.1
    assert (by_hook["sendmsg"].family, by_hook["sendmsg"].addr) == (socket.AF_INET, "127.0.0.1")


def test_mapped_ipv6_cidr_is_stored_as_ipv4(enf: CgroupNetEnforcer, cgroup: str, listeners: dict[str, int]) -> None:
    enf.add_rule(NetRule(id=15, cidrs=["::ffff:127.0.0.0/104"]))
    assert trig(cgroup, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM]


def test_allow_rule_with_lower_priority_number_is_an_exception(enf: CgroupNetEnforcer, cgroup: str,
                                                               listeners: dict[str, int]) -> None:
    p, other = listeners["tcp4"], listeners["tcp4b"]
    enf.add_rule(NetRule(id=16, cidrs=["0.0.0.0/0"]))  # deny everything over IPv4 ...
    enf.add_rule(NetRule(id=17, action="allow", cidrs=["127.0.0.1/32"], ports=(p, p), priority=10, report=True))
    assert trig(cgroup, "connect4", "127.0.0.1", p, "connect4", "127.0.0.1", other) == [0, errno.EPERM]
    ds = wait_decisions(enf, 2)
    assert [(d.rule_id, d.verdict) for d in ds] == [(17, "allow"), (16, "deny")]


def test_rule_errno_is_returned(enf: CgroupNetEnforcer, cgroup: str, listeners: dict[str, int]) -> None:
    enf.add_rule(NetRule(id=18, cidrs=["127.0.0.0/8"], err=errno.EACCES))
    assert trig(cgroup, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EACCES]


# --- UDP, bind, raw sockets -------------------------------------------------------

def test_udp_sendto_denied(enf: CgroupNetEnforcer, cgroup: str, listeners: dict[str, int]) -> None:
    u = listeners["udp4"]
    enf.add_rule(NetRule(id=21, cidrs=["127.0.0.0/8"], ports=(u, u), proto="udp", hooks=("sendmsg", "connect")))
    assert trig(cgroup, "sendto4", "127.0.0.1", u, "udpconnect4", "127.0.0.1", u,
                "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM, errno.EPERM, 0]
    assert trig(None, "sendto4", "127.0.0.1", u) == [0]


def test_bind_to_denied_port(enf: CgroupNetEnforcer, cgroup: str) -> None:
    port, other = free_port(), free_port()
    enf.add_rule(NetRule(id=22, ports=(port, port), hooks=("bind",)))  # no CIDR: any address, v4 and v6
    assert trig(cgroup, "bind4", "0.0.0.0", port, "bind6", "::", port, "bind4", "127.0.0.1", other) == \
        [errno.EPERM, errno.EPERM, 0]
    ds = wait_decisions(enf, 2)
    assert {(d.hook, d.family, d.port) for d in ds} == {("bind", socket.AF_INET, port), ("bind", socket.AF_INET6, port)}


def test_raw_socket_creation_denied(enf: CgroupNetEnforcer, cgroup: str) -> None:
    assert trig(cgroup, "raw4", "raw6") == [0, 0]
    enf.add_rule(NetRule.deny_raw_sockets(id=23))
    assert trig(cgroup, "raw4", "raw6") == [errno.EPERM, errno.EPERM]
    assert trig(None, "raw4") == [0]
    ds = wait_decisions(enf, 2)
    assert {(d.hook, d.sock_type, d.family) for d in ds} == \
        {("sock_create", socket.SOCK_RAW, socket.AF_INET), ("sock_create", socket.SOCK_RAW, socket.AF_INET6)}
    # the raw-socket rule does not touch ordinary sockets
    assert trig(cgroup, "sendto4", "127.0.0.1", 9) == [0]


# --- modes ----------------------------------------------------------------------

def test_monitor_mode_allows_and_reports(enf: CgroupNetEnforcer, cgroup: str, listeners: dict[str, int]) -> None:
    p = listeners["tcp4"]
    enf.add_rule(NetRule(id=31, cidrs=["127.0.0.0/8"], ruleset=1))
    assert trig(cgroup, "connect4", "127.0.0.1", p) == [errno.EPERM]
    enf.set_mode("monitor", ruleset=1)
    enf.read_decisions()
    assert trig(cgroup, "connect4", "127.0.0.1", p) == [0]
    (d,) = wait_decisions(enf)
    assert (d.verdict, d.monitor, d.rule_id, d.err) == ("allow", True, 31, 0)
    assert enf.stats()["monitored"] >= 1
    enf.set_mode("off", ruleset=1)
    assert trig(cgroup, "connect4", "127.0.0.1", p) == [0]
    assert wait_decisions(enf, timeout_s=0.3) == []


def test_enforce_set_decides_while_monitor_set_only_reports(enf: CgroupNetEnforcer, cgroup: str,
                                                            listeners: dict[str, int]) -> None:
    p, other = listeners["tcp4"], listeners["tcp4b"]
    enf.set_mode("monitor", ruleset=2)
    enf.add_rule(NetRule(id=32, cidrs=["127.0.0.0/8"], ruleset=2, priority=1))      # monitor: everything
    enf.add_rule(NetRule(id=33, cidrs=["127.0.0.1/32"], ports=(p, p), priority=50))  # enforce: one port
    assert trig(cgroup, "connect4", "127.0.0.1", p, "connect4", "127.0.0.1", other) == [errno.EPERM, 0]
    ds = wait_decisions(enf, 2)
    assert [(d.rule_id, d.verdict, d.monitor) for d in ds] == [(33, "deny", False), (32, "allow", True)]


# --- life cycle -------------------------------------------------------------------

def test_close_detaches_everything(listeners: dict[str, int]) -> None:
    cg = make_cgroup()
    try:
        enf = CgroupNetEnforcer(cg).start()
        ids = dict(enf.prog_ids)
        assert len(ids) == 7
        enf.add_rule(NetRule(id=41, cidrs=["127.0.0.0/8"]))
        attached = bpftool_json("cgroup", "show", cg)
        assert isinstance(attached, list) and {a["name"] for a in attached} >= {"enf_connect4", "enf_sock_create"}
        assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM]
        enf.close()
        enf.close()  # idempotent
        assert_detached(ids, cg)
        assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [0]
    finally:
        remove_cgroup(cg)


def test_keep_on_exit_survives_close_until_released(listeners: dict[str, int]) -> None:
    cg = make_cgroup()
    pin = f"/sys/fs/bpf/kerneye/enforce/test-{uuid.uuid4().hex[:8]}"
    try:
        enf = CgroupNetEnforcer(cg, keep_on_exit=True, pin_dir=pin).start()
        ids = dict(enf.prog_ids)
        enf.add_rule(NetRule(id=42, cidrs=["127.0.0.0/8"]))
        with pytest.raises(Exception, match="already pinned"):
            CgroupNetEnforcer(cg, keep_on_exit=True, pin_dir=pin).start()
        enf.close()
        assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM]
        assert release_pinned(pin) and not os.path.exists(pin)
        assert_detached(ids, cg)
        assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [0]
    finally:
        release_pinned(pin)
        remove_cgroup(cg)


_HOLDER = """
import sys, time
sys.path.insert(0, {src!r})
from kerneye.enforce.cgroup_net import CgroupNetEnforcer, NetRule
enf = CgroupNetEnforcer({cg!r}, keep_on_exit={keep!r}, pin_dir={pin!r}).start()
enf.add_rule(NetRule(id=51, cidrs=["127.0.0.0/8"]))
print(" ".join(str(i) for i in enf.prog_ids.values()), flush=True)
time.sleep(60)
"""


def _holder(cg: str, keep: bool, pin: str) -> tuple[subprocess.Popen[str], dict[str, int]]:
    code = _HOLDER.format(src=os.path.join(ROOT, "src"), cg=cg, keep=keep, pin=pin)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    assert line, "the enforcer subprocess failed to start"
    return p, {f"prog{i}": int(x) for i, x in enumerate(line.split())}


@pytest.mark.parametrize("keep", [False, True], ids=["fail-open", "keep-on-exit"])
def test_sigkill_of_the_enforcer(keep: bool, listeners: dict[str, int], tmp_path: object) -> None:
    """Without pinning the kernel detaches the links when the process dies
    (fail open); with keep_on_exit the pinned links keep enforcing until
    release_pinned() (fail closed)."""
    cg = make_cgroup()
    pin = f"/sys/fs/bpf/kerneye/enforce/test-{uuid.uuid4().hex[:8]}"
    p = None
    try:
        p, ids = _holder(cg, keep, pin)
        assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM]
        p.send_signal(signal.SIGKILL)
        p.wait(10)
        if keep:
            assert sorted(os.listdir(pin))[:2] == ["enf_bind4", "enf_bind6"]
            assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM]
            assert release_pinned(pin)
        assert_detached(ids, cg)
        assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [0]
    finally:
        if p and p.poll() is None:
            p.kill()
            p.wait()
        release_pinned(pin)
        remove_cgroup(cg)


# --- "for these binaries" (bin_mask) ------------------------------------------------

def _parked(cgroup: str, *ops: object) -> subprocess.Popen[str]:
    """enftrig in cgroup, held before exec until a line arrives on stdin, so
    that its tgid (bash's pid, kept across exec) is known in advance."""
    return parked([ENFTRIG, *map(str, ops)], cgroup)


@pytest.mark.parametrize("bin_not", [False, True], ids=["bin", "bin-not"])
def test_rule_applies_only_to_matching_binaries(bin_not: bool, execve_map: int, listeners: dict[str, int]) -> None:
    cg = make_cgroup()
    p = listeners["tcp4"]
    marked = other = None
    try:
        with CgroupNetEnforcer(cg, execve_map_fd=execve_map) as enf:
            enf.add_rule(NetRule(id=61, cidrs=["127.0.0.0/8"], bin_mask=0b100, bin_not=bin_not))
            marked = _parked(cg, "connect4", "127.0.0.1", p)
            other = _parked(cg, "connect4", "127.0.0.1", p)  # absent from the map: bin_match 0
            set_bin_match(execve_map, marked.pid, 0b110)
            set_bin_match(execve_map, os.getpid(), 0b001)  # a third slot: irrelevant to the rule
            got_marked, got_other = release(marked), release(other)
            if bin_not:
                assert (got_marked, got_other) == ([0], [errno.EPERM])
            else:
                assert (got_marked, got_other) == ([errno.EPERM], [0])
            (d,) = wait_decisions(enf)
            assert d.rule_id == 61 and d.tgid == (other.pid if bin_not else marked.pid)
    finally:
        kill_all([marked, other])
        remove_cgroup(cg)


def test_bin_rule_without_a_shared_map_sees_every_process_as_unmatched(listeners: dict[str, int]) -> None:
    cg = make_cgroup()
    try:
        with CgroupNetEnforcer(cg) as enf:
            enf.add_rule(NetRule(id=62, cidrs=["127.0.0.0/8"], bin_mask=1))
            assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [0]
            enf.add_rule(NetRule(id=62, cidrs=["127.0.0.0/8"], bin_mask=1, bin_not=True))
            assert trig(cg, "connect4", "127.0.0.1", listeners["tcp4"]) == [errno.EPERM]
    finally:
        remove_cgroup(cg)


def test_an_unsuitable_execve_map_fd_is_refused() -> None:
    from kerneye.bpf import maps
    from kerneye.errors import ConfigError
    fd = maps.create(maps.BPF_MAP_TYPE_HASH, 4, 8, 4, "kerneye_test_bad")
    try:
        with pytest.raises(ConfigError, match="is not a kerneye_execve_map"):
            CgroupNetEnforcer(CGROUP2, execve_map_fd=fd).start()
    finally:
        os.close(fd)
    with pytest.raises(ConfigError, match="is not a BPF map"):
        CgroupNetEnforcer(CGROUP2, execve_map_fd=0).start()
