"""File-open and exec enforcement with fanotify permission events.

Where BPF-LSM is unavailable, fanotify (Linux 2.6.37; FAN_OPEN_EXEC_PERM
5.0) is the kernel's own way to make an open() or execve() wait for a
user-space verdict. This module has two layers:

* `Fanotify`: a ctypes wrapper of fanotify_init(2)/fanotify_mark(2), the
  event records (struct fanotify_event_metadata) and the verdicts (struct
  fanotify_response). No PyPI package can answer permission events.
* `FanotifyEnforcer`: rules and a responder thread.

Rules name files by path, but decisions are made on the (st_dev, st_ino) of
the file the kernel hands over with the event, so a hard link, a symlink, a
rename (of the file or of a parent directory) or a bind mount of the same
inode is still covered, while a copy (a new inode) is not: that needs
content hashing, which is out of scope here (docs/concepts/enforcement.md).

    deny_open(path)       inode mark, FAN_OPEN_PERM. A directory covers the
                          files directly in it (FAN_EVENT_ON_CHILD), looked up
                          through the parent of the opened file's path.
                          Denying open also denies exec (exec opens the file).
    deny_exec(path)       inode mark, FAN_OPEN_EXEC_PERM.
    exec_allowlist(mount, allowed)
                          mount mark, FAN_OPEN_EXEC_PERM: only the listed
                          inodes may be executed from that mount; allowed
                          inodes get an ignore mark (an allow-cache: no
                          further events until the file is modified).

Modes: "enforce" answers FAN_DENY (the caller gets EPERM); "monitor" answers
FAN_ALLOW and reports what would have been denied.

The responder must never wait for itself: events caused by this process
(pid == os.getpid(), i.e. any of its threads) are allowed at once, without
looking at the file, and the responder never opens a file (it uses fstat
and readlink on the descriptor the event carries). Report callbacks run on
a separate thread, so they may open anything.

Failure: fanotify fails open. When the group's descriptor is closed (the
process exits or is killed, even with SIGKILL), the kernel allows every
pending event and drops the marks. There is no way to keep a fanotify rule
alive without a live responder.
"""
from __future__ import annotations

import ctypes
import errno
import os
import queue
import select
import stat
import struct
import threading
import time
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

FAN_ALLOW = 0x01
FAN_DENY = 0x02
FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3

AT_FDCWD = -100
O_LARGEFILE = getattr(os, "O_LARGEFILE", 0o100000)

# struct fanotify_event_metadata {u32 event_len; u8 vers; u8 reserved;
#   u16 metadata_len; aligned u64 mask; s32 fd; s32 pid;}
_META = struct.Struct("=IBBHQii")
# struct fanotify_response {s32 fd; u32 response;}
_RESP = struct.Struct("=iI")

OPS = {"open": FAN_OPEN_PERM, "exec": FAN_OPEN_EXEC_PERM}


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


@dataclass
class Event:
    """One fanotify event. fd is owned by the receiver: respond, then close."""

    mask: int
    fd: int
    pid: int


class Fanotify:
    """A fanotify group (one descriptor). Not thread-safe except respond()."""

    def __init__(self, flags: int = FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK,
                 event_f_flags: int = os.O_RDONLY | O_LARGEFILE | os.O_CLOEXEC) -> None:
        fd = _libc.fanotify_init(flags, event_f_flags)
        if fd < 0:
            err = ctypes.get_errno()
            hint = " (needs CAP_SYS_ADMIN)" if err == errno.EPERM else ""
            if err == errno.EINVAL:
                hint = " (the kernel lacks fanotify permission events: CONFIG_FANOTIFY_ACCESS_PERMISSIONS)"
            raise FanotifyError(f"fanotify_init failed: {os.strerror(err)}{hint}", err)
        self.fd = fd

    def mark(self, flags: int, mask: int, path: str | None = None, dirfd: int = AT_FDCWD) -> None:
        rc = _libc.fanotify_mark(self.fd, flags, mask, dirfd, path.encode() if path is not None else None)
        if rc < 0:
            err = ctypes.get_errno()
            raise FanotifyError(f"fanotify_mark({path or dirfd}, flags={flags:#x}, mask={mask:#x}) failed: "
                                f"{os.strerror(err)}", err)

    def read(self, bufsize: int = 65536) -> list[Event]:
        """Events available now ([] if none; the group is non-blocking)."""
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
    """Deny ops on one inode (file) or on the files directly in a directory."""

    id: int
    path: str
    ops: tuple[str, ...]
    mode: str | None = None  # None: the enforcer's mode
    key: Key = (0, 0)
    is_dir: bool = False


@dataclass
class ExecAllowlist:
    """Only the allowed inodes may be executed from the mount holding `mount`."""

    id: int
    mount: str
    allowed: set[Key] = field(default_factory=set)
    mode: str | None = None
    dev: int = 0


@dataclass
class Decision:
    """What the responder answered, for one event that matched a rule."""

    rule_id: int
    op: str              # "open" or "exec"
    verdict: str         # what was answered: "allow" or "deny"
    monitor: bool        # a monitor-mode rule would have denied
    pid: int
    path: str
    dev: int
    ino: int
    latency_us: float    # from reading the event to answering it
    reason: str          # "rule", "dir-rule", "allowlist"

    def to_dict(self) -> dict[str, object]:
        return dict(self.__dict__)


MODES = ("enforce", "monitor")


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino)


class FanotifyEnforcer:
    """File and exec rules answered by a responder thread.

    start() creates the group and the threads; rules can be changed live
    from any thread. close() stops the responder (pending events are then
    allowed by the kernel) and removes every mark. Decisions go to the
    bounded queue read by get_decisions() (full: dropped and counted) and,
    if given, to on_decision, called on its own thread.
    """

    def __init__(self, mode: str = "enforce", on_decision: Callable[[Decision], None] | None = None,
                 queue_size: int = 4096, cache_limit: int = 256) -> None:
        if mode not in MODES:
            raise FanotifyError(f"mode must be one of {MODES}, not {mode!r}")
        self.mode = mode
        self._on_decision = on_decision
        self._decisions: queue.Queue[Decision] = queue.Queue(queue_size)
        self._callback_q: queue.Queue[Decision | None] = queue.Queue(queue_size)
        self.cache_limit = cache_limit
        self._pid = os.getpid()
        self._fan: Fanotify | None = None
        self._lock = threading.Lock()
        self._rules: dict[int, FileRule | ExecAllowlist] = {}
        self._file_rules: dict[Key, list[FileRule]] = {}
        self._dir_rules: dict[Key, list[FileRule]] = {}
        self._allowlists: dict[int, ExecAllowlist] = {}
        self._marks: dict[Key, tuple[int, int]] = {}  # key -> (O_PATH fd, mask)
        self._cached: dict[Key, int] = {}  # allow-cache: key -> O_PATH fd of an ignore-marked inode
        self._wake_r = self._wake_w = -1
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self.stats = {"events": 0, "allowed": 0, "denied": 0, "monitored": 0, "self": 0, "unmatched": 0,
                      "cached": 0, "errors": 0, "reports_dropped": 0, "overflows": 0}

    # --- life cycle

    def start(self) -> "FanotifyEnforcer":
        if self._fan is not None:
            return self
        self._fan = Fanotify()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._stop.clear()
        t = threading.Thread(target=self._respond_loop, name="kerneye-fanotify-responder", daemon=True)
        self._threads = [t]
        if self._on_decision is not None:
            self._threads.append(threading.Thread(target=self._callback_loop, name="kerneye-fanotify-report",
                                                  daemon=True))
        for th in self._threads:
            th.start()
        return self

    def close(self) -> None:
        """Stop answering and drop all marks (the kernel allows whatever is
        still pending when the group's descriptor closes). Idempotent."""
        if self._fan is None:
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
        self._fan.close()
        self._fan = None
        for fd, _ in self._marks.values():
            os.close(fd)
        for fd in self._cached.values():
            os.close(fd)
        self._marks.clear()
        self._cached.clear()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> "FanotifyEnforcer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- rules

    def deny_open(self, rule_id: int, path: str, mode: str | None = None) -> FileRule:
        return self._add_file_rule(rule_id, path, ("open",), mode)

    def deny_exec(self, rule_id: int, path: str, mode: str | None = None) -> FileRule:
        return self._add_file_rule(rule_id, path, ("exec",), mode)

    def exec_allowlist(self, rule_id: int, mount: str, allowed: Iterable[str],
                       mode: str | None = None) -> ExecAllowlist:
        """Only the listed files (by inode) may be executed from the mount
        that holds `mount`. Replaces an allowlist with the same id."""
        self._check_mode(mode)
        fan = self._need_started()
        keys = {_key(os.stat(p)) for p in allowed}
        al = ExecAllowlist(rule_id, mount, keys, mode, os.stat(mount).st_dev)
        with self._lock:
            self._remove_locked(rule_id)
            self._flush_cache()
            self._rules[rule_id] = al
            self._allowlists[rule_id] = al
        fan.mark(FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, mount)
        return al

    def remove_rule(self, rule_id: int) -> bool:
        self._need_started()
        with self._lock:
            return self._remove_locked(rule_id)

    def set_mode(self, mode: str) -> None:
        """The default mode, for rules that do not set their own; live."""
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

    def _check_mode(self, mode: str | None) -> None:
        if mode is not None and mode not in MODES:
            raise FanotifyError(f"mode must be one of {MODES}, not {mode!r}")

    def _need_started(self) -> Fanotify:
        if self._fan is None:
            raise FanotifyError("the fanotify enforcer is not started")
        return self._fan

    def _add_file_rule(self, rule_id: int, path: str, ops: tuple[str, ...], mode: str | None) -> FileRule:
        self._check_mode(mode)
        self._need_started()
        st = os.stat(path)  # follows symlinks, as fanotify_mark does
        is_dir = stat.S_ISDIR(st.st_mode)
        rule = FileRule(rule_id, path, ops, mode, _key(st), is_dir)
        with self._lock:
            self._remove_locked(rule_id)
            # cached allows (ignore marks) would also hide this rule's events
            self._flush_cache()
            table = self._dir_rules if is_dir else self._file_rules
            table.setdefault(rule.key, []).append(rule)
            self._rules[rule_id] = rule
            try:
                self._sync_mark(rule.key, path)
            except BaseException:
                self._remove_locked(rule_id)
                raise
        return rule

    def _wanted_mask(self, key: Key) -> int:
        mask = 0
        for r in self._file_rules.get(key, []):
            for op in r.ops:
                mask |= OPS[op]
        for r in self._dir_rules.get(key, []):
            for op in r.ops:
                mask |= OPS[op] | FAN_EVENT_ON_CHILD
        return mask

    def _sync_mark(self, key: Key, path: str | None = None) -> None:
        """Make the inode mark of key carry exactly the wanted mask. Marks
        are addressed through an O_PATH descriptor (/proc/self/fd/N), so
        they can be changed after the file was renamed or unlinked; an
        O_PATH open generates no fanotify event."""
        fan = self._need_started()
        want = self._wanted_mask(key)
        fd, have = self._marks.get(key, (-1, 0))
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
            fan.mark(FAN_MARK_ADD, want & ~have, target)
        if have & ~want:
            try:
                fan.mark(FAN_MARK_REMOVE, have & ~want, target)
            except FanotifyError as e:
                # unlinking the last name of an inode destroys its marks
                if e.errno != errno.ENOENT:
                    raise
        if want:
            self._marks[key] = (fd, want)
        else:
            self._marks.pop(key, None)
            os.close(fd)

    def _remove_locked(self, rule_id: int) -> bool:
        rule = self._rules.pop(rule_id, None)
        if rule is None:
            return False
        if isinstance(rule, ExecAllowlist):
            self._allowlists.pop(rule_id, None)
            if not any(a.mount == rule.mount for a in self._allowlists.values()):
                try:
                    self._need_started().mark(FAN_MARK_REMOVE | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, rule.mount)
                except FanotifyError:
                    pass  # the mount is gone
            self._flush_cache()
            return True
        table = self._dir_rules if rule.is_dir else self._file_rules
        rest = [r for r in table.get(rule.key, []) if r.id != rule_id]
        if rest:
            table[rule.key] = rest
        else:
            table.pop(rule.key, None)
        self._sync_mark(rule.key)
        return True

    def _flush_cache(self) -> None:
        """Drop every allow-cache ignore mark (after any rule change)."""
        fan = self._fan
        for fd in self._cached.values():
            if fan is not None:
                try:
                    fan.mark(FAN_MARK_REMOVE | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, f"/proc/self/fd/{fd}")
                except FanotifyError:
                    pass  # the ignore mask was already cleared by a modification
            os.close(fd)
        self._cached.clear()

    # --- the responder

    def _respond_loop(self) -> None:
        fan = self._fan
        assert fan is not None
        poller = select.poll()
        poller.register(fan.fd, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stop.is_set():
            try:
                poller.poll(1000)
                for ev in fan.read():
                    self._handle(fan, ev)
            except Exception:  # never let the responder die: it would fail open silently
                self.stats["errors"] += 1

    def _handle(self, fan: Fanotify, ev: Event) -> None:
        t0 = time.perf_counter()
        self.stats["events"] += 1
        if ev.fd == FAN_NOFD:
            if ev.mask & FAN_Q_OVERFLOW:
                self.stats["overflows"] += 1
            return
        verdict = FAN_ALLOW
        report: tuple[int, str, bool, str, Key] | None = None
        try:
            try:
                if ev.pid == self._pid:
                    # Our own access (any thread): answer before looking at anything.
                    self.stats["self"] += 1
                elif ev.mask & (FAN_OPEN_PERM | FAN_OPEN_EXEC_PERM | FAN_ACCESS_PERM):
                    verdict, report = self._decide(fan, ev)
            except Exception:
                self.stats["errors"] += 1  # fail open, as the kernel does for a dead responder
                verdict, report = FAN_ALLOW, None
            fan.respond(ev.fd, verdict)
            lat = (time.perf_counter() - t0) * 1e6
            self.stats["denied" if verdict == FAN_DENY else "allowed"] += 1
            if report is not None:
                rid, op, monitor, reason, key = report
                try:
                    path = os.readlink(f"/proc/self/fd/{ev.fd}")
                except OSError:
                    path = ""
                self._emit(Decision(rid, op, "deny" if verdict == FAN_DENY else "allow", monitor, ev.pid, path,
                                    key[0], key[1], lat, reason))
        finally:
            os.close(ev.fd)

    def _decide(self, fan: Fanotify, ev: Event) -> tuple[int, tuple[int, str, bool, str, Key] | None]:
        """(verdict, (rule id, op, monitor, reason, key) or None)."""
        key = _key(os.fstat(ev.fd))
        op = "exec" if ev.mask & FAN_OPEN_EXEC_PERM else "open"
        with self._lock:
            rule = self._match(self._file_rules.get(key, ()), op)
            reason = "rule"
            if rule is None and self._dir_rules:
                # a directory mark with FAN_EVENT_ON_CHILD: find the parent
                # through the opened file's current path (stat does not open)
                path = os.readlink(f"/proc/self/fd/{ev.fd}")
                if path.endswith(" (deleted)"):
                    path = path[: -len(" (deleted)")]
                try:
                    pkey = _key(os.stat(os.path.dirname(path)))
                except OSError:
                    pkey = (0, 0)
                rule = self._match(self._dir_rules.get(pkey, ()), op)
                reason = "dir-rule"
            if rule is not None:
                monitor = (rule.mode or self.mode) == "monitor"
                if monitor:
                    self.stats["monitored"] += 1
                    return FAN_ALLOW, (rule.id, op, True, reason, key)
                return FAN_DENY, (rule.id, op, False, reason, key)
            if op == "exec" and self._allowlists:
                return self._decide_allowlist(fan, ev, key)
        self.stats["unmatched"] += 1  # e.g. the rule was removed while the event was queued
        return FAN_ALLOW, None

    @staticmethod
    def _match(rules: Iterable[FileRule], op: str) -> FileRule | None:
        for r in rules:
            if op in r.ops:
                return r
        return None

    def _decide_allowlist(self, fan: Fanotify, ev: Event,
                          key: Key) -> tuple[int, tuple[int, str, bool, str, Key] | None]:
        lists = [a for a in self._allowlists.values() if a.dev == key[0]] or list(self._allowlists.values())
        al = lists[0]
        if any(key in a.allowed for a in lists):
            if len(self._cached) < self.cache_limit and key not in self._cached:
                # allow-cache: an ignore mark on the inode silences further
                # exec events from the mount mark until the file is modified
                fan.mark(FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, None, ev.fd)
                self._cached[key] = os.open(f"/proc/self/fd/{ev.fd}", os.O_PATH | os.O_CLOEXEC)
                self.stats["cached"] += 1
            return FAN_ALLOW, (al.id, "exec", False, "allowlist", key)
        if (al.mode or self.mode) == "monitor":
            self.stats["monitored"] += 1
            return FAN_ALLOW, (al.id, "exec", True, "allowlist", key)
        return FAN_DENY, (al.id, "exec", False, "allowlist", key)

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
