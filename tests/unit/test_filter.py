"""Unit tests for kerneye.export.filter (no kernel, no root)."""
from __future__ import annotations

import json
from typing import Any

import pytest

from kerneye.errors import ConfigError
from kerneye.export.filter import EventFilter, event_kind


def _proc(binary: str = "/usr/bin/curl", pid: int = 100, docker: str | None = None) -> dict[str, Any]:
    p: dict[str, Any] = {"exec_id": "eA==", "pid": pid, "binary": binary, "arguments": ""}
    if docker is not None:
        p["docker"] = docker
    return p


def _event(kind: str = "process_exec", **body: Any) -> dict[str, Any]:
    body.setdefault("process", _proc())
    return {kind: body, "node_name": "host1", "time": "2026-12-03T08:45:36.123456789Z"}


def test_event_kind_ignores_envelope_keys_in_any_order() -> None:
    ev = {"node_name": "n", "time": "t", "cluster_name": "c", "process_kprobe": {}}
    assert event_kind(ev) == "process_kprobe"
    assert event_kind({"time": "t", "node_name": "n"}) == ""
    assert event_kind({}) == ""
    assert event_kind("not a dict") == ""  # type: ignore[arg-type]
    assert event_kind({"brand_new_kind": {}, "time": "t"}) == "brand_new_kind"


def test_empty_filter_matches_everything_including_odd_events() -> None:
    f = EventFilter()
    assert f.match(_event())
    assert f.match({"node_name": "n"})
    assert f.match({"process_whatever": "not a dict"})


def test_process_regex_uses_search_and_any() -> None:
    f = EventFilter(process_regex=["curl$", "^/bin/ba"])
    assert f.match(_event(process=_proc("/usr/bin/curl")))
    assert f.match(_event(process=_proc("/bin/bash")))
    assert not f.match(_event(process=_proc("/usr/bin/wget")))
    # search, not match: a pattern can hit the middle of the path
    assert EventFilter(process_regex=["bin/cu"]).match(_event())
    # no process at all does not match a process constraint
    assert not f.match({"process_exec": {}, "time": "t"})


def test_pids() -> None:
    f = EventFilter(pids=[1, 100])
    assert f.match(_event(process=_proc(pid=100)))
    assert not f.match(_event(process=_proc(pid=101)))


@pytest.mark.parametrize("name", ["process_exit", "PROCESS_EXIT", "Process_Exit"])
def test_event_types_accept_json_key_and_enum_name(name: str) -> None:
    f = EventFilter(event_types=[name])
    assert f.event_types == ["process_exit"]
    assert f.match(_event("process_exit", status=0))
    assert not f.match(_event("process_exec"))


def test_unknown_event_type_is_config_error() -> None:
    with pytest.raises(ConfigError, match="PROCES_EXEC"):
        EventFilter(event_types=["PROCES_EXEC"])


def test_container_prefix_both_directions_and_host_never_matches() -> None:
    full = "551e161c47d8ff0eb665438a7bcd5b4e3ef5a297282b40a92b7c77d6bd168eb3"
    ev = _event(process=_proc(docker=full[:15]))
    assert EventFilter(container=["551e16"]).match(ev)
    assert EventFilter(container=[full]).match(ev)  # full id vs truncated field
    assert not EventFilter(container=["deadbeef"]).match(ev)
    assert not EventFilter(container=["551e16"]).match(_event(process=_proc()))
    assert not EventFilter(container=["551e16"]).match(_event(process=_proc(docker="")))


def test_empty_container_id_rejected() -> None:
    with pytest.raises(ConfigError, match="container"):
        EventFilter(container=[""])


def test_policy_names() -> None:
    f = EventFilter(policy_names=["file-monitoring"])
    assert f.match(_event("process_kprobe", function_name="fd_install", policy_name="file-monitoring"))
    assert not f.match(_event("process_kprobe", function_name="fd_install", policy_name="other"))
    assert not f.match(_event("process_exec"))  # exec events carry no policy


def test_constraints_are_anded() -> None:
    f = EventFilter(process_regex=["curl"], pids=[100], event_types=["PROCESS_EXEC"])
    assert f.match(_event(process=_proc(pid=100)))
    assert not f.match(_event(process=_proc(pid=7)))
    assert not f.match(_event("process_exit", process=_proc(pid=100)))
    assert not f.match(_event(process=_proc("/bin/sh", pid=100)))


def test_unknown_event_kind_still_filtered_by_process() -> None:
    ev = _event("process_future_thing", process=_proc(pid=5))
    assert EventFilter(pids=[5]).match(ev)
    assert not EventFilter(pids=[6]).match(ev)


def test_invalid_regex_is_one_line_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        EventFilter(process_regex=["ok", "(unclosed"])
    msg = str(info.value)
    assert "(unclosed" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pids": ["1"]},
        {"pids": [True]},
        {"process_regex": "curl"},  # a bare string, not a list
        {"policy_names": [3]},
    ],
)
def test_wrong_types_are_config_errors(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        EventFilter(**kwargs)


def test_dict_round_trip_through_json() -> None:
    f = EventFilter(
        process_regex=["curl$"],
        pids=[1, 2],
        event_types=["PROCESS_KPROBE", "process_exec"],
        container=["abc"],
        policy_names=["p"],
    )
    wire = json.dumps(f.to_dict())
    g = EventFilter.from_dict(json.loads(wire))
    assert g == f
    assert g.event_types == ["process_kprobe", "process_exec"]
    assert g.match(_event("process_kprobe", policy_name="p", process=_proc(pid=2, docker="abcdef")))


def test_from_dict_defaults_and_unknown_keys() -> None:
    assert EventFilter.from_dict({}) == EventFilter()
    assert EventFilter.from_dict({"pids": [3]}).pids == [3]
    with pytest.raises(ConfigError, match="binary_regex"):
        EventFilter.from_dict({"binary_regex": ["x"]})
    with pytest.raises(ConfigError):
        EventFilter.from_dict(["not", "a", "dict"])  # type: ignore[arg-type]


def test_filter_keeps_private_copies() -> None:
    pids = [1]
    f = EventFilter(pids=pids)
    pids.append(2)
    assert f.pids == [1]
    assert not f.match(_event(process=_proc(pid=2)))
    out = f.to_dict()
    out["pids"].append(9)
    assert f.pids == [1]
