"""EventCache: park, retry, give up after max_tries, flush, bounded size."""
from __future__ import annotations

from kerneye.eventcache import EventCache


class Item:
    """A parked handler that resolves once `ready` is set (or when final)."""

    def __init__(self, name: str, log: list[tuple[str, bool]], ready: bool = False) -> None:
        self.name = name
        self.log = log
        self.ready = ready

    def __call__(self, final: bool) -> bool:
        self.log.append((self.name, final))
        return self.ready or final


def test_park_and_retry_until_resolved() -> None:
    log: list[tuple[str, bool]] = []
    ec = EventCache(max_tries=10)
    a = Item("a", log)
    ec.park(a)
    assert len(ec) == 1 and ec.stats.parked == 1
    assert log == []  # parking does not call the handler
    ec.retry()
    ec.retry()
    assert log == [("a", False), ("a", False)] and len(ec) == 1
    a.ready = True
    ec.retry()
    assert log[-1] == ("a", False)
    assert len(ec) == 0
    assert ec.stats.resolved == 1 and ec.stats.gave_up == 0
    ec.retry()  # nothing left: no more calls
    assert len(log) == 3


def test_retry_tries_each_item_once_in_order() -> None:
    log: list[tuple[str, bool]] = []
    ec = EventCache()
    items = [Item(n, log) for n in "abc"]
    for it in items:
        ec.park(it)
    items[1].ready = True
    ec.retry()
    assert log == [("a", False), ("b", False), ("c", False)]
    assert len(ec) == 2
    log.clear()
    ec.retry()
    assert log == [("a", False), ("c", False)]  # order kept for the rest


def test_max_tries_then_final() -> None:
    log: list[tuple[str, bool]] = []
    ec = EventCache(max_tries=4)
    ec.park(Item("a", log))
    for _ in range(3):
        ec.retry()
    assert log == [("a", False)] * 3 and len(ec) == 1
    ec.retry()  # the 4th try is the last: the handler emits with what it has
    assert log[-1] == ("a", True)
    assert len(ec) == 0
    assert ec.stats.gave_up == 1 and ec.stats.resolved == 0
    ec.retry()
    assert len(log) == 4


def test_items_count_their_own_tries() -> None:
    log: list[tuple[str, bool]] = []
    ec = EventCache(max_tries=2)
    ec.park(Item("a", log))
    ec.retry()
    ec.park(Item("b", log))  # parked one retry later
    ec.retry()
    assert log == [("a", False), ("a", True), ("b", False)]
    ec.retry()
    assert log[-1] == ("b", True) and len(ec) == 0
    assert ec.stats.gave_up == 2


def test_flush_finalises_everything_in_order() -> None:
    log: list[tuple[str, bool]] = []
    ec = EventCache()
    for n in "abc":
        ec.park(Item(n, log))
    ec.retry()
    log.clear()
    ec.flush()
    assert log == [("a", True), ("b", True), ("c", True)]
    assert len(ec) == 0
    assert ec.stats.gave_up == 3 and ec.stats.resolved == 0 and ec.stats.parked == 3
    ec.flush()  # empty: a no-op
    assert len(log) == 3


def test_size_bound_finalises_the_oldest_never_drops() -> None:
    log: list[tuple[str, bool]] = []
    ec = EventCache(max_size=2)
    ec.park(Item("a", log))
    ec.park(Item("b", log))
    assert log == [] and len(ec) == 2
    ec.park(Item("c", log))  # full: "a" is emitted now, with what it has
    assert log == [("a", True)]
    assert len(ec) == 2
    assert ec.stats.parked == 3 and ec.stats.gave_up == 1
    ec.flush()
    assert log == [("a", True), ("b", True), ("c", True)]
