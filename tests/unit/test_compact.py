"""Unit tests for kerneye.export.compact (no kernel, no root)."""
from __future__ import annotations

import re
from typing import Any

import pytest

from kerneye.export.compact import encode_compact

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _proc(binary: str = "/usr/bin/curl", arguments: str = "https://example.org", **extra: Any) -> dict[str, Any]:
    return {
        "exec_id": "aG9zdDE6MTAwOjQy",
        "parent_exec_id": "aG9zdDE6NTA6MQ==",
        "pid": 42,
        "tid": 42,
        "uid": 0,
        "auid": 4294967295,
        "cwd": "/",
        "binary": binary,
        "arguments": arguments,
        "flags": "execve rootcwd clone",
        "start_time": "2026-12-03T08:45:36.000000000Z",
        **extra,
    }


def _event(kind: str, **body: Any) -> dict[str, Any]:
    body.setdefault("process", _proc())
    body.setdefault("parent", _proc("/bin/bash", "-c curl"))
    return {kind: body, "node_name": "host1", "time": "2026-12-03T08:45:36.123456789Z"}


def test_exec() -> None:
    assert encode_compact(_event("process_exec")) == "🚀 process host /usr/bin/curl https://example.org"


def test_exit_status_padding_and_signal() -> None:
    assert (
        encode_compact(_event("process_exit", status=0))
        == "💥 exit    host /usr/bin/curl https://example.org 0"
    )
    assert encode_compact(_event("process_exit", status=3)).endswith(" 3")  # type: ignore[union-attr]
    killed = encode_compact(_event("process_exit", signal="SIGKILL", status=0))
    assert killed == "💥 exit    host /usr/bin/curl https://example.org SIGKILL"
    # an empty signal is "no signal"
    no_signal = encode_compact(_event("process_exit", signal="", status=1))
    assert no_signal == "💥 exit    host /usr/bin/curl https://example.org 1"


def test_no_arguments_leaves_no_double_or_trailing_space() -> None:
    line = encode_compact(_event("process_exec", process=_proc("/bin/ls", "")))
    assert line == "🚀 process host /bin/ls"
    line = encode_compact(_event("process_exit", process=_proc("/bin/ls", ""), status=0))
    assert line == "💥 exit    host /bin/ls 0"


def test_docker_location_is_first_12_chars() -> None:
    ev = _event("process_exec", process=_proc(docker="551e161c47d8ff0eb665438a7bcd5b4"))
    assert encode_compact(ev) == "🚀 process 551e161c47d8 /usr/bin/curl https://example.org"
    for empty in ("", None):
        ev = _event("process_exec", process=_proc(docker=empty))
        assert encode_compact(ev).split(" ")[2] == "host"  # type: ignore[union-attr]


def test_quoted_arguments_kept_verbatim() -> None:
    ev = _event("process_exec", process=_proc("/bin/bash", '-c "echo hi" ""'))
    assert encode_compact(ev) == '🚀 process host /bin/bash -c "echo hi" ""'


def test_control_characters_escaped() -> None:
    ev = _event("process_exec", process=_proc("/tmp/evil\x1b[2J", "a\nb\x9bc"))
    line = encode_compact(ev)
    assert line == "🚀 process host /tmp/evil\\x1b[2J a\\x0ab\\x9bc"
    assert "\n" not in line and "\x1b" not in line  # type: ignore[operator]


def test_color_adds_only_sgr_codes() -> None:
    for ev in (_event("process_exec"), _event("process_exit", signal="SIGKILL")):
        plain = encode_compact(ev)
        colored = encode_compact(ev, color=True)
        assert colored != plain
        assert _ANSI.sub("", colored) == plain  # type: ignore[arg-type]
        assert "\x1b[1m/usr/bin/curl\x1b[0m" in colored  # type: ignore[operator]
    assert "\x1b" not in encode_compact(_event("process_exec"), color=False)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("function", "prefix"),
    [
        ("sys_openat", "📬 openat  "),
        ("__x64_sys_openat", "📬 openat  "),
        ("__arm64_sys_write", "📝 write   "),
        ("fd_install", "📬 open    "),
        ("sys_setuid", "🔑 setuid  "),
        ("tcp_connect", "🔌 connect "),
        ("sys_clock_settime", "⏰ clock_settime "),
    ],
)
def test_kprobe_labels(function: str, prefix: str) -> None:
    line = encode_compact(_event("process_kprobe", function_name=function, args=[]))
    assert line is not None
    assert line.startswith(prefix + "host /usr/bin/curl")
    assert line == line.rstrip()


def test_kprobe_unknown_function_shows_name_and_args() -> None:
    ev = _event(
        "process_kprobe",
        function_name="__x64_sys_unlinkat",
        args=[{"int_arg": -100}, {"string_arg": "/etc/shadow"}, {"bytes_arg": "AAEC"}],
    )
    assert encode_compact(ev) == "❓ syscall host /usr/bin/curl __x64_sys_unlinkat -100 /etc/shadow"


def test_kprobe_argument_rendering() -> None:
    ev = _event(
        "process_kprobe",
        function_name="tcp_connect",
        args=[
            {
                "sock_arg": {
                    "family": "AF_INET",
                    "protocol": "IPPROTO_TCP",
                    "saddr": "10.32.0.19",
                    "daddr": "104.198.14.52",
                    "sport": 33978,
                    "dport": 443,
                }
            }
        ],
    )
    assert encode_compact(ev) == "🔌 connect host /usr/bin/curl 10.32.0.19:33978 -> 104.198.14.52:443"

    ev = _event(
        "process_kprobe",
        function_name="security_socket_connect",
        args=[
            {"sockaddr_arg": {"family": "AF_INET6", "addr": "::1", "port": 8080}},
            {"file_arg": {"path": "/etc/passwd", "permission": "-rw-r--r--"}},
            {"size_arg": 4096, "label": "count"},
        ],
    )
    line = encode_compact(ev)
    assert line == "❓ syscall host /usr/bin/curl security_socket_connect [::1]:8080 /etc/passwd 4096"


@pytest.mark.parametrize(("mask", "prefix"), [(2, "📝 write   "), (4, "📚 read    ")])
def test_security_file_permission_read_write(mask: int, prefix: str) -> None:
    ev = _event(
        "process_kprobe",
        function_name="security_file_permission",
        args=[{"file_arg": {"path": "/etc/passwd"}}, {"int_arg": mask}],
        policy_name="file-monitoring",
    )
    assert encode_compact(ev) == f"{prefix}host /usr/bin/curl /etc/passwd"


def test_tracepoint_and_uprobe() -> None:
    tp = _event("process_tracepoint", subsys="syscalls", event="sys_enter_kill", args=[{"int_arg": 9}])
    assert encode_compact(tp) == "⁉️ tracepoint host /usr/bin/curl syscalls/sys_enter_kill 9"
    up = _event("process_uprobe", path="/usr/lib/libssl.so.3", symbol="SSL_write")
    assert encode_compact(up) == "🕵️ uprobe  host /usr/bin/curl SSL_write"


@pytest.mark.parametrize(
    "event",
    [
        {"process_loader": {"process": _proc(), "path": "/lib/x.so"}, "time": "t"},
        {"rate_limit_info": {"number_of_dropped_process_events": 3}, "node_name": "n"},
        {"something_new": {"process": _proc()}},
        {"node_name": "n", "time": "t"},
        {"process_exec": "garbage"},
        {},
    ],
)
def test_unknown_or_malformed_kinds_return_none(event: dict[str, Any]) -> None:
    assert encode_compact(event) is None


def test_missing_process_does_not_raise() -> None:
    line = encode_compact({"process_exit": {"status": 1}, "time": "t"})
    assert line == "💥 exit    host <unknown> 1"
