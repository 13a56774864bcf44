"""Agent options. One dataclass; the CLI maps flags onto it one to one."""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field

_HERE = os.path.dirname(os.path.abspath(__file__))


def default_bpf_dir() -> str:
    """$KERNEYE_BPF_LIB, else the source tree's bpf/.output, else
    /usr/lib/kerneye/bpf."""
    env = os.environ.get("KERNEYE_BPF_LIB")
    if env:
        return env
    tree = os.path.normpath(os.path.join(_HERE, "..", "..", "bpf", ".output"))
    if os.path.isdir(tree):
        return tree
    return "/usr/lib/kerneye/bpf"


@dataclass
class AgentConfig:
    node_name: str = ""
    bpf_dir: str = ""
    run_dir: str = "/run/kerneye"
    export_file: str = ""
    export_file_max_size_mb: float = 10.0
    export_file_max_backups: int = 5
    output: str = "compact"  # stdout: compact | json | none
    color: bool = False
    enable_ancestors: bool = False
    rb_size: int = 16 << 20
    rb_wakeup_bytes: int = 256 << 10
    rb_poll_ms: float = 10.0
    queue_batches: int = 64
    process_cache_size: int = 65536
    process_cache_grace_s: float = 30.0
    procfs_scan: bool = True
    tracing_policies: list[str] = field(default_factory=list)
    tracing_policy_dir: str = ""
    policy_mode: str = ""
    policy_events_full_process: bool = False  # caps/ns/creds in process_kprobe etc. too  # override for every static policy: monitor | enforce
    api: bool = True
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.node_name:
            self.node_name = socket.gethostname()
        if not self.bpf_dir:
            self.bpf_dir = default_bpf_dir()

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, "kerneye.sock")
