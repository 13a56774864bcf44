"""A sampled handler-latency histogram, cheap enough for the event path.

`Dispatcher` times one handler call in `every` (see
Dispatcher.sample_latency) and calls `observe()`; the collector turns
`snapshot()` into kerneye_handler_latency_seconds at scrape time. Only the
main (decoder) thread writes; a scrape reads plain ints and floats.
"""
from __future__ import annotations

from bisect import bisect_left

from .labels import op_name

# Seconds. Decoding one record takes a few microseconds; a process_exec
# with a cache miss, parking and fan-out to several sinks can take a
# millisecond.
BUCKETS: tuple[float, ...] = (5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2,
                              0.1, 1.0)
SAMPLE_EVERY = 64


class LatencyHistogram:
    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = tuple(sorted(buckets))
        self._data: dict[int, list[float]] = {}  # op -> [count per bucket..., +Inf count, sum]

    def observe(self, op: int, seconds: float) -> None:
        d = self._data.get(op)
        if d is None:
            d = self._data[op] = [0] * (len(self.buckets) + 1) + [0.0]
        d[bisect_left(self.buckets, seconds)] += 1
        d[-1] += seconds

    def snapshot(self) -> dict[str, tuple[list[tuple[str, float]], float]]:
        """op label -> (cumulative [(le, count)...] ending with +Inf, sum)."""
        out: dict[str, tuple[list[tuple[str, float]], float]] = {}
        for op, d in list(self._data.items()):
            d = list(d)
            label = op_name(op)
            prev = out.get(label)
            acc = 0.0
            cum: list[tuple[str, float]] = []
            for i, le in enumerate((*[repr(b) for b in self.buckets], "+Inf")):
                acc += d[i]
                cum.append((le, acc + (prev[0][i][1] if prev else 0)))
            out[label] = (cum, d[-1] + (prev[1] if prev else 0.0))
        return out
