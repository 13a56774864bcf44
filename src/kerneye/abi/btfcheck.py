"""Verify the ctypes mirror against the BTF of a compiled object.

Tetragon's alignchecker, in Python: for every mirrored struct compare size,
member names and offsets; for every enum compare values. Any difference is
a LayoutMismatch and the agent refuses to start.
"""
from __future__ import annotations

import ctypes
import enum
from types import ModuleType

from ..bpf import btf as B
from ..errors import LayoutMismatch


def check(obj_path: str, mirror: ModuleType | None = None, require_all: bool = True) -> int:
    """Return the number of types checked; raise LayoutMismatch listing every
    disagreement, naming struct, field and both offsets. With
    require_all=False, types absent from the object (a sensor that does not
    use them) are skipped; those present must match."""
    if mirror is None:
        from . import _generated as mirror
    btf = B.Btf.from_object(obj_path)
    checked = 0
    problems: list[str] = []
    for obj in vars(mirror).values():
        cname = getattr(obj, "C_NAME", None)
        if not cname:
            continue
        if isinstance(obj, type) and issubclass(obj, ctypes.Structure):
            try:
                t = btf.struct(cname)
            except KeyError:
                if require_all:
                    problems.append(f"struct {cname} is mirrored but absent from {obj_path}")
                continue
            if ctypes.sizeof(obj) != t.size:
                problems.append(f"struct {cname}: size {t.size} in BTF, {ctypes.sizeof(obj)} in Python")
            py = [(name, getattr(obj, name).offset) for name, *_ in obj._fields_]
            bt = [(m.name, m.bit_offset // 8) for m in t.members]
            if py != bt:
                diff = next(((a, b) for a, b in zip(bt, py) if a != b), (bt[len(py):len(py) + 1], py[len(bt):len(bt) + 1]))
                problems.append(f"struct {cname}: BTF has {diff[0]}, Python has {diff[1]}")
            checked += 1
        elif isinstance(obj, type) and issubclass(obj, enum.IntEnum):
            try:
                t = btf.enum(cname)
            except KeyError:
                if require_all:
                    problems.append(f"enum {cname} is mirrored but absent from {obj_path}")
                continue
            bt_vals = sorted(t.enum_values.values())
            py_vals = sorted(int(m) for m in obj)
            if bt_vals != py_vals:
                problems.append(f"enum {cname}: values {bt_vals} in BTF, {py_vals} in Python")
            checked += 1
    if problems:
        raise LayoutMismatch(
            "kernel/user ABI mismatch: " + "; ".join(problems)
            + " — rebuild (`make -C bpf`) and regenerate the mirror (`make abi`)"
        )
    return checked
