"""Listeners receive every event the observer emits (fan-out).

A listener must not block: the JSON file writer buffers, the API gives each
client its own bounded queue. A listener that raises is counted, not fatal.
"""
from __future__ import annotations

import sys
from typing import Protocol, TextIO

from ..events.event import Event
from ..export.compact import encode_compact


class Listener(Protocol):
    name: str

    def on_event(self, ev: Event) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class StdoutListener:
    """Compact or JSON lines to a terminal (or any text stream)."""

    name = "stdout"

    def __init__(self, mode: str = "compact", color: bool = False, stream: TextIO | None = None) -> None:
        self.mode = mode
        self.color = color
        self.stream = stream or sys.stdout
        self.exported = 0

    def on_event(self, ev: Event) -> None:
        if self.mode == "json":
            line = ev.to_json()
        else:
            line = encode_compact(ev.to_dict(), self.color)
            if line is None:
                return
        try:
            self.stream.write(line + "\n")
        except BrokenPipeError:
            self.mode = "none"
            return
        self.exported += 1

    def flush(self) -> None:
        try:
            self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass

    def close(self) -> None:
        self.flush()
