"""Client side of the local API (used by `kerneye getevents` / `status`)."""
from __future__ import annotations

import errno
import json
import os
import socket
from typing import Any, Iterator

from ..errors import ApiError, KerneyeError

DEFAULT_SOCKET = "/run/kerneye/kerneye.sock"


def _connect(path: str) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        s.close()
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise ApiError(f"the kerneye agent is not running (no API at {path}); start it with `make run` "
                           "or `kerneye agent`") from None
        if e.errno == errno.EACCES:
            raise ApiError(f"permission denied on {path}: the kerneye API is for root only; run as root") from None
        raise ApiError(f"cannot reach the kerneye agent at {path}: {e.strerror}") from None
    return s


def request(path: str, req: dict[str, Any]) -> dict[str, Any]:
    s = _connect(path)
    try:
        s.sendall((json.dumps(req) + "\n").encode())
        line = s.makefile("rb").readline()
    finally:
        s.close()
    if not line:
        raise ApiError("the kerneye agent closed the connection without answering")
    out = json.loads(line)
    if "error" in out:
        if out["error"].startswith("permission denied"):
            raise ApiError(out["error"])
        raise KerneyeError(out["error"])  # the agent refused the request: exit 1, not "unreachable"
    return out


def stream_events(path: str, flt: dict[str, Any]) -> Iterator[str]:
    """Yield event JSON lines until the agent goes away."""
    s = _connect(path)
    try:
        s.sendall((json.dumps({"cmd": "getevents", "filter": flt}) + "\n").encode())
        f = s.makefile("rb")
        first = f.readline()
        if not first:
            raise ApiError("the kerneye agent closed the connection without answering")
        hdr = json.loads(first)
        if "error" in hdr:
            raise ApiError(hdr["error"])
        for line in f:
            yield line.decode("utf-8", "replace").rstrip("\n")
    finally:
        s.close()


def socket_path() -> str:
    return os.environ.get("KERNEYE_SOCKET", DEFAULT_SOCKET)
