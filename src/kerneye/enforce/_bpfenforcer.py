"""What the BPF enforcement back ends share: the life cycle of one loaded
object whose programs make operations fail, and its rule slots.

`BpfEnforcer` is the skeleton of CgroupNetEnforcer (cgroup_net.py),
CgroupSysEnforcer (cgroup_sys.py) and LsmEnforcer (lsm.py):

  start()  load the object, write the rules added so far, pin the maps
           (keep_on_exit), attach every program (pinning its link), open
           the ring buffer; on any failure undo all of it
  close()  drop this process's handles (the kernel detaches what is not
           pinned: enforcement fails open)
  rules    every rule owns one of MAX_RULES slots (a bit in the kernel's
           candidate masks); slots are handed out round robin
  reading  decisions from the ring buffer, per-CPU counters summed

`CgroupEnforcer` adds what the two cgroup back ends share: one cgroup-v2
directory, rule sets with a mode each, per-slot hit counters. Subclasses
supply the object's names (class attributes) and the map contents of their
rules (`_rule_struct`, `_sync`).
"""
from __future__ import annotations

import ctypes
import os
import re
import threading
from typing import Any, Callable, Generic, Iterable, Iterator, Self, TypeVar

from .. import config
from ..abi._generated import ExecveMapValue
from ..bpf import libbpf, maps
from ..bpf.objects import Link, LoadedObject, ObjectSpec
from ..bpf.ringbuf import RingBuffer
from ..errors import BpfError, ConfigError
from . import _abi as A
from .netrules import MODES, EnforceError

DEFAULT_CGROUP = "/sys/fs/cgroup/unified"
PIN_ROOT = "/sys/fs/bpf/kerneye/enforce"
EXECVE_MAP = "kerneye_execve_map"


# --- libbpf helpers not (yet) in kerneye.bpf ----------------------------------

def _bind(name: str, res: object, args: list[object]):  # type: ignore[no-untyped-def]
    f = getattr(libbpf.lib(), name)
    f.restype, f.argtypes = res, args
    return f


def pin_link(link: Link, prog_name: str, path: str) -> None:
    """bpf_link__pin: the link (and so the attachment) outlives this process."""
    rc = _bind("bpf_link__pin", ctypes.c_int, [ctypes.c_void_p, ctypes.c_char_p])(link._ptr, path.encode())  # noqa: SLF001
    if rc:
        raise BpfError(f"cannot pin {prog_name} at {path}: {libbpf.strerror(rc)}", -rc)


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
        pin_link(link, prog_name, pin_path)
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


def pin_name(cgroup_path: str) -> str:
    """A cgroup directory as one path component (the default pin_dir's tail)."""
    rel = os.path.relpath(os.path.realpath(cgroup_path), "/sys/fs/cgroup")
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", rel).strip("_") or "root"


def zero_percpu_u64(fd: int, slot: int) -> None:
    """Reset one slot of a per-CPU u64 array (a freed rule's hit counter)."""
    zero = (ctypes.c_uint64 * libbpf.lib().libbpf_num_possible_cpus())()
    maps.update(fd, ctypes.c_uint32(slot), zero)


K = TypeVar("K")  # a candidate map's key, as user space keeps it
R = TypeVar("R")  # a rule
D = TypeVar("D")  # a decision


def sync_masks(fd: int | Callable[[K], int], old: dict[K, int], want: dict[K, int],
               key: Callable[[K], Any]) -> dict[K, int]:
    """Make a map of slot masks that holds `old` hold `want`: write the
    entries that changed, then delete those gone. fd may depend on the key
    (fd(k)); key(k) is the map key. Returns want (what the map holds now)."""
    fd_of: Callable[[K], int] = fd if callable(fd) else (lambda _k: fd)  # type: ignore[assignment,return-value]
    for k, mask in want.items():
        if old.get(k) != mask:
            maps.update(fd_of(k), key(k), ctypes.c_uint64(mask))
    for k in set(old) - set(want):
        maps.delete(fd_of(k), key(k))
    return want


def slot_mask(rules: Iterable[tuple[int, R]], pred: Callable[[R], bool]) -> int:
    """The bits of the slots whose rule satisfies pred."""
    mask = 0
    for slot, r in rules:
        if pred(r):
            mask |= 1 << slot
    return mask


# --- the life cycle -------------------------------------------------------------


class BpfEnforcer(Generic[R, D]):
    """One BPF enforcement object: load, attach, rule slots, decisions.

    Subclasses set the class attributes and implement `_load`, `_attach`,
    `_rule_struct` and `_sync`. Thread-safety: rule changes are serialised
    by a lock; read_decisions is for one consumer thread. close() is
    idempotent.
    """

    MAPS: tuple[str, ...] = ()      # pinned with keep_on_exit
    MAP_PREFIX = ""                 # PREFIX_rules (slot -> rule), _stats, _rb (, _sets, _hits)
    RULE_STRUCT: Any = None         # ctypes type of an empty slot
    STATS: tuple[A.EnfStat, ...] = tuple(s for s in A.EnfStat if s != A.EnfStat.MAX)
    MAX_RULES = 64
    WHAT = "enforcement"            # in "<WHAT> is already pinned at ..."
    WHAT_RULES = "rules"            # in "too many <WHAT_RULES> ..."
    NOT_STARTED = "the enforcer is not started"

    keep_on_exit: bool
    pin_dir: str

    def _fd(self, name: str) -> int:
        """The fd of map MAP_PREFIX_name."""
        assert self._obj is not None
        return self._obj.map_fd(f"{self.MAP_PREFIX}_{name}")

    def _init_state(self) -> None:
        self._rules: dict[int, tuple[int, R]] = {}  # id -> (slot, rule); slot -1 before start
        self._next_slot = 0
        self._lock = threading.Lock()
        self._obj: LoadedObject | None = None
        self._rb: RingBuffer | None = None
        self._init_maps()

    def _init_maps(self) -> None:
        """Set up the record of what the candidate maps hold (empty)."""

    # life cycle

    def _preflight(self) -> None:
        """Raise if start() cannot work here (before anything is touched)."""

    def _load(self) -> LoadedObject:
        raise NotImplementedError

    def _populate(self) -> None:
        """Write everything added before start() into the new maps."""
        with self._lock:
            pending = [r for _, r in self._rules.values()]
            self._rules.clear()
            for r in pending:
                self._install(r)

    def _pinned_maps(self) -> Iterable[str]:
        return self.MAPS

    def _attach(self, obj: LoadedObject) -> None:
        raise NotImplementedError

    def _start_failed(self, e: BaseException) -> None:
        """Called with what start() caught, after the undo: may raise a
        clearer error; otherwise e goes on."""

    def start(self) -> Self:
        """Load, write the rules added so far, then attach (so enforcement
        is complete from the first attached program on)."""
        if self._obj is not None:
            return self
        self._preflight()
        if self.keep_on_exit and os.path.isdir(self.pin_dir) and os.listdir(self.pin_dir):
            raise EnforceError(f"{self.WHAT} is already pinned at {self.pin_dir} (an earlier agent used "
                               "keep_on_exit); remove it with release_pinned() or `rm -r` first")
        obj = self._load()
        try:
            self._obj = obj
            self._populate()
            if self.keep_on_exit:
                os.makedirs(self.pin_dir, exist_ok=True)
                for name in self._pinned_maps():
                    pin_fd(obj.map_fd(name), os.path.join(self.pin_dir, name))
            self._attach(obj)
            rb = f"{self.MAP_PREFIX}_rb"
            self._rb = RingBuffer(obj.map_fd(rb), obj.map_max_entries(rb))
        except BaseException as e:
            self._obj = None
            obj.close()
            if self.keep_on_exit:
                release_pinned(self.pin_dir)
            self._start_failed(e)
            raise
        return self

    def close(self) -> None:
        """Detach everything (with keep_on_exit the pinned links stay and
        only this process's handles go)."""
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # rules

    def _add(self, rule: R) -> None:
        """Add (or replace, by id) a validated rule; live if started."""
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

    def rules(self) -> list[R]:
        return [r for _, r in self._rules.values()]

    def _free_slot(self) -> int:
        """Round robin over free slots, so that a slot just freed is reused
        as late as possible (a program that read a candidate mask before the
        old rule's bits were cleared might still look at that slot)."""
        used = {slot for slot, _ in self._rules.values()}
        for i in range(self.MAX_RULES):
            s = (self._next_slot + i) % self.MAX_RULES
            if s not in used:
                self._next_slot = s + 1
                return s
        raise EnforceError(f"too many {self.WHAT_RULES} (the kernel side holds {self.MAX_RULES})")

    def _rule_struct(self, rule: R) -> Any:
        """The slot's content for rule (called once its slot is chosen)."""
        raise NotImplementedError

    def _sync(self, adding: bool) -> None:
        """Bring the candidate maps in line with self._rules. The slot is
        written before (adding) or cleared after (removing) this runs."""
        raise NotImplementedError

    def _install(self, rule: R) -> None:
        assert self._obj is not None
        slot = self._free_slot()
        maps.update(self._fd("rules"), ctypes.c_uint32(slot), self._rule_struct(rule))
        self._rules[rule.id] = (slot, rule)
        self._sync(adding=True)

    def _uninstall(self, rule_id: int) -> None:
        assert self._obj is not None
        slot, _ = self._rules.pop(rule_id)
        self._sync(adding=False)
        maps.update(self._fd("rules"), ctypes.c_uint32(slot), self.RULE_STRUCT())
        self._slot_freed(slot)

    def _slot_freed(self, slot: int) -> None:
        pass

    # reading

    def _decode(self, recs: list[bytes]) -> list[D]:
        raise NotImplementedError

    def read_decisions(self, timeout_s: float = 0.0) -> list[D]:
        """Decisions reported since the last call; waits up to timeout_s for
        the first one."""
        if self._rb is None:
            raise EnforceError(self.NOT_STARTED)
        recs = self._rb.drain()
        if not recs and timeout_s > 0:
            self._rb.wait(timeout_s)
            recs = self._rb.drain()
        return self._decode(recs)

    def iter_decisions(self, stop: threading.Event, poll_s: float = 0.2) -> Iterator[D]:
        while not stop.is_set():
            yield from self.read_decisions(poll_s)

    def stats(self) -> dict[str, int]:
        """Per-CPU counters (enum enf_stat) summed: denied, monitored, ...,
        rb_lost (decisions not reported)."""
        if self._obj is None:
            return {}
        fd = self._fd("stats")
        return {s.name.lower(): maps.percpu_sum_u64(fd, int(s)) for s in self.STATS}


class CgroupEnforcer(BpfEnforcer[R, D]):
    """A BpfEnforcer attached to one cgroup-v2 directory, with rule sets
    (each with a mode) and per-slot hit counters."""

    OBJECT = ""
    PROGRAMS: Iterable[str] = ()
    PIN_PREFIX = ""                 # default pin_dir: PIN_ROOT/<prefix>-<cgroup>
    MAX_SETS = 16

    def __init__(self, cgroup_path: str = DEFAULT_CGROUP, *, mode: str = "enforce", bpf_dir: str | None = None,
                 programs: Iterable[str] | None = None, keep_on_exit: bool = False,
                 pin_dir: str | None = None, execve_map_fd: int | None = None) -> None:
        if not os.path.isdir(cgroup_path):
            raise ConfigError(f"{cgroup_path} is not a directory; give a cgroup-v2 directory "
                              f"(the hierarchy is usually at {DEFAULT_CGROUP} or /sys/fs/cgroup)")
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        self.cgroup_path = cgroup_path
        self.obj_path = os.path.join(bpf_dir or config.default_bpf_dir(), self.OBJECT)
        self.programs = list(programs) if programs is not None else list(self.PROGRAMS)
        bad = set(self.programs) - set(self.PROGRAMS)
        if bad:
            raise ConfigError(f"unknown programs {sorted(bad)}; known: {sorted(self.PROGRAMS)}")
        self.keep_on_exit = keep_on_exit
        self.pin_dir = pin_dir or os.path.join(PIN_ROOT, f"{self.PIN_PREFIX}-{pin_name(cgroup_path)}")
        self.execve_map_fd = execve_map_fd
        self._modes: dict[int, A.EnfMode] = {0: MODES[mode]}
        self._init_state()
        self.prog_ids: dict[str, int] = {}

    def _load(self) -> LoadedObject:
        return LoadedObject(execve_map_spec(self.obj_path, self.execve_map_fd))

    def _populate(self) -> None:
        for s, m in self._modes.items():
            self._write_set(s, m)
        super()._populate()
        assert self._obj is not None
        self.prog_ids = {p: prog_id(self._obj, p) for p in self.programs}

    def _attach(self, obj: LoadedObject) -> None:
        fd = os.open(self.cgroup_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for p in self.programs:
                attach_cgroup(obj, p, fd, os.path.join(self.pin_dir, p) if self.keep_on_exit else None)
        finally:
            os.close(fd)

    # rule sets

    def set_mode(self, mode: str, ruleset: int = 0) -> None:
        """"enforce", "monitor" or "off" for one rule set; live."""
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        if not 0 <= ruleset < self.MAX_SETS:
            raise EnforceError(f"ruleset must be 0..{self.MAX_SETS - 1}")
        with self._lock:
            self._modes[ruleset] = MODES[mode]
            if self._obj is not None:
                self._write_set(ruleset, MODES[mode])

    def _write_set(self, ruleset: int, mode: A.EnfMode) -> None:
        assert self._obj is not None
        maps.update(self._fd("sets"), ctypes.c_uint32(ruleset), A.EnfNetSet(mode=int(mode)))

    def _rule_struct(self, rule: Any) -> Any:  # rules of a cgroup back end carry .ruleset
        # a rule of a set not configured yet takes set 0's mode
        if rule.ruleset not in self._modes:
            self._modes[rule.ruleset] = self._modes[0]
            self._write_set(rule.ruleset, self._modes[0])
        return rule.to_struct()

    def _slot_freed(self, slot: int) -> None:
        zero_percpu_u64(self._fd("hits"), slot)

    # reading

    def hits(self) -> dict[int, int]:
        """rule id -> decisive matches since it was added."""
        if self._obj is None:
            return {}
        fd = self._fd("hits")
        return {rid: maps.percpu_sum_u64(fd, slot) for rid, (slot, _) in self._rules.items()}
