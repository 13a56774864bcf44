"""kerneye's exception hierarchy.

Every error a user can meet derives from KerneyeError and carries a message
that names the problem *and* the fix; the CLI prints ``str(err)`` as one line
and exits non-zero, never a traceback.
"""
from __future__ import annotations


class KerneyeError(Exception):
    """Root of all kerneye errors. ``exit_code`` is used by the CLI."""

    exit_code = 1


class BpfError(KerneyeError):
    """A libbpf or bpf(2) operation failed."""

    def __init__(self, msg: str, errno: int = 0, log: str = "") -> None:
        super().__init__(msg)
        self.errno = errno
        self.log = log


class NotSupported(BpfError):
    """The running kernel lacks a feature. ``feature`` names it."""

    def __init__(self, feature: str, msg: str, min_version: str = "") -> None:
        super().__init__(msg)
        self.feature = feature
        self.min_version = min_version


class VerifierError(BpfError):
    """The verifier rejected a program; ``log`` holds the full verifier log."""


class LayoutMismatch(KerneyeError):
    """The Python mirror of bpf/include/kerneye/abi.h disagrees with BTF."""


class ConfigError(KerneyeError):
    """A flag, path or configuration value is unusable."""

    exit_code = 2


class ExportError(KerneyeError):
    """An event sink (file, socket) cannot be written."""


class AlreadyRunning(KerneyeError):
    """Another kerneye agent holds the lock."""


class ApiError(KerneyeError):
    """The local API could not be reached or answered an error."""
