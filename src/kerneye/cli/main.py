"""`kerneye` command line: agent, getevents, status, version.

Every failure is one line on stderr and a non-zero exit code:
1 runtime error, 2 bad usage/configuration, 3 agent not reachable.
"""
from __future__ import annotations

import argparse
import logging
import signal
import sys
from typing import Any

from .. import __version__
from ..errors import ApiError, KerneyeError
from . import client_cmds

EXIT_UNREACHABLE = 3


def _size(v: str) -> int:
    """8M, 16MiB, 4096 -> bytes."""
    s = v.strip().upper().removesuffix("IB").removesuffix("B")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    try:
        return int(float(s[:-1] if mult > 1 else s) * mult)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {v!r} (examples: 16M, 65536)") from None


def _duration(v: str) -> float:
    from ..config_file import parse_duration

    try:
        return parse_duration(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _perm(v: str) -> int:
    from ..config_file import parse_perm

    try:
        return parse_perm(v)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _with_config_files(ns: argparse.Namespace, argv: list[str] | None) -> argparse.Namespace:
    """Fill agent options not given as flags from the config file/dir layers
    (precedence in kerneye.config_file)."""
    from .. import config_file

    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    agent_parser = sub.choices["agent"]
    args = list(sys.argv[1:] if argv is None else argv)
    args = args[args.index("agent") + 1:] if "agent" in args else args
    layers = config_file.config_layers(ns.config_file, ns.config_dir)
    for dest, source in config_file.apply_config(agent_parser, ns, args, layers).items():
        logging.getLogger("kerneye").debug("option %s from %s", dest, source)
    return ns


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kerneye", description="kerneye: an eye on the kernel")
    p.add_argument("--version", action="version", version=f"kerneye {__version__}")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND")

    a = sub.add_parser("agent", help="run the agent (root)")
    a.add_argument("--export-file", "--export-filename", dest="export_file", default="",
                   help="write JSON events to this file (rotated by size and interval; filters: docs/reference/export.md)")
    a.add_argument("--export-file-max-size-mb", type=float, default=10.0)
    a.add_argument("--export-file-max-backups", type=int, default=5)
    a.add_argument("--export-file-rotation-interval", type=_duration, default=0.0, metavar="DURATION",
                   help="also rotate the export file after this long (1h, 30m, 90s; 0 = size only)")
    a.add_argument("--export-file-compress", action="store_true", help="gzip rotated export files")
    a.add_argument("--export-file-perm", type=_perm, default=0o600, metavar="MODE",
                   help="octal mode of the export file and its backups (default 600)")
    a.add_argument("--export-allowlist", default="", metavar="JSONL|@FILE",
                   help='export only events matching one of these filters, one JSON object per line, '
                        'e.g. \'{"event_set":["PROCESS_EXEC"],"binary_regex":["curl$"]}\'')
    a.add_argument("--export-denylist", default="", metavar="JSONL|@FILE",
                   help="never export events matching one of these filters (wins over the allowlist)")
    a.add_argument("--field-filters", default="", metavar="JSONL|@FILE",
                   help='include/exclude event fields, e.g. \'{"fields":"process.binary,process.pid","action":"INCLUDE"}\'')
    a.add_argument("--redaction-filters", default="", metavar="JSONL|@FILE",
                   help='hide capture groups in arguments, e.g. \'{"redact":["password=(\\\\S+)"]}\'')
    a.add_argument("--export-rate-limit", type=int, default=-1, metavar="N",
                   help="export at most N events per minute (-1 unlimited, 0 none); drops are reported "
                        "as rate_limit_info events")
    a.add_argument("--config-file", default=None, metavar="FILE",
                   help="YAML file of agent options (default /etc/kerneye/kerneye.yaml if present)")
    a.add_argument("--config-dir", default=None, metavar="DIR",
                   help="directory with one file per option (default /etc/kerneye/kerneye.conf.d if present); "
                        "precedence: defaults < kerneye.yaml < kerneye.conf.d < --config-file < --config-dir < flags")
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
    a.add_argument("--metrics-server", default="", metavar="ADDR",
                   help="serve Prometheus metrics on ADDR, e.g. 127.0.0.1:2112 or :2112 (default: off)")
    a.add_argument("--keep-enforcement-on-exit", action="store_true",
                   help="pin cgroup-BPF and BPF-LSM enforcement so it stays when the agent stops or dies "
                        "(fanotify rules always fail open); `kerneye enforcement release` removes it")
    a.add_argument("--policy-events-full-process", action="store_true",
                   help="full process records (caps, namespaces, credentials) in policy events too")

    client_cmds.add_agent_api_flags(a)
    client_cmds.add_parsers(sub)  # tracingpolicy, getevents, status, version, info (gRPC clients)
    e = sub.add_parser("enforcement", help="enforcement back ends on this machine (no agent needed)")
    esub = e.add_subparsers(dest="enf_cmd")
    esub.add_parser("probe", help="which mechanisms this kernel offers and which one each operation would use")
    rel = esub.add_parser("release", help="remove enforcement left pinned by --keep-enforcement-on-exit")
    rel.add_argument("--pin-root", default="/sys/fs/bpf/kerneye/enforce", help=argparse.SUPPRESS)
    return p


def _color(choice: str, stream: Any) -> bool:
    return choice == "always" or (choice == "auto" and stream.isatty())


def cmd_agent(ns: argparse.Namespace, argv: list[str] | None = None) -> int:
    from ..agent import Agent
    from ..config import AgentConfig

    ns = _with_config_files(ns, argv)

    logging.basicConfig(level=ns.log_level.upper(), stream=sys.stderr, format="kerneye: %(levelname)s: %(message)s")
    cfg = AgentConfig(
        node_name=ns.node_name, bpf_dir=ns.bpf_lib, run_dir=ns.run_dir, export_file=ns.export_file,
        export_file_max_size_mb=ns.export_file_max_size_mb, export_file_max_backups=ns.export_file_max_backups,
        output=ns.output, color=_color(ns.color, sys.stdout), enable_ancestors=ns.enable_ancestors,
        rb_size=ns.rb_size, queue_batches=ns.rb_queue_size, process_cache_size=ns.process_cache_size,
        tracing_policies=ns.tracing_policy, tracing_policy_dir=ns.tracing_policy_dir,
        policy_mode=ns.policy_mode or "", policy_events_full_process=ns.policy_events_full_process,
        keep_enforcement_on_exit=ns.keep_enforcement_on_exit,
    )
    cfg.export_file_rotation_interval_s = ns.export_file_rotation_interval
    cfg.export_file_compress = ns.export_file_compress
    cfg.export_file_perm = ns.export_file_perm
    cfg.export_allowlist = ns.export_allowlist
    cfg.export_denylist = ns.export_denylist
    cfg.field_filters = ns.field_filters
    cfg.redaction_filters = ns.redaction_filters
    cfg.export_rate_limit = ns.export_rate_limit
    cfg.metrics_server = ns.metrics_server
    client_cmds.apply_agent_api_flags(cfg, ns)
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


def cmd_enforcement(ns: argparse.Namespace) -> int:
    import os

    from ..enforce import capabilities
    from ..enforce.cgroup_net import release_pinned
    from ..errors import ConfigError

    if ns.enf_cmd == "probe":
        avail = capabilities.probe()
        print("mechanism        status")
        for key, why in avail.items():
            print(f"{key:<16} {'available' if why is None else 'unavailable: ' + why}")
        print()
        print("operation                         prevented by")
        for op in capabilities.CAPABILITIES:
            cap = capabilities.best(op, lambda k: avail.get(k) is None)
            print(f"{op:<33} {cap.mechanism if cap else 'nothing here (Sigkill as a reaction only)'}")
        return 0
    if ns.enf_cmd == "release":
        root = ns.pin_root
        dirs = sorted(os.listdir(root)) if os.path.isdir(root) else []
        if not dirs:
            print(f"nothing pinned under {root}")
            return 0
        for d in dirs:
            release_pinned(os.path.join(root, d))
            print(f"released {os.path.join(root, d)}")
        return 0
    raise ConfigError("enforcement needs an action: probe or release")


def main(argv: list[str] | None = None) -> int:
    ns = _parser().parse_args(argv)
    try:
        if ns.cmd == "agent":
            return cmd_agent(ns, argv)
        if ns.cmd == "getevents":
            return client_cmds.cmd_getevents(ns)
        if ns.cmd in ("tracingpolicy", "tp"):
            return client_cmds.cmd_tracingpolicy(ns)
        if ns.cmd == "enforcement":
            return cmd_enforcement(ns)
        if ns.cmd == "status":
            return client_cmds.cmd_status(ns)
        if ns.cmd == "version":
            return client_cmds.cmd_version(ns)
        if ns.cmd == "info":
            return client_cmds.cmd_info(ns)
        _parser().print_help()
        return 2
    except ApiError as e:
        print(f"kerneye: error: {e}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KerneyeError as e:
        print(f"kerneye: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        # the reader went away (`kerneye tp list | head`): not an error; keep
        # the interpreter's final flush of stdout quiet too
        client_cmds.quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001 - one line, never a traceback
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            logging.exception("internal error")
        print(f"kerneye: internal error: {type(e).__name__}: {e} (rerun with --log-level debug for details)",
              file=sys.stderr)
        return 1
