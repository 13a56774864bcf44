"""gRPC client of the agent's API (used by the CLI and tests).

Errors a script can rely on:
  * :class:`~kerneye.errors.ApiError` (CLI exit 3): the agent cannot be
    reached, or refuses who we are: "... not running ..." (no socket, or
    nobody listening), "permission denied ... root" (the socket is root
    only), TLS handshake failures, time-outs.
  * :class:`~kerneye.errors.KerneyeError` (CLI exit 1): the agent answered
    and refused the request (bad policy, unknown policy name, bad filter);
    the message is the agent's.
"""
from __future__ import annotations

import errno
import json
import os
import socket
from dataclasses import dataclass
from typing import Any, Iterator

import grpc

from ..errors import ApiError, KerneyeError
from .v1 import events_pb2 as ev_pb
from .v1 import health_pb2 as health_pb
from .v1 import health_pb2_grpc as health_grpc
from .v1 import sensors_pb2 as pb
from .v1 import sensors_pb2_grpc as pb_grpc

DEFAULT_SOCKET = "/run/kerneye/kerneye.sock"
MAX_MESSAGE = 16 << 20
MODE_NAMES = {pb.TP_MODE_ENFORCE: "enforce", pb.TP_MODE_MONITOR: "monitor", pb.TP_MODE_UNKNOWN: ""}
MODE_ENUM = {"enforce": pb.TP_MODE_ENFORCE, "monitor": pb.TP_MODE_MONITOR}
STATE_NAMES = {pb.TP_STATE_ENABLED: "enabled", pb.TP_STATE_DISABLED: "disabled", pb.TP_STATE_ERROR: "error",
               pb.TP_STATE_LOAD_ERROR: "error", pb.TP_STATE_UNKNOWN: "unknown",
               pb.TP_STATE_LOADING: "loading", pb.TP_STATE_UNLOADING: "unloading"}


def socket_path() -> str:
    return os.environ.get("KERNEYE_SOCKET", DEFAULT_SOCKET)


@dataclass
class Endpoint:
    """Where the agent's API is: a Unix socket path, or TCP HOST:PORT with
    optional TLS (CA to verify the server, client certificate and key)."""

    socket: str = ""
    server_address: str = ""
    tls_ca_file: str = ""
    tls_cert_file: str = ""
    tls_key_file: str = ""
    tls_server_name: str = ""
    timeout: float = 30.0

    @property
    def target(self) -> str:
        if self.server_address:
            return self.server_address
        return "unix:" + os.path.abspath(self.socket or socket_path())

    @property
    def where(self) -> str:
        return self.server_address or (self.socket or socket_path())

    @property
    def tls(self) -> bool:
        return bool(self.tls_ca_file or self.tls_cert_file)


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise KerneyeError(f"cannot read {what} {path}: {e.strerror}") from None


def check_unix_socket(path: str) -> None:
    """connect(2) once to turn ENOENT/ECONNREFUSED/EACCES into clear errors
    (gRPC only says "UNAVAILABLE")."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
    except OSError as e:
        if e.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTDIR):
            raise ApiError(f"the kerneye agent is not running (no API at {path}); start it with `make run` "
                           "or `kerneye agent`") from None
        if e.errno in (errno.EACCES, errno.EPERM):
            raise ApiError(f"permission denied on {path}: the kerneye API is for root only; run as root") from None
        raise ApiError(f"cannot reach the kerneye agent at {path}: {e.strerror}") from None
    finally:
        s.close()


class Client:
    """One channel to the agent; methods raise ApiError/KerneyeError."""

    def __init__(self, ep: Endpoint | None = None, **kw: Any) -> None:
        self.ep = ep or Endpoint(**kw)
        ep = self.ep
        if not ep.server_address:
            check_unix_socket(os.path.abspath(ep.socket or socket_path()))
        options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_MESSAGE),
                                          ("grpc.max_send_message_length", MAX_MESSAGE)]
        if ep.server_address and ep.tls:
            if bool(ep.tls_cert_file) != bool(ep.tls_key_file):
                raise KerneyeError("--tls-cert-file and --tls-key-file go together")
            creds = grpc.ssl_channel_credentials(
                root_certificates=_read(ep.tls_ca_file, "TLS CA file") if ep.tls_ca_file else None,
                private_key=_read(ep.tls_key_file, "TLS key") if ep.tls_key_file else None,
                certificate_chain=_read(ep.tls_cert_file, "TLS certificate") if ep.tls_cert_file else None)
            if ep.tls_server_name:
                options.append(("grpc.ssl_target_name_override", ep.tls_server_name))
            self.channel = grpc.secure_channel(ep.target, creds, options=options)
        else:
            self.channel = grpc.insecure_channel(ep.target, options=options)
        self.stub = pb_grpc.FineGuidanceSensorsStub(self.channel)
        self.health_stub = health_grpc.HealthStub(self.channel)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- errors ------------------------------------------------------------------
    def error(self, e: grpc.RpcError) -> KerneyeError:
        code = e.code() if hasattr(e, "code") else None
        details = (e.details() if hasattr(e, "details") else "") or str(code)
        where = self.ep.where
        if code == grpc.StatusCode.UNAVAILABLE:
            low = details.lower()
            if "handshake" in low or "ssl" in low or "tls" in low or "certificate" in low:
                return ApiError(f"TLS handshake with {where} failed ({details}); check --tls-ca-file and the client "
                                "certificate (--tls-cert-file/--tls-key-file)")
            if not self.ep.server_address:
                return ApiError(f"the kerneye agent is not running (no API at {where}): {details}")
            return ApiError(f"cannot reach the kerneye agent at {where}: {details}")
        if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
            return ApiError(f"permission denied by {where}: {details}")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ApiError(f"the kerneye agent at {where} did not answer within {self.ep.timeout:g}s")
        if code == grpc.StatusCode.CANCELLED:
            return ApiError(f"the call to {where} was cancelled: {details}")
        return KerneyeError(details)  # the agent refused the request: exit 1

    def _call(self, method: Any, req: Any) -> Any:
        try:
            return method(req, timeout=self.ep.timeout)
        except grpc.RpcError as e:
            raise self.error(e) from None

    # --- RPCs --------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        return json.loads(self._call(self.stub.GetStatus, pb.GetStatusRequest()).json)

    def health(self) -> list[Any]:
        return list(self._call(self.stub.GetHealth, pb.GetHealthStatusRequest()).health_status)

    def check(self, service: str = "") -> str:
        """grpc.health.v1 Check: SERVING, NOT_SERVING, ..."""
        r = self._call(self.health_stub.Check, health_pb.HealthCheckRequest(service=service))
        return health_pb.HealthCheckResponse.ServingStatus.Name(r.status)

    def version(self) -> str:
        return self._call(self.stub.GetVersion, pb.GetVersionRequest()).version

    def info(self) -> Any:
        return self._call(self.stub.GetInfo, pb.GetInfoRequest())

    def add_policy(self, yaml_text: str, mode: str | None = None, source: str = "") -> dict[str, Any]:
        r = self._call(self.stub.AddTracingPolicy, pb.AddTracingPolicyRequest(
            yaml=yaml_text, mode=MODE_ENUM.get(mode or "", pb.TP_MODE_UNKNOWN), source=source))
        return {"ok": True, "name": r.name, "mode": MODE_NAMES.get(r.mode, ""), "hooks": r.hooks, "rules": r.rules}

    def delete_policy(self, name: str) -> None:
        self._call(self.stub.DeleteTracingPolicy, pb.DeleteTracingPolicyRequest(name=name))

    def configure_policy(self, name: str, enable: bool | None = None, mode: str | None = None) -> None:
        req = pb.ConfigureTracingPolicyRequest(name=name)
        if enable is not None:
            req.enable = enable
        if mode is not None:
            if mode not in MODE_ENUM:
                raise KerneyeError(f"mode must be monitor or enforce, not {mode!r}")
            req.mode = MODE_ENUM[mode]
        self._call(self.stub.ConfigureTracingPolicy, req)

    def list_policies(self) -> dict[str, Any]:
        """{"policies": [{name, state, mode, hooks, error, source, npost, ...}], "features": {...}}
        (the shape `kerneye tracingpolicy list -o json` prints)."""
        r = self._call(self.stub.ListTracingPolicies, pb.ListTracingPoliciesRequest())
        out = []
        for p in r.policies:
            s = p.stats
            out.append({"name": p.name, "state": STATE_NAMES.get(p.state, "unknown"), "mode": MODE_NAMES.get(p.mode, ""),
                        "hooks": list(p.hooks), "error": p.error, "source": p.source, "npost": s.npost,
                        "nenforce": s.nenforce, "nmonitor": s.nmonitor, "nratelimited": s.nratelimited,
                        "nlost": s.nlost, "kind": p.kind,
                        "enforcement": [{"id": e.id, "op": e.op, "action": e.action, "mechanism": e.mechanism,
                                         "where": e.where, "decisions": e.decisions} for e in p.enforcement],
                        "warnings": list(p.warnings)})
        return {"policies": out, "features": dict(r.features)}

    def events(self, req: Any | None = None, wait_ready: bool = True) -> "EventStream":
        """Open a GetEvents stream (an iterator of GetEventsResponse).
        With wait_ready, return only once the agent has registered it."""
        try:
            call = self.stub.GetEvents(req or ev_pb.GetEventsRequest())
            if wait_ready:
                call.initial_metadata()
        except grpc.RpcError as e:
            raise self.error(e) from None
        return EventStream(self, call)


class EventStream:
    """Iterates GetEventsResponse messages; maps gRPC errors; cancel() ends it."""

    def __init__(self, client: Client, call: Any) -> None:
        self.client = client
        self.call = call

    def __iter__(self) -> Iterator[Any]:
        try:
            for msg in self.call:
                yield msg
        except grpc.RpcError as e:
            if self.call.code() == grpc.StatusCode.CANCELLED:
                return
            # a stream that ends because the agent stopped is "unreachable" (3)
            raise self.client.error(e) from None

    def cancel(self) -> None:
        self.call.cancel()


# --- helpers ------------------------------------------------------------------

def event_types(names: list[str]) -> list[Any]:
    """PROCESS_EXEC / process_exec -> EventType numbers; ConfigError on unknown."""
    from ..errors import ConfigError

    out = []
    for n in names:
        for part in n.split(","):
            key = part.strip().upper()
            if not key:
                continue
            try:
                out.append(ev_pb.EventType.Value(key))
            except ValueError:
                known = ", ".join(v.name for v in ev_pb.EventType.DESCRIPTOR.values if v.number)
                raise ConfigError(f"unknown event type {part!r}; expected one of: {known}") from None
    return out
