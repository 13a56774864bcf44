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
    export_file_rotation_interval_s: float = 0.0  # 0 = rotate by size only
    export_file_compress: bool = False  # gzip rotated backups (path.1.gz ...)
    export_file_perm: int = 0o600
    # JSON lines (or @FILE) as Tetragon's flags; see kerneye.export.filters / fieldfilter / redact
    export_allowlist: str = ""
    export_denylist: str = ""
    field_filters: str = ""
    redaction_filters: str = ""
    export_rate_limit: int = -1  # events per minute; -1 unlimited, 0 exports nothing
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
    keep_enforcement_on_exit: bool = False  # pinned cgroup-BPF/LSM enforcement outlives the agent
    policy_events_full_process: bool = False  # caps/ns/creds in process_kprobe etc. too  # override for every static policy: monitor | enforce
    api: bool = True
    # gRPC API: always unix://<run_dir>/kerneye.sock; optionally TCP (TLS unless insecure)
    server_address: str = ""  # HOST:PORT
    server_tls_cert_file: str = ""
    server_tls_key_file: str = ""
    server_tls_client_ca_files: list[str] = field(default_factory=list)  # require client certs signed by these
    server_insecure: bool = False  # allow plain TCP (no TLS, no authentication)
    api_client_queue_size: int = 10000  # events queued per GetEvents stream before drops
    metrics_server: str = ""  # --metrics-server HOST:PORT or :PORT; "" = no metrics endpoint
    log_level: str = "info"

    def __post_init__(self) -> None:
        if not self.node_name:
            self.node_name = socket.gethostname()
        if not self.bpf_dir:
            self.bpf_dir = default_bpf_dir()

    @property
    def socket_path(self) -> str:
        return os.path.join(self.run_dir, "kerneye.sock")
