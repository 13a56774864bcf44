"""Opcode -> decoder registry. The first byte of every message selects it.

A handler error or an unknown opcode is counted and logged at debug level;
it never stops the event path (Tetragon's HandlePerfData policy).
"""
from __future__ import annotations

import logging
from collections import Counter
from time import perf_counter
from typing import Any, Callable

from ..errors import KerneyeError

log = logging.getLogger("kerneye.dispatch")

Handler = Callable[[bytes], None]


class DuplicateHandler(KerneyeError):
    pass


class Dispatcher:
    def __init__(self) -> None:
        self._handlers: dict[int, tuple[str, Handler]] = {}
        self.received: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()  # kind -> count: empty, unknown_op, handler
        # Handler latency, sampled: one call in `_every` is timed (metrics/latency.py).
        self.latency: Any = None
        self._every = 0
        self._tick = 0  # 0: sampling off

    def sample_latency(self, hist: Any, every: int) -> None:
        """Time one handler call in `every` and report it to hist.observe(op, s)."""
        self.latency = hist
        self._every = self._tick = max(1, every) if hist is not None else 0

    def register(self, op: int, owner: str, fn: Handler) -> None:
        if op in self._handlers:
            raise DuplicateHandler(f"opcode {op} already handled by {self._handlers[op][0]}, not {owner}")
        self._handlers[op] = (owner, fn)

    def unregister_owner(self, owner: str) -> None:
        for op in [op for op, (o, _) in self._handlers.items() if o == owner]:
            del self._handlers[op]

    def dispatch(self, raw: bytes) -> None:
        if not raw:
            self.errors["empty"] += 1
            return
        op = raw[0]
        self.received[op] += 1
        h = self._handlers.get(op)
        if h is None:
            self.errors["unknown_op"] += 1
            log.debug("unknown opcode %d (%d bytes)", op, len(raw))
            return
        try:
            t = self._tick
            if t != 1:
                if t:
                    self._tick = t - 1
                h[1](raw)
            else:
                self._tick = self._every
                t0 = perf_counter()
                h[1](raw)
                self.latency.observe(op, perf_counter() - t0)
        except Exception:  # noqa: BLE001 - the event path must survive any decoder bug
            self.errors["handler"] += 1
            log.debug("handler for opcode %d failed", op, exc_info=True)
