"""Event kinds: the envelope keys, Tetragon's event types and ``event_kind``.

The filter language itself (Tetragon's ``Filter``: allow/deny lists for the
export and for gRPC streams) lives in :mod:`kerneye.export.filters`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Keys of the GetEventsResponse envelope; everything else at the top level is
# the oneof body that names the event kind.
ENVELOPE_KEYS: frozenset[str] = frozenset(
    {"node_name", "time", "aggregation_info", "cluster_name", "node_labels"}
)

# JSON keys of Tetragon's EventType enum (events.proto). Filter values are
# checked against this set so that a typo fails loudly instead of silently
# matching nothing; add kerneye-specific kinds here when they appear.
EVENT_TYPES: frozenset[str] = frozenset(
    {
        "process_exec",
        "process_exit",
        "process_kprobe",
        "process_tracepoint",
        "process_loader",
        "process_uprobe",
        "process_throttle",
        "process_lsm",
        "process_usdt",
        "test",
        "rate_limit_info",
    }
)


def event_kind(event: Mapping[str, Any]) -> str:
    """Return the event's oneof key (``"process_exec"``, ``"process_kprobe"``...).

    The kind is the first top-level key that is not an envelope field
    (``node_name``, ``time``, ...). Returns ``""`` when there is none or when
    ``event`` is not a mapping; never raises.
    """
    if not isinstance(event, Mapping):
        return ""
    for key in event:
        if key not in ENVELOPE_KEYS:
            return str(key)
    return ""
