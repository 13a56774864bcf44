"""Client commands of the CLI, on the agent's gRPC API: getevents,
tracingpolicy (tp), status, version, info; plus the agent's API flags.

Exit codes (as every kerneye command): 0 ok, 1 the agent refused the
request (or an error), 2 bad usage, 3 the agent is unreachable or refuses
the caller ("not running", "permission denied ... root", TLS failures).
"""
from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import time
from typing import Any, Iterable, Iterator

from .. import __version__
from ..errors import ApiError, ConfigError, KerneyeError


# --- flags -----------------------------------------------------------------------

def _duration(v: str) -> float:
    """2s, 500ms, 1m, 3 -> seconds."""
    s = v.strip().lower()
    for suffix, mult in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if s.endswith(suffix):
            s, m = s[: -len(suffix)], mult
            break
    else:
        m = 1.0
    try:
        return float(s) * m
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a duration: {v!r} (examples: 2s, 500ms, 1m)") from None


def add_agent_api_flags(a: argparse.ArgumentParser) -> None:
    """The agent's gRPC server flags (the Unix socket is <run-dir>/kerneye.sock)."""
    a.add_argument("--server-address", default="", metavar="HOST:PORT",
                   help="also serve the gRPC API on TCP (needs TLS flags or --server-insecure)")
    a.add_argument("--server-tls-cert-file", default="", metavar="FILE", help="TLS certificate (PEM) for TCP")
    a.add_argument("--server-tls-key-file", default="", metavar="FILE", help="TLS private key (PEM) for TCP")
    a.add_argument("--server-tls-client-ca-files", action="append", default=[], metavar="FILE",
                   help="require TCP clients to present a certificate signed by one of these CAs (repeatable)")
    a.add_argument("--server-insecure", action="store_true",
                   help="allow --server-address without TLS: anyone who reaches the port controls the agent")
    a.add_argument("--api-client-queue-size", type=int, default=10000, metavar="N",
                   help="events queued per GetEvents client; a client that falls further behind loses events "
                        "(counted in status)")


def apply_agent_api_flags(cfg: Any, ns: argparse.Namespace) -> None:
    cfg.server_address = ns.server_address
    cfg.server_tls_cert_file = ns.server_tls_cert_file
    cfg.server_tls_key_file = ns.server_tls_key_file
    cfg.server_tls_client_ca_files = [p for v in ns.server_tls_client_ca_files for p in v.split(",") if p]
    cfg.server_insecure = ns.server_insecure
    cfg.api_client_queue_size = ns.api_client_queue_size


def _conn_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("connection")
    g.add_argument("--socket", default="", metavar="PATH",
                   help="the agent's API socket (default $KERNEYE_SOCKET or /run/kerneye/kerneye.sock)")
    g.add_argument("--server-address", default="", metavar="HOST:PORT", help="the agent's TCP API instead")
    g.add_argument("--tls-ca-file", default="", metavar="FILE", help="CA to verify the server (enables TLS)")
    g.add_argument("--tls-cert-file", default="", metavar="FILE", help="client certificate (enables TLS)")
    g.add_argument("--tls-key-file", default="", metavar="FILE", help="client private key")
    g.add_argument("--tls-server-name", default="", metavar="NAME", help="expected name in the server certificate")
    g.add_argument("--timeout", type=_duration, default=30.0, metavar="DURATION",
                   help="deadline of each request (default 30s)")


def add_parsers(sub: Any) -> None:
    tp = sub.add_parser("tracingpolicy", aliases=["tp"], help="manage tracing policies of the running agent")
    tps = tp.add_subparsers(dest="tpcmd", metavar="ACTION")
    t_add = tps.add_parser("add", help="load a TracingPolicy YAML file")
    t_add.add_argument("file")
    t_add.add_argument("-m", "--mode", choices=["monitor", "enforce"], default=None)
    t_list = tps.add_parser("list", help="list loaded policies")
    t_list.add_argument("-o", "--output", choices=["text", "json"], default="text")
    for verb in ("delete", "enable", "disable"):
        x = tps.add_parser(verb, help=f"{verb} a policy by name")
        x.add_argument("name")
    t_mode = tps.add_parser("set-mode", help="switch a policy between monitor and enforce")
    t_mode.add_argument("name")
    t_mode.add_argument("mode", choices=["monitor", "enforce"])
    for x in tps.choices.values():
        _conn_flags(x)

    g = sub.add_parser("getevents", help="stream events from the running agent (or filter JSON piped on stdin)")
    g.add_argument("-o", "--output", choices=["json", "compact"], default="json")
    g.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    g.add_argument("-f", "--include-fields", action="append", default=[], metavar="FIELDS",
                   help="keep only these fields, e.g. process.binary,process.pid,parent.binary")
    g.add_argument("-F", "--exclude-fields", action="append", default=[], metavar="FIELDS",
                   help="drop these fields, e.g. process.cap,process.ns")
    g.add_argument("-e", "--event-types", nargs="+", default=[], metavar="TYPE",
                   help="PROCESS_EXEC PROCESS_EXIT ... (or process_exec ..., comma lists work)")
    g.add_argument("--process", action="append", default=[], metavar="REGEX", help="binary regex (repeatable)")
    g.add_argument("--pid", action="append", type=int, default=[], metavar="N")
    g.add_argument("--pod", action="append", default=[], metavar="REGEX", help="pod name regex")
    g.add_argument("-n", "--namespace", action="append", default=[], metavar="NS",
                   help='Kubernetes namespace ("" = host processes)')
    g.add_argument("--container", action="append", default=[], metavar="ID", help="container id or prefix")
    g.add_argument("--policy-names", nargs="+", default=[])
    g.add_argument("--cel-expression", action="append", default=[], metavar="EXPR",
                   help='CEL over the event, e.g. \'process_exec.process.pid > 1000\'')
    g.add_argument("--reconnect", action="store_true", help="reconnect when the agent goes away")
    g.add_argument("--reconnect-wait", type=_duration, default=2.0, metavar="DURATION",
                   help="pause before reconnecting (default 2s)")
    _conn_flags(g)

    s = sub.add_parser("status", help="show the running agent's state")
    s.add_argument("--json", action="store_true", help="print the raw status object")
    _conn_flags(s)

    v = sub.add_parser("version", help="print the client's and (when reachable) the agent's version")
    _conn_flags(v)

    i = sub.add_parser("info", help="the agent's node, kernel and hook back ends")
    i.add_argument("-o", "--output", choices=["text", "json"], default="text")
    _conn_flags(i)


# --- helpers -----------------------------------------------------------------------

def _color(choice: str, stream: Any) -> bool:
    return choice == "always" or (choice == "auto" and stream.isatty())


def quiet_stdout() -> None:
    """Point stdout at /dev/null (after EPIPE, so that exit does not complain)."""
    try:
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, sys.stdout.fileno())
        os.close(fd)
    except (OSError, ValueError):
        pass


def _client(ns: argparse.Namespace) -> Any:
    from ..api.grpc_client import Client, Endpoint

    return Client(Endpoint(socket=ns.socket, server_address=ns.server_address, tls_ca_file=ns.tls_ca_file,
                           tls_cert_file=ns.tls_cert_file, tls_key_file=ns.tls_key_file,
                           tls_server_name=ns.tls_server_name, timeout=ns.timeout))


def _stdin_has_data() -> bool:
    """Piped stdin (like `tetra getevents < file`): read events from it."""
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _request(ns: argparse.Namespace) -> tuple[Any, Any, list[Any]]:
    """Flags -> (GetEventsRequest, local FilterSet, local field filters);
    validated here so that a bad regex or type is a usage error (exit 2)."""
    from google.protobuf import json_format

    from ..api.grpc_client import event_types
    from ..api.v1 import events_pb2 as ev_pb
    from ..export.fieldfilter import FieldFilter
    from ..export.filters import Filter, FilterSet

    f = ev_pb.Filter(binary_regex=ns.process, pid=ns.pid, event_set=event_types(ns.event_types),
                     pod_regex=ns.pod, namespace=ns.namespace, container_id=ns.container,
                     policy_names=ns.policy_names, cel_expression=ns.cel_expression)
    req = ev_pb.GetEventsRequest()
    allow = []
    if f.ListFields():
        req.allow_list.append(f)
        allow.append(Filter.from_dict(json_format.MessageToDict(f, preserving_proto_field_name=True)))
    ffs = []
    for fields, action in ((ns.include_fields, ev_pb.INCLUDE), (ns.exclude_fields, ev_pb.EXCLUDE)):
        if fields:
            ff = ev_pb.FieldFilter(fields=",".join(fields), action=action)
            req.field_filters.append(ff)
            ffs.append(FieldFilter.from_dict({"fields": ff.fields, "action": ev_pb.FieldFilterAction.Name(action)}))
    return req, FilterSet(allow), ffs


def _stdin_events(flt: Any, ffs: list[Any]) -> Iterator[dict[str, Any]]:
    from ..export.fieldfilter import apply_field_filters

    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if not isinstance(ev, dict) or not flt.allows(ev):
            continue
        yield dict(apply_field_filters(ffs, ev)) if ffs else ev


def _grpc_events(ns: argparse.Namespace, req: Any) -> Iterator[dict[str, Any]]:
    from ..api import convert

    last = ""
    while True:
        try:
            with _client(ns) as c:
                stream = c.events(req)
                if last:
                    print("kerneye: connected", file=sys.stderr, flush=True)
                    last = ""
                for msg in stream:
                    yield convert.to_dict(msg)
            raise ApiError("the kerneye agent closed the event stream (stopped?)")
        except ApiError as e:
            if not ns.reconnect:
                raise
            if str(e) != last:  # once per outage, not once per attempt
                print(f"kerneye: {e}; reconnecting every {ns.reconnect_wait:g}s", file=sys.stderr, flush=True)
                last = str(e)
            time.sleep(ns.reconnect_wait)


# --- commands ------------------------------------------------------------------------

def cmd_getevents(ns: argparse.Namespace) -> int:
    from ..export.compact import encode_compact

    req, flt, ffs = _request(ns)
    color = _color(ns.color, sys.stdout)
    events: Iterable[dict[str, Any]]
    if not sys.stdin.closed and not sys.stdin.isatty() and _stdin_has_data():
        events = _stdin_events(flt, ffs)
    else:
        events = _grpc_events(ns, req)
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    out = sys.stdout
    try:
        for ev in events:
            if ns.output == "compact":
                line = encode_compact(ev, color)
                if line is None:
                    continue
            else:
                line = dumps(ev)
            out.write(line + "\n")
            out.flush()
    except BrokenPipeError:
        quiet_stdout()
        return 0
    return 0


def cmd_status(ns: argparse.Namespace) -> int:
    with _client(ns) as c:
        st = c.status()
        health = c.health()
    if ns.json:
        print(json.dumps(st, indent=2))
        return 0 if st.get("ready") else 1
    from ..api.v1 import sensors_pb2 as pb

    ev = st["events"]
    lost = ev["lost"]
    print(f"kerneye {st['version']} on {st['node_name']} (pid {st['pid']}): {'ready' if st['ready'] else 'NOT ready'}, up {st['uptime_s']}s")
    print(f"events: seen {ev['seen']}, by type {ev['by_type']}, exported {ev['exported']}")
    print(f"lost: ring buffer {lost['ringbuf']}, queue {lost['queue']}, api clients {lost.get('api_clients', 0)}"
          f"; parked {ev['parked']}, missing parent {ev['missing_parent']}")
    pc = st["process_cache"]
    print(f"process cache: {pc['size']} entries, {pc['evictions']} evictions, {pc['misses']} misses")
    print(f"ring buffer: {st['ringbuf']['size'] >> 20} MiB, peak fill {st['ringbuf']['peak_fill']:.1%}")
    for s in st["sensors"]:
        print(f"sensor {s['name']}: {s['state']} ({', '.join(s['programs'])}){' ' + s['error'] if s['error'] else ''}")
    print("health: " + ", ".join(f"{h.name} {pb.HealthStatusResult.Name(h.status).removeprefix('HEALTH_STATUS_')}"
                                 for h in health))
    api = st.get("api") or {}
    if api:
        print(f"api: {len(api.get('streams', []))} GetEvents stream(s), delivered {api.get('sent', 0)}, "
              f"dropped {api.get('dropped', 0)}; listening on {', '.join(api.get('listen', []))}")
    return 0 if st.get("ready") else 1


def cmd_version(ns: argparse.Namespace) -> int:
    print(f"kerneye {__version__}")
    try:
        with _client(ns) as c:
            print(f"server: kerneye {c.version()}")
    except KerneyeError as e:
        print(f"kerneye: note: no server version: {e}", file=sys.stderr)
    return 0


def cmd_info(ns: argparse.Namespace) -> int:
    from google.protobuf import json_format

    with _client(ns) as c:
        info = c.info()
    if ns.output == "json":
        print(json.dumps(json_format.MessageToDict(info, preserving_proto_field_name=True), indent=2))
        return 0
    print(f"kerneye {info.version} on {info.name}, kernel {info.kernel}, pid {info.pid}, up {info.uptime_s:.1f}s")
    for p in info.probes:
        print(f"  {p.name:<12} {'available' if p.enabled else 'unavailable: ' + p.details}")
    return 0


def cmd_tracingpolicy(ns: argparse.Namespace) -> int:
    if ns.tpcmd is None:
        raise ConfigError("tracingpolicy needs an action: add, list, delete, enable, disable or set-mode")
    if ns.tpcmd == "add":
        try:
            with open(ns.file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read policy {ns.file}: {e.strerror}") from None
        with _client(ns) as c:
            r = c.add_policy(text, ns.mode, ns.file)
        rules = f", {r['rules']} enforcement rules" if r.get("rules") else ""
        print(f"policy {r['name']} loaded in {r['mode']} mode ({r['hooks']} hooks{rules})")
        return 0
    with _client(ns) as c:
        if ns.tpcmd == "list":
            r = c.list_policies()
            if ns.output == "json":
                print(json.dumps(r, indent=2))
                return 0
            print(f"{'NAME':<28} {'STATE':<9} {'MODE':<8} {'HOOKS':>5} {'RULES':>5} {'NPOST':>8} {'NENFORCE':>8} "
                  f"{'NMONITOR':>8}  ERROR")
            for p in r["policies"]:
                print(f"{p['name']:<28} {p['state']:<9} {p['mode']:<8} {len(p['hooks']):>5} "
                      f"{len(p.get('enforcement', [])):>5} {p['npost']:>8} "
                      f"{p['nenforce']:>8} {p['nmonitor']:>8}  {p['error'] or '; '.join(p.get('warnings', []))}")
            seen = set()
            for v in (v for v in r.get("features", {}).values() if v != "available"):
                if v not in seen:
                    seen.add(v)
                    print(f"note: {v}")
            return 0
        if ns.tpcmd == "delete":
            c.delete_policy(ns.name)
            print(f"policy {ns.name} deleted")
        elif ns.tpcmd in ("enable", "disable"):
            c.configure_policy(ns.name, enable=ns.tpcmd == "enable")
            print(f"policy {ns.name}: {ns.tpcmd}d")
        elif ns.tpcmd == "set-mode":
            c.configure_policy(ns.name, mode=ns.mode)
            print(f"policy {ns.name}: mode {ns.mode}")
    return 0
