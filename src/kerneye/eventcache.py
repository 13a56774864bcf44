"""Parks messages whose process (or parent) is not known yet and retries them.

Events can arrive out of order: a child's exec before the /proc record of its
parent, an exit before the exec it belongs to (ring-buffer records from
different CPUs, or the start-up scan racing live events). A handler that
cannot resolve its process parks a callable here; the observer calls it again on every tick until it resolves or `max_tries` is reached,
when the handler is asked to emit with what it has (`final=True`).
Nothing is dropped silently: every give-up is counted.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

# A parked item: call it with final=False until it returns True (done).
Retryable = Callable[[bool], bool]


@dataclass
class EventCacheStats:
    parked: int = 0
    resolved: int = 0
    gave_up: int = 0
    size: int = 0


class EventCache:
    def __init__(self, max_tries: int = 20, max_size: int = 100_000) -> None:
        self.max_tries = max_tries
        self.max_size = max_size
        self._q: deque[tuple[Retryable, int]] = deque()
        self.stats = EventCacheStats()

    def park(self, fn: Retryable) -> None:
        if len(self._q) >= self.max_size:
            # Full: resolve the oldest now with what it has, never drop.
            old, _ = self._q.popleft()
            old(True)
            self.stats.gave_up += 1
        self._q.append((fn, 0))
        self.stats.parked += 1

    def retry(self) -> None:
        for _ in range(len(self._q)):
            fn, tries = self._q.popleft()
            tries += 1
            final = tries >= self.max_tries
            if fn(final):
                if final:
                    self.stats.gave_up += 1
                else:
                    self.stats.resolved += 1
            else:
                self._q.append((fn, tries))

    def flush(self) -> None:
        """Emit everything still parked (agent shutdown)."""
        while self._q:
            fn, _ = self._q.popleft()
            fn(True)
            self.stats.gave_up += 1

    def __len__(self) -> int:
        return len(self._q)

    def __bool__(self) -> bool:  # an empty cache is still a cache
        return True

    def snapshot_stats(self) -> EventCacheStats:
        self.stats.size = len(self._q)
        return self.stats
