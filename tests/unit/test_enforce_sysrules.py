"""sysctl/device rules without a kernel (kerneye.enforce.sysrules): validation,
the name-trie contents and ring-buffer records -> decisions."""
from __future__ import annotations

import ctypes
import errno

import pytest

from kerneye.enforce import _abi as A
from kerneye.enforce.sysrules import DeviceRule, EnforceError, SysctlRule, SysDecision, merge_names, sysctl_key, \
    sysctl_name


def test_names_are_normalised_to_the_kernel_form() -> None:
    assert sysctl_name("net.ipv4.ip_forward") == "net/ipv4/ip_forward"
    assert sysctl_name("/proc/sys/kernel/modprobe") == "kernel/modprobe"
    assert sysctl_name("net/ipv4/conf/eth0.100/forwarding") == "net/ipv4/conf/eth0.100/forwarding"


def test_exact_names_carry_their_nul_and_prefixes_do_not() -> None:
    r = SysctlRule(id=1, names=["kernel.modprobe"], prefixes=["vm/", ""])
    assert r.keys() == [b"kernel/modprobe\0", b"vm/", b""]


def test_merge_gives_each_key_the_bits_of_every_covering_rule() -> None:
    got = merge_names([(0, [b""]), (1, [b"kernel/"]), (2, [b"kernel/modprobe\0"]), (3, [b"kernel/mod"])])
    assert got == {b"": 0b1, b"kernel/": 0b11, b"kernel/mod": 0b1011, b"kernel/modprobe\0": 0b1111}
    # an exact name is not a prefix of a longer name
    assert merge_names([(0, [b"a/b\0"]), (1, [b"a/bc\0"])]) == {b"a/b\0": 1, b"a/bc\0": 2}


def test_lpm_key_layout() -> None:
    k = sysctl_key(b"kernel/\0")
    assert k.prefixlen == 64 and bytes(k)[4:12] == b"kernel/\0" and ctypes.sizeof(k) == 4 + A.ENF_SYSCTL_NAME_MAX


def test_sysctl_rule_struct() -> None:
    r = SysctlRule(id=7, names=["a/b"], access=("read", "write"), priority=3, ruleset=2, err=errno.EACCES,
                   bin_mask=4, bin_not=True).to_struct()
    assert (r.id, r.priority, r.set, r.kind, r.err, r.bin_mask) == (7, 3, 2, A.EnfSysKind.SYSCTL, errno.EACCES, 4)
    assert r.access == A.EnfSysAccess.READ | A.EnfSysAccess.WRITE
    assert r.flags == A.EnfRuleFlag.USED | A.EnfRuleFlag.BIN_NOT


@pytest.mark.parametrize("kw,msg", [
    ({}, "give names and/or prefixes"),
    ({"names": [""]}, "empty name"),
    ({"names": ["x" * 127]}, "longer than 126"),
    ({"names": ["a"], "access": ("exec",)}, "access must be"),
    ({"names": ["a"], "access": "write"}, "access must be"),
    ({"names": ["a"], "action": "kill"}, "action must be"),
    ({"names": ["a"], "ruleset": 16}, "ruleset must be"),
    ({"names": ["a"], "bin_not": True}, "bin_not needs"),
])
def test_bad_sysctl_rules(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(EnforceError, match=msg):
        SysctlRule(id=1, **kw).to_struct()  # type: ignore[arg-type]


def test_device_rules_parse_like_v1_entries() -> None:
    r = DeviceRule.parse(1, "c 1:3 rw").to_struct()
    assert (r.dev_type, r.major, r.minor, r.access, r.kind) == \
        (A.EnfDevType.CHAR, 1, 3, A.EnfSysAccess.READ | A.EnfSysAccess.WRITE, A.EnfSysKind.DEV)
    r = DeviceRule.parse(2, "a *:* ").to_struct()
    assert (r.dev_type, r.major, r.minor, r.access) == (0, A.ENF_DEV_ANY, A.ENF_DEV_ANY, 7)
    assert DeviceRule.parse(3, "b 8:* m", priority=5).priority == 5


@pytest.mark.parametrize("line", ["c 1:3 x", "d 1:3", "c 1 r", "c -1:3 r", ""])
def test_bad_device_entries(line: str) -> None:
    with pytest.raises(EnforceError, match="not a device entry"):
        DeviceRule.parse(1, line)


@pytest.mark.parametrize("kw,msg", [({"type": "x"}, "device type"), ({"access": "rx"}, "letters of 'rwm'"),
                                    ({"major": -1}, "major must be"), ({"minor": 2**32}, "minor must be")])
def test_bad_device_rules(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(EnforceError, match=msg):
        DeviceRule(id=1, **kw).to_struct()  # type: ignore[arg-type]


def _event(op: int, **kw: object) -> bytes:
    e = A.EnfSysEvent()
    e.common.op = op
    e.common.size = ctypes.sizeof(e)
    for k, v in kw.items():
        setattr(e, k, v)
    return bytes(e)


def test_decode_sysctl_and_device_records() -> None:
    d = SysDecision.decode(_event(A.EnfSysConst.MSG_SYSCTL, verdict=A.EnfVerdict.DENY, access=A.EnfSysAccess.WRITE,
                                  rule_id=9, pid=5, tgid=4, err=1, comm=b"sh", name=b"kernel/modprobe"))
    assert (d.kind, d.verdict, d.access, d.name, d.rule_id, d.tgid, d.comm, d.dev_type) == \
        ("sysctl", "deny", "write", "kernel/modprobe", 9, 4, "sh", "")
    d = SysDecision.decode(_event(A.EnfSysConst.MSG_DEV, flags=A.EnfEventFlag.MONITOR, dev_type=A.EnfDevType.BLOCK,
                                  access=A.EnfSysAccess.READ | A.EnfSysAccess.MKNOD, major=8, minor=1))
    assert (d.kind, d.monitor, d.verdict, d.dev_type, d.major, d.minor, d.access, d.name) == \
        ("device", True, "allow", "b", 8, 1, "rm", "")
    assert d.to_dict()["major"] == 8
    with pytest.raises(EnforceError, match="unexpected message op"):
        SysDecision.decode(_event(A.EnfMsgOp.NET))


def test_enforcers_refuse_a_bad_mode_and_path_with_one_line_errors(tmp_path: object) -> None:
    from kerneye.enforce.cgroup_net import CgroupNetEnforcer
    from kerneye.enforce.cgroup_sys import CgroupSysEnforcer
    from kerneye.errors import ConfigError
    for cls in (CgroupNetEnforcer, CgroupSysEnforcer):
        with pytest.raises(EnforceError, match="mode must be one of"):
            cls(str(tmp_path), mode="block")
        with pytest.raises(ConfigError, match="is not a directory"):
            cls(str(tmp_path) + "/missing")
    with pytest.raises(EnforceError, match="takes a SysctlRule"):
        CgroupSysEnforcer(str(tmp_path)).add_sysctl_rule(DeviceRule(id=1))  # type: ignore[arg-type]
    with pytest.raises(EnforceError, match="takes a DeviceRule"):
        CgroupSysEnforcer(str(tmp_path)).add_device_rule(SysctlRule(id=1, names=["a"]))  # type: ignore[arg-type]
