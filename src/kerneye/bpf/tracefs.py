"""tracefs look-ups: which tracepoints exist and their record layout."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache

TRACEFS = "/sys/kernel/tracing"

_FIELD = re.compile(r"^\s*field:(?P<decl>[^;]+);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*signed:(?P<signed>\d);")


@dataclass(frozen=True)
class TpField:
    name: str
    ctype: str      # declaration without the name, e.g. "const char *", "__data_loc char[]"
    offset: int
    size: int
    signed: bool

    @property
    def is_data_loc(self) -> bool:
        return self.ctype.startswith("__data_loc")

    @property
    def is_char_array(self) -> bool:
        return self.ctype.startswith("char") and "[" in self.ctype and not self.is_data_loc

    @property
    def is_pointer(self) -> bool:
        return "*" in self.ctype


def root() -> str:
    for p in (TRACEFS, "/sys/kernel/debug/tracing"):
        if os.path.isdir(os.path.join(p, "events")):
            return p
    return TRACEFS


def exists(subsys: str, event: str) -> bool:
    return os.path.isdir(os.path.join(root(), "events", subsys, event))


@lru_cache(maxsize=1024)
def fields(subsys: str, event: str) -> tuple[TpField, ...]:
    """All fields of a tracepoint record, common ones first, in format order
    (Tetragon's tracepoint argument index counts them all)."""
    path = os.path.join(root(), "events", subsys, event, "format")
    out = []
    with open(path) as f:
        for line in f:
            m = _FIELD.match(line)
            if not m:
                continue
            decl = m.group("decl").strip()
            name_m = re.search(r"(\w+)(\[[^\]]*\])?\s*$", decl)
            if not name_m:
                continue
            name = name_m.group(1)
            ctype = (decl[: name_m.start()].strip() + (name_m.group(2) or "")).strip()
            out.append(TpField(name, ctype, int(m.group("off")), int(m.group("size")), m.group("signed") == "1"))
    return tuple(out)


def syscall_exists(name: str) -> bool:
    return exists("syscalls", f"sys_enter_{name}")


def all_syscalls() -> list[str]:
    """Names of every syscall that has an enter tracepoint."""
    d = os.path.join(root(), "events", "syscalls")
    try:
        return sorted(n[len("sys_enter_"):] for n in os.listdir(d) if n.startswith("sys_enter_"))
    except OSError:
        return []
