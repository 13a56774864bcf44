"""Network enforcement with cgroup BPF (bpf/enforce/cgroup_net.bpf.c).

`CgroupNetEnforcer` loads one object, attaches its seven programs to one
cgroup-v2 directory (the whole host when that is the hierarchy's root, one
container when it is the container's cgroup) and keeps the rule maps in sync
with a list of `NetRule`s. Every change is a live map update; nothing is
reloaded or re-attached.

    with CgroupNetEnforcer("/sys/fs/cgroup/unified/mycontainer") as enf:
        enf.add_rule(NetRule(id=1, cidrs=["10.0.0.0/8"], ports=(22, 22)))
        enf.add_rule(NetRule.deny_raw_sockets(id=2))
        for d in enf.read_decisions(timeout_s=1.0): print(d.to_dict())

How rules become map contents (the kernel side is documented in the .bpf.c):
every rule owns one of 64 slots; for each CIDR prefix used by any rule the
LPM trie holds the bitmask of the slots of all rules whose CIDR contains that
prefix, so one longest-prefix lookup finds every candidate. A rule without
CIDRs covers 0.0.0.0/0 and ::/0. IPv4-mapped IPv6 CIDRs (::ffff:a.b.c.d/n,
n >= 96) are stored as IPv4, because the kernel side looks mapped addresses
up in the IPv4 trie. Updates are ordered so that a reader never follows a bit
to a half-written slot: slot first, then trie bits on add; trie bits first,
then slot on remove.

Lifetime: programs are attached through bpf_link file descriptors, so when
this process exits, even by SIGKILL, the kernel detaches them: enforcement
fails open. With keep_on_exit=True the links and maps are pinned under
pin_dir (default /sys/fs/bpf/kerneye/enforce/net-<cgroup>) and survive the
process: enforcement fails closed until `release_pinned(pin_dir)` (or
`rm -r` of that directory) removes them.

Binary qualifiers (NetRule.bin_mask) read the agent's process map: pass
execve_map_fd (the base sensor's kerneye_execve_map) to share it. Without
it the object gets its own one-entry map, which stays empty: every process
then counts as matching no binary.
"""
from __future__ import annotations

import ctypes
import os
import re
import threading
from typing import Iterable, Iterator

from .. import config
from ..abi._generated import ExecveMapValue
from ..bpf import libbpf, maps
from ..bpf.objects import Link, LoadedObject, ObjectSpec
from ..bpf.ringbuf import RingBuffer
from ..errors import BpfError, ConfigError
from . import _abi as A
from .netrules import MODES, EnforceError, Net, NetDecision, NetRule, lpm_key, merge_prefixes

__all__ = ["CgroupNetEnforcer", "NetRule", "NetDecision", "EnforceError", "release_pinned"]

OBJECT = "enforce_cgroup_net.bpf.o"
DEFAULT_CGROUP = "/sys/fs/cgroup/unified"
PIN_ROOT = "/sys/fs/bpf/kerneye/enforce"

#: program name -> the operation it guards (all attached by default)
PROGRAMS = {
    "enf_connect4": A.EnfNetHook.CONNECT,
    "enf_connect6": A.EnfNetHook.CONNECT,
    "enf_sendmsg4": A.EnfNetHook.SENDMSG,
    "enf_sendmsg6": A.EnfNetHook.SENDMSG,
    "enf_bind4": A.EnfNetHook.BIND,
    "enf_bind6": A.EnfNetHook.BIND,
    "enf_sock_create": A.EnfNetHook.SOCK_CREATE,
}
EXECVE_MAP = "kerneye_execve_map"
MAPS = ("kerneye_net_rules", "kerneye_net_sets", "kerneye_net_cfg", "kerneye_net_v4", "kerneye_net_v6",
        "kerneye_net_hits", "kerneye_net_stats", "kerneye_net_rb")


# --- libbpf helpers not (yet) in kerneye.bpf ----------------------------------

def _bind(name: str, res: object, args: list[object]):  # type: ignore[no-untyped-def]
    f = getattr(libbpf.lib(), name)
    f.restype, f.argtypes = res, args
    return f


def attach_cgroup(obj: LoadedObject, prog_name: str, cgroup_fd: int, pin_path: str | None = None) -> Link:
    """bpf_program__attach_cgroup (a BPF link, auto-detached when its last fd
    closes) and optionally bpf_link__pin. The Link is owned by obj."""
    prog = obj._prog(prog_name)  # noqa: SLF001 (objects.py has no public lookup)
    libbpf.take_log()
    ptr = libbpf.lib().bpf_program__attach_cgroup(prog, cgroup_fd)
    if not ptr:
        err = libbpf.errno_()
        raise BpfError(f"cannot attach {prog_name} to the cgroup: {libbpf.strerror(err)}", err, libbpf.take_log())
    link = Link(ptr, prog_name)
    obj.links.append(link)
    if pin_path:
        rc = _bind("bpf_link__pin", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p])(ptr, pin_path.encode())
        if rc:
            raise BpfError(f"cannot pin {prog_name} at {pin_path}: {libbpf.strerror(rc)}", -rc)
    return link


def pin_fd(fd: int, path: str) -> None:
    rc = _bind("bpf_obj_pin", ctypes.c_int, [ctypes.c_int, ctypes.c_char_p])(fd, path.encode())
    if rc:
        raise BpfError(f"cannot pin at {path}: {libbpf.strerror(rc)}", -rc)


def prog_id(obj: LoadedObject, prog_name: str) -> int:
    """The kernel id of a loaded program (bpftool prog show id N)."""
    fd = libbpf.lib().bpf_program__fd(obj._prog(prog_name))  # noqa: SLF001
    info = (ctypes.c_uint8 * 256)()  # struct bpf_prog_info; id is the u32 at offset 4
    n = ctypes.c_uint(256)
    rc = libbpf.lib().bpf_obj_get_info_by_fd(fd, info, ctypes.byref(n))
    if rc:
        raise BpfError(f"cannot query {prog_name}: {libbpf.strerror(rc)}", -rc)
    return int.from_bytes(bytes(info[4:8]), "little")


def execve_map_spec(obj_path: str, execve_map_fd: int | None) -> ObjectSpec:
    """The ObjectSpec of an enforcement object that declares
    kerneye_execve_map: reuse the agent's map, or shrink its own to one entry
    (it is only ever read, so it stays empty; no need for 65536 preallocated
    entries)."""
    if execve_map_fd is None:
        return ObjectSpec(obj_path, max_entries={EXECVE_MAP: 1})
    try:
        mtype, ksize, _ = maps.info(execve_map_fd)
        vsize = maps.value_size(execve_map_fd)
    except BpfError as e:
        raise ConfigError(f"execve_map_fd {execve_map_fd} is not a BPF map ({e}); pass the fd of the base "
                          "sensor's kerneye_execve_map") from None
    want = ctypes.sizeof(ExecveMapValue)
    if (mtype, ksize, vsize) != (maps.BPF_MAP_TYPE_HASH, 4, want):
        raise ConfigError(f"execve_map_fd {execve_map_fd} is not a kerneye_execve_map (hash, u32 key, "
                          f"{want}-byte value; got type {mtype}, key {ksize}, value {vsize}); pass the base "
                          "sensor's map")
    return ObjectSpec(obj_path, reuse_maps={EXECVE_MAP: execve_map_fd})


def release_pinned(pin_dir: str) -> bool:
    """Remove what keep_on_exit left under pin_dir; the programs detach once
    no process holds them. Returns False if there was nothing."""
    if not os.path.isdir(pin_dir):
        return False
    for name in os.listdir(pin_dir):
        os.unlink(os.path.join(pin_dir, name))
    os.rmdir(pin_dir)
    # tidy up empty parents we created (rmdir refuses non-empty ones)
    parent = os.path.dirname(os.path.abspath(pin_dir))
    while parent.startswith("/sys/fs/bpf/kerneye"):
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = os.path.dirname(parent)
    return True


# --- the enforcer -------------------------------------------------------------

class CgroupNetEnforcer:
    """Network rules enforced on one cgroup-v2 subtree.

    Thread-safety: rule changes are serialised by a lock; read_decisions is
    for one consumer thread. close() is idempotent.
    """

    def __init__(self, cgroup_path: str = DEFAULT_CGROUP, *, mode: str = "enforce", bpf_dir: str | None = None,
                 programs: Iterable[str] | None = None, keep_on_exit: bool = False,
                 pin_dir: str | None = None, execve_map_fd: int | None = None) -> None:
        if not os.path.isdir(cgroup_path):
            raise ConfigError(f"{cgroup_path} is not a directory; give a cgroup-v2 directory "
                              f"(the hierarchy is usually at {DEFAULT_CGROUP} or /sys/fs/cgroup)")
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        self.cgroup_path = cgroup_path
        self.obj_path = os.path.join(bpf_dir or config.default_bpf_dir(), OBJECT)
        self.programs = list(programs) if programs is not None else list(PROGRAMS)
        bad = set(self.programs) - set(PROGRAMS)
        if bad:
            raise ConfigError(f"unknown programs {sorted(bad)}; known: {sorted(PROGRAMS)}")
        self.keep_on_exit = keep_on_exit
        self.pin_dir = pin_dir or os.path.join(PIN_ROOT, "net-" + _pin_name(cgroup_path))
        self.execve_map_fd = execve_map_fd
        self._modes: dict[int, A.EnfMode] = {0: MODES[mode]}
        self._rules: dict[int, tuple[int, NetRule]] = {}  # id -> (slot, rule)
        self._lpm: dict[Net, int] = {}  # what the tries hold now
        self._create_mask = 0
        self._next_slot = 0
        self._lock = threading.Lock()
        self._obj: LoadedObject | None = None
        self._rb: RingBuffer | None = None
        self.prog_ids: dict[str, int] = {}

    # life cycle

    def start(self) -> "CgroupNetEnforcer":
        """Load, write the rules and modes, then attach (so enforcement is
        complete from the first attached program on)."""
        if self._obj is not None:
            return self
        if self.keep_on_exit and os.path.isdir(self.pin_dir) and os.listdir(self.pin_dir):
            raise EnforceError(f"enforcement is already pinned at {self.pin_dir} (an earlier agent used "
                               "keep_on_exit); remove it with release_pinned() or `rm -r` first")
        obj = LoadedObject(execve_map_spec(self.obj_path, self.execve_map_fd))
        try:
            self._obj = obj
            for s, m in self._modes.items():
                self._write_set(s, m)
            pending = [r for _, r in self._rules.values()]
            self._rules.clear()
            for r in pending:
                self._install(r)
            self.prog_ids = {p: prog_id(obj, p) for p in self.programs}
            if self.keep_on_exit:
                os.makedirs(self.pin_dir, exist_ok=True)
                for name in MAPS:
                    pin_fd(obj.map_fd(name), os.path.join(self.pin_dir, name))
            fd = os.open(self.cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                for p in self.programs:
                    attach_cgroup(obj, p, fd, os.path.join(self.pin_dir, p) if self.keep_on_exit else None)
            finally:
                os.close(fd)
            self._rb = RingBuffer(obj.map_fd("kerneye_net_rb"), obj.map_max_entries("kerneye_net_rb"))
        except BaseException:
            self._obj = None
            obj.close()
            if self.keep_on_exit:
                release_pinned(self.pin_dir)
            raise
        return self

    def close(self) -> None:
        """Detach everything (unless keep_on_exit: then the pinned links stay
        and only this process's handles go)."""
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> "CgroupNetEnforcer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # rules

    def add_rule(self, rule: NetRule) -> None:
        """Add (or replace, by id) a rule; live if started."""
        rule.to_struct()  # validate before touching anything
        rule.networks()
        with self._lock:
            if self._obj is None:
                self._rules[rule.id] = (-1, rule)
                return
            if rule.id in self._rules:
                self._uninstall(rule.id)
            self._install(rule)

    def remove_rule(self, rule_id: int) -> bool:
        with self._lock:
            if rule_id not in self._rules:
                return False
            if self._obj is None:
                del self._rules[rule_id]
            else:
                self._uninstall(rule_id)
            return True

    def rules(self) -> list[NetRule]:
        return [r for _, r in self._rules.values()]

    def set_mode(self, mode: str, ruleset: int = 0) -> None:
        """"enforce", "monitor" or "off" for one rule set; live."""
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        if not 0 <= ruleset < A.ENF_NET_MAX_SETS:
            raise EnforceError(f"ruleset must be 0..{A.ENF_NET_MAX_SETS - 1}")
        with self._lock:
            self._modes[ruleset] = MODES[mode]
            if self._obj is not None:
                self._write_set(ruleset, MODES[mode])

    def _write_set(self, ruleset: int, mode: A.EnfMode) -> None:
        assert self._obj is not None
        s = A.EnfNetSet(mode=int(mode))
        maps.update(self._obj.map_fd("kerneye_net_sets"), ctypes.c_uint32(ruleset), s)

    def _free_slot(self) -> int:
        """Round robin over free slots, so that a slot just freed is reused
        as late as possible (a program that read the trie before the old
        rule's bits were cleared might still look at that slot)."""
        used = {slot for slot, _ in self._rules.values()}
        for i in range(A.ENF_NET_MAX_RULES):
            s = (self._next_slot + i) % A.ENF_NET_MAX_RULES
            if s not in used:
                self._next_slot = s + 1
                return s
        raise EnforceError(f"too many network rules (the kernel side holds {A.ENF_NET_MAX_RULES})")

    def _install(self, rule: NetRule) -> None:
        assert self._obj is not None
        slot = self._free_slot()
        if rule.ruleset not in self._modes:
            self._modes[rule.ruleset] = self._modes[0]
            self._write_set(rule.ruleset, self._modes[0])
        maps.update(self._obj.map_fd("kerneye_net_rules"), ctypes.c_uint32(slot), rule.to_struct())
        self._rules[rule.id] = (slot, rule)
        self._sync()

    def _uninstall(self, rule_id: int) -> None:
        assert self._obj is not None
        slot, _ = self._rules.pop(rule_id)
        self._sync()
        maps.update(self._obj.map_fd("kerneye_net_rules"), ctypes.c_uint32(slot), A.EnfNetRule())
        zero = (ctypes.c_uint64 * libbpf.lib().libbpf_num_possible_cpus())()
        maps.update(self._obj.map_fd("kerneye_net_hits"), ctypes.c_uint32(slot), zero)

    def _sync(self) -> None:
        """Bring the tries and the create mask in line with self._rules."""
        assert self._obj is not None
        want = merge_prefixes((slot, r.networks()) for slot, r in self._rules.values())
        fds = {4: self._obj.map_fd("kerneye_net_v4"), 6: self._obj.map_fd("kerneye_net_v6")}
        for n, mask in want.items():
            if self._lpm.get(n) != mask:
                maps.update(fds[n.version], lpm_key(n), ctypes.c_uint64(mask))
        for n in set(self._lpm) - set(want):
            maps.delete(fds[n.version], lpm_key(n))
        self._lpm = want
        create = 0
        for slot, r in self._rules.values():
            if "sock_create" in r.hooks:
                create |= 1 << slot
        if create != self._create_mask:
            maps.update(self._obj.map_fd("kerneye_net_cfg"), ctypes.c_uint32(0), A.EnfNetConfig(create_mask=create))
            self._create_mask = create

    # reading

    def read_decisions(self, timeout_s: float = 0.0) -> list[NetDecision]:
        """Decisions reported since the last call; waits up to timeout_s for
        the first one."""
        if self._rb is None:
            raise EnforceError("the enforcer is not started")
        recs = self._rb.drain()
        if not recs and timeout_s > 0:
            self._rb.wait(timeout_s)
            recs = self._rb.drain()
        return [NetDecision.decode(r) for r in recs]

    def stats(self) -> dict[str, int]:
        if self._obj is None:
            return {}
        fd = self._obj.map_fd("kerneye_net_stats")
        return {s.name.lower(): maps.percpu_sum_u64(fd, int(s)) for s in A.EnfStat if s != A.EnfStat.MAX}

    def hits(self) -> dict[int, int]:
        """rule id -> decisive matches since it was added."""
        if self._obj is None:
            return {}
        fd = self._obj.map_fd("kerneye_net_hits")
        return {rid: maps.percpu_sum_u64(fd, slot) for rid, (slot, _) in self._rules.items()}

    def iter_decisions(self, stop: threading.Event, poll_s: float = 0.2) -> Iterator[NetDecision]:
        while not stop.is_set():
            yield from self.read_decisions(poll_s)


def _pin_name(cgroup_path: str) -> str:
    rel = os.path.relpath(os.path.realpath(cgroup_path), "/sys/fs/cgroup")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rel).strip("_") or "root"
