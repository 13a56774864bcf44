"""`kerneye` command line: agent, getevents, status, version.

Every failure is one line on stderr and a non-zero exit code:
1 runtime error, 2 bad usage/configuration, 3 agent not reachable.
"""
from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from typing import Any

from .. import __version__
from ..errors import ApiError, KerneyeError

EXIT_UNREACHABLE = 3


def _size(v: str) -> int:
    """8M, 16MiB, 4096 -> bytes."""
    s = v.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        return int(float(s[:-1] if mult > 1 else s) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {v!r} (examples: 16M, 65536)") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kerneye", description="kerneye: an eye on the kernel")
    p.add_argument("--version", action="version", version=f"kerneye {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    a = sub.add_parser("agent", help="run the agent (root)")
    a.add_argument("--export-file", "--export-filename", dest="export_file", default="",
                   help="write JSON events to this file (rotated by size)")
    a.add_argument("--export-file-max-size-mb", type=float, default=10.0)
    a.add_argument("--export-file-max-backups", type=int, default=5)
    a.add_argument("-o", "--output", choices=["compact", "json", "none"], default="compact",
                   help="events on stdout (default compact)")
    a.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    a.add_argument("--enable-ancestors", action="store_true", help="add ancestors[] to process events")
    a.add_argument("--rb-size", type=_size, default=16 << 20, help="ring buffer size, power of two (default 16M)")
    a.add_argument("--rb-queue-size", type=int, default=4096, help="batches queued between reader and decoder")
    a.add_argument("--process-cache-size", type=int, default=65536)
    a.add_argument("--run-dir", default="/run/kerneye", help="lock and API socket directory")
    a.add_argument("--bpf-lib", default="", help="directory of the compiled BPF objects")
    a.add_argument("--node-name", default="", help="node name in events and exec_ids (default: hostname)")
    a.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default="info")
    a.add_argument("--tracing-policy", action="append", default=[], metavar="FILE",
                   help="load this TracingPolicy at start (repeatable)")
    a.add_argument("--tracing-policy-dir", default="", metavar="DIR", help="load every *.yaml policy in DIR")
    a.add_argument("--policy-mode", choices=["monitor", "enforce"], default=None,
                   help="force this mode on the policies loaded at start")
    a.add_argument("--policy-events-full-process", action="store_true",
                   help="full process records (caps, namespaces, credentials) in policy events too")

    tp = sub.add_parser("tracingpolicy", aliases=["tp"], help="manage tracing policies of the running agent")
    tps = tp.add_subparsers(dest="tpcmd", metavar="ACTION")
    t_add = tps.add_parser("add", help="load a TracingPolicy YAML file")
    t_add.add_argument("file")
    t_add.add_argument("--mode", choices=["monitor", "enforce"], default=None)
    t_list = tps.add_parser("list", help="list loaded policies")
    t_list.add_argument("-o", "--output", choices=["text", "json"], default="text")
    for verb in ("delete", "enable", "disable"):
        x = tps.add_parser(verb, help=f"{verb} a policy by name")
        x.add_argument("name")
    t_mode = tps.add_parser("set-mode", help="switch a policy between monitor and enforce")
    t_mode.add_argument("name")
    t_mode.add_argument("mode", choices=["monitor", "enforce"])
    for x in (t_add, t_list, *[tps.choices[v] for v in ("delete", "enable", "disable")], t_mode):
        x.add_argument("--socket", default="")

    g = sub.add_parser("getevents", help="stream events from the running agent")
    g.add_argument("-o", "--output", choices=["json", "compact"], default="json")
    g.add_argument("--color", choices=["auto", "always", "never"], default="auto")
    g.add_argument("--process", action="append", default=[], metavar="REGEX", help="binary regex (repeatable)")
    g.add_argument("--pid", action="append", type=int, default=[], metavar="N")
    g.add_argument("-e", "--event-types", nargs="+", default=[], metavar="TYPE",
                   help="PROCESS_EXEC PROCESS_EXIT ... (or process_exec ...)")
    g.add_argument("--container", action="append", default=[], metavar="ID", help="container id or prefix")
    g.add_argument("--policy-names", nargs="+", default=[])
    g.add_argument("--socket", default="", help="agent API socket")

    s = sub.add_parser("status", help="show the running agent's state")
    s.add_argument("--json", action="store_true", help="print the raw status object")
    s.add_argument("--socket", default="")

    sub.add_parser("version", help="print the version")
    return p


def _color(choice: str, stream: Any) -> bool:
    return choice == "always" or (choice == "auto" and stream.isatty())


def cmd_agent(ns: argparse.Namespace) -> int:
    from ..agent import Agent
    from ..config import AgentConfig

    logging.basicConfig(level=ns.log_level.upper(), stream=sys.stderr, format="kerneye: %(levelname)s: %(message)s")
    cfg = AgentConfig(
        node_name=ns.node_name, bpf_dir=ns.bpf_lib, run_dir=ns.run_dir, export_file=ns.export_file,
        export_file_max_size_mb=ns.export_file_max_size_mb, export_file_max_backups=ns.export_file_max_backups,
        output=ns.output, color=_color(ns.color, sys.stdout), enable_ancestors=ns.enable_ancestors,
        rb_size=ns.rb_size, queue_batches=ns.rb_queue_size, process_cache_size=ns.process_cache_size,
        tracing_policies=ns.tracing_policy, tracing_policy_dir=ns.tracing_policy_dir,
        policy_mode=ns.policy_mode or "", policy_events_full_process=ns.policy_events_full_process,
    )
    agent = Agent(cfg)

    def _stop(signum: int, _frame: Any) -> None:
        agent.stop()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    try:
        agent.start()
        agent.run()
    finally:
        agent.shutdown()
    logging.getLogger("kerneye").info("stopped; all programs detached")
    return 0


def cmd_getevents(ns: argparse.Namespace) -> int:
    from ..api import client
    from ..export.compact import encode_compact
    from ..export.filter import EventFilter

    flt = EventFilter(process_regex=ns.process, pids=ns.pid, event_types=ns.event_types,
                      container=ns.container, policy_names=ns.policy_names)
    color = _color(ns.color, sys.stdout)
    try:
        if not sys.stdin.isatty() and not sys.stdin.closed and _stdin_has_data():
            lines: Any = (ln.rstrip("\n") for ln in sys.stdin)
            local = True
        else:
            lines = client.stream_events(ns.socket or client.socket_path(), flt.to_dict())
            local = False
        for line in lines:
            if not line:
                continue
            if local or ns.output == "compact":
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if local and not flt.match(ev):
                    continue
                if ns.output == "compact":
                    out = encode_compact(ev, color)
                    if out is None:
                        continue
                    line = out
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
    except BrokenPipeError:
        return 0
    return 0


def _stdin_has_data() -> bool:
    """Piped stdin (like `tetra getevents < file`): read events from it."""
    import os
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def cmd_status(ns: argparse.Namespace) -> int:
    from ..api import client

    st = client.request(ns.socket or client.socket_path(), {"cmd": "status"})
    if ns.json:
        print(json.dumps(st, indent=2))
        return 0 if st.get("ready") else 1
    ev = st["events"]
    lost = ev["lost"]
    print(f"kerneye {st['version']} on {st['node_name']} (pid {st['pid']}): {'ready' if st['ready'] else 'NOT ready'}, up {st['uptime_s']}s")
    print(f"events: seen {ev['seen']}, by type {ev['by_type']}, exported {ev['exported']}")
    print(f"lost: ring buffer {lost['ringbuf']}, queue {lost['queue']}, api clients {lost['api_clients']}"
          f"; parked {ev['parked']}, missing parent {ev['missing_parent']}")
    pc = st["process_cache"]
    print(f"process cache: {pc['size']} entries, {pc['evictions']} evictions, {pc['misses']} misses")
    print(f"ring buffer: {st['ringbuf']['size'] >> 20} MiB, peak fill {st['ringbuf']['peak_fill']:.1%}")
    for s in st["sensors"]:
        print(f"sensor {s['name']}: {s['state']} ({', '.join(s['programs'])}){' ' + s['error'] if s['error'] else ''}")
    return 0 if st.get("ready") else 1


def cmd_tracingpolicy(ns: argparse.Namespace) -> int:
    from ..api import client
    from ..errors import ConfigError

    path = ns.socket or client.socket_path()
    if ns.tpcmd == "add":
        try:
            with open(ns.file, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise ConfigError(f"cannot read policy {ns.file}: {e.strerror}") from None
        r = client.request(path, {"cmd": "tp_add", "yaml": text, "source": ns.file, "mode": ns.mode})
        print(f"policy {r['name']} loaded in {r['mode']} mode ({r['hooks']} hooks)")
        return 0
    if ns.tpcmd == "list":
        r = client.request(path, {"cmd": "tp_list"})
        if ns.output == "json":
            print(json.dumps(r, indent=2))
            return 0
        print(f"{'NAME':<28} {'STATE':<9} {'MODE':<8} {'HOOKS':>5} {'NPOST':>8} {'NENFORCE':>8} {'NMONITOR':>8}  ERROR")
        for p in r["policies"]:
            print(f"{p['name']:<28} {p['state']:<9} {p['mode']:<8} {len(p['hooks']):>5} {p['npost']:>8} "
                  f"{p['nenforce']:>8} {p['nmonitor']:>8}  {p['error']}")
        unavailable = {k: v for k, v in r.get("features", {}).items() if v != "available"}
        for k, v in unavailable.items():
            print(f"note: {v}")
        return 0
    if ns.tpcmd in ("delete", "enable", "disable"):
        client.request(path, {"cmd": f"tp_{ns.tpcmd}", "name": ns.name})
        print(f"policy {ns.name}: {ns.tpcmd}d" if ns.tpcmd != "delete" else f"policy {ns.name} deleted")
        return 0
    if ns.tpcmd == "set-mode":
        client.request(path, {"cmd": "tp_set_mode", "name": ns.name, "mode": ns.mode})
        print(f"policy {ns.name}: mode {ns.mode}")
        return 0
    _parser().parse_args(["tracingpolicy", "--help"])
    return 2


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        if ns.cmd == "agent":
            return cmd_agent(ns)
        if ns.cmd == "getevents":
            return cmd_getevents(ns)
        if ns.cmd in ("tracingpolicy", "tp"):
            return cmd_tracingpolicy(ns)
        if ns.cmd == "status":
            return cmd_status(ns)
        if ns.cmd == "version":
            print(f"kerneye {__version__}")
            return 0
        _parser().print_help()
        return 2
    except ApiError as e:
        print(f"kerneye: error: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KerneyeError as e:
        print(f"kerneye: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.exception("internal error")
        print(f"kerneye: internal error: {type(e).__name__}: {e} (rerun with --log-level debug for details)",
              file=sys.stderr)
        return 1
