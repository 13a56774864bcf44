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

from ..bpf import maps
from . import _abi as A
from ._bpfenforcer import CgroupEnforcer, release_pinned, slot_mask, sync_masks
from .netrules import EnforceError
from .sysrules import DeviceRule, SysctlRule, SysDecision, merge_names, sysctl_key

__all__ = ["CgroupSysEnforcer", "SysctlRule", "DeviceRule", "SysDecision", "EnforceError", "release_pinned"]

OBJECT = "enforce_cgroup_sys.bpf.o"
PROGRAMS = ("enf_sysctl", "enf_dev")
MAPS = ("kerneye_sys_rules", "kerneye_sys_sets", "kerneye_sys_cfg", "kerneye_sysctl_names", "kerneye_sys_hits",
        "kerneye_sys_stats", "kerneye_sys_rb")
MAX_RULES = int(A.EnfSysConst.MAX_RULES)
MAX_SETS = int(A.EnfSysConst.MAX_SETS)

Rule = SysctlRule | DeviceRule


class CgroupSysEnforcer(CgroupEnforcer[Rule, SysDecision]):
    """sysctl and device rules enforced on one cgroup-v2 subtree.

    Life cycle, rule sets, slots and reading are CgroupEnforcer's
    (_bpfenforcer.py); this class keeps the sysctl name trie and the device
    mask. Thread-safety: rule changes are serialised by a lock;
    read_decisions is for one consumer thread. close() is idempotent.
    """

    OBJECT = OBJECT
    PROGRAMS = PROGRAMS
    PIN_PREFIX = "sys"
    MAPS = MAPS
    MAP_PREFIX = "kerneye_sys"
    RULE_STRUCT = A.EnfSysRule
    MAX_RULES = MAX_RULES
    MAX_SETS = MAX_SETS
    WHAT_RULES = "sysctl/device rules"

    def _init_maps(self) -> None:
        self._lpm: dict[bytes, int] = {}  # what the trie holds now
        self._dev_mask = 0

    # rules

    def add_sysctl_rule(self, rule: SysctlRule) -> None:
        """Add (or replace, by id) a sysctl rule; live if started."""
        if not isinstance(rule, SysctlRule):
            raise EnforceError(f"add_sysctl_rule takes a SysctlRule, not {type(rule).__name__}")
        rule.to_struct()  # validate before touching anything
        self._add(rule)

    def add_device_rule(self, rule: DeviceRule) -> None:
        """Add (or replace, by id) a device rule; live if started."""
        if not isinstance(rule, DeviceRule):
            raise EnforceError(f"add_device_rule takes a DeviceRule, not {type(rule).__name__}")
        rule.to_struct()
        self._add(rule)

    def _sync(self, adding: bool = True) -> None:
        """Bring the name trie and the device mask in line with self._rules."""
        assert self._obj is not None
        want = merge_names((slot, r.keys()) for slot, r in self._rules.values() if isinstance(r, SysctlRule))
        self._lpm = sync_masks(self._obj.map_fd("kerneye_sysctl_names"), self._lpm, want, sysctl_key)
        dev = slot_mask(self._rules.values(), lambda r: isinstance(r, DeviceRule))
        if dev != self._dev_mask:
            maps.update(self._obj.map_fd("kerneye_sys_cfg"), ctypes.c_uint32(0), A.EnfSysConfig(dev_mask=dev))
            self._dev_mask = dev

    # reading

    def _decode(self, recs: list[bytes]) -> list[SysDecision]:
        return [SysDecision.decode(r) for r in recs]
