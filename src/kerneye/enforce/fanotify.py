"""File-open and exec enforcement with fanotify permission events.

Where BPF-LSM is unavailable, fanotify (Linux 2.6.37; FAN_OPEN_EXEC_PERM
5.0) is the kernel's own way to make an open() or execve() wait for a
user-space verdict. This module has two layers:

* `Fanotify`: a ctypes wrapper of fanotify_init(2)/fanotify_mark(2), the
  event records (struct fanotify_event_metadata) and the verdicts (struct
  fanotify_response). No PyPI package can answer permission events.
* `FanotifyEnforcer`: rules, a responder thread and a maintenance thread.

Rules name files by path, but decisions are made on the (st_dev, st_ino) of
the file the kernel hands over with the event, so a hard link, a symlink, a
rename (of the file or of a parent directory) or a bind mount of the same
inode is still covered. A copy is a new inode: exec rules can also match
on content (sha256), see below. src/kerneye/enforce/evasions.py lists every
bypass technique that was tried and its outcome.

    deny_open(path)       inode mark, FAN_OPEN_PERM. A directory covers the
                          files directly in it (FAN_EVENT_ON_CHILD);
                          recursive=True covers the whole tree. Denying open
                          also denies exec (exec opens the file).
      write_only=True     only opens for writing (O_WRONLY, O_RDWR, O_CREAT,
                          O_TRUNC); the flags come from a small BPF object.
      binaries=[...]      only when the opener's executable is listed
                          (binaries_not=True: when it is not).
    deny_exec(path)       inode mark, FAN_OPEN_EXEC_PERM; match_content=True
                          also denies any file with the same sha256.
    deny_exec_sha256(hex) deny executing any file with that content.
    exec_allowlist(mount, allowed)
                          mount mark, FAN_OPEN_EXEC_PERM: only the listed
                          inodes (paths) or contents ("sha256:<hex>") may be
                          executed from that mount.

Groups. One fanotify group cannot hold every kind of mark, so there are
several, all answered by one responder thread:

* rules: inode marks of plain file/dir rules (event pid = process id).
* write: inode marks of write-only rules, FAN_REPORT_TID (the event carries
  the thread id, the key of the BPF open-flags map). Created with the first
  write-only rule, together with the BPF object; both go with the last.
* exec: mount marks (allow lists), filesystem marks on every filesystem
  programs can be executed from (content rules), and the allow-cache:
  FAN_MARK_IGNORED_MASK on inodes found clean, so that a clean file causes
  no further events until it is modified. The cache lives alone in this
  group so that FAN_MARK_FLUSH empties it without a file descriptor per
  cached inode (an open descriptor would make umount fail with EBUSY) and
  without touching the deny marks of the other groups.
* one pair per recursive rule: a permission group marking every directory
  of the tree (removing the rule closes it, no mark-by-mark undo) and a
  notification group (FAN_REPORT_DFID_NAME, FAN_CREATE|FAN_MOVED_TO|
  FAN_ONDIR: the kernel refuses FID reporting on a permission group) that
  tells the maintenance thread to mark directories made later.

Modes: "enforce" answers FAN_DENY (the caller gets EPERM); "monitor" answers
FAN_ALLOW and reports what would have been denied.

The responder must never wait for itself: events caused by this process
(any of its threads) are allowed at once, without looking at the file, and
the responder never opens a file to decide: it uses fstat/pread/readlink on
the descriptor the event carries, stat of /proc/PID/exe (which follows the
magic link without opening anything) and a BPF map lookup. Report callbacks
and tree walks run on other threads, so they may open anything.

Limits (see also evasions.py):

* write_only: the flags come from syscall tracepoints (open, openat,
  openat2, creat, open_by_handle_at). An open with no recorded flags, i.e.
  io_uring IORING_OP_OPENAT (no syscall), kernel-internal opens (core
  dumps, swapon, acct) or one already inside the syscall when the tracer
  was attached, is taken as a write: write-only rules fail closed. Thread
  ids are compared in the initial pid namespace: run the agent there.
* content rules hash the file when it is executed; a writer that already
  holds the file open could change it between the hash and the kernel's
  reads (exec then blocks new writers with ETXTBSY). Files larger than
  hash_max_bytes are not hashed. A memfd cannot be marked (EINVAL).
  Filesystem marks are placed on the filesystems visible in this process's
  mount namespace; they then cover every mount of them in any namespace.
* the allow-cache is per inode: a file allowed by the allow list of one
  mount is also silent when executed through another mount of the same
  filesystem until it is modified or a rule changes.
* recursive rules mark the directories on the tree's own filesystem (like
  find -xdev); a directory made later is marked by the maintenance thread
  shortly after the kernel reports it (an open in between is not seen),
  and a directory moved out of the tree stays covered until the rule is
  removed. Listing directories is not denied, only opening files.
* binaries: for exec rules /proc/PID/exe is the image that calls execve,
  not the new one. An opener whose executable cannot be read (it exited)
  counts as "not listed".

Failure: fanotify fails open. When a group's descriptor is closed (the
process exits or is killed, even with SIGKILL), the kernel allows every
pending event and drops the marks. There is no way to keep a fanotify rule
alive without a live responder.
"""
from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import queue
import re
import select
import stat
import struct
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Iterable

from ..errors import KerneyeError

# --- constants (include/uapi/linux/fanotify.h) -----------------------------------

FAN_CLOEXEC = 0x1
FAN_NONBLOCK = 0x2
FAN_CLASS_NOTIF = 0x0
FAN_CLASS_CONTENT = 0x4
FAN_UNLIMITED_QUEUE = 0x10
FAN_UNLIMITED_MARKS = 0x20
FAN_REPORT_TID = 0x100
FAN_REPORT_DIR_FID = 0x400
FAN_REPORT_NAME = 0x800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

FAN_MOVED_TO = 0x00000080
FAN_CREATE = 0x00000100
FAN_OPEN_PERM = 0x00010000
FAN_ACCESS_PERM = 0x00020000
FAN_OPEN_EXEC_PERM = 0x00040000
FAN_Q_OVERFLOW = 0x00004000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000

FAN_MARK_ADD = 0x1
FAN_MARK_REMOVE = 0x2
FAN_MARK_DONT_FOLLOW = 0x4
FAN_MARK_ONLYDIR = 0x8
FAN_MARK_MOUNT = 0x10
FAN_MARK_IGNORED_MASK = 0x20
FAN_MARK_IGNORED_SURV_MODIFY = 0x40
FAN_MARK_FLUSH = 0x80
FAN_MARK_FILESYSTEM = 0x100

FAN_ALLOW = 0x01
FAN_DENY = 0x02
FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3

AT_FDCWD = -100
AT_EMPTY_PATH = 0x1000
STATX_MNT_ID = 0x1000
O_LARGEFILE = getattr(os, "O_LARGEFILE", 0o100000)

# struct fanotify_event_metadata {u32 event_len; u8 vers; u8 reserved;
#   u16 metadata_len; aligned u64 mask; s32 fd; s32 pid;}
_META = struct.Struct("=IBBHQii")
# struct fanotify_response {s32 fd; u32 response;}
_RESP = struct.Struct("=iI")

OPS = {"open": FAN_OPEN_PERM, "exec": FAN_OPEN_EXEC_PERM}

#: filesystems nothing is executed from, or that fanotify cannot mark
PSEUDO_FS = frozenset({
    "proc", "sysfs", "cgroup", "cgroup2", "bpf", "tracefs", "debugfs", "securityfs", "devpts", "mqueue",
    "pstore", "configfs", "fusectl", "hugetlbfs", "autofs", "binfmt_misc", "efivarfs", "nsfs", "rpc_pipefs",
    "selinuxfs"})

#: what makes an open a write for write_only rules (O_WRONLY/O_RDWR are the access mode)
WRITE_FLAGS = os.O_CREAT | os.O_TRUNC
_HEX64 = re.compile(r"[0-9a-f]{64}")


class FanotifyError(KerneyeError):
    """A fanotify call failed; the message names the fix when there is one."""

    def __init__(self, msg: str, err: int = 0) -> None:
        super().__init__(msg)
        self.errno = err


# --- the syscall layer -------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int, ctypes.c_char_p]
_libc.fanotify_mark.restype = ctypes.c_int
_libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p]
_libc.statx.restype = ctypes.c_int
_STATX_SIZE = 256
_STX_MNT_ID_OFF = 144  # struct statx: u64 stx_mnt_id after the dev_major/dev_minor pair


def mount_id(fd: int | None = None, path: str | None = None) -> int:
    """The mount id (as in /proc/self/mountinfo) of an fd or a path; 0 if unknown."""
    buf = ctypes.create_string_buffer(_STATX_SIZE)
    if fd is not None:
        rc = _libc.statx(fd, b"", AT_EMPTY_PATH, STATX_MNT_ID, buf)
    else:
        rc = _libc.statx(AT_FDCWD, (path or "").encode(), 0, STATX_MNT_ID, buf)
    if rc != 0 or not struct.unpack_from("=I", buf, 0)[0] & STATX_MNT_ID:
        return 0
    return int(struct.unpack_from("=Q", buf, _STX_MNT_ID_OFF)[0])


@dataclass
class Event:
    """One fanotify event. fd is owned by the receiver: respond, then close."""

    mask: int
    fd: int
    pid: int


class Fanotify:
    """A fanotify group (one descriptor). Not thread-safe except respond()
    and mark()."""

    def __init__(self, flags: int = FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
                 event_f_flags: int = os.O_RDONLY | O_LARGEFILE | os.O_CLOEXEC) -> None:
        fd = _libc.fanotify_init(flags, event_f_flags)
        if fd < 0:
            err = ctypes.get_errno()
            hint = " (needs CAP_SYS_ADMIN)" if err == errno.EPERM else ""
            if err == errno.EINVAL:
                hint = " (the kernel lacks fanotify permission events: CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"
            if err == errno.EMFILE:
                hint = " (too many fanotify groups: raise fs.fanotify.max_user_groups or use fewer recursive rules)"
            raise FanotifyError(f"fanotify_init failed: {os.strerror(err)}{hint}", err)
        self.fd = fd
        self.flags = flags

    def mark(self, flags: int, mask: int, path: str | None = None, dirfd: int = AT_FDCWD) -> None:
        rc = _libc.fanotify_mark(self.fd, flags, mask, dirfd, path.encode() if path is not None else None)
        if rc < 0:
            err = ctypes.get_errno()
            raise FanotifyError(f"fanotify_mark({path or dirfd}, flags={flags:#x}, mask={mask:#x}) failed: "
                                f"{os.strerror(err)}", err)

    def read(self, bufsize: int = 65536) -> list[Event]:
        """Events available now ([] if none; the group is non-blocking).
        Info records (FID groups) are skipped: event_len covers them."""
        try:
            buf = os.read(self.fd, bufsize)
        except BlockingIOError:
            return []
        out = []
        off = 0
        while off + _META.size <= len(buf):
            event_len, vers, _r, _mlen, mask, fd, pid = _META.unpack_from(buf, off)
            if vers != FANOTIFY_METADATA_VERSION:
                raise FanotifyError(f"fanotify metadata version {vers}, expected {FANOTIFY_METADATA_VERSION}")
            out.append(Event(mask, fd, pid))
            off += event_len if event_len >= _META.size else _META.size
        return out

    def respond(self, fd: int, verdict: int) -> None:
        """Answer a permission event. EBADF/ENOENT mean the kernel no longer
        waits (the group is being torn down); nothing to do then."""
        try:
            os.write(self.fd, _RESP.pack(fd, verdict))
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EBADF):
                raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


# --- rules and decisions -----------------------------------------------------------

Key = tuple[int, int]  # (st_dev, st_ino)


@dataclass
class FileRule:
    """Deny ops on one inode, on the files directly in a directory, on a
    whole tree (recursive), or on any file with a given content (sha256,
    path empty)."""

    id: int
    path: str
    ops: tuple[str, ...]
    mode: str | None = None  # None: the enforcer's mode
    key: Key = (0, 0)
    is_dir: bool = False
    binaries: tuple[str, ...] | None = None  # None: any opener
    binaries_not: bool = False
    write_only: bool = False
    recursive: bool = False
    sha256: str | None = None  # exec rules matching on content
    bin_keys: frozenset[Key] = field(default=frozenset(), repr=False)
    bin_paths: frozenset[str] = field(default=frozenset(), repr=False)
    cgroups: tuple[str, ...] | None = None  # None: any process; else cgroup-v2 paths (and below)


@dataclass
class ExecAllowlist:
    """Only the allowed inodes or contents may be executed from the mount
    holding `mount`."""

    id: int
    mount: str
    allowed: set[Key] = field(default_factory=set)
    mode: str | None = None
    dev: int = 0
    digests: set[str] = field(default_factory=set)
    mnt_id: int = 0
    # qualifiers: the list binds only these callers (then nothing is cached:
    # an ignore mark would allow the file for every caller)
    binaries: tuple[str, ...] | None = None
    binaries_not: bool = False
    bin_keys: frozenset[Key] = field(default=frozenset(), repr=False)
    bin_paths: frozenset[str] = field(default=frozenset(), repr=False)
    cgroups: tuple[str, ...] | None = None

    @property
    def qualified(self) -> bool:
        return self.binaries is not None or self.cgroups is not None


@dataclass
class Decision:
    """What the responder answered, for one event that matched a rule."""

    rule_id: int
    op: str              # "open" or "exec"
    verdict: str         # what was answered: "allow" or "deny"
    monitor: bool        # a monitor-mode rule would have denied
    pid: int             # process id (thread group id)
    path: str
    dev: int
    ino: int
    latency_us: float    # from reading the event to answering it
    reason: str          # "rule", "dir-rule", "recursive", "content", "allowlist"
    binary: str = ""     # executable of the opener (for exec: the image calling execve)
    tid: int = 0         # thread id (= pid unless known otherwise)
    sha256: str = ""     # content digest, when it was computed
    write: bool | None = None  # write-only rules: the open was (or was taken as) a write

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


MODES = ("enforce", "monitor")


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


def _strip_deleted(path: str) -> str:
    return path[: -len(" (deleted)")] if path.endswith(" (deleted)") else path


def _read_tgid(tid: int) -> int:
    """Thread group of a thread id, from /proc (a procfs read: this group
    never marks procfs, so it cannot wait on itself). 0 if gone."""
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            for ln in f:
                if ln.startswith(b"Tgid:"):
                    return int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class _OpenFlags(ctypes.Structure):
    """struct openflags_value of bpf/enforce/openflags.bpf.c."""

    _fields_ = [("flags", ctypes.c_uint64), ("tgid", ctypes.c_uint32), ("op", ctypes.c_uint32)]


OF_OP_OPEN, OF_OP_EXEC = 1, 2
OPENFLAGS_OBJECT = "enforce_openflags.bpf.o"


class _Group:
    """One fanotify group and the marks it holds.

    kind: "rules" | "write" | "exec" | "tree" | "tree-notify". Inode rule
    groups ("rules", "write") index their rules by inode; a "tree" group
    serves exactly one recursive rule, so any event it delivers matches it.
    """

    def __init__(self, kind: str, fan: Fanotify, tid: bool = False, rule: FileRule | None = None) -> None:
        self.kind = kind
        self.fan = fan
        self.tid = tid
        self.rule = rule
        self.file_rules: dict[Key, list[FileRule]] = {}
        self.dir_rules: dict[Key, list[FileRule]] = {}
        self.marks: dict[Key, tuple[int, int]] = {}  # key -> (O_PATH fd, mask)
        self.tree_keys: set[Key] = set()
        self.root_fd = -1
        self.notify: _Group | None = None

    def empty(self) -> bool:
        return not self.file_rules and not self.dir_rules


class FanotifyEnforcer:
    """File and exec rules answered by a responder thread.

    start() creates the groups and the threads; rules can be changed live
    from any thread. close() stops the responder (pending events are then
    allowed by the kernel) and removes every mark. Decisions go to the
    bounded queue read by get_decisions() (full: dropped and counted) and,
    if given, to on_decision, called on its own thread.

    cache_limit bounds the allow-cache (ignore marks on clean executables;
    when full it is emptied and refills). max_tree_dirs bounds the
    directories of one recursive rule. hash_max_bytes: executables larger
    than this are not hashed (they never match a content rule; counted in
    stats["hash_skipped"]). content_fs: the mount points whose filesystems
    content rules watch; None means every filesystem programs can be
    executed from, refreshed when the mount table changes.
    """

    def __init__(self, mode: str = "enforce", on_decision: Callable[[Decision], None] | None = None,
                 queue_size: int = 4096, cache_limit: int = 4096, *, max_tree_dirs: int = 10000,
                 hash_max_bytes: int = 256 << 20, bpf_dir: str | None = None,
                 content_fs: Iterable[str] | None = None) -> None:
        if mode not in MODES:
            raise FanotifyError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self._on_decision = on_decision
        self._decisions: queue.Queue[Decision] = queue.Queue(queue_size)
        self._callback_q: queue.Queue[Decision | None] = queue.Queue(queue_size)
        self.cache_limit = cache_limit
        self.max_tree_dirs = max_tree_dirs
        self.hash_max_bytes = hash_max_bytes
        self.bpf_dir = bpf_dir
        self.content_fs = list(content_fs) if content_fs is not None else None
        self._pid = os.getpid()
        self._lock = threading.RLock()  # rules and marks
        # groups in service and retired ones; never held while anything could
        # wait for a fanotify verdict, so the responder can always take it
        self._glock = threading.Lock()
        self._rules: dict[int, FileRule | ExecAllowlist] = {}
        self._rule_group: dict[int, _Group] = {}
        self._allowlists: dict[int, ExecAllowlist] = {}
        self._hash_rules: dict[str, list[FileRule]] = {}
        self._digests: OrderedDict[tuple[int, ...], str] = OrderedDict()
        self._cached = 0  # ignore marks in the exec group
        self._fs_marked = False
        self._main: _Group | None = None
        self._write: _Group | None = None
        self._exec: _Group | None = None
        self._groups: dict[int, _Group] = {}  # fd -> group, for the responder
        self._groups_version = 0
        self._retired: list[_Group] = []
        self._bpf: object | None = None  # LoadedObject of the open-flags tracer
        self._openflags_fd = -1
        self._wake_r = self._wake_w = -1
        self._resp_efd = self._maint_efd = self._mountinfo_fd = -1
        self._tasks: queue.Queue[tuple[str, int]] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.stats = {"events": 0, "allowed": 0, "denied": 0, "monitored": 0, "self": 0, "unmatched": 0,
                      "cached": 0, "errors": 0, "reports_dropped": 0, "overflows": 0, "hashed": 0,
                      "hash_skipped": 0, "write_unknown": 0, "tree_rescans": 0, "mount_refreshes": 0,
                      "fs_mark_errors": 0}

    # --- life cycle

    @property
    def _fan(self) -> Fanotify | None:
        """The rules group (kept for callers that test `_fan is None`)."""
        return self._main.fan if self._main is not None else None

    def start(self) -> "FanotifyEnforcer":
        if self._main is not None:
            return self
        self._main = self._new_group("rules")
        self._exec = self._new_group("exec")
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._resp_efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._maint_efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._mountinfo_fd = os.open("/proc/self/mountinfo", os.O_RDONLY | os.O_CLOEXEC)
        self._stop.clear()
        self._threads = [
            threading.Thread(target=self._respond_loop, name="kerneye-fanotify-responder", daemon=True),
            threading.Thread(target=self._maint_loop, name="kerneye-fanotify-maint", daemon=True)]
        if self._on_decision is not None:
            self._threads.append(threading.Thread(target=self._callback_loop, name="kerneye-fanotify-report",
                                                  daemon=True))
        for th in self._threads:
            th.start()
        return self

    def close(self) -> None:
        """Stop answering and drop all marks (the kernel allows whatever is
        still pending when a group's descriptor closes). Idempotent."""
        if self._main is None:
            return
        self._stop.set()
        os.write(self._wake_w, b"x")
        if self._on_decision is not None:
            try:
                self._callback_q.put_nowait(None)
            except queue.Full:
                pass
        for th in self._threads:
            if th is not threading.current_thread():
                th.join(5)
        with self._lock, self._glock:
            groups = list(self._groups.values()) + self._retired
            self._groups.clear()
            self._retired.clear()
            for g in groups:
                self._close_group(g)
            self._main = self._write = self._exec = None
            self._rule_group.clear()
            self._unload_openflags()
            self._cached = 0
            self._fs_marked = False
        for fd in (self._wake_r, self._wake_w, self._resp_efd, self._maint_efd, self._mountinfo_fd):
            os.close(fd)
        self._wake_r = self._wake_w = self._resp_efd = self._maint_efd = self._mountinfo_fd = -1

    def __enter__(self) -> "FanotifyEnforcer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _new_group(self, kind: str, tid: bool = False, rule: FileRule | None = None) -> _Group:
        if kind == "tree-notify":
            flags = FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_MARKS
        else:
            flags = FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_MARKS
            if tid:
                flags |= FAN_REPORT_TID
        g = _Group(kind, Fanotify(flags), tid, rule)
        with self._glock:
            self._groups[g.fan.fd] = g
            self._groups_version += 1
        self._poke(self._resp_efd)
        return g

    def _retire(self, g: _Group) -> None:
        """Take a group out of service. Its marks are flushed now (so the
        rule stops at once); the responder closes the descriptor, because
        closing it under the responder's poll could let the number be reused."""
        for flag in (0, FAN_MARK_MOUNT, FAN_MARK_FILESYSTEM):
            try:
                g.fan.mark(FAN_MARK_FLUSH | flag, 0)
            except FanotifyError:
                pass
        with self._glock:
            self._groups.pop(g.fan.fd, None)
            self._groups_version += 1
            self._retired.append(g)
        self._poke(self._resp_efd)

    def _close_group(self, g: _Group) -> None:
        for fd, _ in g.marks.values():
            os.close(fd)
        g.marks.clear()
        if g.root_fd >= 0:
            os.close(g.root_fd)
            g.root_fd = -1
        g.fan.close()

    @staticmethod
    def _poke(efd: int) -> None:
        if efd >= 0:
            try:
                os.eventfd_write(efd, 1)
            except OSError:
                pass

    # --- rules

    def deny_open(self, rule_id: int, path: str, mode: str | None = None, *,
                  binaries: Iterable[str] | None = None, binaries_not: bool = False,
                  write_only: bool = False, recursive: bool = False,
                  cgroups: Iterable[str] | None = None) -> FileRule:
        """Deny opening path (a file, the files directly in a directory, or
        with recursive=True every file under a directory).

        binaries: the rule applies only when the opener's executable is one
        of these (binaries_not=True: is not one of these). write_only: only
        opens with O_WRONLY, O_RDWR, O_CREAT or O_TRUNC are denied; an open
        whose flags are unknown (io_uring, kernel-internal opens) is taken
        as a write (fails closed). cgroups: only processes in these cgroup-v2
        directories (paths as in /proc/PID/cgroup, e.g. "/system.slice/x",
        or under /sys/fs/cgroup...) or below them."""
        return self._add_file_rule(rule_id, path, ("open",), mode, binaries, binaries_not, write_only, recursive,
                                   cgroups=cgroups)

    def deny_exec(self, rule_id: int, path: str, mode: str | None = None, *,
                  binaries: Iterable[str] | None = None, binaries_not: bool = False,
                  match_content: bool = False, recursive: bool = False,
                  cgroups: Iterable[str] | None = None) -> FileRule:
        """Deny executing path (by inode). match_content=True also denies any
        file with the same content (a copy), hashed now. binaries: only when
        the image calling execve is one of these (see deny_open)."""
        digest = None
        if match_content:
            if os.path.isdir(path):
                raise FanotifyError(f"{path} is a directory; match_content needs a file")
            digest = _sha256_file(path)
        return self._add_file_rule(rule_id, path, ("exec",), mode, binaries, binaries_not, False, recursive,
                                   digest, cgroups)

    def deny_exec_sha256(self, rule_id: int, hexdigest: str, mode: str | None = None, *,
                         binaries: Iterable[str] | None = None, binaries_not: bool = False,
                         cgroups: Iterable[str] | None = None) -> FileRule:
        """Deny executing any file whose content has this sha256, wherever it is."""
        digest = hexdigest.lower().removeprefix("sha256:")
        if not _HEX64.fullmatch(digest):
            raise FanotifyError(f"rule {rule_id}: {hexdigest!r} is not a sha256 digest (64 hex digits)")
        self._check_mode(mode)
        self._need_started()
        bk, bp = self._resolve_binaries(binaries)
        rule = FileRule(rule_id, "", ("exec",), mode, binaries=tuple(binaries) if binaries is not None else None,
                        binaries_not=binaries_not, sha256=digest, bin_keys=bk, bin_paths=bp,
                        cgroups=_cgroup_paths(cgroups))
        with self._lock:
            self._remove_locked(rule_id)
            self._rules[rule_id] = rule
            self._add_hash_locked(rule)
        return rule

    def exec_allowlist(self, rule_id: int, mount: str, allowed: Iterable[str],
                       mode: str | None = None, *, binaries: Iterable[str] | None = None,
                       binaries_not: bool = False, cgroups: Iterable[str] | None = None) -> ExecAllowlist:
        """Only the listed files (by inode) or contents ("sha256:<hex>") may
        be executed from the mount that holds `mount`. Replaces an allowlist
        with the same id. binaries / cgroups: the list binds only callers
        running these executables (or not, binaries_not) / in these cgroups;
        an empty `allowed` then means these callers may execute nothing."""
        self._check_mode(mode)
        self._need_started()
        keys: set[Key] = set()
        digests: set[str] = set()
        for p in allowed:
            if p.startswith("sha256:"):
                d = p[7:].lower()
                if not _HEX64.fullmatch(d):
                    raise FanotifyError(f"rule {rule_id}: {p!r} is not sha256:<64 hex digits>")
                digests.add(d)
            else:
                keys.add(_key(_stat(p, f"rule {rule_id}")))
                # execve opens the ELF interpreter for exec too (FAN_OPEN_EXEC_PERM):
                # a dynamically linked binary is allowed with its loader
                interp = elf_interpreter(p)
                if interp:
                    try:
                        keys.add(_key(os.stat(interp)))
                    except OSError:
                        pass
        st = _stat(mount, f"rule {rule_id}")
        bins = tuple(binaries) if binaries is not None else None
        bk, bp = self._resolve_binaries(bins)
        al = ExecAllowlist(rule_id, mount, keys, mode, st.st_dev, digests, mount_id(path=mount), bins, binaries_not,
                           bk, bp, _cgroup_paths(cgroups))
        with self._lock:
            self._remove_locked(rule_id)
            assert self._exec is not None
            self._exec.fan.mark(FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, mount)
            self._rules[rule_id] = al
            self._allowlists[rule_id] = al
            self._flush_cache()
        return al

    def remove_rule(self, rule_id: int) -> bool:
        self._need_started()
        with self._lock:
            return self._remove_locked(rule_id)

    def set_mode(self, mode: str) -> None:
        """The default mode, for rules that do not set their own; live.
        (Allow-cache entries exist only for files no rule matched, so a mode
        change needs no flush.)"""
        self._check_mode(mode)
        self.mode = mode

    def rules(self) -> list[FileRule | ExecAllowlist]:
        with self._lock:
            return list(self._rules.values())

    def get_decisions(self, timeout_s: float = 0.0) -> list[Decision]:
        """Decisions queued so far; waits up to timeout_s for the first."""
        out: list[Decision] = []
        try:
            out.append(self._decisions.get(timeout=timeout_s) if timeout_s > 0 else self._decisions.get_nowait())
            while True:
                out.append(self._decisions.get_nowait())
        except queue.Empty:
            pass
        return out

    @property
    def write_tracer_loaded(self) -> bool:
        """Whether the BPF open-flags object is loaded (only with write-only rules)."""
        return self._bpf is not None

    @property
    def content_marks(self) -> bool:
        """Whether filesystem marks for content rules are in place."""
        return self._fs_marked

    def _check_mode(self, mode: str | None) -> None:
        if mode is not None and mode not in MODES:
            raise FanotifyError(f"mode must be one of {MODES}, not {mode!r}")

    def _need_started(self) -> Fanotify:
        if self._main is None:
            raise FanotifyError("the fanotify enforcer is not started")
        return self._main.fan

    @staticmethod
    def _resolve_binaries(binaries: Iterable[str] | None) -> tuple[frozenset[Key], frozenset[str]]:
        if binaries is None:
            return frozenset(), frozenset()
        keys, paths = set(), set()
        for b in binaries:
            keys.add(_key(_stat(b, "binaries")))
            paths.add(os.path.realpath(b))
        if not keys:
            raise FanotifyError("binaries is empty; give at least one executable path or leave it out")
        return frozenset(keys), frozenset(paths)

    def _add_file_rule(self, rule_id: int, path: str, ops: tuple[str, ...], mode: str | None,
                       binaries: Iterable[str] | None, binaries_not: bool, write_only: bool, recursive: bool,
                       digest: str | None = None, cgroups: Iterable[str] | None = None) -> FileRule:
        self._check_mode(mode)
        self._need_started()
        st = _stat(path, f"rule {rule_id}")  # follows symlinks, as fanotify_mark does
        is_dir = stat.S_ISDIR(st.st_mode)
        if recursive and not is_dir:
            raise FanotifyError(f"rule {rule_id}: {path} is not a directory; recursive needs one")
        if write_only and "exec" in ops:
            raise FanotifyError(f"rule {rule_id}: write_only applies to open rules only")
        bins = tuple(binaries) if binaries is not None else None
        bk, bp = self._resolve_binaries(bins)
        rule = FileRule(rule_id, path, ops, mode, _key(st), is_dir, bins, binaries_not, write_only, recursive,
                        digest, bk, bp, _cgroup_paths(cgroups))
        if recursive:
            return self._add_tree_rule(rule)
        with self._lock:
            self._remove_locked(rule_id)
            g = self._write_group() if write_only else self._main
            assert g is not None
            table = g.dir_rules if is_dir else g.file_rules
            table.setdefault(rule.key, []).append(rule)
            self._rules[rule_id] = rule
            self._rule_group[rule_id] = g
            try:
                self._sync_mark(g, rule.key, path)
                if digest is not None:
                    self._add_hash_locked(rule)
            except BaseException:
                self._remove_locked(rule_id)
                raise
        return rule

    def _write_group(self) -> _Group:
        """The FAN_REPORT_TID group of write-only rules, and the BPF tracer
        of open flags it needs; both made on first use."""
        if self._write is None:
            self._load_openflags()
            try:
                self._write = self._new_group("write", tid=True)
            except BaseException:
                self._unload_openflags()
                raise
        return self._write

    def _load_openflags(self) -> None:
        from ..bpf.objects import LoadedObject, ObjectSpec
        from ..config import default_bpf_dir

        path = os.path.join(self.bpf_dir or default_bpf_dir(), OPENFLAGS_OBJECT)
        obj = LoadedObject(ObjectSpec(path))
        try:
            for p in obj.programs():
                obj.attach(p)
            self._openflags_fd = obj.map_fd("kerneye_openflags")
        except BaseException:
            obj.close()
            raise
        self._bpf = obj

    def _unload_openflags(self) -> None:
        if self._bpf is not None:
            self._bpf.close()  # type: ignore[attr-defined]
            self._bpf = None
            self._openflags_fd = -1

    def _add_hash_locked(self, rule: FileRule) -> None:
        assert rule.sha256 is not None
        self._hash_rules.setdefault(rule.sha256, []).append(rule)
        self._flush_cache()  # a cached "clean" file may have this content
        if not self._fs_marked:
            self._fs_marked = True
            self._mark_filesystems()

    def _mark_filesystems(self) -> None:
        """FAN_MARK_FILESYSTEM (a superblock mark: every mount of it, in every
        mount namespace, bind mounts included) on each filesystem programs can
        be executed from. Adding a mark that exists is a no-op, so a refresh
        simply marks everything again."""
        g = self._exec
        if g is None:
            return
        for mnt in (self.content_fs if self.content_fs is not None else exec_filesystems()):
            try:
                g.fan.mark(FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, mnt)
            except FanotifyError:
                self.stats["fs_mark_errors"] += 1  # unmounted meanwhile, or not markable

    def _add_tree_rule(self, rule: FileRule) -> FileRule:
        dirs = self._walk_tree(rule.path, rule.key[0], set(), self.max_tree_dirs, rule.id)
        g = self._new_group("tree", tid=rule.write_only, rule=rule)
        try:
            if rule.write_only:
                with self._lock:
                    self._write_group()  # loads the open-flags tracer
            g.notify = self._new_group("tree-notify", rule=rule)
            g.root_fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY)
            if _key(os.fstat(g.root_fd)) != rule.key:
                raise FanotifyError(f"{rule.path} changed while the rule was being added; retry")
            self._mark_tree_dirs(g, dirs)
        except BaseException:
            if g.notify is not None:
                self._retire(g.notify)
            self._retire(g)
            with self._lock:
                self._maybe_drop_write_group()
            raise
        with self._lock:
            self._remove_locked(rule.id)
            self._rules[rule.id] = rule
            self._rule_group[rule.id] = g
        # a directory made between the walk and the marks: look once more
        self._tasks.put(("rescan", rule.id))
        self._poke(self._maint_efd)
        return rule

    @staticmethod
    def _walk_tree(root: str, dev: int, known: set[Key], limit: int, rule_id: int) -> list[tuple[str, Key]]:
        """Directories under root (root included) on root's filesystem (like
        find -xdev), not following symlinks; at most `limit` in all."""
        out: list[tuple[str, Key]] = []
        stack = [root]
        seen = len(known)
        while stack:
            d = stack.pop()
            try:
                st = os.stat(d, follow_symlinks=d == root)  # the root may be /proc/self/fd/N
            except OSError:
                continue
            if st.st_dev != dev or not stat.S_ISDIR(st.st_mode):
                continue
            k = _key(st)
            if k not in known:
                seen += 1
                if seen > limit:
                    raise FanotifyError(f"rule {rule_id}: {root} has more than {limit} directories; deny a "
                                        "smaller tree or raise max_tree_dirs")
                out.append((d, k))
            try:
                with os.scandir(d) as it:
                    stack.extend(e.path for e in it if e.is_dir(follow_symlinks=False))
            except OSError:
                pass
        return out

    def _mark_tree_dirs(self, g: _Group, dirs: list[tuple[str, Key]]) -> None:
        assert g.rule is not None and g.notify is not None
        mask = FAN_EVENT_ON_CHILD
        for op in g.rule.ops:
            mask |= OPS[op]
        for d, k in dirs:
            try:
                g.fan.mark(FAN_MARK_ADD | FAN_MARK_DONT_FOLLOW | FAN_MARK_ONLYDIR, mask, d)
                g.notify.fan.mark(FAN_MARK_ADD | FAN_MARK_DONT_FOLLOW | FAN_MARK_ONLYDIR,
                                  FAN_CREATE | FAN_MOVED_TO | FAN_ONDIR, d)
            except FanotifyError as e:
                if e.errno in (errno.ENOENT, errno.ENOTDIR):
                    continue  # removed or replaced meanwhile
                raise
            g.tree_keys.add(k)

    def _rescan_tree(self, rule_id: int) -> None:
        with self._lock:
            g = self._rule_group.get(rule_id)
        if g is None or g.kind != "tree" or g.rule is None or g.root_fd < 0:
            return
        self.stats["tree_rescans"] += 1
        root = f"/proc/self/fd/{g.root_fd}"  # follows the tree if it was renamed
        try:
            dirs = self._walk_tree(root, g.rule.key[0], g.tree_keys, self.max_tree_dirs, rule_id)
        except FanotifyError:
            self.stats["errors"] += 1  # grew past max_tree_dirs: new directories stay unmarked
            return
        with self._lock:
            if self._rule_group.get(rule_id) is g:
                self._mark_tree_dirs(g, dirs)

    def _wanted_mask(self, g: _Group, key: Key) -> int:
        mask = 0
        for r in g.file_rules.get(key, []):
            for op in r.ops:
                mask |= OPS[op]
        for r in g.dir_rules.get(key, []):
            for op in r.ops:
                mask |= OPS[op] | FAN_EVENT_ON_CHILD
        return mask

    def _sync_mark(self, g: _Group, key: Key, path: str | None = None) -> None:
        """Make the inode mark of key carry exactly the wanted mask. Marks
        are addressed through an O_PATH descriptor (/proc/self/fd/N), so
        they can be changed after the file was renamed or unlinked; an
        O_PATH open generates no fanotify event."""
        want = self._wanted_mask(g, key)
        fd, have = g.marks.get(key, (-1, 0))
        if want == have:
            return
        if fd < 0:
            assert path is not None
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            if _key(os.fstat(fd)) != key:  # replaced between stat and open
                os.close(fd)
                raise FanotifyError(f"{path} changed while the rule was being added; retry")
        target = f"/proc/self/fd/{fd}"
        if want & ~have:
            g.fan.mark(FAN_MARK_ADD, want & ~have, target)
        if have & ~want:
            try:
                g.fan.mark(FAN_MARK_REMOVE, have & ~want, target)
            except FanotifyError as e:
                # unlinking the last name of an inode destroys its marks
                if e.errno != errno.ENOENT:
                    raise
        if want:
            g.marks[key] = (fd, want)
        else:
            g.marks.pop(key, None)
            os.close(fd)

    def _remove_locked(self, rule_id: int) -> bool:
        rule = self._rules.pop(rule_id, None)
        if rule is None:
            return False
        if isinstance(rule, ExecAllowlist):
            self._allowlists.pop(rule_id, None)
            if self._exec is not None and not any(a.mount == rule.mount for a in self._allowlists.values()):
                try:
                    self._exec.fan.mark(FAN_MARK_REMOVE | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, rule.mount)
                except FanotifyError:
                    pass  # the mount is gone
            self._flush_cache()
            return True
        if rule.sha256 is not None:
            rest = [r for r in self._hash_rules.get(rule.sha256, []) if r.id != rule_id]
            if rest:
                self._hash_rules[rule.sha256] = rest
            else:
                self._hash_rules.pop(rule.sha256, None)
            if not self._hash_rules and self._fs_marked and self._exec is not None:
                self._fs_marked = False
                try:
                    self._exec.fan.mark(FAN_MARK_FLUSH | FAN_MARK_FILESYSTEM, 0)
                except FanotifyError:
                    self.stats["errors"] += 1
        g = self._rule_group.pop(rule_id, None)
        if g is None:  # a content-only rule
            return True
        if g.kind == "tree":
            if g.notify is not None:
                self._retire(g.notify)
            self._retire(g)
        else:
            table = g.dir_rules if rule.is_dir else g.file_rules
            rest2 = [r for r in table.get(rule.key, []) if r.id != rule_id]
            if rest2:
                table[rule.key] = rest2
            else:
                table.pop(rule.key, None)
            self._sync_mark(g, rule.key)
        self._maybe_drop_write_group()
        return True

    def _maybe_drop_write_group(self) -> None:
        """Unload the open-flags tracer when no write-only rule is left."""
        if self._write is None:
            return
        if any(isinstance(r, FileRule) and r.write_only for r in self._rules.values()):
            return
        if self._write.empty():
            self._retire(self._write)
            self._write = None
            self._unload_openflags()

    def _flush_cache(self) -> None:
        """Drop every allow-cache ignore mark (after a change of exec rules).
        The exec group holds no other inode marks."""
        if self._exec is not None and self._cached:
            try:
                self._exec.fan.mark(FAN_MARK_FLUSH, 0)
            except FanotifyError:
                self.stats["errors"] += 1
        self._cached = 0

    # --- the responder

    def _respond_loop(self) -> None:
        version = -1
        poller = select.poll()
        fdmap: dict[int, _Group] = {}
        while not self._stop.is_set():
            try:
                if version != self._groups_version:
                    with self._glock:
                        version = self._groups_version
                        fdmap = dict(self._groups)
                        retired, self._retired = self._retired, []
                    poller = select.poll()
                    poller.register(self._wake_r, select.POLLIN)
                    poller.register(self._resp_efd, select.POLLIN)
                    for fd in fdmap:
                        poller.register(fd, select.POLLIN)
                    for g in retired:  # no longer polled nor used by anyone: safe to close
                        self._close_group(g)
                for fd, _ in poller.poll(1000):
                    if fd == self._resp_efd:
                        try:
                            os.eventfd_read(fd)
                        except BlockingIOError:
                            pass
                        continue
                    g = fdmap.get(fd)
                    if g is None or g.fan.fd < 0:
                        continue
                    for ev in g.fan.read():
                        if g.kind == "tree-notify":
                            self._handle_notify(g, ev)
                        else:
                            self._handle(g, ev)
            except Exception:  # never let the responder die: it would fail open silently
                self.stats["errors"] += 1

    def _handle_notify(self, g: _Group, ev: Event) -> None:
        if ev.fd >= 0:
            os.close(ev.fd)
        if (ev.mask & (FAN_ONDIR | FAN_Q_OVERFLOW)) and g.rule is not None:
            self._tasks.put(("rescan", g.rule.id))
            self._poke(self._maint_efd)

    def _is_self(self, g: _Group, pid: int) -> bool:
        if pid == self._pid:
            return True
        # FAN_REPORT_TID: pid is a thread id; ours iff it is in our task list (a stat, no open)
        return g.tid and os.path.exists(f"/proc/self/task/{pid}")

    def _handle(self, g: _Group, ev: Event) -> None:
        t0 = time.perf_counter()
        self.stats["events"] += 1
        if ev.fd == FAN_NOFD:
            if ev.mask & FAN_Q_OVERFLOW:
                self.stats["overflows"] += 1
            return
        verdict = FAN_ALLOW
        ctx = _Ctx(ev.pid, g.tid)
        report: tuple[int, str, bool, str, Key] | None = None
        try:
            try:
                if self._is_self(g, ev.pid):
                    # Our own access (any thread): answer before looking at anything.
                    self.stats["self"] += 1
                elif ev.mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM | FAN_ACCESS_PERM):
                    if g.kind == "exec":
                        verdict, report = self._decide_exec_group(g, ev, ctx)
                    else:
                        verdict, report = self._decide(g, ev, ctx)
            except Exception:
                self.stats["errors"] += 1  # fail open, as the kernel does for a dead responder
                verdict, report = FAN_ALLOW, None
            pid = ev.pid
            if report is not None:
                # the opener may be gone as soon as it has its answer: look now
                ctx.exe_path()
                if g.tid:
                    pid = ctx.tgid or _read_tgid(ev.pid) or ev.pid
            g.fan.respond(ev.fd, verdict)
            lat = (time.perf_counter() - t0) * 1e6
            self.stats["denied" if verdict == FAN_DENY else "allowed"] += 1
            if report is not None:
                rid, op, monitor, reason, key = report
                try:
                    path = _strip_deleted(os.readlink(f"/proc/self/fd/{ev.fd}"))
                except OSError:
                    path = ""
                self._emit(Decision(rid, op, "deny" if verdict == FAN_DENY else "allow", monitor, pid, path,
                                    key[0], key[1], lat, reason, ctx.exe_path(), ev.pid, ctx.digest or "",
                                    ctx.write))
        finally:
            os.close(ev.fd)

    def _decide(self, g: _Group, ev: Event, ctx: "_Ctx") -> tuple[int, tuple[int, str, bool, str, Key] | None]:
        """An event of an inode-rule or tree group: (verdict, report or None)."""
        key = _key(os.fstat(ev.fd))
        op = "exec" if ev.mask & FAN_OPEN_EXEC_PERM else "open"
        with self._lock:
            if g.kind == "tree":
                # the event exists only because a directory of the tree is the parent
                cands, reason = ([g.rule] if g.rule is not None and g.rule.id in self._rules else []), "recursive"
                found = self._pick(cands, op, ctx)
            else:
                found = self._pick(g.file_rules.get(key, ()), op, ctx)
                reason = "rule"
                if found is None and g.dir_rules:
                    # a directory mark with FAN_EVENT_ON_CHILD: find the parent
                    # through the opened file's current path (stat does not open)
                    path = _strip_deleted(os.readlink(f"/proc/self/fd/{ev.fd}"))
                    try:
                        pkey = _key(os.stat(os.path.dirname(path)))
                    except OSError:
                        pkey = (0, 0)
                    found = self._pick(g.dir_rules.get(pkey, ()), op, ctx)
                    reason = "dir-rule"
            if found is not None:
                return self._verdict(found, op, reason, key)
        self.stats["unmatched"] += 1  # not applicable, or the rule was removed while the event was queued
        return FAN_ALLOW, None

    def _verdict(self, rule: FileRule | ExecAllowlist, op: str, reason: str,
                 key: Key) -> tuple[int, tuple[int, str, bool, str, Key]]:
        if (rule.mode or self.mode) == "monitor":
            self.stats["monitored"] += 1
            return FAN_ALLOW, (rule.id, op, True, reason, key)
        return FAN_DENY, (rule.id, op, False, reason, key)

    def _pick(self, rules: Iterable[FileRule], op: str, ctx: "_Ctx") -> FileRule | None:
        """The rule that applies to this access: an enforcing one first."""
        applicable = [r for r in rules if op in r.ops and self._applies(r, ctx)]
        for r in applicable:
            if (r.mode or self.mode) == "enforce":
                return r
        return applicable[0] if applicable else None

    def _applies(self, r: FileRule | ExecAllowlist, ctx: "_Ctx") -> bool:
        if r.cgroups is not None and not ctx.in_cgroups(r.cgroups):
            return False
        if r.binaries is not None and ctx.exe_matches(r) == r.binaries_not:
            return False
        if isinstance(r, ExecAllowlist):
            return True
        if r.write_only and not self._is_write(ctx):
            return False
        return True

    def _is_write(self, ctx: "_Ctx") -> bool:
        """From the BPF map of in-flight open flags, keyed by thread id. No
        entry (io_uring, kernel-internal opens, an open that began before the
        tracer was attached) is taken as a write: write-only rules fail closed."""
        if ctx.write is not None:
            return ctx.write
        from ..bpf import maps

        v = _OpenFlags()
        if self._openflags_fd < 0 or not ctx.tid_known or \
                not maps.lookup(self._openflags_fd, ctypes.c_uint32(ctx.pid), v):
            self.stats["write_unknown"] += 1
            ctx.write = True
            return True
        ctx.tgid = v.tgid
        if v.op == OF_OP_EXEC:
            ctx.write = False  # the open done by execve (the binary, its interpreter)
        else:
            ctx.write = (v.flags & os.O_ACCMODE) in (os.O_WRONLY, os.O_RDWR) or bool(v.flags & WRITE_FLAGS)
        return ctx.write

    def _decide_exec_group(self, g: _Group, ev: Event,
                           ctx: "_Ctx") -> tuple[int, tuple[int, str, bool, str, Key] | None]:
        """An exec event from a filesystem mark (content rules) or a mount
        mark (allow lists)."""
        st = os.fstat(ev.fd)
        key = _key(st)
        cacheable = True
        with self._lock:
            if self._hash_rules:
                ctx.digest = self._digest(ev.fd, st)
                rules = self._hash_rules.get(ctx.digest or "", [])
                if rules:
                    cacheable = False  # a caller the qualifier excludes now may be denied later
                    found = self._pick(rules, "exec", ctx)
                    if found is not None:
                        return self._verdict(found, "exec", "content", key)
            if self._allowlists:
                mnt = mount_id(fd=ev.fd)
                lists = [a for a in self._allowlists.values() if (a.mnt_id == mnt if mnt and a.mnt_id
                                                                   else a.dev == key[0])]
                if any(a.qualified for a in lists):
                    cacheable = False  # allowed for this caller is not allowed for every caller
                    lists = [a for a in lists if not a.qualified or self._applies(a, ctx)]
                if lists:
                    ok = any(key in a.allowed for a in lists)
                    if not ok and any(a.digests for a in lists):
                        if ctx.digest is None:
                            ctx.digest = self._digest(ev.fd, st)
                        ok = ctx.digest is not None and any(ctx.digest in a.digests for a in lists)
                    if not ok:
                        return self._verdict(lists[0], "exec", "allowlist", key)
                    if cacheable:
                        self._cache(g, ev)
                    return FAN_ALLOW, (lists[0].id, "exec", False, "allowlist", key)
            if cacheable:
                self._cache(g, ev)
        self.stats["unmatched"] += 1
        return FAN_ALLOW, None

    def _cache(self, g: _Group, ev: Event) -> None:
        """allow-cache: an ignore mark on the inode silences further exec
        events from the mount and filesystem marks until it is modified."""
        if self._cached >= self.cache_limit:
            self._flush_cache()
        g.fan.mark(FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, None, ev.fd)
        self._cached += 1
        self.stats["cached"] += 1

    def _digest(self, fd: int, st: os.stat_result) -> str | None:
        """sha256 of the file behind an event fd, read with pread (no new
        open), cached by identity and change times."""
        ck = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        d = self._digests.get(ck)
        if d is not None:
            self._digests.move_to_end(ck)
            return d
        if st.st_size > self.hash_max_bytes:
            self.stats["hash_skipped"] += 1
            return None
        h = hashlib.sha256()
        off = 0
        while True:
            b = os.pread(fd, 1 << 20, off)
            if not b:
                break
            h.update(b)
            off += len(b)
        d = h.hexdigest()
        self.stats["hashed"] += 1
        self._digests[ck] = d
        if len(self._digests) > 8192:
            self._digests.popitem(last=False)
        return d

    # --- maintenance: new directories of recursive rules, new filesystems

    def _maint_loop(self) -> None:
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        poller.register(self._maint_efd, select.POLLIN)
        # /proc/self/mountinfo signals POLLPRI (plus POLLERR) when the mount table changes
        poller.register(self._mountinfo_fd, select.POLLPRI)
        mounts_seen = self._read_mountinfo()
        while not self._stop.is_set():
            try:
                for fd, _ in poller.poll(1000):
                    if fd == self._maint_efd:
                        try:
                            os.eventfd_read(fd)
                        except BlockingIOError:
                            pass
                    elif fd == self._mountinfo_fd:
                        now = self._read_mountinfo()
                        if now != mounts_seen:
                            mounts_seen = now
                            if self._fs_marked and self.content_fs is None:
                                self.stats["mount_refreshes"] += 1
                                with self._lock:
                                    self._mark_filesystems()
                todo: set[int] = set()
                while True:
                    try:
                        todo.add(self._tasks.get_nowait()[1])
                    except queue.Empty:
                        break
                for rid in todo:
                    self._rescan_tree(rid)
            except Exception:
                self.stats["errors"] += 1

    def _read_mountinfo(self) -> bytes:
        os.lseek(self._mountinfo_fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            b = os.read(self._mountinfo_fd, 65536)
            if not b:
                return b"".join(chunks)
            chunks.append(b)

    # --- reports

    def _emit(self, d: Decision) -> None:
        try:
            self._decisions.put_nowait(d)
        except queue.Full:
            self.stats["reports_dropped"] += 1
        if self._on_decision is not None:
            try:
                self._callback_q.put_nowait(d)
            except queue.Full:
                self.stats["reports_dropped"] += 1

    def _callback_loop(self) -> None:
        assert self._on_decision is not None
        while True:
            d = self._callback_q.get()
            if d is None:
                return
            try:
                self._on_decision(d)
            except Exception:
                self.stats["errors"] += 1


class _Ctx:
    """What one event's decision learnt, computed at most once: the
    opener's executable, the open flags, the content digest."""

    def __init__(self, pid: int, tid_known: bool) -> None:
        self.pid = pid
        self.tid_known = tid_known
        self.tgid = 0
        self.write: bool | None = None
        self.digest: str | None = None
        self._exe_key: Key | None = None
        self._exe_path: str | None = None
        self._cgroup: str | None = None

    def exe_key(self) -> Key | None:
        if self._exe_key is None:
            try:
                # stat follows the /proc magic link to the executable's inode; nothing is opened
                self._exe_key = _key(os.stat(f"/proc/{self.pid}/exe"))
            except OSError:
                return None
        return self._exe_key

    def exe_path(self) -> str:
        if self._exe_path is None:
            try:
                self._exe_path = _strip_deleted(os.readlink(f"/proc/{self.pid}/exe"))
            except OSError:
                self._exe_path = ""
        return self._exe_path

    def cgroup(self) -> str:
        """The process's cgroup-v2 path ("0::" line of /proc/PID/cgroup; a
        procfs read, which no mark covers). "" if the process is gone."""
        if self._cgroup is None:
            self._cgroup = ""
            try:
                with open(f"/proc/{self.pid}/cgroup") as f:
                    for ln in f:
                        if ln.startswith("0::"):
                            self._cgroup = ln[3:].strip()
                            break
            except OSError:
                pass
        return self._cgroup

    def in_cgroups(self, cgroups: tuple[str, ...]) -> bool:
        cg = self.cgroup()
        return bool(cg) and any(cg == c or cg.startswith(c.rstrip("/") + "/") or c == "/" for c in cgroups)

    def exe_matches(self, r: FileRule | ExecAllowlist) -> bool:
        """Is the opener's executable one of r's binaries? By inode first
        (resolved when the rule was added), else by path (a binary replaced
        by an upgrade). Unknown (the process is gone) is "not listed"."""
        k = self.exe_key()
        if k is not None and k in r.bin_keys:
            return True
        p = self.exe_path()
        return bool(p) and p in r.bin_paths


def elf_interpreter(path: str) -> str | None:
    """The PT_INTERP path of a 64-bit little-endian ELF executable (its
    dynamic loader), or None (static binary, script, not ELF)."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if len(hdr) < 64 or hdr[:4] != b"\x7fELF" or hdr[4] != 2 or hdr[5] != 1:
                return None
            phoff, = struct.unpack_from("<Q", hdr, 32)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 54)
            f.seek(phoff)
            ph = f.read(phentsize * min(phnum, 64))
            for i in range(min(phnum, 64)):
                p_type, = struct.unpack_from("<I", ph, i * phentsize)
                if p_type == 3:  # PT_INTERP
                    off, = struct.unpack_from("<Q", ph, i * phentsize + 8)
                    size, = struct.unpack_from("<Q", ph, i * phentsize + 32)
                    f.seek(off)
                    return f.read(min(size, 4096)).rstrip(b"\0").decode(errors="replace") or None
    except (OSError, struct.error):
        return None
    return None


def _cgroup_paths(cgroups: Iterable[str] | None) -> tuple[str, ...] | None:
    """cgroup-v2 directories as /proc/PID/cgroup names them: a path under a
    mounted cgroup2 hierarchy (/sys/fs/cgroup/unified/x) becomes /x."""
    if cgroups is None:
        return None
    from ..system import mount_points

    roots = mount_points("cgroup2")
    out = []
    for c in cgroups:
        for r in roots:
            if c == r or c.startswith(r.rstrip("/") + "/"):
                c = "/" + c[len(r):].strip("/")
                break
        out.append(c if c.startswith("/") else "/" + c)
    if not out:
        raise FanotifyError("cgroups is empty; give at least one cgroup or leave it out")
    return tuple(out)


def _stat(path: str, what: str) -> os.stat_result:
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise FanotifyError(f"{what}: {path} does not exist; give an existing path") from None
    except OSError as e:
        raise FanotifyError(f"{what}: cannot stat {path}: {e.strerror}") from None


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for b in iter(lambda: f.read(1 << 20), b""):
                h.update(b)
    except OSError as e:
        raise FanotifyError(f"cannot hash {path}: {e.strerror}") from None
    return h.hexdigest()


def sha256_of(path: str) -> str:
    """The digest deny_exec(match_content=True) and allow lists compare."""
    return _sha256_file(path)


def _exec_mount_entries(mountinfo: str) -> list[tuple[str, str]]:
    """(device, mount point) of every mount programs can be executed from:
    not a pseudo filesystem, not mounted noexec."""
    out = []
    with open(mountinfo) as f:
        for ln in f:
            pre, _, post = ln.partition(" - ")
            fields = pre.split()
            if len(fields) < 6 or not post:
                continue
            fstype = post.split()[0]
            if fstype in PSEUDO_FS or "noexec" in fields[5].split(","):
                continue
            out.append((fields[2], re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])))
    return out


def exec_filesystems(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """One mount point per filesystem that programs can be executed from:
    not a pseudo filesystem, and mounted without noexec at least once."""
    out: dict[str, str] = {}
    for dev, mp in _exec_mount_entries(mountinfo):
        out.setdefault(dev, mp)
    return list(out.values())


def exec_mounts(mountinfo: str = "/proc/self/mountinfo") -> list[str]:
    """Every mount point programs can be executed from (a bind mount of a
    filesystem is a mount of its own for mount marks)."""
    return list(dict.fromkeys(mp for _dev, mp in _exec_mount_entries(mountinfo)))
