"""sysctl and device enforcement with cgroup BPF (kerneye.enforce.cgroup_sys), for real.

Each test runs a small Python trigger inside a fresh child cgroup-v2 (created
under /sys/fs/cgroup/unified and removed afterwards) and checks the errno of
each operation and the decisions the kernel reported. sysctl writes go to
kernel/domainname inside a new UTS namespace (`unshare -u`), so even a write
that is allowed changes nothing outside the trigger.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import uuid

import pytest
from enfutil import CGROUP2, ROOT, assert_detached, bpftool_json, cgroup_enforcer_fixtures, kill_all, make_cgroup, \
    remove_cgroup, run_trigger, set_bin_match, wait_decisions
from enfutil import cgroup, execve_map  # noqa: F401 (fixtures, used by name)
from enfutil import parked as _parked
from enfutil import release

from kerneye.enforce.cgroup_sys import CgroupSysEnforcer, DeviceRule, SysctlRule, release_pinned

OBJ = os.path.join(ROOT, "bpf", ".output", "enforce_cgroup_sys.bpf.o")

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (BPF, cgroups, mknod)"),
    pytest.mark.skipif(not os.path.exists(OBJ), reason="make -C bpf builds enforce_cgroup_sys.bpf.o"),
    pytest.mark.skipif(not os.path.isfile(os.path.join(CGROUP2, "cgroup.procs")),
                       reason=f"no cgroup-v2 hierarchy at {CGROUP2}"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare(1) is needed for a private UTS namespace"),
    pytest.mark.skipif(shutil.which("bpftool") is None, reason="bpftool is needed to verify detaching"),
]

# Performs "op arg..." groups from argv; prints "<op> ok" or "<op> err <errno>".
TRIGGER = r"""
import os, stat, sys
a = sys.argv[1:]
def run(op, f):
    try:
        f(); print(op, "ok")
    except OSError as e:
        print(op, "err", e.errno)
def wr(name, val):
    fd = os.open("/proc/sys/" + name, os.O_WRONLY)
    try: os.write(fd, val.encode())
    finally: os.close(fd)
def rd(name):
    fd = os.open("/proc/sys/" + name, os.O_RDONLY)
    try: os.read(fd, 256)
    finally: os.close(fd)
def op(path, mode):
    os.close(os.open(path, {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[mode]))
def mknod(path, t, ma, mi):
    os.mknod(path, (stat.S_IFCHR if t == "c" else stat.S_IFBLK) | 0o600, os.makedev(int(ma), int(mi)))
    os.unlink(path)
i = 0
while i < len(a):
    o = a[i]
    if o == "sysctl_write": run(o, lambda: wr(a[i + 1], a[i + 2])); i += 3
    elif o == "sysctl_read": run(o, lambda: rd(a[i + 1])); i += 2
    elif o == "open": run(o, lambda: op(a[i + 1], a[i + 2])); i += 3
    elif o == "mknod": run(o, lambda: mknod(a[i + 1], a[i + 2], a[i + 3], a[i + 4])); i += 5
    else: sys.exit("unknown op " + o)
sys.stdout.flush()
"""


# --- helpers (shared ones in tests/enfutil.py) ----------------------------------

def _argv(ops: tuple[object, ...]) -> list[str]:
    # `unshare -u` execs without forking, so the trigger keeps the pid (and
    # tgid) of the shell that joined the cgroup
    return ["unshare", "-u", sys.executable, "-S", "-c", TRIGGER, *map(str, ops)]


def trig(cgroup: str | None, *ops: object) -> list[int]:
    """Run the trigger (inside cgroup if given); one errno per op (0 = ok)."""
    return run_trigger(_argv(ops), cgroup, timeout=30)


def parked(cgroup: str, *ops: object) -> subprocess.Popen[str]:
    """The trigger in cgroup, held before exec until release(): its tgid is
    known before it acts."""
    return _parked(_argv(ops), cgroup)


DOMAIN = "kernel/domainname"
W = ("sysctl_write", DOMAIN, "kerneye-test")
R = ("sysctl_read", DOMAIN)


# --- fixtures -----------------------------------------------------------------

enforcer_mod, enf = cgroup_enforcer_fixtures(CgroupSysEnforcer)


# --- sysctl ---------------------------------------------------------------------

def test_sysctl_write_denied_read_allowed_and_outsiders_untouched(enf: CgroupSysEnforcer, cgroup: str) -> None:
    assert trig(cgroup, *W) == [0]
    enf.add_sysctl_rule(SysctlRule(id=1, names=[DOMAIN]))
    p = parked(cgroup, *W, *R)
    assert release(p) == [errno.EPERM, 0]
    assert trig(None, *W) == [0], "a process outside the cgroup was affected"
    (d,) = wait_decisions(enf)
    assert (d.kind, d.verdict, d.monitor, d.rule_id, d.name, d.access, d.err) == \
        ("sysctl", "deny", False, 1, DOMAIN, "write", errno.EPERM)
    assert d.tgid == p.pid and d.comm.startswith("python") and d.cgroup_id > 0 and d.dev_type == ""
    assert set(d.to_dict()) >= {"kind", "name", "rule_id", "pid", "tgid", "comm", "cgroup_id"}
    assert enf.hits()[1] == 1 and enf.stats()["denied"] >= 1
    assert enf.remove_rule(1) and not enf.remove_rule(1)
    assert trig(cgroup, *W) == [0]


def test_prefix_and_exact_names(enf: CgroupSysEnforcer, cgroup: str) -> None:
    # an exact name never matches a longer one; a prefix does
    enf.add_sysctl_rule(SysctlRule(id=2, names=["kernel/domain"], access=("read", "write")))
    assert trig(cgroup, *R, *W) == [0, 0]
    enf.add_sysctl_rule(SysctlRule(id=3, prefixes=["kernel."], access=("read",)))  # sysctl(8) style
    assert trig(cgroup, *R, "sysctl_read", "kernel/ostype", "sysctl_read", "vm/swappiness", *W) == \
        [errno.EPERM, errno.EPERM, 0, 0]
    assert {d.name for d in wait_decisions(enf, 2)} == {DOMAIN, "kernel/ostype"}


def test_allow_rule_with_lower_priority_number_is_an_exception(enf: CgroupSysEnforcer, cgroup: str) -> None:
    enf.add_sysctl_rule(SysctlRule(id=4, prefixes=[""], access=("read",)))  # every sysctl
    enf.add_sysctl_rule(SysctlRule(id=5, action="allow", names=["kernel/ostype"], access=("read",), priority=10,
                                   report=True))
    assert trig(cgroup, "sysctl_read", "kernel/ostype", *R) == [0, errno.EPERM]
    assert [(d.rule_id, d.verdict) for d in wait_decisions(enf, 2)] == [(5, "allow"), (4, "deny")]


def test_rule_errno_is_returned(enf: CgroupSysEnforcer, cgroup: str) -> None:
    enf.add_sysctl_rule(SysctlRule(id=6, names=[DOMAIN], err=errno.EACCES))
    assert trig(cgroup, *W) == [errno.EACCES]


def test_monitor_mode_allows_and_reports_then_off_is_silent(enf: CgroupSysEnforcer, cgroup: str) -> None:
    enf.add_sysctl_rule(SysctlRule(id=7, names=[DOMAIN], ruleset=1))
    assert trig(cgroup, *W) == [errno.EPERM]
    enf.set_mode("monitor", ruleset=1)
    enf.read_decisions()
    assert trig(cgroup, *W) == [0]
    (d,) = wait_decisions(enf)
    assert (d.verdict, d.monitor, d.rule_id, d.err, d.name) == ("allow", True, 7, 0, DOMAIN)
    assert enf.stats()["monitored"] >= 1
    enf.set_mode("off", ruleset=1)
    assert trig(cgroup, *W) == [0]
    assert wait_decisions(enf, timeout_s=0.3) == []


# --- devices ----------------------------------------------------------------------

def test_device_read_denied_by_major_minor_and_access(enf: CgroupSysEnforcer, cgroup: str) -> None:
    assert trig(cgroup, "open", "/dev/zero", "r") == [0]
    enf.add_device_rule(DeviceRule.parse(10, "c 1:5 r"))  # /dev/zero, reading
    assert trig(cgroup, "open", "/dev/zero", "r", "open", "/dev/zero", "rw", "open", "/dev/zero", "w",
                "open", "/dev/null", "r") == [errno.EPERM, errno.EPERM, 0, 0]
    assert trig(None, "open", "/dev/zero", "r") == [0]
    ds = wait_decisions(enf, 2)
    assert [(d.kind, d.dev_type, d.major, d.minor, d.access, d.rule_id, d.name) for d in ds] == \
        [("device", "c", 1, 5, "r", 10, ""), ("device", "c", 1, 5, "rw", 10, "")]


def test_cat_of_a_denied_device_fails(enf: CgroupSysEnforcer, cgroup: str) -> None:
    enf.add_device_rule(DeviceRule(id=11, type="c", major=1, minor=3))  # /dev/null, rwm
    sh = ["bash", "-c", 'echo $$ > "$0/cgroup.procs" && cat /dev/null; echo "rc=$?"; head -c 3 /dev/zero | wc -c',
          cgroup]
    r = subprocess.run(sh, capture_output=True, text=True, timeout=30)
    assert "Operation not permitted" in r.stderr and r.stdout.split() == ["rc=1", "3"], (r.stdout, r.stderr)


def test_mknod_denied_by_wildcard_rule(enf: CgroupSysEnforcer, cgroup: str, tmp_path: object) -> None:
    node = os.path.join(str(tmp_path), "node")
    assert trig(cgroup, "mknod", node, "c", 1, 3) == [0]
    enf.add_device_rule(DeviceRule.parse(12, "a *:* m"))
    assert trig(cgroup, "mknod", node, "c", 1, 3, "mknod", node, "b", 7, 0, "open", "/dev/null", "r") == \
        [errno.EPERM, errno.EPERM, 0]
    assert not os.path.exists(node)
    assert [(d.access, d.dev_type) for d in wait_decisions(enf, 2)] == [("m", "c"), ("m", "b")]


def test_type_filter(enf: CgroupSysEnforcer, cgroup: str) -> None:
    enf.add_device_rule(DeviceRule(id=13, type="b", access="r"))  # block devices only
    assert trig(cgroup, "open", "/dev/null", "r") == [0]


# --- "for these binaries" ----------------------------------------------------------

def test_bin_mask_on_sysctl_and_device_rules(execve_map: int) -> None:
    cg = make_cgroup()
    kids: list[subprocess.Popen[str]] = []
    try:
        with CgroupSysEnforcer(cg, execve_map_fd=execve_map) as enf:
            enf.add_sysctl_rule(SysctlRule(id=20, names=[DOMAIN], bin_mask=0b10))
            enf.add_device_rule(DeviceRule.parse(21, "c 1:5 r", bin_mask=0b10, bin_not=True))
            ops = (*W, "open", "/dev/zero", "r")
            kids = [parked(cg, *ops), parked(cg, *ops)]
            set_bin_match(execve_map, kids[0].pid, 0b11)  # kids[1] is absent: bin_match 0
            assert release(kids[0]) == [errno.EPERM, 0]
            assert release(kids[1]) == [0, errno.EPERM]
            ds = wait_decisions(enf, 2)
            assert sorted((d.rule_id, d.tgid) for d in ds) == [(20, kids[0].pid), (21, kids[1].pid)]
    finally:
        kill_all(kids)
        remove_cgroup(cg)


# --- life cycle -------------------------------------------------------------------

def test_rules_added_before_start_and_close_detaches() -> None:
    cg = make_cgroup()
    try:
        enf = CgroupSysEnforcer(cg)
        enf.add_sysctl_rule(SysctlRule(id=30, names=[DOMAIN]))
        enf.start()
        ids = dict(enf.prog_ids)
        attached = bpftool_json("cgroup", "show", cg)
        assert isinstance(attached, list) and {a["name"] for a in attached} == {"enf_sysctl", "enf_dev"}
        assert trig(cg, *W) == [errno.EPERM]
        enf.close()
        enf.close()  # idempotent
        assert_detached(ids, cg)
        assert trig(cg, *W) == [0]
    finally:
        remove_cgroup(cg)


def test_keep_on_exit_survives_close_until_released() -> None:
    cg = make_cgroup()
    pin = f"/sys/fs/bpf/kerneye/enforce/test-sys-{uuid.uuid4().hex[:8]}"
    try:
        enf = CgroupSysEnforcer(cg, keep_on_exit=True, pin_dir=pin).start()
        ids = dict(enf.prog_ids)
        enf.add_device_rule(DeviceRule.parse(31, "c 1:5 r"))
        with pytest.raises(Exception, match="already pinned"):
            CgroupSysEnforcer(cg, keep_on_exit=True, pin_dir=pin).start()
        enf.close()
        assert {"enf_sysctl", "enf_dev", "kerneye_sys_rules"} <= set(os.listdir(pin))
        assert trig(cg, "open", "/dev/zero", "r") == [errno.EPERM]
        assert release_pinned(pin) and not os.path.exists(pin)
        assert_detached(ids, cg)
        assert trig(cg, "open", "/dev/zero", "r") == [0]
    finally:
        release_pinned(pin)
        remove_cgroup(cg)


def test_default_pin_dir_is_named_after_the_cgroup() -> None:
    cg = make_cgroup()
    try:
        enf = CgroupSysEnforcer(cg, keep_on_exit=True)
        assert enf.pin_dir == "/sys/fs/bpf/kerneye/enforce/sys-unified_" + os.path.basename(cg)
    finally:
        remove_cgroup(cg)
