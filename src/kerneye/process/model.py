"""The user-space process record and its Tetragon-shaped JSON.

A Process is immutable once built except for cache bookkeeping (refcnt,
exit state); its JSON form is rendered once and reused by every event that
mentions it, as process, parent or ancestor. That is what keeps per-event
cost low: an event is a few string joins around cached fragments.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .caps import cap_names
from .identity import rfc3339

NS_NAMES = ("uts", "ipc", "mnt", "pid", "pid_for_children", "net", "time", "time_for_children", "cgroup", "user")


@dataclass(slots=True)
class Cred:
    uid: int
    gid: int
    euid: int
    egid: int
    suid: int
    sgid: int
    fsuid: int
    fsgid: int
    securebits: int = 0


@dataclass(slots=True)
class Process:
    exec_id: str
    parent_exec_id: str
    pid: int
    tid: int
    ktime: int
    nspid: int
    auid: int
    cwd: str
    binary: str
    arguments: str
    flags: list[str]
    start_time_ns: int
    cred: Cred
    cap_permitted: int
    cap_effective: int
    cap_inheritable: int
    ns: dict[str, int]
    ns_is_host: dict[str, bool]
    cgroup_id: int
    cgroup_path: str
    docker: str
    binary_properties: dict[str, Any] | None = None
    ppid: int = 0  # real parent's tgid, to late-bind a parent the kernel did not know
    # --- cache bookkeeping (not part of the identity) ---
    refcnt: int = 0
    exited: bool = False
    _dict: dict[str, Any] | None = field(default=None, repr=False)
    _json: str | None = field(default=None, repr=False)
    _lean: str | None = field(default=None, repr=False)

    @property
    def uid(self) -> int:
        # Tetragon's process.uid is the effective UID
        return self.cred.euid

    def to_dict(self) -> dict[str, Any]:
        """Tetragon's `Process` message as JSON; rendered once."""
        if self._dict is None:
            c = self.cred
            d: dict[str, Any] = {
                "exec_id": self.exec_id,
                "pid": self.pid,
                "uid": c.euid,
                "cwd": self.cwd,
                "binary": self.binary,
                "arguments": self.arguments,
                "flags": " ".join(self.flags),
                "start_time": rfc3339(self.start_time_ns),
                "auid": self.auid,
            }
            if self.docker:
                d["docker"] = self.docker
            d["parent_exec_id"] = self.parent_exec_id
            # empty sets are left out, as protobuf JSON leaves out empty
            # repeated fields ({} for a process without any capability)
            caps = (("permitted", self.cap_permitted), ("effective", self.cap_effective),
                    ("inheritable", self.cap_inheritable))
            d["cap"] = {k: cap_names(v) for k, v in caps if v}
            d["ns"] = {k: {"inum": v, "is_host": self.ns_is_host.get(k, False)} for k, v in self.ns.items()}
            d["tid"] = self.tid
            d["process_credentials"] = {
                "uid": c.uid, "gid": c.gid, "euid": c.euid, "egid": c.egid,
                "suid": c.suid, "sgid": c.sgid, "fsuid": c.fsuid, "fsgid": c.fsgid,
            }
            if self.binary_properties:
                d["binary_properties"] = self.binary_properties
            d["cgroup_id"] = str(self.cgroup_id)  # uint64: a string in protobuf JSON
            d["cgroup_path"] = self.cgroup_path
            self._dict = d
        return self._dict

    LEAN_KEYS = ("exec_id", "pid", "uid", "cwd", "binary", "arguments", "flags", "start_time", "auid", "docker",
                 "parent_exec_id", "tid")

    def json_lean(self) -> str:
        """Identity and command line only (Tetragon's default Process
        fields): used in policy events, where the full record (caps,
        namespaces, credentials) is one exec_id join away in process_exec.
        Keeps a hooked-syscall event ~5x smaller."""
        if self._lean is None:
            d = self.to_dict()
            self._lean = json.dumps({k: d[k] for k in self.LEAN_KEYS if k in d}, ensure_ascii=False,
                                    separators=(",", ":"))
        return self._lean

    def json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))
        return self._json


def quote_arg(a: str) -> str:
    """Render one argv element so that a space-joined list stays unambiguous:
    empty args and args with whitespace, quotes or backslashes are wrapped
    in double quotes with \\ and " escaped."""
    if a and not any(ch in a for ch in ' \t\n\r\v\f"\\'):
        return a
    return '"' + a.replace("\\", "\\\\").replace('"', '\\"') + '"'


def split_args(raw: bytes) -> list[str]:
    """argv bytes as the kernel lays them out (NUL-terminated strings)."""
    if raw.endswith(b"\0"):
        raw = raw[:-1]
    if not raw:
        return []
    return [a.decode("utf-8", "backslashreplace") for a in raw.split(b"\0")]


def unknown_process(exec_id: str, pid: int, ktime: int, tid: int | None = None) -> Process:
    """Stand-in for a process the agent never learned about (its exec was
    lost or predates a full cache): identity only, flags "unknown"."""
    return Process(
        exec_id=exec_id, parent_exec_id="", pid=pid, tid=pid if tid is None else tid, ktime=ktime, nspid=0,
        auid=0xFFFFFFFF, cwd="", binary="", arguments="", flags=["unknown"], start_time_ns=0,
        cred=Cred(0, 0, 0, 0, 0, 0, 0, 0), cap_permitted=0, cap_effective=0, cap_inheritable=0,
        ns={}, ns_is_host={}, cgroup_id=0, cgroup_path="", docker="",
    )
