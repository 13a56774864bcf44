"""The /metrics HTTP endpoint (`kerneye agent --metrics-server ADDR`).

ADDR is HOST:PORT, :PORT (every IPv4 interface, as in Tetragon's
`--metrics-server :2112`) or [IPV6]:PORT. Port 0 picks a free port (see
`MetricsServer.port`). client_python's threaded WSGI server serves the
registry (start_http_server returns its server and thread since
prometheus-client 0.20, so the agent can stop it); every path answers with
the metrics.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from prometheus_client import start_http_server
from prometheus_client.registry import CollectorRegistry

from ..errors import ConfigError

log = logging.getLogger("kerneye.metrics")


def parse_addr(addr: str) -> tuple[str, int]:
    """'127.0.0.1:2112' -> ('127.0.0.1', 2112); ':2112' -> ('0.0.0.0', 2112);
    '[::1]:2112' -> ('::1', 2112)."""
    host, sep, port_s = addr.strip().rpartition(":")
    if not sep:
        raise ConfigError(f"--metrics-server {addr!r}: expected HOST:PORT or :PORT (e.g. 127.0.0.1:2112)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigError(f"--metrics-server {addr!r}: write IPv6 addresses in brackets, e.g. [::1]:2112")
    try:
        port = int(port_s)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-server {addr!r}: the port must be a number from 0 to 65535")
    return host or "0.0.0.0", port


class MetricsServer:
    def __init__(self, addr: str, registry: CollectorRegistry) -> None:
        self.host, self._port = parse_addr(addr)
        self.registry = registry
        self._httpd: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1]) if self._httpd is not None else self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        try:
            self._httpd, self._thread = start_http_server(self._port, addr=self.host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {self.host}:{self._port}: {e.strerror or e}; "
                              "choose another --metrics-server address") from None
        self._thread.name = "kerneye-metrics"
        log.info("metrics on %s", self.url)

    def close(self) -> None:
        if self._httpd is None:
            return
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None
