"""The agent's enforcement: policies' rules -> the strongest back end this
kernel offers -> decisions -> events.

    EnforcementManager.add(RulePlan)     install a policy's rules (all or none)
    .delete(name) / .set_mode(name, m)   live changes
    .drain()                              decisions -> events (agent main loop)
    .close()                              stop; pinned programs stay with keep_on_exit

Choosing a back end: `probe()` runs once, at the first policy, and says for
every mechanism whether it is usable here and, if not, why. For each rule,
kerneye.enforce.capabilities.best() walks the operation's mechanisms
strongest first and takes the first usable one that has an adapter below; a
rule no mechanism can enforce is refused with the probes' reasons (the
policy then does not load: a policy never half-enforces).

Adapters hide the back ends' APIs behind install(rule id, rule, mode) /
remove(rule id) and turn their decision records into `Verdict`s. Back ends
call nothing in the agent: their reader threads put verdicts on a queue the
agent's main loop drains, so events are built on the thread that owns the
process cache and the listeners.
"""
from __future__ import annotations

import errno as _errno
import logging
import os
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import KerneyeError
from . import capabilities
from .rules import OPERATIONS, Rule, RulePlan, errno_name

log = logging.getLogger("kerneye.enforce")

CGROUP2_ROOTS = ("/sys/fs/cgroup/unified", "/sys/fs/cgroup")
_FAMILY = {socket.AF_INET: "AF_INET", socket.AF_INET6: "AF_INET6", 17: "AF_PACKET"}
_PROTO = {6: "IPPROTO_TCP", 17: "IPPROTO_UDP", 1: "IPPROTO_ICMP", 58: "IPPROTO_ICMPV6", 255: "IPPROTO_RAW"}


class EnforcementError(KerneyeError):
    """A rule cannot be enforced here; the message says why and what to do."""


@dataclass
class Verdict:
    """One decision of a back end, normalised."""

    backend_id: int
    blocked: bool          # the operation failed
    monitor: bool          # a monitor-mode rule matched (nothing was blocked)
    pid: int               # tgid
    tid: int
    err: int               # errno returned, 0 if allowed
    values: dict[str, Any] = field(default_factory=dict)  # path, addr, port, family, ...
    time_ns: int = 0


@dataclass
class Installed:
    rid: int
    policy: str
    rule: Rule
    mechanism: str
    backend_ids: list[int] = field(default_factory=list)
    decisions: int = 0
    #: the same rule in further back ends (exec deny: BPF-LSM by inode plus
    #: fanotify by content, for copies); each reports with its own mechanism
    extra: list["Installed"] = field(default_factory=list)
    primary: "Installed | None" = None

    def all(self) -> list["Installed"]:
        return [self, *self.extra]


@dataclass
class PolicyEntry:
    name: str
    kind: str
    mode: str
    source: str
    rules: list[Installed] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    state: str = "enabled"
    ndenied: int = 0
    nmonitored: int = 0

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "mode": self.mode, "state": self.state, "source": self.source,
                "ndenied": self.ndenied, "nmonitored": self.nmonitored, "warnings": self.warnings,
                "rules": [{"id": i.rid, "op": i.rule.op, "action": i.rule.action,
                           "mechanism": "+".join(p.mechanism for p in i.all()),
                           "where": i.rule.where, "decisions": i.decisions} for i in self.rules]}


# --- adapters ----------------------------------------------------------------------

class Adapter:
    """One back end. Subclasses implement _start, install, remove, poll."""

    key = ""
    enf: Any = None  # the back end's enforcer object, once started

    def __init__(self, mgr: "EnforcementManager") -> None:
        self.mgr = mgr
        self.started = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.lost = 0  # decisions applied but not reported, read by this adapter's thread

    def ensure_started(self) -> None:
        if not self.started:
            self._start()
            self.started = True
            self._thread = threading.Thread(target=self._loop, name=f"kerneye-enf-{self.key}", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                for v in self.poll(0.2):
                    # back-pressure while the agent drains; never stuck past close()
                    while not self._stop.is_set():
                        try:
                            self.mgr.verdicts.put(v, timeout=0.5)
                            break
                        except queue.Full:
                            continue
                self.lost = self._count_lost()
            except Exception as e:  # noqa: BLE001 - a reader must not die silently
                if self._stop.is_set():
                    return
                log.error("enforcement %s: reading decisions failed: %s", self.key, e)
                time.sleep(0.5)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self.started:
            self._close()
        self.started = False

    # to implement
    def _start(self) -> None: ...
    def _close(self) -> None: ...
    def install(self, inst: Installed, mode: str) -> None: ...

    def remove(self, inst: Installed) -> None:
        """Single-enforcer adapters (self.enf) drop their rules by id."""
        for bid in inst.backend_ids:
            self.enf.remove_rule(bid)
        inst.backend_ids.clear()

    def poll(self, timeout_s: float) -> list[Verdict]: return []

    def enforcers(self) -> list[Any]:
        """The back-end objects this adapter drives."""
        return [self.enf] if self.enf is not None else []

    def _count_lost(self) -> int:
        n = 0
        for e in self.enforcers():
            st = e.stats() if callable(e.stats) else e.stats  # BPF counters, or fanotify's dict
            n += int(st.get("rb_lost", 0)) + int(st.get("reports_dropped", 0))
        return n

    @staticmethod
    def supports(rule: Rule) -> str | None:
        """None if this back end can enforce rule, else why not (asked before
        anything is started)."""
        return None


class FanotifyAdapter(Adapter):
    key = "fanotify"

    def _start(self) -> None:
        from .fanotify import FanotifyEnforcer

        self.enf = FanotifyEnforcer(mode="enforce")
        self.enf.start()

    def _close(self) -> None:
        self.enf.close()

    @staticmethod
    def supports(rule: Rule) -> str | None:
        if rule.op not in ("open", "write", "exec"):
            return f"fanotify sees file opens and execs, not {rule.op}"
        return None

    def install(self, inst: Installed, mode: str) -> None:
        r = inst.rule
        kw: dict[str, Any] = {}
        if r.binaries:
            kw["binaries"] = list(r.binaries)
            kw["binaries_not"] = r.binaries_not
        if r.scope:  # marks are host-wide; the responder checks the caller's cgroup
            kw["cgroups"] = self.mgr.cgroups_of(r)
        for p in (r.paths if not (r.op == "exec" and r.action == "allow") else ()):
            bid = self.mgr.new_backend_id(inst)
            if r.op in ("open", "write"):
                okw = dict(kw)
                if r.op == "write":
                    okw["write_only"] = True
                if p.endswith("/") and p != "/":
                    okw["recursive"] = True
                    p = p.rstrip("/")
                elif os.path.isdir(p):
                    okw["recursive"] = True
                self.enf.deny_open(bid, p, mode, **okw)
            elif r.op == "exec" and r.action == "deny":
                # by inode, and by content: a copy of the binary is denied too
                if p.startswith("sha256:"):
                    self.enf.deny_exec_sha256(bid, p[7:], mode, **kw)
                else:
                    self.enf.deny_exec(bid, p, mode, match_content=True, **kw)
            else:
                raise EnforcementError(f"fanotify cannot enforce {r.op}/{r.action}")
            inst.backend_ids.append(bid)
        if r.op == "exec" and r.action == "allow":
            allowed = list(r.paths)
            from .fanotify import exec_mounts

            for m in r.mounts or exec_mounts():
                bid = self.mgr.new_backend_id(inst)
                self.enf.exec_allowlist(bid, m, allowed, mode, **kw)
                inst.backend_ids.append(bid)

    def poll(self, timeout_s: float) -> list[Verdict]:
        out = []
        for d in self.enf.get_decisions(timeout_s):
            if d.verdict != "deny" and not d.monitor:
                continue
            vals = {"path": d.path, "dev": d.dev, "ino": d.ino}
            if getattr(d, "binary", ""):
                vals["binary"] = d.binary
            out.append(Verdict(d.rule_id, d.verdict == "deny", d.monitor, d.pid, getattr(d, "tid", d.pid),
                               _errno.EPERM if d.verdict == "deny" else 0, vals, time.time_ns()))
        return out


class CgroupAdapter(Adapter):
    """cgroup BPF: network (cgroup_net) and sysctl/device (cgroup_sys)
    enforcers, one of each per cgroup-v2 directory, created on first use."""

    key = "cgroup-bpf"
    ENFORCE_SET, MONITOR_SET = 0, 1

    def _start(self) -> None:
        self.enfs: dict[str, Any] = {}      # cgroup -> CgroupNetEnforcer
        self.sys_enfs: dict[str, Any] = {}  # cgroup -> CgroupSysEnforcer
        self._where: dict[int, Any] = {}    # back-end rule id -> the enforcer holding it

    def _enforcer(self, cgroup: str, sys: bool = False) -> Any:
        """The network (or, with sys, the sysctl/device) enforcer of a
        cgroup, started on first use with its monitor rule set."""
        from .cgroup_net import CgroupNetEnforcer, release_pinned
        from .cgroup_sys import CgroupSysEnforcer

        cache = self.sys_enfs if sys else self.enfs
        e = cache.get(cgroup)
        if e is None:
            cls = CgroupSysEnforcer if sys else CgroupNetEnforcer
            e = cls(cgroup, mode="enforce", bpf_dir=self.mgr.bpf_dir, keep_on_exit=self.mgr.keep_on_exit,
                    execve_map_fd=self.mgr.execve_map_fd)
            if self.mgr.keep_on_exit and release_pinned(e.pin_dir):
                log.warning("enforcement pinned by an earlier agent at %s replaced", e.pin_dir)
            e.set_mode("monitor", ruleset=self.MONITOR_SET)
            e.start()
            cache[cgroup] = e
        return e

    def _close(self) -> None:
        for e in self.enforcers():
            e.close()
        self.enfs.clear()
        self.sys_enfs.clear()
        self._where.clear()

    def enforcers(self) -> list[Any]:
        return [*self.enfs.values(), *self.sys_enfs.values()]

    @staticmethod
    def supports(rule: Rule) -> str | None:
        if rule.op == "raw_socket" and rule.family == "packet":
            return "AF_PACKET sockets are not seen by cgroup/sock_create; denying them needs BPF-LSM"
        return None

    def install(self, inst: Installed, mode: str) -> None:
        from .cgroup_net import NetRule

        r = inst.rule
        rs = self.MONITOR_SET if mode == "monitor" else self.ENFORCE_SET
        bin_kw: dict[str, Any] = {}
        if r.binaries:
            bin_kw = {"bin_mask": self.mgr.binaries_mask(inst), "bin_not": r.binaries_not}
        err = r.errno if r.errno != _errno.EPERM else 0
        rules: list[Any] = []
        if r.op in ("sysctl", "device"):
            self._install_sys(inst, rs, err, bin_kw)
            return
        if r.op == "raw_socket":
            rules.append(lambda bid: NetRule(id=bid, sock_type="raw", family=r.family, hooks=("sock_create",),
                                             ruleset=rs, err=err, **bin_kw))
        else:
            hooks = (r.op,)

            def mk(action: str, cidrs: tuple[str, ...], ports: tuple[tuple[int, int], ...], prio: int) -> None:
                for pr in (list(ports) or [None]):
                    rules.append(lambda bid, pr=pr: NetRule(
                        id=bid, action=action, cidrs=list(cidrs), ports=pr, proto=r.protocol, hooks=hooks,
                        priority=prio, ruleset=rs, err=err, report=False, **bin_kw))

            cidrs = r.cidrs
            if r.family == "inet" and not cidrs:
                cidrs = ("0.0.0.0/0",)
            elif r.family == "inet6" and not cidrs:
                cidrs = ("::/0",)
            if r.action == "allow":
                mk("allow", cidrs, r.ports, 10)
            else:
                if r.except_cidrs or r.except_ports:
                    mk("allow", r.except_cidrs or cidrs, r.except_ports or r.ports, 10)
                mk("deny", cidrs, r.ports, 100)
        for cg in self.mgr.cgroups_of(r):
            e = self._enforcer(cg)
            for make in rules:
                bid = self.mgr.new_backend_id(inst)
                e.add_rule(make(bid))
                inst.backend_ids.append(bid)
                self._where[bid] = e

    def _install_sys(self, inst: Installed, rs: int, err: int, bin_kw: dict[str, Any]) -> None:
        from .sysrules import DeviceRule, SysctlRule

        r = inst.rule
        makers: list[Callable[[int], Any]] = []
        if r.op == "sysctl":
            names = [n for n in r.sysctls if not n.endswith("/")]
            prefixes = [n for n in r.sysctls if n.endswith("/")]
            makers.append(lambda bid: SysctlRule(id=bid, names=names, prefixes=prefixes, access=("write",),
                                                 ruleset=rs, err=err, **bin_kw))
        else:
            for t, ma, mi, acc in r.devices:
                makers.append(lambda bid, t=t, ma=ma, mi=mi, acc=acc: DeviceRule(
                    id=bid, type=t, major=None if ma < 0 else ma, minor=None if mi < 0 else mi, access=acc,
                    ruleset=rs, err=err, **bin_kw))
        for cg in self.mgr.cgroups_of(r):
            e = self._enforcer(cg, sys=True)
            for make in makers:
                bid = self.mgr.new_backend_id(inst)
                rule = make(bid)
                (e.add_sysctl_rule if r.op == "sysctl" else e.add_device_rule)(rule)
                inst.backend_ids.append(bid)
                self._where[bid] = e

    def remove(self, inst: Installed) -> None:
        for bid in inst.backend_ids:
            e = self._where.pop(bid, None)  # the enforcer holding it
            if e is not None:
                e.remove_rule(bid)
        inst.backend_ids.clear()

    def poll(self, timeout_s: float) -> list[Verdict]:
        out = []
        if self.started:
            for e in list(self.sys_enfs.values()):
                for d in e.read_decisions(0):
                    if d.action == "allow" and not d.monitor:
                        continue
                    vals = {"name": d.name, "access": d.access, "comm": d.comm,
                            "device": f"{d.dev_type} {d.major}:{d.minor} {d.access}" if d.kind == "device" else ""}
                    out.append(Verdict(d.rule_id, d.verdict == "deny", d.monitor, d.tgid, d.pid, d.err, vals,
                                       time.time_ns()))
        enfs = list(self.enfs.values()) if self.started else []
        if not enfs:
            time.sleep(timeout_s)
            return out
        per = timeout_s / len(enfs)
        for e in enfs:
            for d in e.read_decisions(per):
                if d.action == "allow" and not d.monitor:
                    continue
                vals: dict[str, Any] = {"hook": d.hook, "family": d.family, "addr": d.addr, "port": d.port,
                                        "protocol": d.proto, "sock_type": d.sock_type, "comm": d.comm}
                out.append(Verdict(d.rule_id, d.verdict == "deny", d.monitor, d.tgid, d.pid, d.err, vals,
                                   time.time_ns()))
        return out


class LsmAdapter(Adapter):
    """BPF-LSM (kerneye.enforce.lsm): files and exec by inode, raw and packet
    sockets, module and BPF loads, unlink/rename/chmod; host-wide, or for
    the tasks of spec.scope's cgroup subtrees (containers)."""

    key = "bpf-lsm"
    OPS = ("open", "write", "exec", "raw_socket", "module", "bpf", "protect")

    def _start(self) -> None:
        from .cgroup_net import release_pinned
        from .lsm import PIN_DIR, LsmEnforcer

        if self.mgr.keep_on_exit and release_pinned(PIN_DIR):
            log.warning("enforcement pinned by an earlier agent at %s replaced", PIN_DIR)
        self.enf = LsmEnforcer(mode="enforce", bpf_dir=self.mgr.bpf_dir, keep_on_exit=self.mgr.keep_on_exit,
                               execve_map_fd=self.mgr.execve_map_fd)
        self.enf.start()

    def _close(self) -> None:
        self.enf.close()

    @staticmethod
    def supports(rule: Rule) -> str | None:
        if rule.op not in LsmAdapter.OPS:
            return f"kerneye's LSM programs do not cover {rule.op} (cgroup BPF does)"
        if any(p.endswith("/") or os.path.isdir(p) for p in rule.paths) and rule.op != "protect":
            return "directory trees are not matched by the LSM programs (inode rules only)"
        if any(p.startswith("sha256:") for p in rule.paths):
            return "content hashes are checked by the fanotify back end only"
        if rule.op == "exec" and rule.action == "allow" and rule.mounts:
            return "the LSM exec allow list is host-wide (no per-mount scope)"
        return None

    def install(self, inst: Installed, mode: str) -> None:
        r = inst.rule
        bid = self.mgr.new_backend_id(inst)
        kw: dict[str, Any] = {"mode": mode, "err": r.errno if r.errno != _errno.EPERM else 0}
        if r.binaries:
            kw.update(bin_mask=self.mgr.binaries_mask(inst), bin_not=r.binaries_not)
        if r.scope:  # cgroup directories (container:<id> resolved); none: every task
            kw["cgroups"] = self.mgr.cgroups_of(r)
        paths = list(r.paths)
        if r.op in ("open", "write"):
            self.enf.deny_open(bid, paths, write_only=r.op == "write", **kw)
        elif r.op == "exec":
            (self.enf.exec_allowlist if r.action == "allow" else self.enf.deny_exec)(bid, paths, **kw)
        elif r.op == "raw_socket":
            self.enf.deny_raw_sockets(bid, **kw)
        elif r.op == "module":
            self.enf.deny_module_load(bid, **kw)
        elif r.op == "bpf":
            self.enf.deny_bpf_load(bid, allow_tgids=(os.getpid(),), **kw)
        elif r.op == "protect":
            self.enf.protect_files(bid, paths, **kw)
        inst.backend_ids.append(bid)

    def poll(self, timeout_s: float) -> list[Verdict]:
        out = []
        for d in self.enf.read_decisions(timeout_s):
            vals: dict[str, Any] = {"path": d.path or d.filename, "dev": d.dev, "ino": d.ino, "comm": d.comm,
                                    "family": d.family, "sock_type": d.sock_type, "protocol": d.protocol}
            out.append(Verdict(d.rule_id, d.verdict == "deny", d.monitor, d.pid, d.tid, d.errno, vals,
                               time.time_ns()))
        return out


ADAPTERS: dict[str, type[Adapter]] = {"bpf-lsm": LsmAdapter, "fanotify": FanotifyAdapter, "cgroup-bpf": CgroupAdapter}


# --- the manager ---------------------------------------------------------------------

class EnforcementManager:
    def __init__(self, *, bpf_dir: str, keep_on_exit: bool = False, execve_map_fd: int | None = None,
                 binaries: Any = None, mechanisms: dict[str, str | None] | None = None) -> None:
        """binaries: an object with acquire_binaries(owner, paths) -> bit mask
        and release_binaries(owner) (the policy sensor's execve-map bits)."""
        self.bpf_dir = bpf_dir
        self.keep_on_exit = keep_on_exit
        self.execve_map_fd = execve_map_fd
        self._binaries = binaries
        self.mechanisms = mechanisms
        self.policies: dict[str, PolicyEntry] = {}
        self.by_backend_id: dict[int, Installed] = {}
        self.adapters: dict[str, Adapter] = {}
        self.verdicts: queue.Queue[Verdict] = queue.Queue(maxsize=65536)
        self.unknown_decisions = 0
        self._next_rid = 1
        self._next_bid = 1
        self._lock = threading.RLock()

    # probing and choice
    def available(self) -> dict[str, str | None]:
        if self.mechanisms is None:
            self.mechanisms = capabilities.probe(self.bpf_dir)
            for k, why in self.mechanisms.items():
                if why:
                    log.info("enforcement mechanism %s unavailable: %s", k, why)
        return self.mechanisms

    def choose(self, rule: Rule) -> str:
        avail = self.available()
        op = OPERATIONS[rule.op]
        reasons = []
        for cap in capabilities.CAPABILITIES.get(op, []):
            if cap.prevents != "yes":
                continue
            why = avail.get(cap.mechanism, "not probed")
            if why is None and cap.mechanism not in ADAPTERS:
                why = "kerneye has no back end for it yet"
            if why is None:
                why = ADAPTERS[cap.mechanism].supports(rule)
            if why is None:
                return cap.mechanism
            reasons.append(f"{capabilities.MECHANISMS[cap.mechanism].name}: {why}")
        raise EnforcementError(f"{rule.where or rule.op}: cannot prevent {op} on this kernel ("
                               + ("; ".join(reasons) or "no mechanism prevents it")
                               + "); Sigkill is available as a reaction")

    def adapter(self, key: str) -> Adapter:
        a = self.adapters.get(key)
        if a is None:
            a = self.adapters[key] = ADAPTERS[key](self)
        a.ensure_started()
        return a

    # ids
    def new_backend_id(self, inst: Installed) -> int:
        bid = self._next_bid
        self._next_bid += 1
        self.by_backend_id[bid] = inst
        return bid

    def binaries_mask(self, inst: Installed) -> int:
        if self._binaries is None:
            raise EnforcementError(f"{inst.rule.where}: binary-qualified rules need the policy sensor "
                                   "(it keeps the execve map)")
        return int(self._binaries.acquire_binaries(f"enforce:{inst.rid}", list(inst.rule.binaries)))

    def cgroups_of(self, rule: Rule) -> list[str]:
        if not rule.scope:
            return [_cgroup2_root()]
        out = []
        for s in rule.scope:
            if s.startswith("container:"):
                out.append(_container_cgroup(s[len("container:"):]))
            else:
                if not os.path.isfile(os.path.join(s, "cgroup.procs")):
                    raise EnforcementError(f"spec.scope: {s} is not a cgroup-v2 directory")
                out.append(s)
        return out

    # policies
    def add(self, plan: RulePlan) -> PolicyEntry:
        with self._lock:
            if plan.policy in self.policies:
                raise EnforcementError(f"a policy named {plan.policy} already enforces rules; delete it first")
            entry = PolicyEntry(plan.policy, plan.kind, plan.mode, plan.source, warnings=list(plan.warnings))
            where = f"{plan.source}: " if plan.source and not plan.source.startswith("<") else ""
            # refuse before touching anything
            try:
                for r in plan.rules:
                    for b in r.binaries:  # a typo must not turn "only for X" into "for nobody"
                        if not os.path.exists(b):
                            raise EnforcementError(f"{r.where}: binaries: {b} does not exist; give the path of an "
                                                   "executable")
                chosen = [(r, self.choose(r)) for r in plan.rules]
            except EnforcementError as e:
                raise EnforcementError(f"{where}{e}") from None
            r = plan.rules[0] if plan.rules else None
            try:
                for r, mech in chosen:
                    if mech == "fanotify" and r.errno != _errno.EPERM:
                        entry.warnings.append(f"{r.where}: fanotify can only fail with EPERM, not "
                                              f"{errno_name(r.errno)}")
                    inst = Installed(self._next_rid, plan.policy, r, mech)
                    self._next_rid += 1
                    entry.rules.append(inst)
                    self.adapter(mech).install(inst, plan.mode)
                    for m2 in self.companions(r, mech):
                        x = Installed(inst.rid, plan.policy, r, m2, primary=inst)
                        inst.extra.append(x)
                        self.adapter(m2).install(x, plan.mode)
            except BaseException as e:
                self._uninstall(entry)
                if isinstance(e, KerneyeError):
                    at = f"{r.where}: " if r is not None and r.where and not str(e).startswith(("spec.", r.where)) \
                        else ""
                    msg = re.sub(r"^rule \d+: ", "", str(e))  # back-end rule ids mean nothing to the user
                    raise EnforcementError(f"{where}{at}{msg}") from None
                raise
            for w in entry.warnings:
                log.warning("policy %s: %s", plan.policy, w)
            self.policies[plan.policy] = entry
            log.info("policy %s enforces %d rules (%s mode): %s", plan.policy, len(entry.rules), plan.mode,
                     ", ".join(f"{i.rule.op}->{'+'.join(p.mechanism for p in i.all())}" for i in entry.rules))
            return entry

    def companions(self, rule: Rule, mech: str) -> list[str]:
        """Back ends that add to the chosen one: a BPF-LSM exec deny list
        matches inodes; fanotify adds copies (same content, new inode)."""
        if (mech == "bpf-lsm" and rule.op == "exec" and rule.action == "deny"
                and self.available().get("fanotify") is None):
            return ["fanotify"]
        return []

    def _remove(self, inst: Installed) -> None:
        a = self.adapters.get(inst.mechanism)
        if a is not None and a.started and inst.backend_ids:
            ids = list(inst.backend_ids)
            a.remove(inst)
            for bid in ids:
                self.by_backend_id.pop(bid, None)

    def _uninstall(self, entry: PolicyEntry) -> None:
        for inst in entry.rules:
            for part in inst.all():
                try:
                    self._remove(part)
                except KerneyeError as e:
                    log.warning("policy %s: removing rule %d: %s", entry.name, inst.rid, e)
            if self._binaries is not None and inst.rule.binaries:
                self._binaries.release_binaries(f"enforce:{inst.rid}")

    def delete(self, name: str) -> None:
        with self._lock:
            entry = self.policies.pop(name, None)
            if entry is None:
                raise EnforcementError(f"no enforcement policy named {name}")
            self._uninstall(entry)

    def set_mode(self, name: str, mode: str) -> None:
        if mode not in ("monitor", "enforce"):
            raise EnforcementError(f"mode must be monitor or enforce, not {mode!r}")
        with self._lock:
            entry = self.policies[name]
            if entry.mode == mode and entry.state == "enabled":
                return
            # new rules first, then the old ones go: no gap in coverage
            for inst in [p for i in entry.rules for p in i.all()]:
                old = Installed(inst.rid, inst.policy, inst.rule, inst.mechanism, list(inst.backend_ids))
                inst.backend_ids = []
                a = self.adapter(inst.mechanism)
                if entry.state == "enabled":
                    a.install(inst, mode)
                self._remove(old)
            entry.mode = mode

    def set_enabled(self, name: str, on: bool) -> None:
        with self._lock:
            entry = self.policies[name]
            if on == (entry.state == "enabled"):
                return
            for inst in [p for i in entry.rules for p in i.all()]:
                if on:
                    self.adapter(inst.mechanism).install(inst, entry.mode)
                else:
                    self._remove(inst)
            entry.state = "enabled" if on else "disabled"

    def has(self, name: str) -> bool:
        return name in self.policies

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [e.summary() for e in self.policies.values()]

    # decisions
    def drain(self, make_event: Callable[[Installed, PolicyEntry, Verdict], Any], limit: int = 4096) -> int:
        """Turn queued verdicts into events (on the caller's thread)."""
        n = 0
        while n < limit:
            try:
                v = self.verdicts.get_nowait()
            except queue.Empty:
                break
            n += 1
            inst = self.by_backend_id.get(v.backend_id)
            entry = self.policies.get(inst.policy) if inst else None
            if inst is None or entry is None:
                self.unknown_decisions += 1
                continue
            (inst.primary or inst).decisions += 1
            if v.blocked:
                entry.ndenied += 1
            else:
                entry.nmonitored += 1
            make_event(inst, entry, v)
        return n

    def lost_reports(self) -> int:
        """Decisions the back ends made but could not report (ring buffer or
        report queue full). The decision itself was applied."""
        # counted by each adapter's reader thread: no map reads on the caller's
        # thread (the agent's main loop asks every tick)
        return sum(a.lost for a in list(self.adapters.values()))

    def status(self) -> dict[str, Any]:
        return {"mechanisms": {k: (v or "available") for k, v in (self.mechanisms or {}).items()},
                "keep_on_exit": self.keep_on_exit, "policies": len(self.policies),
                "unknown_decisions": self.unknown_decisions}

    def close(self) -> None:
        with self._lock:
            for a in self.adapters.values():
                a.close()
            self.adapters.clear()
            if self._binaries is not None:
                for e in self.policies.values():
                    for inst in e.rules:
                        if inst.rule.binaries:
                            try:
                                self._binaries.release_binaries(f"enforce:{inst.rid}")
                            except KerneyeError:
                                pass


def _cgroup2_root() -> str:
    from ..system import mount_points

    roots = mount_points("cgroup2")
    if not roots:
        raise EnforcementError("no cgroup-v2 hierarchy is mounted; mount one (mount -t cgroup2 none "
                               "/sys/fs/cgroup/unified) for network, sysctl and device rules")
    return roots[0]


def _container_cgroup(cid: str) -> str:
    """The cgroup-v2 directory whose name holds the container id (docker,
    containerd, cri-o and podman all put the id in the leaf's name)."""
    root = _cgroup2_root()
    hits = []
    for d, subdirs, _ in os.walk(root):
        for s in subdirs:
            if cid in s:
                hits.append(os.path.join(d, s))
        if len(hits) > 1:
            break
    if not hits:
        raise EnforcementError(f"spec.scope: no cgroup under {root} belongs to container {cid} (is it running?)")
    if len(hits) > 1:
        raise EnforcementError(f"spec.scope: container id {cid} is ambiguous ({hits[0]}, {hits[1]}); give more "
                               "digits")
    return hits[0]


def render_args(inst: Installed, v: Verdict) -> list[dict[str, Any]]:
    """The event's args, in the shape of the hook the policy named."""
    r = inst.rule
    vals = v.values
    path = vals.get("path", "")
    sockaddr = None
    if "addr" in vals:
        sockaddr = {"family": _FAMILY.get(vals.get("family", 0), str(vals.get("family", 0))),
                    "addr": vals["addr"], "port": vals.get("port", 0)}
    slots = r.report.arg_slots
    if not slots:  # EnforcementPolicy: the LSM hook's natural arguments
        if r.op in ("open", "write", "protect"):
            return [{"file_arg": {"path": path}}]
        if r.op == "exec":
            return [{"linux_binprm_arg": {"path": path}}]
        if r.op in ("connect", "sendmsg", "bind") and sockaddr:
            return [{"sockaddr_arg": sockaddr}]
        if r.op == "raw_socket":
            return [{"int_arg": int(vals.get("family", 0))}, {"int_arg": int(vals.get("sock_type", 0))},
                    {"int_arg": int(vals.get("protocol", 0))}]
        if r.op == "sysctl":
            return [{"string_arg": str(vals.get("name", ""))}]
        if r.op == "device":
            return [{"string_arg": str(vals.get("device", ""))}]
        return []
    out = []
    for what, atype, label in slots:
        a: dict[str, Any] | None = None
        if what == "path" and path:
            if atype == "file":
                a = {"file_arg": {"path": path}}
            elif atype == "path":
                a = {"path_arg": {"path": path}}
            elif atype == "linux_binprm":
                a = {"linux_binprm_arg": {"path": path}}
            else:
                a = {"string_arg": path}
        elif what == "sockaddr" and sockaddr:
            a = {"sockaddr_arg": sockaddr}
        elif what == "sock" and sockaddr:
            a = {"sock_arg": {"family": sockaddr["family"], "protocol": _PROTO.get(vals.get("protocol", 0), ""),
                              "daddr": sockaddr["addr"], "dport": sockaddr["port"]}}
        elif what in ("family", "type", "protocol") and f"{'sock_type' if what == 'type' else what}" in vals:
            a = {"int_arg": int(vals["sock_type" if what == "type" else what])}
        if a is not None:
            if label:
                a["label"] = label
            out.append(a)
    return out
