"""The agent's gRPC API: FineGuidanceSensors and grpc.health.v1.Health.

Where it listens:
  * always ``unix://<run-dir>/kerneye.sock`` (default /run/kerneye): the
    socket is created 0600 in a 0700 directory, so only root can connect.
    gRPC exposes no peer credentials for Unix sockets to Python, so the
    file permissions are the access check (the kernel refuses connect(2)
    with EACCES to anyone else; the client turns that into "permission
    denied ... root").
  * with ``--server-address HOST:PORT`` also on TCP, with TLS
    (``--server-tls-cert-file``/``--server-tls-key-file``) and, with
    ``--server-tls-client-ca-files``, client-certificate authentication
    (mTLS). Plain TCP is refused unless ``--server-insecure`` is given.

Event path (the server is a Listener of the agent's fan-out):
  * ``on_event`` runs on the agent's decode thread and never blocks: for
    each GetEvents stream whose allow/deny FilterSet accepts the event it
    appends a shared work item to the stream's bounded queue, or counts a
    drop when the queue is full (a client that stops reading loses events,
    counted per stream, and slows nobody).
  * Each stream's gRPC worker thread pops items, converts them to
    GetEventsResponse (once per event for all streams without field
    filters; the bytes are shared), applies field filters and optional
    aggregation, and sends.
Redaction filters (``--redaction-filters``) apply to gRPC events too, as in
Tetragon; the JSON export's allow/deny lists do not.
"""
from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import grpc
from google.protobuf import json_format

from .. import __version__
from ..errors import ConfigError, KerneyeError
from ..events.event import Event
from ..export.fieldfilter import FieldFilter, apply_field_filters
from ..export.filters import Filter, FilterSet
from . import convert
from .v1 import events_pb2 as ev_pb
from .v1 import health_pb2 as health_pb
from .v1 import sensors_pb2 as pb

log = logging.getLogger("kerneye.api")

SERVICE = "kerneye.v1.FineGuidanceSensors"
HEALTH_SERVICE = "grpc.health.v1.Health"
DEFAULT_CLIENT_QUEUE = 10000   # events queued per GetEvents stream
DEFAULT_MAX_STREAMS = 32       # concurrent GetEvents streams
DEFAULT_AGG_WINDOW_S = 15.0
DEFAULT_AGG_BUFFER = 10000
MAX_MESSAGE = 16 << 20         # policies can be large YAML documents

_MODE_NAMES = {pb.TP_MODE_ENFORCE: "enforce", pb.TP_MODE_MONITOR: "monitor"}
_MODE_ENUM = {"enforce": pb.TP_MODE_ENFORCE, "monitor": pb.TP_MODE_MONITOR}
_STATE_ENUM = {"enabled": pb.TP_STATE_ENABLED, "disabled": pb.TP_STATE_DISABLED, "error": pb.TP_STATE_ERROR,
               "load_error": pb.TP_STATE_LOAD_ERROR}


class _Item:
    """One event on its way to the streams that accepted it; the protobuf
    bytes (and the redacted dict) are computed once, by whichever stream
    gets there first (a race only duplicates work)."""

    __slots__ = ("ev", "data", "dict")

    def __init__(self, ev: Event) -> None:
        self.ev = ev
        self.data: bytes | None = None
        self.dict: Any = None


class _Stream:
    """One GetEvents client: filters, a bounded queue and counters."""

    def __init__(self, sid: int, peer: str, filters: FilterSet, field_filters: list[FieldFilter],
                 agg: tuple[float, int] | None, maxq: int) -> None:
        self.id = sid
        self.peer = peer
        self.filters = filters
        self.check = None if filters.empty else filters.allows_event
        self.field_filters = field_filters
        self.agg = agg
        self.maxq = maxq
        self.q: deque[_Item] = deque()
        self.wake = threading.Event()
        self.waiting = False
        self.alive = True
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self.started = time.time()

    # producer side: the agent's thread
    def push(self, item: _Item) -> None:
        if len(self.q) >= self.maxq:
            self.dropped += 1
            return
        self.q.append(item)
        if self.waiting:
            self.wake.set()

    # consumer side: the stream's gRPC worker
    def pop(self, timeout: float) -> _Item | None:
        try:
            return self.q.popleft()
        except IndexError:
            pass
        self.wake.clear()
        self.waiting = True
        try:
            if not self.q and self.alive:  # re-check after announcing the wait
                self.wake.wait(timeout)
        finally:
            self.waiting = False
        try:
            return self.q.popleft()
        except IndexError:
            return None

    def close(self) -> None:
        self.alive = False
        self.wake.set()

    def stats(self) -> dict[str, Any]:
        return {"id": self.id, "peer": self.peer, "sent": self.sent, "dropped": self.dropped,
                "queued": len(self.q), "errors": self.errors, "filtered": not self.filters.empty,
                "field_filters": len(self.field_filters), "aggregation": self.agg is not None,
                "since": round(self.started, 3)}


def _identity(b: bytes) -> bytes:
    return b


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror}") from None


class GrpcServer:
    """FineGuidanceSensors + health on the local socket (and optional TCP)."""

    name = "api"

    def __init__(self, agent: Any, socket_path: str, *, address: str = "", tls_cert_file: str = "",
                 tls_key_file: str = "", tls_client_ca_files: list[str] | tuple[str, ...] = (),
                 insecure: bool = False, client_queue: int = DEFAULT_CLIENT_QUEUE,
                 max_streams: int = DEFAULT_MAX_STREAMS, redaction_filters: str = "") -> None:
        self.agent = agent
        self.path = socket_path
        self.address = address
        self.client_queue = max(1, client_queue)
        self.max_streams = max_streams
        self._streams: tuple[_Stream, ...] = ()  # copy-on-write: read lock-free by on_event
        self._lock = threading.Lock()
        self._next_id = 1
        self._gone_sent = 0
        self._gone_dropped = 0
        self.encode_errors = 0
        self._closing = threading.Event()
        self.redactor = None
        if redaction_filters:
            from ..export.redact import Redactor, parse_redaction_filter_lines

            self.redactor = Redactor(parse_redaction_filter_lines(redaction_filters))
        self.encoder = convert.EventEncoder()
        self.tcp_port = 0
        self.server = grpc.server(
            ThreadPoolExecutor(max_workers=max_streams + 16, thread_name_prefix="kerneye-api"),
            handlers=[self._service_handler(), self._health_handler()],
            options=[("grpc.max_receive_message_length", MAX_MESSAGE), ("grpc.so_reuseport", 0)],
        )
        self._bind_unix()
        if address:
            self._bind_tcp(address, tls_cert_file, tls_key_file, list(tls_client_ca_files), insecure)

    # --- listening -------------------------------------------------------------
    def _bind_unix(self) -> None:
        d = os.path.dirname(self.path)
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
            os.chmod(d, 0o700)
            if os.path.lexists(self.path):
                os.unlink(self.path)  # stale: we hold the agent lock
        except OSError as e:
            raise ConfigError(f"cannot serve the API at {self.path}: {e.strerror}; check --run-dir") from None
        old = os.umask(0o177)  # the socket is born 0600
        try:
            port = self.server.add_insecure_port("unix:" + os.path.abspath(self.path))
        except RuntimeError as e:
            port = 0
            log.debug("bind %s: %s", self.path, e)
        finally:
            os.umask(old)
        if not port:
            raise ConfigError(f"cannot serve the API at {self.path} (socket path too long or not writable); "
                              "check --run-dir")

    def _bind_tcp(self, address: str, cert: str, key: str, cas: list[str], insecure: bool) -> None:
        if ":" not in address:
            raise ConfigError(f"--server-address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:54321")
        if bool(cert) != bool(key):
            raise ConfigError("--server-tls-cert-file and --server-tls-key-file go together")
        if cas and not cert:
            raise ConfigError("--server-tls-client-ca-files needs --server-tls-cert-file and --server-tls-key-file")
        try:
            if cert:
                ca = b"".join(_read(p, "client CA file") for p in cas) or None
                creds = grpc.ssl_server_credentials([(_read(key, "TLS key"), _read(cert, "TLS certificate"))],
                                                    root_certificates=ca, require_client_auth=ca is not None)
                port = self.server.add_secure_port(address, creds)
            elif insecure:
                log.warning("serving the API on %s WITHOUT TLS or authentication (--server-insecure)", address)
                port = self.server.add_insecure_port(address)
            else:
                raise ConfigError(f"--server-address {address}: refusing plain TCP; give --server-tls-cert-file and "
                                  "--server-tls-key-file (and --server-tls-client-ca-files for client certificates), "
                                  "or --server-insecure to accept anyone who can reach the port")
        except RuntimeError as e:
            raise ConfigError(f"cannot listen on {address}: {e}") from None
        if not port:
            raise ConfigError(f"cannot listen on {address}: address in use or not local")
        self.tcp_port = port

    def start(self) -> None:
        self.server.start()
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def close(self) -> None:
        self._closing.set()
        with self._lock:
            streams = self._streams
        for s in streams:
            s.close()
        self.server.stop(grace=1.0).wait(3)
        try:
            os.unlink(self.path)
        except OSError:
            pass

    # --- Listener ----------------------------------------------------------------
    def on_event(self, ev: Event) -> None:
        streams = self._streams
        if not streams:
            return
        item = None
        for s in streams:
            chk = s.check
            if chk is not None:
                try:
                    if not chk(ev):
                        continue
                except Exception:  # noqa: BLE001 - filters do not raise; never let one stop the fan-out
                    s.errors += 1
                    continue
            if item is None:
                item = _Item(ev)
            s.push(item)

    def flush(self) -> None:
        pass

    @property
    def exported(self) -> int:
        """Events delivered to GetEvents clients (status: exported.api)."""
        return self._gone_sent + sum(s.sent for s in self._streams)

    def dropped(self) -> int:
        """Events lost by slow clients, gone ones included (status: lost.api_clients)."""
        return self._gone_dropped + sum(s.dropped for s in self._streams)

    def clients(self) -> list[dict[str, Any]]:
        return [s.stats() for s in self._streams]

    def stats(self) -> dict[str, Any]:
        return {"streams": self.clients(), "sent": self.exported, "dropped": self.dropped(),
                "encode_errors": self.encode_errors, "encoded": {"fast": self.encoder.fast, "slow": self.encoder.slow},
                "client_queue": self.client_queue,
                "listen": ["unix:" + self.path] + ([self.address] if self.address else [])}

    # --- service wiring ---------------------------------------------------------------
    def _service_handler(self) -> grpc.GenericRpcHandler:
        def unary(fn: Callable[[Any], Any], req_cls: Any, resp_cls: Any) -> grpc.RpcMethodHandler:
            def handler(req: Any, ctx: grpc.ServicerContext) -> Any:
                try:
                    return fn(req)
                except KerneyeError as e:
                    msg = str(e) or type(e).__name__
                    code = grpc.StatusCode.INVALID_ARGUMENT
                    if msg.startswith("no policy named"):
                        code = grpc.StatusCode.NOT_FOUND
                    elif "not loaded" in msg:
                        code = grpc.StatusCode.FAILED_PRECONDITION
                    ctx.abort(code, msg)
                except Exception as e:  # noqa: BLE001 - one line to the client, details in the log
                    log.warning("API %s failed", fn.__name__, exc_info=True)
                    ctx.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(e).__name__}: {e}")
            return grpc.unary_unary_rpc_method_handler(handler, request_deserializer=req_cls.FromString,
                                                       response_serializer=resp_cls.SerializeToString)

        methods = {
            "GetEvents": grpc.unary_stream_rpc_method_handler(
                self._get_events, request_deserializer=ev_pb.GetEventsRequest.FromString,
                response_serializer=_identity),  # the handler yields serialized GetEventsResponse
            "GetHealth": unary(self.get_health, pb.GetHealthStatusRequest, pb.GetHealthStatusResponse),
            "AddTracingPolicy": unary(self.add_tracing_policy, pb.AddTracingPolicyRequest,
                                      pb.AddTracingPolicyResponse),
            "DeleteTracingPolicy": unary(self.delete_tracing_policy, pb.DeleteTracingPolicyRequest,
                                         pb.DeleteTracingPolicyResponse),
            "ListTracingPolicies": unary(self.list_tracing_policies, pb.ListTracingPoliciesRequest,
                                         pb.ListTracingPoliciesResponse),
            "ConfigureTracingPolicy": unary(self.configure_tracing_policy, pb.ConfigureTracingPolicyRequest,
                                            pb.ConfigureTracingPolicyResponse),
            "GetVersion": unary(self.get_version, pb.GetVersionRequest, pb.GetVersionResponse),
            "GetInfo": unary(self.get_info, pb.GetInfoRequest, pb.GetInfoResponse),
            "GetStatus": unary(self.get_status, pb.GetStatusRequest, pb.GetStatusResponse),
        }
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    def _health_handler(self) -> grpc.GenericRpcHandler:
        methods = {
            "Check": grpc.unary_unary_rpc_method_handler(
                self._health_check, request_deserializer=health_pb.HealthCheckRequest.FromString,
                response_serializer=health_pb.HealthCheckResponse.SerializeToString),
            "List": grpc.unary_unary_rpc_method_handler(
                self._health_list, request_deserializer=health_pb.HealthListRequest.FromString,
                response_serializer=health_pb.HealthListResponse.SerializeToString),
            "Watch": grpc.unary_stream_rpc_method_handler(
                self._health_watch, request_deserializer=health_pb.HealthCheckRequest.FromString,
                response_serializer=health_pb.HealthCheckResponse.SerializeToString),
        }
        return grpc.method_handlers_generic_handler(HEALTH_SERVICE, methods)

    # --- grpc.health.v1 ---------------------------------------------------------------
    def _serving(self, service: str) -> Any:
        if service not in ("", SERVICE):
            return None
        ok = bool(getattr(self.agent, "ready", False)) and not self._closing.is_set()
        return health_pb.HealthCheckResponse.SERVING if ok else health_pb.HealthCheckResponse.NOT_SERVING

    def _health_check(self, req: Any, ctx: grpc.ServicerContext) -> Any:
        st: Any = self._serving(req.service)
        if st is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, f"unknown service {req.service!r}")
        return health_pb.HealthCheckResponse(status=st)

    def _health_list(self, req: Any, ctx: grpc.ServicerContext) -> Any:
        out = health_pb.HealthListResponse()
        for svc in ("", SERVICE):
            out.statuses[svc].status = self._serving(svc)
        return out

    def _health_watch(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[Any]:
        last: Any = -1
        while ctx.is_active():
            st: Any = self._serving(req.service)
            if st is None:
                st = health_pb.HealthCheckResponse.SERVICE_UNKNOWN
            if st != last:
                last = st
                yield health_pb.HealthCheckResponse(status=st)
            if self._closing.wait(1.0):
                yield health_pb.HealthCheckResponse(status=health_pb.HealthCheckResponse.NOT_SERVING)
                return

    # --- FineGuidanceSensors: unary RPCs --------------------------------------------------
    def get_health(self, req: Any) -> Any:
        a = self.agent
        out = pb.GetHealthStatusResponse()
        ready = bool(getattr(a, "ready", False))
        out.health_status.add(event=pb.HEALTH_STATUS_TYPE_STATUS, name="agent",
                              status=pb.HEALTH_STATUS_RUNNING if ready else pb.HEALTH_STATUS_STOPPED,
                              details="running" if ready else "not ready")
        sensors = getattr(getattr(a, "sensors", None), "sensors", [])
        for s in sensors:
            state = {"loaded": pb.HEALTH_STATUS_RUNNING, "error": pb.HEALTH_STATUS_ERROR}.get(
                s.state, pb.HEALTH_STATUS_STOPPED)
            out.health_status.add(event=pb.HEALTH_STATUS_TYPE_STATUS, name=f"sensor/{s.name}", status=state,
                                  details=s.error or f"{s.state}: {', '.join(s.programs())}")
        return out

    def add_tracing_policy(self, req: Any) -> Any:
        r = self.agent.policy_command({"cmd": "tp_add", "yaml": req.yaml, "source": req.source or "<api>",
                                       "mode": _MODE_NAMES.get(req.mode)})
        return pb.AddTracingPolicyResponse(name=r["name"], mode=_MODE_ENUM.get(r.get("mode", ""), pb.TP_MODE_UNKNOWN),
                                           hooks=int(r.get("hooks", 0)), rules=int(r.get("rules", 0)))

    def delete_tracing_policy(self, req: Any) -> Any:
        self.agent.policy_command({"cmd": "tp_delete", "name": req.name})
        return pb.DeleteTracingPolicyResponse()

    def list_tracing_policies(self, req: Any) -> Any:
        r = self.agent.policy_command({"cmd": "tp_list"})
        out = pb.ListTracingPoliciesResponse()
        for p in r.get("policies", []):
            st = out.policies.add(name=p.get("name", ""), error=p.get("error", "") or "",
                                  source=p.get("source", "") or "",
                                  state=_STATE_ENUM.get(p.get("state", ""), pb.TP_STATE_UNKNOWN),
                                  mode=_MODE_ENUM.get(p.get("mode", ""), pb.TP_MODE_UNKNOWN))
            st.hooks.extend(str(h) for h in p.get("hooks", []))
            st.kind = p.get("kind", "TracingPolicy")
            st.warnings.extend(p.get("warnings", []))
            for e in p.get("enforcement", []):
                st.enforcement.add(id=e["id"], op=e["op"], action=e["action"], mechanism=e["mechanism"],
                                   where=e["where"], decisions=e["decisions"])
            for k in ("npost", "nenforce", "nmonitor", "nratelimited", "nlost"):
                setattr(st.stats, k, int(p.get(k, 0) or 0))
        for k, v in (r.get("features") or {}).items():
            out.features[k] = str(v)
        return out

    def configure_tracing_policy(self, req: Any) -> Any:
        if req.HasField("enable"):
            self.agent.policy_command({"cmd": "tp_enable" if req.enable else "tp_disable", "name": req.name})
        if req.HasField("mode"):
            mode = _MODE_NAMES.get(req.mode)
            if mode is None:
                raise KerneyeError(f"mode must be TP_MODE_MONITOR or TP_MODE_ENFORCE, not {req.mode}")
            self.agent.policy_command({"cmd": "tp_set_mode", "name": req.name, "mode": mode})
        return pb.ConfigureTracingPolicyResponse()

    def get_version(self, req: Any) -> Any:
        return pb.GetVersionResponse(version=__version__)

    def get_info(self, req: Any) -> Any:
        a = self.agent
        st = a.status()
        out = pb.GetInfoResponse(version=__version__, name=st.get("node_name", ""), kernel=os.uname().release,
                                 pid=os.getpid(), uptime_s=float(st.get("uptime_s", 0.0)))
        for name, v in sorted((st.get("hook_backends") or {}).items()):
            ok = v == "available"
            out.probes.add(name=name, enabled=ok, details="" if ok else str(v))
        return out

    def get_status(self, req: Any) -> Any:
        return pb.GetStatusResponse(json=json.dumps(self.agent.status()))

    # --- GetEvents -------------------------------------------------------------------------
    @staticmethod
    def parse_request(req: Any) -> tuple[FilterSet, list[FieldFilter], tuple[float, int] | None]:
        """GetEventsRequest -> (FilterSet, field filters, aggregation); the
        filter dicts are the protobuf JSON form, i.e. Tetragon's filter JSON."""
        def fdict(m: Any) -> dict[str, Any]:
            return json_format.MessageToDict(m, preserving_proto_field_name=True)

        allow = [Filter.from_dict(fdict(f)) for f in req.allow_list]
        deny = [Filter.from_dict(fdict(f)) for f in req.deny_list]
        ffs = []
        for ff in req.field_filters:
            d: dict[str, Any] = {"fields": ff.fields, "action": ev_pb.FieldFilterAction.Name(ff.action),
                                 "event_set": [ev_pb.EventType.Name(e) for e in ff.event_set]}
            if ff.HasField("invert_event_set"):
                d["invert_event_set"] = ff.invert_event_set.value
            ffs.append(FieldFilter.from_dict(d))
        agg = None
        if req.HasField("aggregation_options"):
            o = req.aggregation_options
            w = o.window_size.ToTimedelta().total_seconds() if o.HasField("window_size") else 0.0
            agg = (w if w > 0 else DEFAULT_AGG_WINDOW_S, int(o.channel_buffer_size) or DEFAULT_AGG_BUFFER)
        return FilterSet(allow, deny), ffs, agg

    def _get_events(self, req: Any, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            filters, ffs, agg = self.parse_request(req)
        except KerneyeError as e:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad GetEvents request: {e}")
        with self._lock:
            if len(self._streams) >= self.max_streams:
                ctx.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"too many GetEvents streams ({self.max_streams}); close one and retry")
            s = _Stream(self._next_id, ctx.peer(), filters, ffs, agg, self.client_queue)
            self._next_id += 1
            self._streams = self._streams + (s,)
        ctx.add_callback(lambda: self._remove(s))  # client gone or server stopping: wake the loop
        log.debug("GetEvents stream %d from %s", s.id, s.peer)
        try:
            ctx.send_initial_metadata(())  # the client knows it is subscribed before the first event
            if agg is None:
                yield from self._stream_plain(s)
            else:
                yield from self._stream_aggregated(s, *agg)
        finally:
            self._remove(s)

    def _remove(self, s: _Stream) -> None:
        """Detach a stream (idempotent; from its handler or gRPC's callback)."""
        s.close()
        with self._lock:
            if s not in self._streams:
                return
            self._streams = tuple(x for x in self._streams if x is not s)
            # counted as gone now; a message in flight may still add to s.sent
            self._gone_sent += s.sent
            self._gone_dropped += s.dropped
        log.debug("GetEvents stream %d closed: sent %d, dropped %d", s.id, s.sent, s.dropped)

    def _event_dict(self, item: _Item) -> Any:
        d = item.dict
        if d is None:
            ev = item.ev
            # the Event's cached dict if a filter built it; else a private one,
            # so that queued Events do not each pin a dict
            d = ev._dict if ev._dict is not None else json.loads(ev.to_json())
            if self.redactor is not None:
                d = self.redactor.apply(d)
            item.dict = d
        return d

    def _encode(self, item: _Item, s: _Stream) -> bytes | None:
        try:
            if not s.field_filters:
                data = item.data
                if data is None:
                    if self.redactor is None:
                        data = self.encoder.encode(item.ev)
                    else:
                        data = self.encoder.encode_slow(item.ev, self._event_dict(item))
                    item.data = data
                    item.dict = None  # the bytes are what other streams need; free the dict
                return data
            d = apply_field_filters(s.field_filters, self._event_dict(item))
            return convert.to_message(d, ev_pb.GetEventsResponse).SerializeToString()
        except Exception:  # noqa: BLE001 - one bad event must not end the stream
            s.errors += 1
            self.encode_errors += 1
            if self.encode_errors <= 10:
                log.warning("cannot encode a %s event for gRPC", item.ev.kind, exc_info=True)
            return None

    def _stream_plain(self, s: _Stream) -> Iterator[bytes]:
        while s.alive:
            item = s.pop(1.0)
            if item is None:
                continue
            data = self._encode(item, s)
            if data is None:
                continue
            yield data
            s.sent += 1

    def _stream_aggregated(self, s: _Stream, window: float, bound: int) -> Iterator[bytes]:
        """Events identical but for their time, seen in one window, are sent
        once at the window's end with aggregation_info.count (the first
        one's time); at most `bound` distinct events are held."""
        buf: dict[str, list[Any]] = {}
        deadline = time.monotonic() + window

        def drain() -> Iterator[bytes]:
            for d, n in buf.values():
                try:
                    m = convert.to_message(d, ev_pb.GetEventsResponse)
                    m.aggregation_info.count = n
                    data = m.SerializeToString()
                except Exception:  # noqa: BLE001
                    s.errors += 1
                    continue
                yield data
                s.sent += 1
            buf.clear()

        while s.alive:
            item = s.pop(max(0.0, min(1.0, deadline - time.monotonic())))
            if item is not None:
                try:
                    d = apply_field_filters(s.field_filters, self._event_dict(item))
                    key = json.dumps({k: v for k, v in d.items() if k != "time"}, sort_keys=True)
                except Exception:  # noqa: BLE001
                    s.errors += 1
                    continue
                hit = buf.get(key)
                if hit is None:
                    buf[key] = [d, 1]
                else:
                    hit[1] += 1
            if time.monotonic() >= deadline or len(buf) >= bound:
                yield from drain()
                deadline = time.monotonic() + window
        yield from drain()
