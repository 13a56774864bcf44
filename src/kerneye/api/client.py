"""Command-style client of the agent's API, kept for scripts and tests that
predate the gRPC API: ``request(socket_path, {"cmd": ...})`` with the old
command names, each mapped onto one gRPC call (see grpc_client for the
full client).

    {"cmd": "status"}                                    -> GetStatus (the status dict)
    {"cmd": "tp_add", "yaml": ..., "mode": ..., "source": ...} -> AddTracingPolicy
    {"cmd": "tp_list"}                                   -> ListTracingPolicies
    {"cmd": "tp_delete"|"tp_enable"|"tp_disable", "name": ...}
    {"cmd": "tp_set_mode", "name": ..., "mode": ...}     -> ConfigureTracingPolicy

Errors: ApiError when the agent cannot be reached or refuses the caller
(not running, not root), KerneyeError when it refuses the request.
"""
from __future__ import annotations

from typing import Any

from ..errors import KerneyeError
from .grpc_client import DEFAULT_SOCKET, Client, Endpoint, socket_path

__all__ = ["DEFAULT_SOCKET", "request", "socket_path"]


def request(path: str, req: dict[str, Any]) -> dict[str, Any]:
    cmd = req.get("cmd")
    with Client(Endpoint(socket=path)) as c:
        if cmd == "status":
            return c.status()
        if cmd == "tp_add":
            return c.add_policy(req.get("yaml", ""), req.get("mode") or None, req.get("source") or "")
        if cmd == "tp_list":
            return c.list_policies()
        name = req.get("name", "")
        if cmd == "tp_delete":
            c.delete_policy(name)
        elif cmd in ("tp_enable", "tp_disable"):
            c.configure_policy(name, enable=cmd == "tp_enable")
        elif cmd == "tp_set_mode":
            c.configure_policy(name, mode=req.get("mode", ""))
        else:
            raise KerneyeError(f"unknown command {cmd!r}")
        return {"ok": True}
