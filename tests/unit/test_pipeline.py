"""Unit tests for kerneye.export.pipeline.ExportPipeline (no kernel)."""
from __future__ import annotations

import copy
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from kerneye.config import AgentConfig
from kerneye.errors import ConfigError, ExportError
from kerneye.export.fieldfilter import parse_field_filter_lines
from kerneye.export.filters import FilterSet, parse_filter_lines
from kerneye.export.jsonfile import RotatingFileWriter
from kerneye.export.pipeline import ExportPipeline
from kerneye.export.redact import Redactor, parse_redaction_filter_lines


class Ev:
    """Stands in for kerneye.events.event.Event: kind, cached to_json/to_dict."""

    def __init__(self, kind: str, pid: int, binary: str, args: str) -> None:
        self.kind = kind
        self._json = json.dumps({kind: {"process": {"pid": pid, "binary": binary, "arguments": args,
                                                    "cwd": "/"},
                                        "parent": {"pid": 1, "binary": "/bin/sh", "arguments": args}},
                                 "node_name": "n", "time": "t"}, separators=(",", ":"))
        self._dict: dict[str, Any] | None = None
        self.dict_calls = 0

    def to_json(self) -> str:
        return self._json

    def to_dict(self) -> dict[str, Any]:
        self.dict_calls += 1
        if self._dict is None:
            self._dict = json.loads(self._json)
        return self._dict


def _lines(p: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in p.read_text().splitlines()]


def test_fast_path_writes_cached_json_without_building_dicts(tmp_path: Path) -> None:
    p = ExportPipeline(RotatingFileWriter(tmp_path / "e.log"))
    assert p.fast_path and p.on_event == p._on_event_fast
    evs = [Ev("process_exec", i, "/bin/x", "a") for i in range(100)]
    for e in evs:
        p.on_event(e)
    p.close()
    assert all(e.dict_calls == 0 for e in evs)
    assert (tmp_path / "e.log").read_text() == "".join(e.to_json() + "\n" for e in evs)
    assert p.exported == 100 == p.received and p.dropped == {"filtered": 0, "rate_limited": 0, "error": 0}


def test_empty_filter_set_keeps_fast_path(tmp_path: Path) -> None:
    p = ExportPipeline(RotatingFileWriter(tmp_path / "e.log"), FilterSet(), Redactor([]), [])
    assert p.fast_path


def test_filters_redaction_field_filters_combined(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    p = ExportPipeline(
        RotatingFileWriter(path),
        FilterSet(parse_filter_lines('{"event_set":["PROCESS_EXEC"]}'), parse_filter_lines('{"binary_regex":["ls$"]}')),
        Redactor(parse_redaction_filter_lines('{"redact":["password=(\\\\S+)"]}')),
        parse_field_filter_lines('{"fields":"process.binary,process.arguments,parent.arguments","action":"INCLUDE"}'),
    )
    evs = [Ev("process_exec", 10, "/usr/bin/curl", "password=secret x"),
           Ev("process_exec", 11, "/bin/ls", "password=secret"),        # denied
           Ev("process_exit", 12, "/usr/bin/curl", "password=secret"),  # not allowed
           Ev("process_exec", 13, "/bin/true", "plain")]
    snapshots = [copy.deepcopy(e.to_dict()) for e in evs]
    for e in evs:
        p.on_event(e)
    p.close()
    out = _lines(path)
    assert out == [
        {"process_exec": {"process": {"binary": "/usr/bin/curl", "arguments": "password=***** x"},
                          "parent": {"arguments": "password=***** x"}}, "node_name": "n", "time": "t"},
        {"process_exec": {"process": {"binary": "/bin/true", "arguments": "plain"},
                          "parent": {"arguments": "plain"}}, "node_name": "n", "time": "t"},
    ]
    assert [e.to_dict() for e in evs] == snapshots  # the shared event dicts are untouched
    assert p.exported == 2 and p.dropped["filtered"] == 2 and p.received == 4


def test_filter_only_writes_cached_json(tmp_path: Path) -> None:
    path = tmp_path / "e.log"
    p = ExportPipeline(RotatingFileWriter(path), FilterSet(parse_filter_lines('{"binary_regex":["x$"]}')))
    e = Ev("process_exec", 1, "/bin/x", "a")
    p.on_event(e)
    p.close()
    assert path.read_text() == e.to_json() + "\n"


def test_writer_error_is_counted_and_reraised(tmp_path: Path) -> None:
    class Broken(RotatingFileWriter):
        def write(self, line: str) -> None:
            raise ExportError("disk full")

    for p in (ExportPipeline(Broken(tmp_path / "a.log")),
              ExportPipeline(Broken(tmp_path / "b.log"), FilterSet(parse_filter_lines('{"pid":[1]}')))):
        with pytest.raises(ExportError):
            p.on_event(Ev("process_exec", 1, "/x", ""))
        assert p.dropped["error"] == 1 and p.exported == 0 and p.received == 1
        p.close()


def _cfg(tmp_path: Path, **kw: Any) -> AgentConfig:
    return AgentConfig(node_name="node-x", bpf_dir="/nonexistent", export_file=str(tmp_path / "ev.log"), **kw)


def test_from_config(tmp_path: Path) -> None:
    allow = tmp_path / "allow.jsonl"
    allow.write_text('{"event_set":["PROCESS_EXEC"]}\n')
    cfg = _cfg(tmp_path, export_allowlist=f"@{allow}", export_rate_limit=0, export_file_perm=0o640,
               export_file_compress=True, export_file_rotation_interval_s=3600.0,
               redaction_filters='{"redact":["(a)"]}', field_filters='{"fields":"process.pid"}')
    p = ExportPipeline.from_config(cfg)
    assert not p.fast_path and p.filters is not None and len(p.filters.allow) == 1
    assert p.rate_limiter is not None and p.rate_limiter.per_minute == 0
    assert p.node_name == "node-x"
    p.on_event(Ev("process_exec", 1, "/x", ""))
    p.on_event(Ev("process_exit", 1, "/x", ""))
    p.close()
    assert p.dropped == {"filtered": 1, "rate_limited": 1, "error": 0}
    assert stat.S_IMODE((tmp_path / "ev.log").stat().st_mode) == 0o640
    info = _lines(tmp_path / "ev.log")
    assert info[0]["rate_limit_info"] == {"number_of_dropped_process_events": "1"}
    assert info[0]["node_name"] == "node-x"
    assert ExportPipeline.from_config(_cfg(tmp_path)).fast_path


def test_from_config_validates_before_creating_the_file(tmp_path: Path) -> None:
    for kw, match in (({"export_allowlist": '{"binary_regex":["("]}'}, "--export-allowlist entry 1"),
                      ({"export_denylist": '{"nope":1}'}, "--export-denylist entry 1"),
                      ({"field_filters": '{"fields":"a..b"}'}, "--field-filters entry 1"),
                      ({"redaction_filters": '{"redact":["x"]}'}, "--redaction-filters entry 1"),
                      ({"export_rate_limit": -5}, None)):
        if match is None:
            ExportPipeline.from_config(_cfg(tmp_path, **kw)).close()  # any negative = unlimited
            continue
        with pytest.raises(ConfigError, match=match):
            ExportPipeline.from_config(_cfg(tmp_path, **kw))
        assert not (tmp_path / "ev.log").exists()


def test_real_event_objects(tmp_path: Path) -> None:
    """With kerneye's own Event/Process classes."""
    from kerneye.events.event import Event
    from kerneye.process.model import Cred, Process

    def proc(pid: int, binary: str, args: str) -> Process:
        return Process(exec_id=f"e{pid}", parent_exec_id="", pid=pid, tid=pid, ktime=1, nspid=pid, auid=0, cwd="/",
                       binary=binary, arguments=args, flags=["execve"], start_time_ns=10**18,
                       cred=Cred(0, 0, 0, 0, 0, 0, 0, 0), cap_permitted=1, cap_effective=1, cap_inheritable=0,
                       ns={}, ns_is_host={}, cgroup_id=1, cgroup_path="/", docker="")

    path = tmp_path / "ev.log"
    p = ExportPipeline(RotatingFileWriter(path), FilterSet(parse_filter_lines('{"binary_regex":["curl$"]}')),
                       Redactor(parse_redaction_filter_lines('{"redact":["token=(\\\\S+)"]}')))
    ev = Event("process_exec", proc(5, "/usr/bin/curl", "token=abc"), proc(1, "/bin/sh", ""), 10**18, "n")
    other = Event("process_exec", proc(6, "/bin/ls", "token=abc"), None, 10**18, "n")
    p.on_event(ev)
    p.on_event(other)
    p.close()
    (line,) = _lines(path)
    assert line["process_exec"]["process"]["arguments"] == "token=*****"
    assert ev.to_dict()["process_exec"]["process"]["arguments"] == "token=abc"
