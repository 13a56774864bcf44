"""sysctl and device enforcement with cgroup BPF (bpf/enforce/cgroup_sys.bpf.c).

`CgroupSysEnforcer` loads one object and attaches its two programs
(cgroup/sysctl, cgroup/dev) to one cgroup-v2 directory: the hierarchy's root
for the whole host, or one container's cgroup. Rules are live map updates,
as with CgroupNetEnforcer.

    with CgroupSysEnforcer("/sys/fs/cgroup/unified/mycontainer") as enf:
        enf.add_sysctl_rule(SysctlRule(id=1, names=["kernel/modprobe"], prefixes=["vm/"]))
        enf.add_device_rule(DeviceRule.parse(2, "b *:* rwm"))
        for d in enf.read_decisions(timeout_s=1.0): print(d.to_dict())

Map contents: every rule owns one of 64 slots. Sysctl rules put their names
into one LPM trie over the name bytes (prefixes bare, exact names with their
NUL), each entry holding the slots of every rule with a key that is a prefix
of it (sysrules.merge_names). Device rules are listed in a slot mask. Update
order: slot before trie bits on add, trie bits before slot on remove.

Lifetime as CgroupNetEnforcer: bpf_links die with the process (fail open)
unless keep_on_exit pins links and maps under
/sys/fs/bpf/kerneye/enforce/sys-<cgroup> until release_pinned(). Binary
qualifiers read the agent's kerneye_execve_map when execve_map_fd is given.
"""
from __future__ import annotations

import ctypes
import os
import threading
from typing import Iterable, Iterator

from .. import config
from ..bpf import libbpf, maps
from ..bpf.objects import LoadedObject
from ..bpf.ringbuf import RingBuffer
from ..errors import ConfigError
from . import _abi as A
from .cgroup_net import DEFAULT_CGROUP, PIN_ROOT, _pin_name, attach_cgroup, execve_map_spec, pin_fd, prog_id, \
    release_pinned
from .netrules import MODES, EnforceError
from .sysrules import DeviceRule, SysctlRule, SysDecision, merge_names, sysctl_key

__all__ = ["CgroupSysEnforcer", "SysctlRule", "DeviceRule", "SysDecision", "EnforceError", "release_pinned"]

OBJECT = "enforce_cgroup_sys.bpf.o"
PROGRAMS = ("enf_sysctl", "enf_dev")
MAPS = ("kerneye_sys_rules", "kerneye_sys_sets", "kerneye_sys_cfg", "kerneye_sysctl_names", "kerneye_sys_hits",
        "kerneye_sys_stats", "kerneye_sys_rb")
MAX_RULES = int(A.EnfSysConst.MAX_RULES)
MAX_SETS = int(A.EnfSysConst.MAX_SETS)

Rule = SysctlRule | DeviceRule


class CgroupSysEnforcer:
    """sysctl and device rules enforced on one cgroup-v2 subtree.

    Thread-safety: rule changes are serialised by a lock; read_decisions is
    for one consumer thread. close() is idempotent.
    """

    def __init__(self, cgroup_path: str = DEFAULT_CGROUP, *, mode: str = "enforce", bpf_dir: str | None = None,
                 programs: Iterable[str] | None = None, keep_on_exit: bool = False, pin_dir: str | None = None,
                 execve_map_fd: int | None = None) -> None:
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
        self.pin_dir = pin_dir or os.path.join(PIN_ROOT, "sys-" + _pin_name(cgroup_path))
        self.execve_map_fd = execve_map_fd
        self._modes: dict[int, A.EnfMode] = {0: MODES[mode]}
        self._rules: dict[int, tuple[int, Rule]] = {}  # id -> (slot, rule)
        self._lpm: dict[bytes, int] = {}  # what the trie holds now
        self._dev_mask = 0
        self._next_slot = 0
        self._lock = threading.Lock()
        self._obj: LoadedObject | None = None
        self._rb: RingBuffer | None = None
        self.prog_ids: dict[str, int] = {}

    # life cycle

    def start(self) -> "CgroupSysEnforcer":
        """Load, write modes and rules, then attach."""
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
            self._rb = RingBuffer(obj.map_fd("kerneye_sys_rb"), obj.map_max_entries("kerneye_sys_rb"))
        except BaseException:
            self._obj = None
            obj.close()
            if self.keep_on_exit:
                release_pinned(self.pin_dir)
            raise
        return self

    def close(self) -> None:
        """Detach everything (with keep_on_exit only this process's handles go)."""
        if self._rb is not None:
            self._rb.close()
            self._rb = None
        if self._obj is not None:
            self._obj.close()
            self._obj = None

    def __enter__(self) -> "CgroupSysEnforcer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # rules

    def add_sysctl_rule(self, rule: SysctlRule) -> None:
        """Add (or replace, by id) a sysctl rule; live if started."""
        if not isinstance(rule, SysctlRule):
            raise EnforceError(f"add_sysctl_rule takes a SysctlRule, not {type(rule).__name__}")
        self._add(rule)

    def add_device_rule(self, rule: DeviceRule) -> None:
        """Add (or replace, by id) a device rule; live if started."""
        if not isinstance(rule, DeviceRule):
            raise EnforceError(f"add_device_rule takes a DeviceRule, not {type(rule).__name__}")
        self._add(rule)

    def _add(self, rule: Rule) -> None:
        rule.to_struct()  # validate before touching anything
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

    def rules(self) -> list[Rule]:
        return [r for _, r in self._rules.values()]

    def set_mode(self, mode: str, ruleset: int = 0) -> None:
        """"enforce", "monitor" or "off" for one rule set; live."""
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        if not 0 <= ruleset < MAX_SETS:
            raise EnforceError(f"ruleset must be 0..{MAX_SETS - 1}")
        with self._lock:
            self._modes[ruleset] = MODES[mode]
            if self._obj is not None:
                self._write_set(ruleset, MODES[mode])

    def _write_set(self, ruleset: int, mode: A.EnfMode) -> None:
        assert self._obj is not None
        maps.update(self._obj.map_fd("kerneye_sys_sets"), ctypes.c_uint32(ruleset), A.EnfNetSet(mode=int(mode)))

    def _free_slot(self) -> int:
        """Round robin, so a slot just freed is reused as late as possible."""
        used = {slot for slot, _ in self._rules.values()}
        for i in range(MAX_RULES):
            s = (self._next_slot + i) % MAX_RULES
            if s not in used:
                self._next_slot = s + 1
                return s
        raise EnforceError(f"too many sysctl/device rules (the kernel side holds {MAX_RULES})")

    def _install(self, rule: Rule) -> None:
        assert self._obj is not None
        slot = self._free_slot()
        if rule.ruleset not in self._modes:
            self._modes[rule.ruleset] = self._modes[0]
            self._write_set(rule.ruleset, self._modes[0])
        maps.update(self._obj.map_fd("kerneye_sys_rules"), ctypes.c_uint32(slot), rule.to_struct())
        self._rules[rule.id] = (slot, rule)
        self._sync()

    def _uninstall(self, rule_id: int) -> None:
        assert self._obj is not None
        slot, _ = self._rules.pop(rule_id)
        self._sync()
        maps.update(self._obj.map_fd("kerneye_sys_rules"), ctypes.c_uint32(slot), A.EnfSysRule())
        zero = (ctypes.c_uint64 * libbpf.lib().libbpf_num_possible_cpus())()
        maps.update(self._obj.map_fd("kerneye_sys_hits"), ctypes.c_uint32(slot), zero)

    def _sync(self) -> None:
        """Bring the name trie and the device mask in line with self._rules."""
        assert self._obj is not None
        want = merge_names((slot, r.keys()) for slot, r in self._rules.values() if isinstance(r, SysctlRule))
        fd = self._obj.map_fd("kerneye_sysctl_names")
        for k, mask in want.items():
            if self._lpm.get(k) != mask:
                maps.update(fd, sysctl_key(k), ctypes.c_uint64(mask))
        for k in set(self._lpm) - set(want):
            maps.delete(fd, sysctl_key(k))
        self._lpm = want
        dev = 0
        for slot, r in self._rules.values():
            if isinstance(r, DeviceRule):
                dev |= 1 << slot
        if dev != self._dev_mask:
            maps.update(self._obj.map_fd("kerneye_sys_cfg"), ctypes.c_uint32(0), A.EnfSysConfig(dev_mask=dev))
            self._dev_mask = dev

    # reading

    def read_decisions(self, timeout_s: float = 0.0) -> list[SysDecision]:
        """Decisions reported since the last call; waits up to timeout_s for
        the first one."""
        if self._rb is None:
            raise EnforceError("the enforcer is not started")
        recs = self._rb.drain()
        if not recs and timeout_s > 0:
            self._rb.wait(timeout_s)
            recs = self._rb.drain()
        return [SysDecision.decode(r) for r in recs]

    def stats(self) -> dict[str, int]:
        """denied, monitored, allowed, rb_lost (decisions not reported)."""
        if self._obj is None:
            return {}
        fd = self._obj.map_fd("kerneye_sys_stats")
        return {s.name.lower(): maps.percpu_sum_u64(fd, int(s)) for s in A.EnfStat if s != A.EnfStat.MAX}

    def hits(self) -> dict[int, int]:
        """rule id -> decisive matches since it was added."""
        if self._obj is None:
            return {}
        fd = self._obj.map_fd("kerneye_sys_hits")
        return {rid: maps.percpu_sum_u64(fd, slot) for rid, (slot, _) in self._rules.items()}

    def iter_decisions(self, stop: threading.Event, poll_s: float = 0.2) -> Iterator[SysDecision]:
        while not stop.is_set():
            yield from self.read_decisions(poll_s)
