"""Export rate limit (``--export-rate-limit N``, events per minute).

A token bucket, as Tetragon's (``golang.org/x/time/rate`` with burst N):
the bucket holds at most ``N`` tokens and starts full; it refills at
``N / 60`` tokens per second; each exported event takes one token. ``N < 0``
means unlimited (build no limiter), ``N == 0`` exports nothing.

Dropped events are counted. :meth:`RateLimiter.take_report` returns the
number dropped since the last report, at most once per ``report_interval_s``
(default 10 s; Tetragon uses its one-minute window), and
:meth:`RateLimiter.take_all` returns whatever is left (on close), so the sum of
all reports equals :attr:`RateLimiter.dropped_total`. The exporter turns each
report into a ``rate_limit_info`` event (:func:`rate_limit_info_json`),
which itself is never rate limited or filtered.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

from kerneye.errors import ConfigError
from kerneye.process.identity import rfc3339

__all__ = ["RateLimiter", "rate_limit_info_json", "DEFAULT_REPORT_INTERVAL_S"]

DEFAULT_REPORT_INTERVAL_S = 10.0


class RateLimiter:
    """Token bucket of ``per_minute`` events per minute; see the module docstring.

    Thread-safe. ``clock`` (seconds, monotonic) is injectable for tests.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        report_interval_s: float = DEFAULT_REPORT_INTERVAL_S,
    ) -> None:
        if isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 0:
            raise ConfigError(f"export rate limit must be an integer >= 0 events per minute, got {per_minute!r}")
        if report_interval_s <= 0:
            raise ConfigError(f"rate limit report interval must be > 0 seconds, got {report_interval_s}")
        self.per_minute = per_minute
        self._rate = per_minute / 60.0
        self._burst = float(per_minute)
        self._clock = clock
        self._tokens = self._burst
        now = clock()
        self._last = now
        self._interval = report_interval_s
        self._next_report = now + report_interval_s
        self._pending = 0
        self.dropped_total = 0
        self.allowed_total = 0
        self._lock = threading.Lock()

    def allow(self) -> bool:
        """Take a token: True = export the event; False = it is dropped (counted)."""
        with self._lock:
            now = self._clock()
            if now > self._last:
                self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
                self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                self.allowed_total += 1
                return True
            self._pending += 1
            self.dropped_total += 1
            return False

    @property
    def pending(self) -> int:
        """Drops not reported yet."""
        return self._pending

    def take_report(self) -> int:
        """Drops to report now (0 if none, or if the last report was less
        than ``report_interval_s`` ago); resets the pending count."""
        with self._lock:
            if not self._pending:
                return 0
            now = self._clock()
            if now < self._next_report:
                return 0
            n, self._pending = self._pending, 0
            self._next_report = now + self._interval
            return n

    def take_all(self) -> int:
        """All unreported drops, regardless of the interval (used on close)."""
        with self._lock:
            n, self._pending = self._pending, 0
            return n


def rate_limit_info_json(dropped: int, node_name: str, time_ns: int | None = None) -> str:
    """The ``rate_limit_info`` event, one JSON line.

    ``number_of_dropped_process_events`` is a uint64 in Tetragon's proto, so
    its JSON form (protobuf JSON mapping, which Tetragon's export uses) is a
    decimal string.
    """
    t = rfc3339(time.time_ns() if time_ns is None else time_ns)
    return (
        '{"rate_limit_info":{"number_of_dropped_process_events":"' + str(int(dropped)) + '"},'
        '"node_name":' + json.dumps(node_name, ensure_ascii=False) + ',"time":"' + t + '"}'
    )
