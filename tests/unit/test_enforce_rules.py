"""Rule compilation and decoding of the enforcement back ends, without a
kernel: kerneye.enforce.netrules (network rules -> map contents, ring-buffer
records -> decisions) and the record layer of kerneye.enforce.fanotify."""
from __future__ import annotations

import ctypes
import errno
import ipaddress
import os
import socket
import struct

import pytest

from kerneye.enforce import _abi as A
from kerneye.enforce import fanotify as F
from kerneye.enforce.netrules import EnforceError, NetDecision, NetRule, lpm_key, merge_prefixes


def net(s: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(s)


# --- merge_prefixes ----------------------------------------------------------------

def test_nested_prefixes_carry_the_bits_of_their_supernets() -> None:
    got = merge_prefixes([(0, [net("10.0.0.0/8")]), (1, [net("10.1.0.0/16")]), (2, [net("10.1.2.0/24")]),
                          (3, [net("192.168.0.0/16")])])
    assert got == {net("10.0.0.0/8"): 0b1, net("10.1.0.0/16"): 0b11, net("10.1.2.0/24"): 0b111,
                   net("192.168.0.0/16"): 0b1000}


def test_families_do_not_mix_and_default_routes_cover_everything() -> None:
    got = merge_prefixes([(0, [net("0.0.0.0/0"), net("::/0")]), (5, [net("::1/128")]), (6, [net("127.0.0.0/8")])])
    assert got[net("::1/128")] == (1 << 0) | (1 << 5)
    assert got[net("127.0.0.0/8")] == (1 << 0) | (1 << 6)
    assert got[net("::/0")] == 1 and got[net("0.0.0.0/0")] == 1


def test_equal_prefixes_of_two_rules_share_one_entry() -> None:
    assert merge_prefixes([(1, [net("10.0.0.0/8")]), (9, [net("10.0.0.0/8")])]) == {net("10.0.0.0/8"): (1 << 1) | (1 << 9)}


# --- NetRule -------------------------------------------------------------------------

def test_rule_struct_fields() -> None:
    r = NetRule(id=7, action="allow", cidrs=["10.0.0.0/8"], ports=(80, 443), proto="tcp", priority=5,
                ruleset=3, err=errno.EACCES, report=True, hooks=("connect", "bind")).to_struct()
    assert (r.id, r.action, r.proto, r.port_lo, r.port_hi, r.priority, r.set, r.err) == \
        (7, A.EnfAction.ALLOW, socket.IPPROTO_TCP, 80, 443, 5, 3, errno.EACCES)
    assert r.hooks == A.EnfNetHook.CONNECT | A.EnfNetHook.BIND
    assert r.flags == A.EnfRuleFlag.USED | A.EnfRuleFlag.REPORT


def test_rule_defaults_match_everything() -> None:
    rule = NetRule(id=1)
    r = rule.to_struct()
    assert (r.proto, r.sock_type, r.family, r.port_lo, r.port_hi, r.action) == (0, 0, 0, 0, 65535, A.EnfAction.DENY)
    assert rule.networks() == [net("0.0.0.0/0"), net("::/0")]


def test_mapped_ipv6_cidrs_become_ipv4() -> None:
    assert NetRule(id=1, cidrs=["::ffff:10.0.0.0/104", "::ffff:1.2.3.4"]).networks() == \
        [net("10.0.0.0/8"), net("1.2.3.4/32")]
    assert NetRule(id=1, cidrs=["::ffff:0:0/95"]).networks()[0].version == 6  # not all mapped


def test_raw_socket_rule_has_no_addresses() -> None:
    rule = NetRule.deny_raw_sockets(id=3, family="inet6")
    assert rule.networks() == []
    r = rule.to_struct()
    assert (r.sock_type, r.family, r.hooks) == (socket.SOCK_RAW, socket.AF_INET6, A.EnfNetHook.SOCK_CREATE)


@pytest.mark.parametrize("kw, msg", [
    ({"action": "drop"}, "action"),
    ({"hooks": ("connect", "accept")}, "hooks"),
    ({"hooks": ()}, "hooks"),
    ({"ports": (10, 5)}, "port range"),
    ({"ports": (1, 70000)}, "port range"),
    ({"proto": "sctp-ish"}, "proto"),
    ({"ruleset": 16}, "ruleset"),
    ({"err": -1}, "errno"),
])
def test_bad_rules_are_rejected_with_a_reason(kw: dict, msg: str) -> None:
    with pytest.raises(EnforceError, match=msg):
        NetRule(id=1, **kw).to_struct()


def test_bad_cidr() -> None:
    with pytest.raises(EnforceError, match="bad CIDR"):
        NetRule(id=1, cidrs=["10.0.0.300/8"]).networks()


def test_lpm_keys_are_network_order() -> None:
    k = lpm_key(net("10.1.0.0/16"))
    assert isinstance(k, A.EnfLpm4Key) and k.prefixlen == 16 and bytes(k.addr) == bytes([10, 1, 0, 0])
    k6 = lpm_key(net("fd00::/8"))
    assert isinstance(k6, A.EnfLpm6Key) and k6.prefixlen == 8 and bytes(k6.addr)[:2] == b"\xfd\x00"


# --- NetDecision.decode -----------------------------------------------------------------

def _event(**kw: object) -> bytes:
    e = A.EnfNetEvent()
    e.common.op = A.EnfMsgOp.NET
    e.common.size = ctypes.sizeof(e)
    for k, v in kw.items():
        if k == "addr":
            ctypes.memmove(e.addr, v, len(v))  # type: ignore[arg-type]
        else:
            setattr(e, k, v)
    return bytes(e)


def test_decode_ipv4_denial() -> None:
    d = NetDecision.decode(_event(hook=0, verdict=1, action=0, family=socket.AF_INET, port=8080, proto=6,
                                  sock_type=1, rule_id=42, pid=10, tgid=9, err=1, cgroup_id=77,
                                  addr=socket.inet_aton("127.0.0.1"), comm=b"curl"))
    assert (d.hook, d.verdict, d.monitor, d.addr, d.port, d.rule_id, d.comm, d.err, d.tgid) == \
        ("connect", "deny", False, "127.0.0.1", 8080, 42, "curl", 1, 9)


def test_decode_mapped_and_ipv6_and_sock_create() -> None:
    mapped = socket.inet_pton(socket.AF_INET6, "::ffff:10.0.0.1")
    d = NetDecision.decode(_event(hook=1, family=socket.AF_INET6, flags=A.EnfEventFlag.MAPPED, addr=mapped))
    assert d.hook == "sendmsg" and d.mapped and d.addr == "::ffff:10.0.0.1"
    d = NetDecision.decode(_event(hook=2, family=socket.AF_INET6, flags=A.EnfEventFlag.MONITOR,
                                  addr=socket.inet_pton(socket.AF_INET6, "fd00::1")))
    assert (d.hook, d.addr, d.monitor, d.verdict) == ("bind", "fd00::1", True, "allow")
    d = NetDecision.decode(_event(hook=3, family=socket.AF_INET, sock_type=socket.SOCK_RAW))
    assert d.hook == "sock_create" and d.addr == ""


def test_decode_rejects_other_messages() -> None:
    raw = bytearray(_event())
    raw[0] = 5
    with pytest.raises(EnforceError, match="unexpected message op"):
        NetDecision.decode(bytes(raw))


# --- fanotify records -----------------------------------------------------------------

def _fake_group(data: bytes) -> F.Fanotify:
    """A Fanotify whose descriptor is the read end of a pipe holding `data`."""
    g = F.Fanotify.__new__(F.Fanotify)
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    os.set_blocking(r, False)
    g.fd = r
    return g


def test_event_records_are_parsed() -> None:
    meta = struct.Struct("=IBBHQii")
    data = meta.pack(24, 3, 0, 24, F.FAN_OPEN_PERM, 7, 1234) + \
        meta.pack(32, 3, 0, 24, F.FAN_OPEN_EXEC_PERM, 8, 99) + b"\0" * 8  # a record with an info tail
    g = _fake_group(data)
    try:
        evs = g.read()
        assert [(e.mask, e.fd, e.pid) for e in evs] == [(F.FAN_OPEN_PERM, 7, 1234), (F.FAN_OPEN_EXEC_PERM, 8, 99)]
        assert g.read() == []  # EOF on the pipe reads as nothing
    finally:
        g.close()


def test_unknown_metadata_version_is_an_error() -> None:
    g = _fake_group(struct.pack("=IBBHQii", 24, 2, 0, 24, F.FAN_OPEN_PERM, 7, 1))
    try:
        with pytest.raises(F.FanotifyError, match="version"):
            g.read()
    finally:
        g.close()


def test_response_layout() -> None:
    r, w = os.pipe()
    g = F.Fanotify.__new__(F.Fanotify)
    g.fd = w
    try:
        g.respond(17, F.FAN_DENY)
        assert os.read(r, 64) == struct.pack("=iI", 17, 2)
    finally:
        g.close()
        os.close(r)


def test_modes_are_validated() -> None:
    with pytest.raises(F.FanotifyError, match="mode"):
        F.FanotifyEnforcer(mode="block")
    e = F.FanotifyEnforcer()
    with pytest.raises(F.FanotifyError, match="not started"):
        e.deny_open(1, "/")


# --- binary qualifiers -----------------------------------------------------------------

def test_bin_mask_and_bin_not_reach_the_struct() -> None:
    r = NetRule(id=1, bin_mask=0b101, bin_not=True).to_struct()
    assert r.bin_mask == 0b101 and r.flags & A.EnfRuleFlag.BIN_NOT and r.flags & A.EnfRuleFlag.USED
    r = NetRule(id=2, bin_mask=1 << 63).to_struct()
    assert r.bin_mask == 1 << 63 and not r.flags & A.EnfRuleFlag.BIN_NOT


@pytest.mark.parametrize("kw,msg", [({"bin_mask": -1}, "64-bit mask"), ({"bin_mask": 1 << 64}, "64-bit mask"),
                                    ({"bin_not": True}, "bin_not needs a bin_mask")])
def test_bad_bin_qualifiers_are_refused(kw: dict[str, object], msg: str) -> None:
    with pytest.raises(EnforceError, match=msg):
        NetRule(id=3, **kw).to_struct()  # type: ignore[arg-type]
