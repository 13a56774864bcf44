"""Pre-flight checks and host set-up: privileges, BTF, mounts, single agent.

Each failure is a KerneyeError whose message names the problem and the fix.
"""
from __future__ import annotations

import fcntl
import os
import platform

from .errors import AlreadyRunning, ConfigError, KerneyeError, NotSupported

BTF_PATH = "/sys/kernel/btf/vmlinux"
BPFFS = "/sys/fs/bpf"
TRACEFS = "/sys/kernel/tracing"
RUN_DIR = "/run/kerneye"

# Capabilities kerneye needs: CAP_BPF and CAP_PERFMON (v5.8+) to load and
# attach tracing programs; CAP_SYS_ADMIN for mounts, cgroup attach and
# pre-5.8 kernels. CAP_SYS_RESOURCE is not needed: since v5.11 BPF memory is
# charged to the memory cgroup instead of RLIMIT_MEMLOCK.
NEEDED_CAPS = {21: "CAP_SYS_ADMIN", 38: "CAP_PERFMON", 39: "CAP_BPF"}


def effective_caps() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    caps = effective_caps()
    missing = [name for bit, name in NEEDED_CAPS.items() if not caps >> bit & 1]
    if missing:
        who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}"
        raise KerneyeError(
            f"kerneye needs {', '.join(missing)} to load BPF programs ({who} lacks them): run it as root, e.g. `sudo kerneye agent`"
        )


def check_btf() -> None:
    if not os.path.exists(BTF_PATH):
        raise NotSupported(
            "btf",
            f"this kernel ({platform.release()}) exposes no BTF at {BTF_PATH}: kerneye needs a kernel built "
            "with CONFIG_DEBUG_INFO_BTF=y (Linux >= 5.8; all major distributions ship it)",
            "5.8",
        )


def _mounted(path: str, fstype: str) -> bool:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[1] == path and parts[2] == fstype:
                return True
    return False


def mount_points(fstype: str) -> list[str]:
    """Where filesystems of this type are mounted (e.g. "cgroup2"), in
    /proc/self/mounts order."""
    with open("/proc/self/mounts") as f:
        return [p[1] for p in (ln.split() for ln in f) if len(p) > 2 and p[2] == fstype]


def ensure_mount(path: str, fstype: str) -> bool:
    """Mount fstype at path if it is not there. Returns True if we mounted it."""
    if _mounted(path, fstype):
        return False
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise KerneyeError(
            f"cannot mount {fstype} at {path}: {e.strerror}; mount it yourself (`mount -t {fstype} {fstype} {path}`)"
        ) from None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.mount(fstype.encode(), path.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise KerneyeError(
            f"cannot mount {fstype} at {path}: {os.strerror(err)}; mount it yourself (`mount -t {fstype} {fstype} {path}`) "
            "or run kerneye as root in the host mount namespace"
        )
    return True


class AgentLock:
    """One agent per host: an flock on /run/kerneye/agent.lock holding the PID."""

    def __init__(self, run_dir: str = RUN_DIR) -> None:
        self.path = os.path.join(run_dir, "agent.lock")
        self.run_dir = run_dir
        self.fd = -1

    def acquire(self) -> None:
        try:
            os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise ConfigError(f"cannot create {self.path}: {e.strerror}; run as root or pass a writable --run-dir") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise AlreadyRunning(
                f"another kerneye agent is already running (pid {other}, lock {self.path}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def sd_notify(state: str) -> bool:
    """Tell systemd about a state change (Type=notify units): "READY=1",
    "STOPPING=1". A no-op returning False outside such a unit, or if the
    notification socket cannot be reached."""
    import socket

    addr = os.environ.get("NOTIFY_SOCKET", "")
    if not addr or addr[0] not in "/@":
        return False
    if addr[0] == "@":
        addr = "\0" + addr[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(addr)
            s.sendall(state.encode())
    except OSError:
        return False
    return True
