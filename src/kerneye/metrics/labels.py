"""Every label value a kerneye metric can carry, listed up front.

STYLE.md §6.3: metric names are `kerneye_<subsystem>_<thing>[_total]` and
the values of every label are bounded. A label is either one of the fixed
tuples below, or one of the two data-driven labels with a documented bound:

  policy   one value per loaded TracingPolicy (bounded by what the operator
           loads; a deleted policy's series disappear at the next scrape)
  binary   `BinaryCounter`: at most `limit` binaries get their own value,
           everything else is counted under "other"

Values the code does not know fold into OTHER instead of creating a series.
"""
from __future__ import annotations

from typing import Iterable

OTHER = "other"
UNKNOWN = "unknown"  # an event whose process record has no binary path

# kerneye_events_total{type}: the oneof keys of the JSON export
# (docs/reference/events.md), as in Tetragon's events.proto EventType.
EVENT_TYPES: tuple[str, ...] = (
    "process_exec", "process_exit", "process_kprobe", "process_tracepoint", "process_uprobe", "process_lsm",
    "process_usdt", "process_loader", "process_throttle", "rate_limit_info", "test", OTHER,
)

# kerneye_events_lost_total{stage}: where on its way an event can be dropped.
# Agent.lost() returns these keys; a stage it does not report reads 0.
LOSS_STAGE_HELP: dict[str, str] = {
    "ringbuf": "the BPF ring buffer was full; counted by the BPF programs (raise --rb-size)",
    "queue": "the reader -> decoder queue; only at shutdown, since the reader applies back-pressure instead "
             "of dropping",
    "api_clients": "a slow API client's queue was full; the event was dropped for that client only",
    "execve_map_full": "kerneye_execve_map was full, so the kernel could not track a new process",
    "export_ratelimit": "dropped by --export-rate-limit (and reported in rate_limit_info events)",
    "enforcement_reports": "enforcement decisions made (the operation was still denied) but not reported: the "
                           "back end's ring buffer or report queue was full",
}
LOSS_STAGES: tuple[str, ...] = tuple(LOSS_STAGE_HELP)

# kerneye_policy_events_total{action}: the per-hook BPF counters
# (struct gen_hook_stats) summed over a policy's hooks.
POLICY_ACTIONS: tuple[str, ...] = ("posted", "enforced", "monitored", "ratelimited")
# PolicyManager.list() key of each action
POLICY_ACTION_KEYS: dict[str, str] = {"posted": "npost", "enforced": "nenforce", "monitored": "nmonitor",
                                      "ratelimited": "nratelimited"}

# kerneye_policy_state{state}, kerneye_policy_mode{mode}
POLICY_STATES: tuple[str, ...] = ("enabled", "disabled", "error")
POLICY_MODES: tuple[str, ...] = ("monitor", "enforce")
ENFORCE_MECHANISMS: tuple[str, ...] = ("bpf-lsm", "fanotify", "cgroup-bpf", "signal")
ENFORCE_VERDICTS: tuple[str, ...] = ("denied", "would_deny")

# kerneye_policy_hooks{kind}: enum gen_hook_kind, indexed by its value
HOOK_KINDS: tuple[str, ...] = ("syscall", "tracepoint", "uprobe", "raw_tracepoint", "kprobe")

# kerneye_decode_errors_total{kind}
DECODE_ERROR_HELP: dict[str, str] = {
    "empty": "a zero-length ring-buffer record",
    "unknown_op": "no decoder for the record's opcode",
    "handler": "a decoder raised (a bug or a malformed record; details at --log-level debug)",
    "unknown_hook": "a policy event for a hook deleted while the event was in flight",
}
DECODE_ERROR_KINDS: tuple[str, ...] = tuple(DECODE_ERROR_HELP)

# kerneye_bpf_errors_total{kind}: enum stat_idx of kerneye_stats, lower case
BPF_ERROR_KINDS: tuple[str, ...] = ("rb_lost_exec", "rb_lost_exit", "rb_lost_clone", "rb_lost_generic",
                                    "execve_map_full", "gen_stash_full")

# kerneye_observer_messages_total{op} and kerneye_handler_latency_seconds{op}:
# enum msg_op, lower case
MSG_OPS: tuple[str, ...] = ("execve", "exit", "clone", "generic", OTHER)
_OP_NAMES = {5: "execve", 7: "exit", 23: "clone", 13: "generic"}

# kerneye_bpf_map_entries{map}, kerneye_bpf_map_capacity{map}. Hash, LRU and
# LPM maps are counted key by key at scrape time; for the array maps the
# entries are the slots user space has handed out.
BPF_MAPS: tuple[str, ...] = (
    "kerneye_execve_map",   # one entry per live process (base sensor)
    "kerneye_bin_names", "kerneye_bin_prefix", "kerneye_bin_postfix",  # matchBinaries
    "kerneye_str_eq", "kerneye_str_prefix", "kerneye_str_postfix",     # matchArgs string values
    "kerneye_addr", "kerneye_int_set",                                 # matchArgs addresses / integer sets
    "kerneye_rate",         # rateLimit state (LRU)
    "kerneye_stash",        # entry arguments waiting for the syscall's return
    "kerneye_hooks",        # policy hooks in use (array)
    "kerneye_slots",        # attachment points in use (array)
)
COUNTED_MAPS: frozenset[str] = frozenset(BPF_MAPS) - {"kerneye_hooks", "kerneye_slots"}

# kerneye_sensor_state{sensor,state}
SENSORS: tuple[str, ...] = ("base", "generic")
SENSOR_STATES: tuple[str, ...] = ("unloaded", "loaded", "error")

# kerneye_export_events_dropped_total{reason}: export/pipeline.py DROP_REASONS
EXPORT_DROP_REASONS: tuple[str, ...] = ("filtered", "rate_limited", "error", OTHER)

# kerneye_events_exported_total{sink}: Listener.name of each sink
SINKS: tuple[str, ...] = ("export-file", "stdout", "api", OTHER)

BINARY_LIMIT = 128
BINARY_PROMOTE_AFTER = 4


def fold(value: str, allowed: Iterable[str]) -> str:
    """`value` if it is an allowed label value, else "other"."""
    return value if value in allowed else OTHER


def op_name(op: int) -> str:
    return _OP_NAMES.get(op, OTHER)


class BinaryCounter:
    """Events per binary with a bounded label set (for
    kerneye_events_by_binary_total).

    A binary gets its own label once it has caused `promote_after` events
    while not labelled, as long as fewer than `limit` binaries are
    labelled; the frequent binaries of a host therefore win the labels,
    not whatever happened to run first (e.g. the start-up /proc scan, where
    most binaries appear once). Labels are never taken back, and each event
    is counted in exactly one series (its binary's, or "other" while the
    binary is not labelled), so every series is a monotonic counter and the
    series sum to the number of events.

    Cost per event: one dict lookup and store when the binary is labelled;
    a second, bounded dict for the candidates otherwise.
    """

    __slots__ = ("limit", "promote_after", "counts", "other", "_cand", "_cand_cap")

    def __init__(self, limit: int = BINARY_LIMIT, promote_after: int = BINARY_PROMOTE_AFTER) -> None:
        self.limit = limit
        self.promote_after = max(1, promote_after)
        self.counts: dict[str, int] = {}
        self.other = 0
        self._cand: dict[str, int] = {}
        self._cand_cap = max(64, 8 * limit)

    def add(self, binary: str) -> None:
        c = self.counts
        n = c.get(binary)
        if n is not None:
            c[binary] = n + 1
        else:
            self._miss(binary)

    def _miss(self, binary: str) -> None:
        self.other += 1
        if len(self.counts) >= self.limit:
            return  # all labels are taken: "other" from now on
        cand = self._cand
        n = cand.get(binary, 0) + 1
        if n >= self.promote_after:
            cand.pop(binary, None)
            self.counts[binary] = 0  # counted in "other" so far; its own series starts now
            if len(self.counts) >= self.limit:
                cand.clear()
            return
        cand[binary] = n
        if len(cand) > self._cand_cap:
            # keep the more frequent half (ties: the most recent)
            keep = sorted(cand.items(), key=lambda kv: kv[1], reverse=True)[: self._cand_cap // 2]
            self._cand = dict(keep)

    def snapshot(self) -> tuple[dict[str, int], int]:
        """(labelled counts, other) for a scrape; safe from another thread."""
        return dict(self.counts), self.other
