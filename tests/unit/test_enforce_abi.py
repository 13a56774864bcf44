"""The ctypes mirror of bpf/include/kerneye/enforce_abi.h against BTF.

kerneye.enforce._abi is written by hand; kerneye.abi.btfcheck compares each
class carrying C_NAME (size, member names and offsets; enum values) with the
BTF of bpf/.output/enforce_anchor.bpf.o, which declares one global of every
type, and with the object that is really loaded. No root, no kernel.
"""
from __future__ import annotations

import ctypes
import types
from pathlib import Path

import pytest

from kerneye.abi import btfcheck
from kerneye.enforce import _abi
from kerneye.errors import LayoutMismatch

ROOT = Path(__file__).resolve().parents[2]
ANCHOR = ROOT / "bpf" / ".output" / "enforce_anchor.bpf.o"
NET = ROOT / "bpf" / ".output" / "enforce_cgroup_net.bpf.o"
HEADER = ROOT / "bpf" / "include" / "kerneye" / "enforce_abi.h"

pytestmark = pytest.mark.skipif(not ANCHOR.exists() or not NET.exists(),
                                reason="enforcement objects not built (make -C bpf)")


def mirrored() -> list[object]:
    return [o for o in vars(_abi).values() if getattr(o, "C_NAME", None)]


def test_mirror_matches_the_anchor() -> None:
    try:
        n = btfcheck.check(str(ANCHOR), mirror=_abi)
    except LayoutMismatch as e:
        hint = " (rebuild: make -C bpf)" if ANCHOR.stat().st_mtime < HEADER.stat().st_mtime else ""
        pytest.fail(str(e) + hint)
    assert n == len(mirrored())
    names = {getattr(o, "C_NAME") for o in mirrored()}
    assert {"enf_net_rule", "enf_net_event", "enf_lpm4_key", "enf_lpm6_key", "enf_net_set", "enf_net_config",
            "enf_net_hook", "enf_mode", "enf_stat"} <= names


def test_mirror_matches_the_loaded_object() -> None:
    # the object carries the types its programs and maps use
    assert btfcheck.check(str(NET), mirror=_abi, require_all=False) >= 5


def test_sizes() -> None:
    assert ctypes.sizeof(_abi.EnfNetRule) == 40
    assert ctypes.sizeof(_abi.EnfNetEvent) % 8 == 0
    assert ctypes.sizeof(_abi.EnfLpm4Key) == 8 and ctypes.sizeof(_abi.EnfLpm6Key) == 20


def _mutated(cls_name: str, field: str, new_type: object) -> types.ModuleType:
    mod = types.ModuleType("mutated")
    for k, v in vars(_abi).items():
        setattr(mod, k, v)
    old = getattr(_abi, cls_name)
    fields = [(n, new_type if n == field else t) for n, t in old._fields_]
    setattr(mod, cls_name, type(cls_name, (ctypes.Structure,), {"C_NAME": old.C_NAME, "_fields_": fields}))
    return mod


def test_a_moved_field_is_rejected() -> None:
    bad = _mutated("EnfNetRule", "action", ctypes.c_uint16)  # u8 -> u16 shifts what follows
    with pytest.raises(LayoutMismatch, match="struct enf_net_rule"):
        btfcheck.check(str(ANCHOR), mirror=bad)


def test_a_changed_enum_is_rejected() -> None:
    mod = types.ModuleType("mutated")
    for k, v in vars(_abi).items():
        setattr(mod, k, v)
    import enum
    bad = enum.IntEnum("EnfMode", {"OFF": 0, "MONITOR": 1, "ENFORCE": 3})
    setattr(bad, "C_NAME", "enf_mode")
    mod.EnfMode = bad
    with pytest.raises(LayoutMismatch, match="enum enf_mode"):
        btfcheck.check(str(ANCHOR), mirror=mod)


SYS = ROOT / "bpf" / ".output" / "enforce_cgroup_sys.bpf.o"


@pytest.mark.skipif(not SYS.exists(), reason="make -C bpf builds enforce_cgroup_sys.bpf.o")
def test_sys_mirror_matches_its_object() -> None:
    assert btfcheck.check(str(SYS), mirror=_abi, require_all=False) >= 4
    assert ctypes.sizeof(_abi.EnfSysRule) == 40 and ctypes.sizeof(_abi.EnfSysEvent) % 8 == 0
