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

from ..bpf import maps
from . import _abi as A
# the cgroup helpers used to live here; importers of these names still work
from ._bpfenforcer import DEFAULT_CGROUP, EXECVE_MAP, PIN_ROOT, attach_cgroup, execve_map_spec  # noqa: F401
from ._bpfenforcer import pin_fd, prog_id  # noqa: F401
from ._bpfenforcer import pin_name as _pin_name  # noqa: F401
from ._bpfenforcer import CgroupEnforcer, release_pinned, slot_mask, sync_masks
from .netrules import EnforceError, Net, NetDecision, NetRule, lpm_key, merge_prefixes

__all__ = ["CgroupNetEnforcer", "NetRule", "NetDecision", "EnforceError", "release_pinned"]

OBJECT = "enforce_cgroup_net.bpf.o"

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
MAPS = ("kerneye_net_rules", "kerneye_net_sets", "kerneye_net_cfg", "kerneye_net_v4", "kerneye_net_v6",
        "kerneye_net_hits", "kerneye_net_stats", "kerneye_net_rb")


class CgroupNetEnforcer(CgroupEnforcer[NetRule, NetDecision]):
    """Network rules enforced on one cgroup-v2 subtree.

    Life cycle, rule sets, slots and reading are CgroupEnforcer's
    (_bpfenforcer.py); this class keeps the LPM tries and the sock_create
    mask. Thread-safety: rule changes are serialised by a lock;
    read_decisions is for one consumer thread. close() is idempotent.
    """

    OBJECT = OBJECT
    PROGRAMS = PROGRAMS
    PIN_PREFIX = "net"
    MAPS = MAPS
    MAP_PREFIX = "kerneye_net"
    RULE_STRUCT = A.EnfNetRule
    MAX_RULES = A.ENF_NET_MAX_RULES
    MAX_SETS = A.ENF_NET_MAX_SETS
    WHAT_RULES = "network rules"

    def _init_maps(self) -> None:
        self._lpm: dict[Net, int] = {}  # what the tries hold now
        self._create_mask = 0

    # rules

    def add_rule(self, rule: NetRule) -> None:
        """Add (or replace, by id) a rule; live if started."""
        rule.to_struct()  # validate before touching anything
        rule.networks()
        self._add(rule)

    def _sync(self, adding: bool = True) -> None:
        """Bring the tries and the create mask in line with self._rules."""
        assert self._obj is not None
        want = merge_prefixes((slot, r.networks()) for slot, r in self._rules.values())
        fds = {4: self._obj.map_fd("kerneye_net_v4"), 6: self._obj.map_fd("kerneye_net_v6")}
        self._lpm = sync_masks(lambda n: fds[n.version], self._lpm, want, lpm_key)
        create = slot_mask(self._rules.values(), lambda r: "sock_create" in r.hooks)
        if create != self._create_mask:
            maps.update(self._obj.map_fd("kerneye_net_cfg"), ctypes.c_uint32(0), A.EnfNetConfig(create_mask=create))
            self._create_mask = create

    # reading

    def _decode(self, recs: list[bytes]) -> list[NetDecision]:
        return [NetDecision.decode(r) for r in recs]
