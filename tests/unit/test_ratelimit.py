"""Unit tests for kerneye.export.ratelimit and the pipeline's rate_limit_info events."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kerneye.errors import ConfigError
from kerneye.export.jsonfile import RotatingFileWriter
from kerneye.export.pipeline import ExportPipeline
from kerneye.export.ratelimit import RateLimiter, rate_limit_info_json


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


class FakeEvent:
    def __init__(self, i: int, kind: str = "process_exec") -> None:
        self.kind = kind
        self._d = {kind: {"process": {"pid": i, "binary": "/bin/x", "arguments": f"a{i}"}},
                   "node_name": "n", "time": "t"}

    def to_json(self) -> str:
        return json.dumps(self._d, separators=(",", ":"))

    def to_dict(self) -> dict:
        return self._d


def test_token_bucket_burst_then_refill() -> None:
    c = Clock()
    rl = RateLimiter(60, clock=c)  # 1/s, burst 60
    assert sum(rl.allow() for _ in range(100)) == 60
    assert rl.dropped_total == 40 and rl.pending == 40
    c.t += 10
    assert sum(rl.allow() for _ in range(100)) == 10
    c.t += 1000  # refill is capped at the burst
    assert sum(rl.allow() for _ in range(100)) == 60


def test_zero_exports_nothing() -> None:
    rl = RateLimiter(0, clock=Clock())
    assert not any(rl.allow() for _ in range(10))
    assert rl.dropped_total == 10


def test_invalid_limit() -> None:
    with pytest.raises(ConfigError):
        RateLimiter(-1)
    with pytest.raises(ConfigError):
        RateLimiter(1, report_interval_s=0)


def test_reports_at_most_once_per_interval_and_sum_to_total() -> None:
    c = Clock()
    rl = RateLimiter(0, clock=c, report_interval_s=10)
    for _ in range(5):
        rl.allow()
    assert rl.take_report() == 0  # interval not over yet
    c.t += 10
    assert rl.take_report() == 5
    for _ in range(3):
        rl.allow()
    c.t += 5
    assert rl.take_report() == 0  # 5 s after the last report
    c.t += 5
    assert rl.take_report() == 3
    rl.allow()
    assert rl.take_all() == 1 and rl.take_all() == 0
    assert rl.dropped_total == 9


def test_rate_limit_info_json_shape() -> None:
    d = json.loads(rate_limit_info_json(42, "node-1", 1_700_000_000_123_456_789))
    assert d == {"rate_limit_info": {"number_of_dropped_process_events": "42"}, "node_name": "node-1",
                 "time": "2023-11-14T22:13:20.123456789Z"}


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_pipeline_emits_rate_limit_info_with_correct_counts(tmp_path: Path) -> None:
    c = Clock()
    path = tmp_path / "ev.log"
    p = ExportPipeline(RotatingFileWriter(path), rate_limiter=RateLimiter(60, clock=c, report_interval_s=10),
                       node_name="node-1")
    assert not p.fast_path
    total = 0
    for i in range(500):  # burst: 60 pass, 440 dropped
        p.on_event(FakeEvent(i))
        total += 1
    p.flush()
    assert p.exported == 60 and p.dropped["rate_limited"] == 440
    c.t += 10  # window over: next flush reports
    p.flush()
    for i in range(500, 600):  # 10 tokens refilled
        p.on_event(FakeEvent(i))
        total += 1
    c.t += 3
    p.flush()  # too early for another report
    p.close()  # the rest is reported on close
    lines = _lines(path)
    infos = [x for x in lines if "rate_limit_info" in x]
    events = [x for x in lines if "process_exec" in x]
    assert [int(x["rate_limit_info"]["number_of_dropped_process_events"]) for x in infos] == [440, 90]
    assert all(x["node_name"] == "node-1" and x["time"].endswith("Z") for x in infos)
    assert len(events) == p.exported == 70
    assert p.exported + p.dropped["rate_limited"] == total == p.received
    assert p.rate_limit_info_events == 2


def test_rate_limit_counts_only_events_that_pass_filters(tmp_path: Path) -> None:
    from kerneye.export.filters import FilterSet, parse_filter_lines

    c = Clock()
    p = ExportPipeline(RotatingFileWriter(tmp_path / "ev.log"),
                       filters=FilterSet(parse_filter_lines('{"event_set":["PROCESS_EXEC"]}')),
                       rate_limiter=RateLimiter(5, clock=c))
    for i in range(20):
        p.on_event(FakeEvent(i, "process_exit"))
        p.on_event(FakeEvent(i))
    p.close()
    assert p.dropped == {"filtered": 20, "rate_limited": 15, "error": 0}
    assert p.exported == 5
    infos = [x for x in _lines(tmp_path / "ev.log") if "rate_limit_info" in x]
    assert [x["rate_limit_info"]["number_of_dropped_process_events"] for x in infos] == ["15"]
