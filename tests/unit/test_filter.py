"""Unit tests for kerneye.export.filter.event_kind (no kernel, no root)."""
from __future__ import annotations

from typing import Any

from kerneye.export.filter import event_kind


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
