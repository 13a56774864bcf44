"""Ring-buffer reader thread: drains batches into a bounded queue.

The kernel never waits for us. The ring buffer (16-64 MiB) is the big
buffer: when the decoder falls behind and the queue is full, the reader
stops draining and lets records accumulate in the ring instead of dropping
them in user space; only a full ring loses events, and the kernel counts
each one (kerneye_stats). `queue_lost` counts batches dropped at shutdown
only. The reader wakes when the kernel signals (enough bytes queued, see
cfg_wakeup_bytes) or every `poll_s`, whichever comes first.
"""
from __future__ import annotations

import logging
import queue
import threading

from ..bpf.ringbuf import RingBuffer

log = logging.getLogger("kerneye.reader")


class Reader(threading.Thread):
    def __init__(self, rb: RingBuffer, out: "queue.Queue[list[bytes]]", poll_s: float = 0.01) -> None:
        super().__init__(name="kerneye-rb-reader", daemon=True)
        self.rb = rb
        self.out = out
        self.poll_s = poll_s
        self.records = 0
        self.batches = 0
        self.queue_lost = 0
        self.peak_fill = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        rb, out = self.rb, self.out
        while not self._halt.is_set():
            pending = rb.pending()
            fill = pending / rb.size
            if fill > self.peak_fill:
                self.peak_fill = fill
            batch = rb.drain()
            if not batch:
                rb.wait(self.poll_s)
                continue
            self.records += len(batch)
            self.batches += 1
            while not self._halt.is_set():
                try:
                    out.put(batch, timeout=0.2)
                    break
                except queue.Full:
                    continue  # back-pressure: the ring keeps filling meanwhile
            else:
                self.queue_lost += len(batch)
        # final drain so that shutdown loses nothing already produced
        batch = rb.drain()
        if batch:
            self.records += len(batch)
            try:
                out.put_nowait(batch)
            except queue.Full:
                self.queue_lost += len(batch)

    def stop(self) -> None:
        self._halt.set()
