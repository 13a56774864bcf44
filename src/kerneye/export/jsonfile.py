"""JSON-lines export file with rotation by size and interval (``--export-file``).

:class:`RotatingFileWriter` appends one line per :meth:`~RotatingFileWriter.write`
call to ``path`` and rotates by size (and, with ``rotation_interval_s``, by
age), keeping ``path.1`` (newest backup) … ``path.N`` (oldest); with
``compress=True`` the backups are gzipped: ``path.1.gz`` … ``path.N.gz``. It
mirrors Tetragon's ``--export-file-max-size-mb`` / ``--export-file-max-backups``
/ ``--export-file-rotation-interval`` / ``--export-file-compress`` /
``--export-file-perm 600``.

Guarantees:

* A line is never split across files: rotation happens only between lines.
  No file grows beyond ``max_size_bytes`` unless one line alone is larger;
  such a line gets a file of its own.
* Each accepted line is written exactly once, in order: rotation first
  drains the buffer into the old file, then renames, then opens the new file.
  Concatenating ``path.N`` … ``path.1``, ``path`` gives the accepted lines in
  order (minus backups deleted beyond ``max_backups``).
* ``write`` either accepts the line (returns) or raises :class:`ExportError`
  without accepting it, so a caller may retry without duplicating it. A failed
  flush keeps the unwritten tail of the buffer for the next attempt.
* Interval rotation: once ``rotation_interval_s`` seconds (``clock``, default
  ``time.monotonic``) have passed since the current file was opened or last
  rotated, the next ``write`` or ``flush`` rotates it. An empty file is not
  rotated (the timer restarts instead), so quiet periods leave no empty
  backups.
* Compression runs in a background thread (zlib releases the GIL): rotation
  renames ``path`` to ``path.1`` and returns; the thread writes
  ``path.1.gz`` (via a ``.tmp`` name), then removes ``path.1``. The next
  rotation and :meth:`close` wait for it. If compression fails the plain
  backup is kept and counted in ``compress_errors``. Backups of either form
  are shifted and counted against ``max_backups`` alike.
* The file and every backup have mode ``perm`` (default 0600) regardless of
  umask, including a pre-existing file that is appended to.
* The final path component must not be a symlink and must be a regular file:
  the agent usually runs as root, and following a planted link would let it
  append to (and chmod) an arbitrary file.
* All methods are thread-safe.

Writes are buffered (``buffer_size``, default 256 KiB) because the exporter
may see ~100k lines/s. Data reaches the kernel when the buffer fills, on
rotation, on :meth:`flush` and on :meth:`close`. **The owner must call
flush() periodically** (say once a second) or the tail of a quiet stream
stays in memory. No fsync is done: flushed data survives an agent crash, not
a machine crash.
"""
from __future__ import annotations

import errno
import gzip
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from types import TracebackType

from kerneye.errors import ConfigError, ExportError

__all__ = ["RotatingFileWriter", "DEFAULT_MAX_SIZE_BYTES", "DEFAULT_MAX_BACKUPS"]

DEFAULT_MAX_SIZE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_BACKUPS = 5
DEFAULT_BUFFER_SIZE = 256 * 1024
FILE_MODE = 0o600

_HINT = "choose a writable --export-file or create its directory"

log = logging.getLogger("kerneye.export")

# O_NONBLOCK makes opening a FIFO without a reader fail instead of hanging;
# it has no effect on the regular files we accept.
_OPEN_FLAGS = (
    os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
)


class RotatingFileWriter:
    """Buffered, size-rotated JSON-lines file; see the module docstring.

    Construction opens (creating if needed) ``path`` and raises
    :class:`ExportError` naming the path and the fix when the file or its
    directory is unusable, and :class:`ConfigError` for bad limits.
    ``max_backups=0`` keeps no backup: the file is emptied on rotation.
    ``rotation_interval_s=0`` disables interval rotation; ``compress`` gzips
    backups; ``perm`` is the mode of the file and its backups; ``clock`` is
    injectable for tests.

    Counters (lines/bytes accepted by ``write``, including not yet flushed):
    ``lines_written``, ``bytes_written``, ``rotations``, ``compress_errors``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        max_size_bytes: int = DEFAULT_MAX_SIZE_BYTES,
        max_backups: int = DEFAULT_MAX_BACKUPS,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        rotation_interval_s: float = 0.0,
        compress: bool = False,
        perm: int = FILE_MODE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size_bytes < 1:
            raise ConfigError(f"export file max size must be at least 1 byte, got {max_size_bytes}")
        if max_backups < 0:
            raise ConfigError(f"export file max backups must be >= 0, got {max_backups}")
        if buffer_size < 1:
            raise ConfigError(f"export buffer size must be at least 1 byte, got {buffer_size}")
        if rotation_interval_s < 0:
            raise ConfigError(f"export file rotation interval must be >= 0 seconds, got {rotation_interval_s}")
        if not 0 <= perm <= 0o777:
            raise ConfigError(f"export file mode must be between 000 and 777 (octal), got {perm:o}")
        self._path = os.fspath(path)
        self._max_size = max_size_bytes
        self._max_backups = max_backups
        self._buffer_size = buffer_size
        self._interval = float(rotation_interval_s)
        self._compress = bool(compress)
        self._perm = perm
        self._clock = clock
        self._deadline = clock() + self._interval if self._interval else 0.0
        self._compressor: threading.Thread | None = None
        self.compress_errors = 0
        self._lock = threading.Lock()
        self._buf = bytearray()
        self._closed = False
        self.lines_written = 0
        self.bytes_written = 0
        self.rotations = 0

        self._check_directory()
        self._fd = -1
        self._size = 0  # bytes already in the current file (not counting _buf)
        self._open()

    @property
    def path(self) -> str:
        """The live file's path; backups are ``f"{path}.{n}"``."""
        return self._path

    # --- public API

    def write(self, line: str) -> None:
        """Append ``line`` plus a newline. ``line`` must not contain ``"\\n"``.

        Raises ValueError for a multi-line string or a closed writer, and
        ExportError (line not accepted) if rotation or a flush fails.
        """
        if "\n" in line:
            raise ValueError("export line must not contain a newline")
        # A lone surrogate can only sit inside a JSON string, where the
        # "\udcxx" text backslashreplace produces is the same value again.
        data = line.encode("utf-8", "backslashreplace") + b"\n"
        with self._lock:
            if self._closed:
                raise ValueError(f"write to closed export file {self._path}")
            pending = self._size + len(self._buf)
            if pending and (pending + len(data) > self._max_size or (self._interval and self._due())):
                self._rotate()
            self._buf += data
            self.lines_written += 1
            self.bytes_written += len(data)
            if len(self._buf) >= self._buffer_size:
                self._drain()

    def flush(self) -> None:
        """Hand all buffered lines to the kernel. No-op when closed."""
        with self._lock:
            if not self._closed:
                if self._interval and self._due() and self._size + len(self._buf):
                    self._rotate()
                self._drain()

    def close(self) -> None:
        """Flush and close; idempotent. The fd is closed even if the flush fails."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._drain()
            finally:
                self._close_fd()
                self._wait_compressor()

    def __enter__(self) -> RotatingFileWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals (called with the lock held)

    def _due(self) -> bool:
        """Interval elapsed? An empty file restarts the timer instead."""
        now = self._clock()
        if now < self._deadline:
            return False
        if not (self._size + len(self._buf)):
            self._deadline = now + self._interval
            return False
        return True

    def _error(self, what: str, err: OSError) -> ExportError:
        reason = err.strerror or str(err)
        if err.errno == errno.ELOOP:
            reason = "it is a symbolic link, which kerneye refuses to follow"
        return ExportError(f"{what} {self._path}: {reason}; {_HINT}")

    def _check_directory(self) -> None:
        directory = os.path.dirname(os.path.abspath(self._path))
        if not os.path.isdir(directory):
            problem = "is not a directory" if os.path.exists(directory) else "does not exist"
            raise ExportError(
                f"cannot write export file {self._path}: {directory} {problem}; {_HINT}"
            )
        # Rotation creates and renames entries, so the directory itself must
        # be writable, not just the file.
        effective = os.access in os.supports_effective_ids
        if not os.access(directory, os.W_OK | os.X_OK, effective_ids=effective):
            raise ExportError(
                f"cannot write export file {self._path}: directory {directory} is not writable "
                f"(Permission denied); {_HINT}"
            )

    def _open(self) -> None:
        try:
            fd = os.open(self._path, _OPEN_FLAGS, self._perm)
        except OSError as err:
            raise self._error("cannot write export file", err) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ExportError(
                    f"cannot write export file {self._path}: it is not a regular file; {_HINT}"
                )
            # The open() mode is filtered by umask and ignored for existing files.
            os.fchmod(fd, self._perm)
        except OSError as err:
            os.close(fd)
            raise self._error(f"cannot set mode {self._perm:04o} on export file", err) from None
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._size = st.st_size

    def _close_fd(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)

    def _drain(self) -> None:
        if not self._buf:
            return
        if self._fd < 0:
            # A previous rotation failed after closing the old file.
            self._open()
        view = memoryview(self._buf)
        done = 0
        try:
            while done < len(view):
                done += os.write(self._fd, view[done:])
        except OSError as err:
            raise self._error("cannot write export file", err) from None
        finally:
            view.release()
            # Drop what reached the file so a retry neither loses nor repeats it.
            del self._buf[:done]
            self._size += done

    def _rotate(self) -> None:
        self._drain()
        self._close_fd()
        # Backups may only move once the previous compression is done.
        self._wait_compressor()
        shifted = False
        try:
            self._shift_backups()
            shifted = True
        except OSError as err:
            raise self._error("cannot rotate export file", err) from None
        finally:
            # Reopen whatever is at path now (the old file if the shift
            # failed), so the writer stays usable. If this fails, _drain
            # retries the open later.
            if self._interval:
                self._deadline = self._clock() + self._interval
            self._open()
        self.rotations += 1
        if shifted and self._compress and self._max_backups > 0:
            t = threading.Thread(target=self._compress_backup, args=(f"{self._path}.1",),
                                 name="kerneye-export-gzip", daemon=True)
            self._compressor = t
            t.start()

    def _backup(self, n: int) -> str | None:
        """The existing backup number n (``.n.gz`` or ``.n``), or None."""
        for name in (f"{self._path}.{n}.gz", f"{self._path}.{n}"):
            if os.path.lexists(name):
                return name
        return None

    def _shift_backups(self) -> None:
        if self._max_backups == 0:
            os.unlink(self._path)
            return
        # Only the run path.1..path.k of existing backups needs to move; the
        # first gap absorbs the shift. Capping k at N-1 makes the last rename
        # replace path.N, which is how the oldest backup is deleted.
        k = 0
        while k < self._max_backups - 1 and self._backup(k + 1) is not None:
            k += 1
        for n in range(k, 0, -1):
            src = self._backup(n)
            assert src is not None
            gz = src.endswith(".gz")
            dst = f"{self._path}.{n + 1}" + (".gz" if gz else "")
            other = f"{self._path}.{n + 1}" + ("" if gz else ".gz")
            if os.path.lexists(other):  # mixed forms: the replaced backup's twin goes too
                os.unlink(other)
            os.rename(src, dst)
        # path.1 still exists only when max_backups == 1: it is the oldest.
        for stale in (f"{self._path}.1", f"{self._path}.1.gz"):
            if os.path.lexists(stale):
                os.unlink(stale)
        os.rename(self._path, f"{self._path}.1")

    def _wait_compressor(self) -> None:
        t, self._compressor = self._compressor, None
        if t is not None:
            t.join()

    def _compress_backup(self, src: str) -> None:
        """path.1 -> path.1.gz (runs in its own thread; never raises)."""
        dst = src + ".gz"
        tmp = dst + ".tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, self._perm)
            try:
                os.fchmod(fd, self._perm)
                raw = os.fdopen(fd, "wb")
            except BaseException:
                os.close(fd)
                raise
            with raw, open(src, "rb") as fin:
                with gzip.GzipFile(filename=os.path.basename(src), mode="wb", fileobj=raw, compresslevel=6) as gz:
                    shutil.copyfileobj(fin, gz, 1 << 20)
            os.rename(tmp, dst)
            os.unlink(src)
        except Exception as err:  # noqa: BLE001 - keep the plain backup
            self.compress_errors += 1
            log.warning("cannot compress export backup %s: %s; it is kept uncompressed", src, err)
            try:
                os.unlink(tmp)
            except OSError:
                pass
