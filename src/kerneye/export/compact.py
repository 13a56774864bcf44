"""Tetragon's one-line "compact" rendering of events (``getevents -o compact``).

Line shape::

    <emoji> <label, padded to 7> <location> <binary> <details...>

    🚀 process host /usr/bin/curl https://example.org
    💥 exit    host /usr/bin/curl https://example.org SIGKILL

* ``location`` is ``host`` unless ``process.docker`` is non-empty; then it is
  the first 12 characters of that id (the short form ``docker ps`` prints).
  Tetragon prints ``namespace/pod`` here, which kerneye does not have.
* Kprobe labels follow Tetragon's encoder table (``_KPROBE_LABELS``), matched
  after removing the syscall wrapper's arch prefix (``__x64_sys_openat`` is
  ``sys_openat``); any other function prints ``❓ syscall <function>``.
  ``sys_openat`` renders as ``openat`` and ``sys_open``/``fd_install`` as
  ``open``, as in Tetragon.
* Guarantees: the result is a single line with no trailing whitespace;
  control characters coming from the event (argv, paths, ids) are escaped as
  ``\\xNN`` so they cannot break the line or drive the terminal; with
  ``color=True`` the only additions are ANSI SGR codes around the
  emoji/label and around the binary. Unknown event kinds and malformed
  events give ``None`` (the caller skips them); nothing raises.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kerneye.export.filter import event_kind

__all__ = ["encode_compact"]

_RESET = "\x1b[0m"
_BOLD = "\x1b[1m"
_BLUE = "\x1b[34m"
_RED = "\x1b[31m"
_YELLOW = "\x1b[33m"
_MAGENTA = "\x1b[35m"

_DOCKER_ID_LEN = 12
_LABEL_WIDTH = 7

# C0 controls, DEL and C1 controls -> "\xNN". C1 matters too: U+009B is a
# single-character CSI on many terminals.
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}

# Syscall wrappers carry an arch prefix (kernel >= 4.17 on x86 and others).
_ARCH_PREFIX = re.compile(r"^__(?:x64|ia32|arm64|s390x|s390|riscv)_(?=sys_)")

# function name (arch prefix removed) -> (emoji, label), after Tetragon's
# pkg/encoder table.
_KPROBE_LABELS: dict[str, tuple[str, str]] = {
    "sys_write": ("📝", "write"),
    "sys_read": ("📚", "read"),
    "fd_install": ("📬", "open"),
    "sys_openat": ("📬", "openat"),
    "sys_open": ("📬", "open"),
    "sys_close": ("📪", "close"),
    "sys_mount": ("💾", "mount"),
    "sys_pivot_root": ("💾", "pivot_root"),
    "sys_setuid": ("🔑", "setuid"),
    "sys_clock_settime": ("⏰", "clock_settime"),
    "sys_setns": ("🔧", "setns"),
    "tcp_connect": ("🔌", "connect"),
    "tcp_close": ("🧹", "close"),
    "tcp_sendmsg": ("📤", "sendmsg"),
    "bpf_check": ("🐝", "bpf_load"),
    "security_perf_event_alloc": ("🐝", "perf_event_alloc"),
    "security_bpf_map_alloc": ("🗺", "bpf_map_create"),
    "security_bpf_map_create": ("🗺", "bpf_map_create"),
    "security_path_truncate": ("📝", "truncate"),
    "security_file_truncate": ("📝", "truncate"),
}

_MAY_WRITE = 0x2  # include/linux/fs.h; second argument of security_file_permission

# (emoji, label, details); emoji and label are ours, details come from the event.
_Rendered = tuple[str, str, list[str]]


def _text(value: Any) -> str:
    return str(value).translate(_ESCAPES).strip()


def _host_port(addr: Any, port: Any) -> str:
    addr = str(addr if addr is not None else "")
    # Bracket IPv6 so the port separator stays unambiguous: [::1]:443.
    if ":" in addr:
        addr = f"[{addr}]"
    return f"{addr}:{port if port is not None else 0}"


def _path_of(value: Any) -> str | None:
    return value.get("path") if isinstance(value, Mapping) else None


def _sockaddr(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    return _host_port(value.get("addr"), value.get("port"))


def _sock(value: Any) -> str | None:
    if not isinstance(value, Mapping):
        return None
    src = _host_port(value.get("saddr"), value.get("sport"))
    dst = _host_port(value.get("daddr"), value.get("dport"))
    return f"{src} -> {dst}"


def _scalar(value: Any) -> str | None:
    return None if isinstance(value, (Mapping, list)) else str(value)


# KprobeArgument oneof key -> brief rendering; kinds not listed are omitted.
_ARG_RENDERERS: dict[str, Callable[[Any], str | None]] = {
    "string_arg": _scalar,
    "int_arg": _scalar,
    "uint_arg": _scalar,
    "long_arg": _scalar,
    "size_arg": _scalar,
    "file_arg": _path_of,
    "path_arg": _path_of,
    "linux_binprm_arg": _path_of,
    "sockaddr_arg": _sockaddr,
    "sock_arg": _sock,
}


def _render_args(args: Any) -> list[str]:
    if not isinstance(args, Sequence) or isinstance(args, str):
        return []
    out = []
    for arg in args:
        if not isinstance(arg, Mapping):
            continue
        for key, value in arg.items():
            render = _ARG_RENDERERS.get(key)
            text = render(value) if render else None
            if text is not None:
                out.append(text)
    return out


def _arguments(body: Mapping[str, Any]) -> str:
    process = body.get("process")
    return str(process.get("arguments") or "") if isinstance(process, Mapping) else ""


def _exec(body: Mapping[str, Any]) -> _Rendered:
    return "🚀", "process", [_arguments(body)]


def _exit(body: Mapping[str, Any]) -> _Rendered:
    # A signal, when present, explains the exit better than the status does.
    outcome = body.get("signal") or body.get("status", 0)
    return "💥", "exit", [_arguments(body), str(outcome)]


def _kprobe(body: Mapping[str, Any]) -> _Rendered:
    function = str(body.get("function_name") or "")
    name = _ARCH_PREFIX.sub("", function)
    args = body.get("args")
    if name == "security_file_permission":
        mask = _second_int(args)
        emoji, label = ("📝", "write") if mask & _MAY_WRITE else ("📚", "read")
        # Only the file: the access mask is already in the label.
        return emoji, label, _render_args(args)[:1]
    known = _KPROBE_LABELS.get(name)
    if known is None:
        return "❓", "syscall", [function, *_render_args(args)]
    return known[0], known[1], _render_args(args)


def _second_int(args: Any) -> int:
    if isinstance(args, Sequence) and len(args) > 1 and isinstance(args[1], Mapping):
        value = args[1].get("int_arg")
        if isinstance(value, int):
            return value
    return 0


def _tracepoint(body: Mapping[str, Any]) -> _Rendered:
    where = f"{body.get('subsys', '')}/{body.get('event', '')}"
    return "⁉️", "tracepoint", [where, *_render_args(body.get("args"))]


def _uprobe(body: Mapping[str, Any]) -> _Rendered:
    return "🕵️", "uprobe", [str(body.get("symbol") or ""), *_render_args(body.get("args"))]


def _lsm(body: Mapping[str, Any]) -> _Rendered:
    return "🔒", "LSM", [str(body.get("function_name") or ""), *_render_args(body.get("args"))]


def _usdt(body: Mapping[str, Any]) -> _Rendered:
    probe = f"{body.get('provider', '')}:{body.get('name', '')}"
    return "🕵️", "usdt", [probe, *_render_args(body.get("args"))]


_RENDERERS: dict[str, tuple[Callable[[Mapping[str, Any]], _Rendered], str]] = {
    "process_exec": (_exec, _BLUE),
    "process_exit": (_exit, _RED),
    "process_kprobe": (_kprobe, _YELLOW),
    "process_tracepoint": (_tracepoint, _YELLOW),
    "process_uprobe": (_uprobe, _MAGENTA),
    "process_lsm": (_lsm, _MAGENTA),
    "process_usdt": (_usdt, _MAGENTA),
}


def _location(process: Mapping[str, Any]) -> str:
    docker = process.get("docker")
    if isinstance(docker, str) and docker.strip():
        return _text(docker)[:_DOCKER_ID_LEN]
    return "host"


def encode_compact(event: dict[str, Any], color: bool = False) -> str | None:
    """Render ``event`` as one compact line, or ``None`` if it has no compact form.

    See the module docstring for the format and guarantees.
    """
    kind = event_kind(event)
    entry = _RENDERERS.get(kind)
    body = event.get(kind) if entry else None
    if entry is None or not isinstance(body, Mapping):
        return None
    render, colour = entry
    emoji, label, details = render(body)
    enf = body.get("enforcement")
    if isinstance(enf, Mapping):
        # a decision of the enforcement back ends: what happened first
        denied = enf.get("verdict") == "denied"
        emoji, label = ("🛑", "denied") if denied else ("⚠️", "would deny")
        colour = _RED if denied else _YELLOW
        details = [str(enf.get("operation") or ""), *_render_args(body.get("args")),
                   f"({enf.get('mechanism', '')}{', ' + str(enf['errno']) if denied and enf.get('errno') else ''})"]

    process = body.get("process")
    if not isinstance(process, Mapping):
        process = {}
    binary = _text(process.get("binary") or "") or "<unknown>"
    head = f"{emoji} {label:<{_LABEL_WIDTH}}"
    if color:
        head = f"{colour}{head}{_RESET}"
        binary = f"{_BOLD}{binary}{_RESET}"
    parts = [head, _location(process), binary]
    parts.extend(t for t in map(_text, details) if t)
    return " ".join(parts)
