"""An event on its way to listeners.

`Event` keeps references to the cached Process records and renders its JSON
lazily, once, by joining their cached fragments; listeners that need field
access use `to_dict()` (also rendered once).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ..process.identity import rfc3339
from ..process.model import Process

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@dataclass(slots=True)
class Event:
    kind: str  # the oneof key: process_exec, process_exit, process_kprobe, ...
    process: Process
    parent: Process | None
    time_ns: int
    node_name: str
    extra: dict[str, Any] = field(default_factory=dict)  # kind-specific fields, in order
    ancestors: list[Process] | None = None
    _json: str | None = None
    _dict: dict[str, Any] | None = None

    def to_json(self) -> str:
        if self._json is None:
            parts = ['{"', self.kind, '":{"process":', self.process.json()]
            if self.parent is not None:
                parts += [',"parent":', self.parent.json()]
            if self.ancestors:
                parts += [',"ancestors":[', ",".join(a.json() for a in self.ancestors), "]"]
            for k, v in self.extra.items():
                parts += [',"', k, '":', _dumps(v)]
            parts += ['},"node_name":', _dumps(self.node_name), ',"time":"', rfc3339(self.time_ns), '"}']
            self._json = "".join(parts)
        return self._json

    def to_dict(self) -> dict[str, Any]:
        if self._dict is None:
            self._dict = json.loads(self.to_json())
        return self._dict
