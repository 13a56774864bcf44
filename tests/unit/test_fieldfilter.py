"""Unit tests for kerneye.export.fieldfilter."""
from __future__ import annotations

import copy
from typing import Any

import pytest

from kerneye.errors import ConfigError
from kerneye.export.fieldfilter import FieldFilter, apply_field_filters, parse_field_filter_lines

EXEC: dict[str, Any] = {
    "process_exec": {
        "process": {"exec_id": "a", "pid": 10, "binary": "/bin/x", "arguments": "-v", "start_time": "t0",
                    "cap": {"effective": ["CAP_KILL"]}},
        "parent": {"exec_id": "p", "pid": 1, "binary": "/bin/sh"},
        "ancestors": [{"pid": 0, "binary": "/sbin/init", "cwd": "/"}, {"pid": 2, "binary": "/bin/login"}],
    },
    "node_name": "n",
    "time": "t",
}
KPROBE: dict[str, Any] = {
    "process_kprobe": {"process": {"pid": 10, "binary": "/bin/x"}, "function_name": "f", "args": [
        {"file_arg": {"path": "/etc/passwd", "permission": "rw"}}, {"int_arg": 4}]},
    "node_name": "n", "time": "t",
}


def ff(**kw: Any) -> FieldFilter:
    return FieldFilter.from_dict(kw)


def test_include_keeps_only_listed_paths_and_envelope() -> None:
    out = ff(fields="process.binary,process.pid,parent.binary", action="INCLUDE").apply(EXEC)
    assert out == {"process_exec": {"process": {"pid": 10, "binary": "/bin/x"}, "parent": {"binary": "/bin/sh"}},
                   "node_name": "n", "time": "t"}


def test_include_whole_subtree_and_lists() -> None:
    out = ff(fields="parent,ancestors.binary").apply(EXEC)  # INCLUDE is the default
    assert out["process_exec"] == {"parent": EXEC["process_exec"]["parent"],
                                   "ancestors": [{"binary": "/sbin/init"}, {"binary": "/bin/login"}]}
    out = ff(fields="args.file_arg.path,function_name").apply(KPROBE)
    assert out["process_kprobe"] == {"function_name": "f", "args": [{"file_arg": {"path": "/etc/passwd"}}, {}]}


def test_exclude_removes_paths() -> None:
    out = ff(fields="process.cap,parent,ancestors.cwd,nonexistent.path", action="EXCLUDE").apply(EXEC)
    body = out["process_exec"]
    assert "parent" not in body and "cap" not in body["process"]
    assert body["process"]["binary"] == "/bin/x"
    assert body["ancestors"] == [{"pid": 0, "binary": "/sbin/init"}, {"pid": 2, "binary": "/bin/login"}]
    assert out["node_name"] == "n"


def test_camel_case_paths_and_list_of_fields() -> None:
    out = ff(fields=["process.startTime", "process.execId"]).apply(EXEC)
    assert out["process_exec"] == {"process": {"start_time": "t0", "exec_id": "a"}}


def test_event_set_and_invert() -> None:
    only_exec = ff(fields="process.pid", event_set=["PROCESS_EXEC"])
    assert only_exec.apply(KPROBE) is KPROBE
    assert only_exec.apply(EXEC)["process_exec"] == {"process": {"pid": 10}}
    not_exec = ff(fields="process.pid", event_set=["PROCESS_EXEC"], invert_event_set=True)
    assert not_exec.apply(EXEC) is EXEC
    assert not_exec.apply(KPROBE)["process_kprobe"] == {"process": {"pid": 10}}
    everything = ff(fields="process.pid", invert_event_set=True)  # no event_set: applies to all
    assert everything.apply(EXEC)["process_exec"] == {"process": {"pid": 10}}


def test_exclude_wins_over_include_in_either_order() -> None:
    inc = ff(fields="process.binary,process.pid", action="INCLUDE")
    exc = ff(fields="process.pid", action="EXCLUDE")
    for order in ([inc, exc], [exc, inc]):
        assert apply_field_filters(order, EXEC)["process_exec"] == {"process": {"binary": "/bin/x"}}


def test_input_is_never_mutated() -> None:
    snapshot = copy.deepcopy(EXEC)
    for f in parse_field_filter_lines(
            '{"fields":"process.cap.effective,ancestors.cwd,parent","action":"EXCLUDE"}\n'
            '{"fields":"process,ancestors","action":"INCLUDE"}'):
        f.apply(EXEC)
    apply_field_filters(parse_field_filter_lines('{"fields":"process.pid","action":"EXCLUDE"}'), EXEC)
    assert EXEC == snapshot


def test_rate_limit_info_and_odd_events_are_safe() -> None:
    info = {"rate_limit_info": {"number_of_dropped_process_events": "1"}, "node_name": "n"}
    assert ff(fields="process.pid").apply(info) == {"rate_limit_info": {}, "node_name": "n"}
    assert ff(fields="process.pid").apply({}) == {}
    assert ff(fields="process.pid").apply({"process_exec": "str"}) == {"process_exec": "str"}


def test_parse_and_round_trip() -> None:
    fs = parse_field_filter_lines('{"event_set":["PROCESS_EXEC"],"fields":"process.binary, parent.binary",'
                                  '"action":"exclude","invert_event_set":true}\n{"fields":"process","action":0}')
    assert fs[0].to_dict() == {"fields": "process.binary,parent.binary", "action": "EXCLUDE",
                               "event_set": ["process_exec"], "invert_event_set": True}
    assert fs[1].action == "INCLUDE"
    assert FieldFilter.from_dict(fs[0].to_dict()) == fs[0]


@pytest.mark.parametrize("text,match", [
    ('{"fields":"process.binary","action":"KEEP"}', "INCLUDE or EXCLUDE"),
    ('{"fields":""}', "empty"),
    ('{"action":"INCLUDE"}', "needs 'fields'"),
    ('{"fields":"process..binary"}', "invalid field path"),
    ('{"fields":"process.binary","event_set":["NOPE"]}', "unknown event type"),
    ('{"fields":"process.binary","colour":1}', "unknown field filter key"),
    ('{"fields":"process.binary","invert_event_set":"yes"}', "true or false"),
    ('{"fields":', "invalid JSON"),
])
def test_invalid(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as e:
        parse_field_filter_lines(text)
    assert "\n" not in str(e.value)
