"""Enforcement with BPF-LSM (bpf/enforce/lsm.bpf.c): the strongest back end.

Eleven LSM programs make operations fail with an errno inside the kernel's
security hooks: open and exec of files named by (device, inode), exec outside
an allowlist (memfd included), raw and packet sockets, kernel module loads,
BPF program loads, unlink/rename/chmod of protected files, and signals or
ptrace attach against protected processes.

    with LsmEnforcer(mode="enforce") as enf:
        enf.deny_open(1, "/etc/shadow", write_only=True)
        enf.exec_allowlist(2, ["/usr/bin/python3", "/bin/sh"])
        enf.protect_tasks(3, [os.getpid()])
        for d in enf.read_decisions(timeout_s=1.0): print(d.to_dict())

Needs a kernel with CONFIG_BPF_LSM=y and 'bpf' in lsm= (check with
`LsmEnforcer.available()`); programs load once and every rule change is a
live map update.

Rules: every rule has an id (reported), a kind, a mode ("enforce" denies,
"monitor" reports what would be denied and allows; None follows the
enforcer's mode, which `set_mode` changes), an errno (0 = EPERM) and an
optional binary qualifier: with bin_mask != 0 the rule applies only to
processes whose kerneye_execve_map entry has (bin_match & bin_mask) != 0 (== 0
with bin_not). That map belongs to the base sensor; pass its fd as
execve_map_fd to share it, otherwise this object has a private, empty copy.

Container scope: every rule method takes cgroups=[dir, ...] (cgroup-v2
directories); the rule then applies only while the acting task is in one of
them or below, which is how one container's module loads, BPF loads, packet
sockets or memfd execs are refused while the host's go on. The directories
go into a cgroup array map (one slot per directory, shared and refcounted
by the rules naming it, at most ENF_LSM_MAX_CGROUPS) and the programs ask
bpf_current_task_under_cgroup(). Without cgroups a rule covers every task.

Files are resolved with stat() when the rule is added (symlinks followed) and
matched by (device, inode) as the kernel sees it: st_dev is converted to the
kernel's MAJOR << 20 | MINOR. A hard link, a symlink, a rename or a bind mount
of the file is the same inode; a copy is not. A file replaced after the rule
was added (new inode) is not covered until the rule is added again.
(File systems whose stat() reports another device than the superblock's,
btrfs subvolumes and overlayfs, need the rule on the underlying inode.)

Lifetime: links are bpf_link fds, so by default enforcement ends with this
process (even on SIGKILL). With keep_on_exit=True the links and maps are
pinned under pin_dir (default /sys/fs/bpf/kerneye/enforce/lsm) and stay
attached after the process dies, until `release_pinned()` removes them.
"""
from __future__ import annotations

import ctypes
import os
from dataclasses import asdict, dataclass, field
from typing import Iterable

from .. import config
from ..bpf import features, maps
from ..bpf.objects import LoadedObject, ObjectSpec
from ..errors import KerneyeError
from . import _abi as A
from ._bpfenforcer import EXECVE_MAP, BpfEnforcer, pin_link, sync_masks
from ._bpfenforcer import release_pinned as _release_pinned
from .netrules import EnforceError

__all__ = ["LsmEnforcer", "LsmRule", "LsmDecision", "EnforceError", "release_pinned", "PIN_DIR"]

OBJECT = "enforce_lsm.bpf.o"
PIN_DIR = "/sys/fs/bpf/kerneye/enforce/lsm"
LSM_FILE = "/sys/kernel/security/lsm"

#: program -> LSM hook (all attached; the path_* ones need CONFIG_SECURITY_PATH)
PROGRAMS = {
    "kerneye_lsm_file_open": "file_open",
    "kerneye_lsm_bprm_check": "bprm_check_security",
    "kerneye_lsm_socket_create": "socket_create",
    "kerneye_lsm_read_file": "kernel_read_file",
    "kerneye_lsm_load_data": "kernel_load_data",
    "kerneye_lsm_bpf": "bpf",
    "kerneye_lsm_path_unlink": "path_unlink",
    "kerneye_lsm_path_rename": "path_rename",
    "kerneye_lsm_path_chmod": "path_chmod",
    "kerneye_lsm_task_kill": "task_kill",
    "kerneye_lsm_ptrace": "ptrace_access_check",
}
_PATH_PROGRAMS = ("kerneye_lsm_path_unlink", "kerneye_lsm_path_rename", "kerneye_lsm_path_chmod")
MAPS = ("kerneye_lsm_rules", "kerneye_lsm_cfg", "kerneye_lsm_inodes", "kerneye_lsm_tasks", "kerneye_lsm_stats",
        "kerneye_lsm_rb", "kerneye_lsm_cgroups")
CGROUP_MAP = "kerneye_lsm_cgroups"

MODES = {"monitor": A.EnfMode.MONITOR, "enforce": A.EnfMode.ENFORCE}
KINDS = {k.name.lower(): k for k in A.EnfLsmKind if k != A.EnfLsmKind.MAX}
HOOKS = {
    A.EnfLsmHook.FILE_OPEN: "file_open",
    A.EnfLsmHook.BPRM_CHECK: "bprm_check_security",
    A.EnfLsmHook.SOCKET_CREATE: "socket_create",
    A.EnfLsmHook.KERNEL_READ_FILE: "kernel_read_file",
    A.EnfLsmHook.KERNEL_LOAD_DATA: "kernel_load_data",
    A.EnfLsmHook.BPF: "bpf",
    A.EnfLsmHook.PATH_UNLINK: "path_unlink",
    A.EnfLsmHook.PATH_RENAME: "path_rename",
    A.EnfLsmHook.PATH_CHMOD: "path_chmod",
    A.EnfLsmHook.TASK_KILL: "task_kill",
    A.EnfLsmHook.PTRACE: "ptrace_access_check",
}
_FILE_KINDS = (A.EnfLsmKind.OPEN, A.EnfLsmKind.EXEC_DENY, A.EnfLsmKind.EXEC_ALLOW, A.EnfLsmKind.PROTECT_FILE)
_TASK_KINDS = (A.EnfLsmKind.BPF, A.EnfLsmKind.PROTECT_TASK)


def kernel_dev(st_dev: int) -> int:
    """stat()'s dev_t -> the kernel's internal encoding (MAJOR << 20 | MINOR),
    which is what inode->i_sb->s_dev holds."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


def user_dev(kdev: int) -> int:
    """The inverse of kernel_dev."""
    return os.makedev(kdev >> 20, kdev & 0xFFFFF)


# --- rules ------------------------------------------------------------------

@dataclass
class LsmRule:
    """One rule as given; `inodes` is filled from `paths` when it is added."""

    id: int
    kind: str                     # a key of KINDS
    mode: str | None = None       # None: the enforcer's mode
    paths: list[str] = field(default_factory=list)
    tgids: list[int] = field(default_factory=list)
    write_only: bool = False      # open rules
    bin_mask: int = 0
    bin_not: bool = False
    err: int = 0                  # errno; 0 = EPERM
    cgroups: list[str] = field(default_factory=list)  # cgroup-v2 directories; [] = any task
    inodes: dict[tuple[int, int], str] = field(default_factory=dict)  # (kernel dev, ino) -> path
    cgroup_mask: int = 0          # kerneye_lsm_cgroups slots of `cgroups`, set while installed

    def validate(self) -> None:
        if not 0 <= self.id < 2**32:
            raise EnforceError(f"rule id {self.id} must fit in 32 bits")
        if self.kind not in KINDS:
            raise EnforceError(f"rule {self.id}: unknown kind {self.kind!r}; known: {sorted(KINDS)}")
        if self.mode is not None and self.mode not in MODES:
            raise EnforceError(f"rule {self.id}: mode must be one of {sorted(MODES)} or None, not {self.mode!r}")
        if not 0 <= self.err < 4096:
            raise EnforceError(f"rule {self.id}: err must be an errno number (0 = EPERM), not {self.err}")
        if not 0 <= self.bin_mask < 2**64:
            raise EnforceError(f"rule {self.id}: bin_mask must be a 64-bit mask")
        if KINDS[self.kind] in _FILE_KINDS and not self.paths:
            raise EnforceError(f"rule {self.id}: a {self.kind} rule needs at least one path")
        if KINDS[self.kind] == A.EnfLsmKind.PROTECT_TASK and not self.tgids:
            raise EnforceError(f"rule {self.id}: protect_tasks needs at least one tgid")
        for t in self.tgids:
            if not 0 < int(t) < 2**32:
                raise EnforceError(f"rule {self.id}: bad tgid {t}")
        for c in self.cgroups:
            # cgroup.controllers exists in every cgroup-v2 directory and in no v1 one
            if not os.path.isfile(os.path.join(c, "cgroup.controllers")):
                raise EnforceError(f"rule {self.id}: {c} is not a cgroup-v2 directory; give one under the "
                                   "cgroup2 mount (e.g. /sys/fs/cgroup/unified/<name>)")

    def resolve(self) -> None:
        """Look the paths up (follows symlinks)."""
        self.inodes = {}
        for p in self.paths:
            try:
                st = os.stat(p)
            except OSError as e:
                raise EnforceError(f"rule {self.id}: cannot stat {p}: {e.strerror}; give an existing file") from None
            self.inodes[(kernel_dev(st.st_dev), st.st_ino)] = p

    def to_struct(self, default_mode: A.EnfMode) -> A.EnfLsmRule:
        flags = A.EnfLsmRuleFlag.USED
        if self.write_only:
            flags |= A.EnfLsmRuleFlag.WRITE_ONLY
        if self.bin_not:
            flags |= A.EnfLsmRuleFlag.BIN_NOT
        mode = MODES[self.mode] if self.mode else default_mode
        return A.EnfLsmRule(id=self.id, kind=int(KINDS[self.kind]), mode=int(mode), flags=int(flags), err=self.err,
                            bin_mask=self.bin_mask, cgroup_mask=self.cgroup_mask)


# --- decisions --------------------------------------------------------------

@dataclass
class LsmDecision:
    """One decision the kernel reported (a denial, or a monitor-mode
    would-deny that was allowed)."""

    hook: str             # LSM hook: file_open, bprm_check_security, socket_create, ...
    kind: str             # the rule's kind
    rule_id: int
    verdict: str          # "deny" or "allow" (what happened)
    monitor: bool         # a monitor-mode rule would have denied
    errno: int            # returned to the caller; 0 when allowed
    pid: int              # thread group id (what ps calls PID)
    tid: int
    comm: str
    cgroup_id: int
    dev: int              # stat()'s st_dev encoding; 0 when no file
    ino: int
    path: str             # the rule's path for (dev, ino), else the exec filename, else ""
    filename: str         # from the kernel: bprm->filename for exec, the dentry's name for files
    family: int           # socket_create
    sock_type: int
    protocol: int
    target_pid: int       # task_kill, ptrace_access_check
    arg: int              # signal, ptrace mode, bpf cmd, chmod mode, open f_mode, read-file id
    ktime: int

    @classmethod
    def decode(cls, raw: bytes, paths: dict[tuple[int, int], str] | None = None) -> "LsmDecision":
        if len(raw) < ctypes.sizeof(A.EnfLsmEvent):
            raise EnforceError(f"short LSM event ({len(raw)} bytes)")
        e = A.EnfLsmEvent.from_buffer_copy(raw[: ctypes.sizeof(A.EnfLsmEvent)])
        if e.common.op != A.EnfLsmConst.MSG_OP:
            raise EnforceError(f"unexpected message op {e.common.op}")
        name = e.name.decode(errors="replace")
        path = (paths or {}).get((e.dev, e.ino), "") if e.ino else ""
        if not path and e.hook == A.EnfLsmHook.BPRM_CHECK:
            path = name
        try:
            kind = A.EnfLsmKind(e.kind).name.lower()
        except ValueError:
            kind = str(e.kind)
        return cls(hook=HOOKS.get(e.hook, str(e.hook)), kind=kind, rule_id=e.rule_id,
                   verdict="deny" if e.verdict == A.EnfVerdict.DENY else "allow",
                   monitor=bool(e.flags & A.EnfEventFlag.MONITOR), errno=e.err, pid=e.tgid, tid=e.pid,
                   comm=e.comm.decode(errors="replace"), cgroup_id=e.cgroup_id,
                   dev=user_dev(e.dev) if e.dev else 0, ino=e.ino, path=path, filename=name, family=e.family,
                   sock_type=e.sock_type, protocol=e.protocol, target_pid=e.target, arg=e.arg,
                   ktime=e.common.ktime)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# --- helpers ----------------------------------------------------------------

def _mount_securityfs() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount(b"securityfs", b"/sys/kernel/security", b"securityfs", 0, None)


def release_pinned(pin_dir: str = PIN_DIR) -> bool:
    """Remove what keep_on_exit left under pin_dir: the programs detach once
    no process holds them. Returns False if there was nothing."""
    return _release_pinned(pin_dir)


def _kernel_has_path_hooks() -> bool:
    """CONFIG_SECURITY_PATH: the kernel's BTF names bpf_lsm_path_unlink."""
    try:
        with open("/sys/kernel/btf/vmlinux", "rb") as f:
            return b"\0bpf_lsm_path_unlink\0" in f.read()
    except OSError:
        return True  # let the load decide


# --- the enforcer -----------------------------------------------------------

class LsmEnforcer(BpfEnforcer[LsmRule, LsmDecision]):
    """BPF-LSM rules for the whole host, or for chosen cgroup subtrees.

    Rules may be added before start() (installed at start) or after (live).
    Adding a rule with an id in use replaces that rule. Life cycle, slots
    and reading are BpfEnforcer's (_bpfenforcer.py). Thread-safety: rule
    changes are serialised by a lock; read_decisions is for one consumer
    thread. close() is idempotent.
    """

    MAPS = MAPS
    MAP_PREFIX = "kerneye_lsm"
    RULE_STRUCT = A.EnfLsmRule
    STATS = (A.EnfStat.DENIED, A.EnfStat.MONITORED, A.EnfStat.RB_LOST)
    MAX_RULES = A.ENF_LSM_MAX_RULES
    WHAT = "BPF-LSM enforcement"
    WHAT_RULES = "BPF-LSM rules"
    NOT_STARTED = "the BPF-LSM enforcer is not started"

    def __init__(self, *, mode: str = "enforce", bpf_dir: str | None = None, keep_on_exit: bool = False,
                 pin_dir: str = PIN_DIR, execve_map_fd: int | None = None) -> None:
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        self.mode = mode
        self.bpf_dir = bpf_dir or config.default_bpf_dir()
        self.obj_path = os.path.join(self.bpf_dir, OBJECT)
        self.keep_on_exit = keep_on_exit
        self.pin_dir = pin_dir
        self.execve_map_fd = execve_map_fd
        self._init_state()
        self.programs: list[str] = []

    def _init_maps(self) -> None:
        self._inodes: dict[tuple[int, int, int], int] = {}  # (dev, ino, kind) -> slot mask, as in the map
        self._tasks: dict[int, int] = {}  # tgid -> slot mask, as in the map
        self._kind_mask = [0] * int(A.EnfLsmKind.MAX)
        self._cgroups: dict[str, list[int]] = {}  # realpath -> [kerneye_lsm_cgroups slot, rules using it]
        self._next_cg = 0

    # availability

    @staticmethod
    def available(bpf_dir: str | None = None) -> str | None:
        """None if BPF-LSM enforcement works here, else a one-line reason."""
        if not os.path.exists(LSM_FILE):
            try:
                _mount_securityfs()
            except OSError:
                pass
        try:
            with open(LSM_FILE) as f:
                active = f.read().strip()
        except OSError as e:
            return (f"cannot read {LSM_FILE} ({e.strerror}); mount securityfs: "
                    "mount -t securityfs securityfs /sys/kernel/security")
        if "bpf" not in active.split(","):
            return (f"BPF-LSM is not active: 'bpf' is not in {LSM_FILE} ({active}); add it to the lsm= boot "
                    f"parameter, e.g. lsm={active},bpf (needs CONFIG_BPF_LSM=y)")
        bpf_dir = bpf_dir or config.default_bpf_dir()
        if not os.path.exists(os.path.join(bpf_dir, OBJECT)):
            return f"BPF object {os.path.join(bpf_dir, OBJECT)} is missing; build it with `make -C bpf`"
        return features.probe(bpf_dir, "lsm")

    # life cycle (start() and close() are BpfEnforcer's)

    def _preflight(self) -> None:
        reason = self.available(self.bpf_dir)
        if reason:
            raise EnforceError(f"cannot start BPF-LSM enforcement: {reason}")

    def _load(self) -> LoadedObject:
        spec = ObjectSpec(self.obj_path)
        if self.execve_map_fd is not None:
            spec.reuse_maps[EXECVE_MAP] = self.execve_map_fd
        self.programs = list(PROGRAMS)
        if not _kernel_has_path_hooks():
            self.programs = [p for p in self.programs if p not in _PATH_PROGRAMS]
            spec.autoload.update({p: False for p in _PATH_PROGRAMS})
        try:
            return LoadedObject(spec)
        except KerneyeError as e:
            raise EnforceError(f"cannot load the BPF-LSM programs: {e}") from None

    def _pinned_maps(self) -> Iterable[str]:
        # a private process map is pinned too: the pinned programs use it
        return MAPS if self.execve_map_fd is not None else MAPS + (EXECVE_MAP,)

    def _attach(self, obj: LoadedObject) -> None:
        for p in self.programs:
            link = obj.attach(p)
            if self.keep_on_exit:
                pin_link(link, p, os.path.join(self.pin_dir, p))

    def _start_failed(self, e: BaseException) -> None:
        if isinstance(e, KerneyeError) and not isinstance(e, EnforceError):
            raise EnforceError(f"cannot start BPF-LSM enforcement: {e}") from None

    def _populate(self) -> None:
        self._init_maps()  # a (re)start begins with empty maps
        super()._populate()

    @property
    def started(self) -> bool:
        return self._obj is not None

    release_pinned = staticmethod(release_pinned)

    # rules: one method per kind. Each takes cgroups=: a cgroup-v2 directory
    # or several; the rule then applies only to tasks in one of them or below
    # (a container's processes). None or []: every task.

    def deny_open(self, rule_id: int, paths: str | Iterable[str], *, mode: str | None = None,
                  write_only: bool = False, bin_mask: int = 0, bin_not: bool = False, err: int = 0,
                  cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """open() of these files fails (only opens for write with
        write_only). Also covers exec, which opens the file."""
        return self.add_rule(LsmRule(rule_id, "open", mode, _paths(paths), write_only=write_only,
                                     bin_mask=bin_mask, bin_not=bin_not, err=err, cgroups=_cgroups(cgroups)))

    def deny_exec(self, rule_id: int, paths: str | Iterable[str], *, mode: str | None = None, bin_mask: int = 0,
                  bin_not: bool = False, err: int = 0, cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """execve() of these files fails (whatever name or link is used)."""
        return self.add_rule(LsmRule(rule_id, "exec_deny", mode, _paths(paths), bin_mask=bin_mask,
                                     bin_not=bin_not, err=err, cgroups=_cgroups(cgroups)))

    def exec_allowlist(self, rule_id: int, allowed_paths: Iterable[str], *, mode: str | None = None,
                       bin_mask: int = 0, bin_not: bool = False, err: int = 0,
                       cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """execve() of any file but these fails: copies, memfds and
        interpreters not listed included (a script needs its interpreter
        listed too). Scope it with cgroups or bin_mask unless it is meant
        host-wide."""
        return self.add_rule(LsmRule(rule_id, "exec_allow", mode, _paths(allowed_paths), bin_mask=bin_mask,
                                     bin_not=bin_not, err=err, cgroups=_cgroups(cgroups)))

    def deny_raw_sockets(self, rule_id: int, *, mode: str | None = None, bin_mask: int = 0,
                         bin_not: bool = False, err: int = 0, cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """socket(AF_INET/AF_INET6, SOCK_RAW) and socket(AF_PACKET, any) fail."""
        return self.add_rule(LsmRule(rule_id, "raw_socket", mode, bin_mask=bin_mask, bin_not=bin_not, err=err,
                                     cgroups=_cgroups(cgroups)))

    def deny_module_load(self, rule_id: int, *, mode: str | None = None, bin_mask: int = 0,
                         bin_not: bool = False, err: int = 0, cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """init_module() and finit_module() fail."""
        return self.add_rule(LsmRule(rule_id, "module", mode, bin_mask=bin_mask, bin_not=bin_not, err=err,
                                     cgroups=_cgroups(cgroups)))

    def deny_bpf_load(self, rule_id: int, allow_tgids: Iterable[int] | None = None, *, mode: str | None = None,
                      bin_mask: int = 0, bin_not: bool = False, err: int = 0,
                      cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """bpf(BPF_PROG_LOAD) fails except for allow_tgids (default: this
        process, so the agent can still load its own programs)."""
        tgids = list(allow_tgids) if allow_tgids is not None else [os.getpid()]
        return self.add_rule(LsmRule(rule_id, "bpf", mode, tgids=[int(t) for t in tgids], bin_mask=bin_mask,
                                     bin_not=bin_not, err=err, cgroups=_cgroups(cgroups)))

    def protect_files(self, rule_id: int, paths: str | Iterable[str], *, mode: str | None = None,
                      bin_mask: int = 0, bin_not: bool = False, err: int = 0,
                      cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """unlink(), rename() (from or onto) and chmod() of these files fail."""
        return self.add_rule(LsmRule(rule_id, "protect_file", mode, _paths(paths), bin_mask=bin_mask,
                                     bin_not=bin_not, err=err, cgroups=_cgroups(cgroups)))

    def protect_tasks(self, rule_id: int, tgids: Iterable[int], *, mode: str | None = None, err: int = 0,
                      cgroups: str | Iterable[str] | None = None) -> LsmRule:
        """Terminating or stopping signals (all but 0, SIGCHLD, SIGCONT,
        SIGURG, SIGWINCH) and ptrace attach against these processes fail,
        unless the sender is one of them. With cgroups, only senders in
        those cgroups are refused."""
        return self.add_rule(LsmRule(rule_id, "protect_task", mode, tgids=[int(t) for t in tgids], err=err,
                                     cgroups=_cgroups(cgroups)))

    # rules: generic

    def add_rule(self, rule: LsmRule) -> LsmRule:
        """Add (or replace, by id) a rule; live if started."""
        rule.validate()
        rule.resolve()
        self._add(rule)
        return rule

    def set_mode(self, mode: str) -> None:
        """The mode of every rule added with mode=None; live."""
        if mode not in MODES:
            raise EnforceError(f"mode must be one of {sorted(MODES)}, not {mode!r}")
        with self._lock:
            self.mode = mode
            if self._obj is None:
                return
            fd = self._obj.map_fd("kerneye_lsm_rules")
            for slot, r in self._rules.values():
                if r.mode is None:
                    maps.update(fd, ctypes.c_uint32(slot), r.to_struct(MODES[mode]))

    def _rule_struct(self, rule: LsmRule) -> A.EnfLsmRule:
        return rule.to_struct(MODES[self.mode])

    # cgroup scope: one kerneye_lsm_cgroups slot per directory, shared by the
    # rules naming it (refcounted); written before the rule that points at
    # it, cleared after the last such rule is gone.

    def _install(self, rule: LsmRule) -> None:
        rule.cgroup_mask = self._cgroups_acquire(rule)
        try:
            super()._install(rule)
        except BaseException:
            self._cgroups_release(rule)
            raise

    def _uninstall(self, rule_id: int) -> None:
        _, rule = self._rules[rule_id]
        super()._uninstall(rule_id)
        self._cgroups_release(rule)

    def _cgroups_acquire(self, rule: LsmRule) -> int:
        mask = 0
        rule.cgroup_mask = 0
        try:
            for c in rule.cgroups:
                key = os.path.realpath(c)
                ent = self._cgroups.get(key)
                if ent is None:
                    ent = self._cgroups[key] = [self._cgroup_slot(rule, c), 0]
                if not mask & (1 << ent[0]):
                    ent[1] += 1
                    mask |= 1 << ent[0]
                    rule.cgroup_mask = mask  # what _cgroups_release gives back on failure
        except BaseException:
            self._cgroups_release(rule)
            raise
        return mask

    def _cgroup_slot(self, rule: LsmRule, path: str) -> int:
        """A free slot, round robin (as for rule slots), holding path's cgroup."""
        assert self._obj is not None
        used = {slot for slot, _ in self._cgroups.values()}
        for i in range(A.ENF_LSM_MAX_CGROUPS):
            slot = (self._next_cg + i) % A.ENF_LSM_MAX_CGROUPS
            if slot not in used:
                break
        else:
            raise EnforceError(f"rule {rule.id}: too many cgroups in BPF-LSM rules (the kernel side holds "
                               f"{A.ENF_LSM_MAX_CGROUPS}); remove rules scoped to other cgroups first")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as e:
            raise EnforceError(f"rule {rule.id}: cannot open cgroup {path}: {e.strerror}") from None
        try:
            maps.update(self._obj.map_fd(CGROUP_MAP), ctypes.c_uint32(slot), ctypes.c_uint32(fd))
        except KerneyeError as e:
            raise EnforceError(f"rule {rule.id}: cannot scope to {path} ({e}); give a cgroup-v2 directory") from None
        finally:
            os.close(fd)
        self._next_cg = slot + 1
        return slot

    def _cgroups_release(self, rule: LsmRule) -> None:
        mask, rule.cgroup_mask = rule.cgroup_mask, 0
        for key, ent in list(self._cgroups.items()):
            if mask & (1 << ent[0]):
                ent[1] -= 1
                if ent[1] <= 0:
                    del self._cgroups[key]
                    if self._obj is not None:
                        maps.delete(self._obj.map_fd(CGROUP_MAP), ctypes.c_uint32(ent[0]))

    def cgroup_slots(self) -> dict[str, int]:
        """cgroup directory (realpath) -> its kerneye_lsm_cgroups slot, for
        the cgroups the installed rules are scoped to."""
        return {k: v[0] for k, v in self._cgroups.items()}

    def _sync(self, adding: bool) -> None:
        """Bring the inode map, the task map and the kind masks in line with
        self._rules. When adding, the per-inode/per-task entries go first
        (an allowlist must be complete before its kind bit turns it on);
        when removing, the kind masks go first."""
        assert self._obj is not None
        inodes: dict[tuple[int, int, int], int] = {}
        tasks: dict[int, int] = {}
        kind_mask = [0] * int(A.EnfLsmKind.MAX)
        for slot, r in self._rules.values():
            k = KINDS[r.kind]
            kind_mask[k] |= 1 << slot
            for dev, ino in r.inodes:
                inodes[(dev, ino, int(k))] = inodes.get((dev, ino, int(k)), 0) | 1 << slot
            for t in r.tgids:
                tasks[t] = tasks.get(t, 0) | 1 << slot
        if adding:
            self._sync_entries(inodes, tasks)
            self._sync_cfg(kind_mask)
        else:
            self._sync_cfg(kind_mask)
            self._sync_entries(inodes, tasks)

    def _sync_cfg(self, kind_mask: list[int]) -> None:
        assert self._obj is not None
        if kind_mask != self._kind_mask:
            cfg = A.EnfLsmConfig()
            for i, m in enumerate(kind_mask):
                cfg.kind_mask[i] = m
            maps.update(self._obj.map_fd("kerneye_lsm_cfg"), ctypes.c_uint32(0), cfg)
            self._kind_mask = kind_mask

    def _sync_entries(self, inodes: dict[tuple[int, int, int], int], tasks: dict[int, int]) -> None:
        assert self._obj is not None
        self._inodes = sync_masks(self._obj.map_fd("kerneye_lsm_inodes"), self._inodes, inodes,
                                  lambda k: A.EnfLsmInodeKey(ino=k[1], dev=k[0], kind=k[2]))
        self._tasks = sync_masks(self._obj.map_fd("kerneye_lsm_tasks"), self._tasks, tasks, ctypes.c_uint32)

    # reading

    def _known_paths(self) -> dict[tuple[int, int], str]:
        out: dict[tuple[int, int], str] = {}
        for _, r in self._rules.values():
            out.update(r.inodes)
        return out

    def _decode(self, recs: list[bytes]) -> list[LsmDecision]:
        paths = self._known_paths()
        return [LsmDecision.decode(r, paths) for r in recs]


def _paths(p: str | Iterable[str]) -> list[str]:
    return [p] if isinstance(p, (str, os.PathLike)) else [str(x) for x in p]


def _cgroups(c: str | Iterable[str] | None) -> list[str]:
    return [] if c is None else _paths(c)
