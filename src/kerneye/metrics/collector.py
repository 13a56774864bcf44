"""Prometheus collectors that read the live agent when scraped.

Nothing is counted per event for metrics' sake except the events-by-binary
tally (Agent.emit) and the 1-in-N handler timing (Dispatcher): every other
value already exists as an agent, cache, reader or BPF counter and is read
here, at scrape time, like Tetragon's map-reading collectors
(pkg/metrics/kprobemetrics, eventmetrics/bpfcollector).

`METRICS` is the single list of what kerneye exposes; collect() builds its
families from it and tools/gen_metrics_docs.py renders it into
docs/reference/metrics.md. Each Agent gets its own registry
(`build_registry`); there is no global state.

The agent is read through these attributes (tests pass a fake with the
same shape): ready, events_by_kind, binaries (labels.BinaryCounter),
lost(), kernel_stats(), dispatcher.{received, errors, latency},
listeners[].{name, exported}, listener_errors, eventcache (len), tracker.
missing_parent, cache.{snapshot_stats(), max_size}, reader.{records,
peak_fill}, rb.{pending(), size}, cfg.rb_size, sensors.{sensors[].{name,
state}, shared_fds}, policies (PolicyManager: list(), hooks, unknown_hook,
obj), policy_errors.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from .. import __version__
from . import labels as L
from .latency import SAMPLE_EVERY

log = logging.getLogger("kerneye.metrics")

LabelValues = tuple[str, ...] | str  # the allowed values, or a description of a bounded set


@dataclass(frozen=True)
class MetricSpec:
    name: str
    kind: str  # counter | gauge | histogram
    help: str
    labels: tuple[tuple[str, LabelValues], ...] = ()

    @property
    def label_names(self) -> list[str]:
        return [n for n, _ in self.labels]

    def family(self) -> Metric:
        if self.kind == "counter":
            return CounterMetricFamily(self.name, self.help, labels=self.label_names)
        if self.kind == "gauge":
            return GaugeMetricFamily(self.name, self.help, labels=self.label_names)
        if self.kind == "histogram":
            return HistogramMetricFamily(self.name, self.help, labels=self.label_names)
        raise ValueError(self.kind)


_POLICY = ("policy", "one value per loaded TracingPolicy (metadata.name; the file name for a policy that failed "
                     "to load)")
_BINARY = ("binary", f"the binary path, for at most {L.BINARY_LIMIT} binaries (each gets its label after "
                     f"{L.BINARY_PROMOTE_AFTER} events); \"{L.OTHER}\" for the rest, \"{L.UNKNOWN}\" for events "
                     "whose process has no binary path")

METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("kerneye_build_info", "gauge", "Always 1; the version label identifies the agent build.",
               (("version", "the kerneye version, one value"),)),
    MetricSpec("kerneye_agent_ready", "gauge", "1 once the agent has loaded its sensors and serves events, else 0."),
    # events
    MetricSpec("kerneye_events_total", "counter", "Events emitted to the sinks, by event type.",
               (("type", L.EVENT_TYPES),)),
    MetricSpec("kerneye_events_by_binary_total", "counter",
               "Events emitted to the sinks, by the binary of the process they are about (all event types).",
               (_BINARY,)),
    MetricSpec("kerneye_events_exported_total", "counter", "Events written by each sink.",
               (("sink", L.SINKS),)),
    MetricSpec("kerneye_export_events_dropped_total", "counter",
               "Events the JSON export did not write: filtered (--export-allowlist/--export-denylist), "
               "rate_limited (--export-rate-limit), error (the write failed).",
               (("reason", L.EXPORT_DROP_REASONS),)),
    MetricSpec("kerneye_events_lost_total", "counter",
               "Events lost, by the stage that dropped them.",
               (("stage", L.LOSS_STAGES),)),
    MetricSpec("kerneye_observer_messages_total", "counter",
               "Ring-buffer records dispatched to a decoder, by message opcode.", (("op", L.MSG_OPS),)),
    MetricSpec("kerneye_decode_errors_total", "counter", "Records that could not be decoded, by reason.",
               (("kind", L.DECODE_ERROR_KINDS),)),
    MetricSpec("kerneye_listener_errors_total", "counter", "Exceptions raised by a sink while handling an event."),
    MetricSpec("kerneye_handler_latency_seconds", "histogram",
               f"Time to decode and deliver one ring-buffer record (enrichment and fan-out to the sinks "
               f"included). Sampled: one record in {SAMPLE_EVERY} is timed, so _count counts the sampled records "
               f"only.",
               (("op", L.MSG_OPS),)),
    # ring buffer
    MetricSpec("kerneye_ringbuf_size_bytes", "gauge", "Size of the BPF ring buffer (--rb-size)."),
    MetricSpec("kerneye_ringbuf_fill_ratio", "gauge",
               "Bytes produced by the kernel and not yet consumed, as a fraction of the ring buffer, at scrape "
               "time."),
    MetricSpec("kerneye_ringbuf_peak_fill_ratio", "gauge", "Highest fill ratio the reader has seen since start."),
    MetricSpec("kerneye_ringbuf_records_total", "counter", "Records read from the BPF ring buffer."),
    # process cache and event cache
    MetricSpec("kerneye_process_cache_size", "gauge", "Entries in the user-space process cache."),
    MetricSpec("kerneye_process_cache_capacity", "gauge", "Bound of the process cache (--process-cache-size)."),
    MetricSpec("kerneye_process_cache_evictions_total", "counter",
               "Process-cache entries evicted because the cache was full."),
    MetricSpec("kerneye_process_cache_misses_total", "counter", "Process-cache lookups that found nothing."),
    MetricSpec("kerneye_process_cache_collected_total", "counter",
               "Process-cache entries removed after their grace period (normal exits)."),
    MetricSpec("kerneye_eventcache_parked", "gauge",
               "Events waiting in the event cache for their process or parent record."),
    MetricSpec("kerneye_process_missing_parent_total", "counter",
               "process_exec events emitted without a parent record after waiting."),
    # policies
    MetricSpec("kerneye_policies_loaded", "gauge", "TracingPolicies loaded (enabled or disabled)."),
    MetricSpec("kerneye_policy_state", "gauge", "1 for the policy's current state, 0 for the others.",
               (_POLICY, ("state", L.POLICY_STATES))),
    MetricSpec("kerneye_policy_mode", "gauge", "1 for the policy's current mode, 0 for the other.",
               (_POLICY, ("mode", L.POLICY_MODES))),
    MetricSpec("kerneye_policy_events_total", "counter",
               "Policy hook hits by outcome, from the per-hook BPF counters: posted (event sent), enforced "
               "(action taken), monitored (action only reported: monitor mode), ratelimited (suppressed by "
               "rateLimit).",
               (_POLICY, ("action", L.POLICY_ACTIONS))),
    MetricSpec("kerneye_policy_events_lost_total", "counter",
               "Policy events the BPF program could not write because the ring buffer was full.", (_POLICY,)),
    MetricSpec("kerneye_policy_hooks", "gauge", "Installed policy hooks, by kind.", (("kind", L.HOOK_KINDS),)),
    # enforcement
    MetricSpec("kerneye_enforcement_mechanism_available", "gauge",
               "1 if the enforcement mechanism is usable on this kernel, 0 if not (probed at the first policy "
               "that needs enforcement; absent before).",
               (("mechanism", L.ENFORCE_MECHANISMS),)),
    MetricSpec("kerneye_enforcement_rules", "gauge",
               "Enforcement rules installed, by the mechanism holding them (a rule held by two back ends counts "
               "in both).",
               (("mechanism", L.ENFORCE_MECHANISMS),)),
    MetricSpec("kerneye_enforcement_decisions_total", "counter",
               "Operations an enforcement rule matched: denied (the operation failed) or would_deny (monitor "
               "mode), by policy.",
               (("policy", "one value per loaded policy with enforcement rules"),
                ("verdict", L.ENFORCE_VERDICTS))),
    # BPF
    MetricSpec("kerneye_bpf_errors_total", "counter",
               "Error and loss counters kept by the BPF programs (kerneye_stats map).",
               (("kind", L.BPF_ERROR_KINDS),)),
    MetricSpec("kerneye_bpf_map_entries", "gauge",
               "Entries in a BPF map: hash, LRU and LPM maps are counted at scrape time; for kerneye_hooks, the "
               "hook slots in use.",
               (("map", L.BPF_MAPS),)),
    MetricSpec("kerneye_bpf_map_capacity", "gauge", "max_entries of a BPF map.", (("map", L.BPF_MAPS),)),
    MetricSpec("kerneye_sensor_state", "gauge", "1 for the sensor's current state, 0 for the others.",
               (("sensor", L.SENSORS), ("state", L.SENSOR_STATES))),
)
SPECS: dict[str, MetricSpec] = {m.name: m for m in METRICS}

MapFill = Callable[[Any], dict[str, tuple[int, int]]]


def bpf_map_fill(agent: Any) -> dict[str, tuple[int, int]]:
    """map name -> (entries, capacity) for the maps the agent has loaded."""
    from ..bpf import maps  # the only kernel access; unit tests pass their own MapFill

    fds: dict[str, int] = dict(agent.sensors.shared_fds)
    pm = agent.policies
    obj = getattr(pm, "obj", None) if pm is not None else None
    out: dict[str, tuple[int, int]] = {}
    for name in L.BPF_MAPS:
        fd = fds.get(name)
        if fd is None and obj is not None:
            try:
                fd = obj.map_fd(name)
            except Exception:  # noqa: BLE001 - this object has no such map
                fd = None
        if fd is None or fd < 0:
            continue
        _type, key_size, cap = maps.info(fd)
        if name in L.COUNTED_MAPS:
            n = maps.count_keys(fd, key_size, cap + 1024)
        elif name == "kerneye_hooks":
            n = len(pm.hooks) if pm is not None else 0
        else:
            continue
        out[name] = (n, cap)
    return out


class AgentCollector(Collector):
    """Reads an Agent (or anything shaped like one) at scrape time."""

    def __init__(self, agent: Any, map_fill: MapFill | None = bpf_map_fill) -> None:
        self.agent = agent
        self.map_fill = map_fill
        self._lock = threading.Lock()
        self._closed = False

    def close(self) -> None:
        """After this returns no scrape touches the agent (its BPF fds may
        then be closed); later scrapes return build info only."""
        with self._lock:
            self._closed = True

    def describe(self) -> Iterable[Metric]:
        return [m.family() for m in METRICS]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            fams = {m.name: m.family() for m in METRICS}
            fams["kerneye_build_info"].add_metric([__version__], 1)
            if not self._closed:
                for section in (self._events, self._lost, self._observer, self._ringbuf, self._caches,
                                self._policies, self._enforcement, self._bpf, self._sensors):
                    try:
                        section(fams)
                    except Exception:  # noqa: BLE001 - a partial scrape beats none
                        log.debug("metrics section %s failed", section.__name__, exc_info=True)
            else:
                fams["kerneye_agent_ready"].add_metric([], 0)
        yield from fams.values()

    # --- sections ---------------------------------------------------------
    def _events(self, f: dict[str, Any]) -> None:
        a = self.agent
        f["kerneye_agent_ready"].add_metric([], 1 if a.ready else 0)
        by_type = _fold(dict(a.events_by_kind), L.EVENT_TYPES)
        for t in L.EVENT_TYPES:
            f["kerneye_events_total"].add_metric([t], by_type.get(t, 0))
        counts, other = a.binaries.snapshot()
        by_bin: dict[str, int] = {L.OTHER: other}
        for b, n in counts.items():
            b = b or L.UNKNOWN  # a binary literally named "other"/"unknown" merges: no duplicate series
            by_bin[b] = by_bin.get(b, 0) + n
        for b, n in sorted(by_bin.items()):
            f["kerneye_events_by_binary_total"].add_metric([b], n)
        sinks: dict[str, int] = {}
        for l in list(a.listeners):
            k = L.fold(getattr(l, "name", ""), L.SINKS)
            sinks[k] = sinks.get(k, 0) + int(getattr(l, "exported", 0))
        for s, n in sinks.items():
            f["kerneye_events_exported_total"].add_metric([s], n)
        drops = _fold(self._export_drops(), L.EXPORT_DROP_REASONS)
        for reason in L.EXPORT_DROP_REASONS:
            f["kerneye_export_events_dropped_total"].add_metric([reason], drops.get(reason, 0))

    def _export_drops(self) -> dict[str, int]:
        """Sum of the sinks' `dropped` dicts (export pipeline: filtered,
        rate_limited, error)."""
        out: dict[str, int] = {}
        for l in list(self.agent.listeners):
            d = getattr(l, "dropped", None)
            if isinstance(d, dict):
                for reason, n in d.items():
                    out[reason] = out.get(reason, 0) + int(n)
        return out

    def _lost(self, f: dict[str, Any]) -> None:
        lost = dict(self.agent.lost())
        if "export_ratelimit" not in lost:
            lost["export_ratelimit"] = self._export_drops().get("rate_limited", 0)
        for stage in L.LOSS_STAGES:
            f["kerneye_events_lost_total"].add_metric([stage], lost.get(stage, 0))

    def _observer(self, f: dict[str, Any]) -> None:
        a = self.agent
        d = a.dispatcher
        ops: dict[str, int] = {}
        for op, n in dict(d.received).items():
            k = L.op_name(op)
            ops[k] = ops.get(k, 0) + n
        for op_label in L.MSG_OPS:
            f["kerneye_observer_messages_total"].add_metric([op_label], ops.get(op_label, 0))
        errs = _fold(dict(d.errors), L.DECODE_ERROR_KINDS)
        pm = a.policies
        errs["unknown_hook"] = errs.get("unknown_hook", 0) + (pm.unknown_hook if pm is not None else 0)
        for k in L.DECODE_ERROR_KINDS:
            f["kerneye_decode_errors_total"].add_metric([k], errs.get(k, 0))
        f["kerneye_listener_errors_total"].add_metric([], a.listener_errors)
        hist = getattr(d, "latency", None)
        if hist is not None:
            for op_label, (buckets, total) in sorted(hist.snapshot().items()):
                f["kerneye_handler_latency_seconds"].add_metric([op_label], buckets, total)

    def _ringbuf(self, f: dict[str, Any]) -> None:
        a = self.agent
        rb, reader = a.rb, a.reader
        size = rb.size if rb is not None else a.cfg.rb_size
        f["kerneye_ringbuf_size_bytes"].add_metric([], size)
        fill = 0.0
        if rb is not None:
            try:
                fill = rb.pending() / rb.size
            except (ValueError, OSError):  # unmapped by a concurrent shutdown
                fill = 0.0
        f["kerneye_ringbuf_fill_ratio"].add_metric([], fill)
        f["kerneye_ringbuf_peak_fill_ratio"].add_metric([], reader.peak_fill if reader is not None else 0.0)
        f["kerneye_ringbuf_records_total"].add_metric([], reader.records if reader is not None else 0)

    def _caches(self, f: dict[str, Any]) -> None:
        a = self.agent
        cs = a.cache.snapshot_stats()
        f["kerneye_process_cache_size"].add_metric([], cs.size)
        f["kerneye_process_cache_capacity"].add_metric([], a.cache.max_size)
        f["kerneye_process_cache_evictions_total"].add_metric([], cs.evictions)
        f["kerneye_process_cache_misses_total"].add_metric([], cs.misses)
        f["kerneye_process_cache_collected_total"].add_metric([], cs.collected)
        f["kerneye_eventcache_parked"].add_metric([], len(a.eventcache))
        f["kerneye_process_missing_parent_total"].add_metric([], a.tracker.missing_parent)

    def _policies(self, f: dict[str, Any]) -> None:
        a = self.agent
        pm = a.policies
        pols = pm.list() if pm is not None else []
        f["kerneye_policies_loaded"].add_metric([], len(pols))
        rows = [(p["name"], p["state"], p["mode"], p) for p in pols]
        rows += [(os.path.basename(path), "error", "", None) for path in dict(a.policy_errors)]
        for name, state, mode, p in rows:
            for s in L.POLICY_STATES:
                f["kerneye_policy_state"].add_metric([name, s], 1 if s == state else 0)
            if p is None:
                continue
            for m in L.POLICY_MODES:
                f["kerneye_policy_mode"].add_metric([name, m], 1 if m == mode else 0)
            for act in L.POLICY_ACTIONS:
                f["kerneye_policy_events_total"].add_metric([name, act], p.get(L.POLICY_ACTION_KEYS[act], 0))
            f["kerneye_policy_events_lost_total"].add_metric([name], p.get("nlost", 0))
        kinds = dict.fromkeys(L.HOOK_KINDS, 0)
        if pm is not None:
            for rt in list(pm.hooks.values()):
                k = L.HOOK_KINDS[int(rt.compiled.kind)] if 0 <= int(rt.compiled.kind) < len(L.HOOK_KINDS) else None
                if k:
                    kinds[k] += 1
        for k, n in kinds.items():
            f["kerneye_policy_hooks"].add_metric([k], n)

    def _enforcement(self, f: dict[str, Any]) -> None:
        em = getattr(self.agent, "enforcement", None)
        if em is None:
            return
        if em.mechanisms is not None:
            for m in L.ENFORCE_MECHANISMS:
                if m in em.mechanisms:
                    f["kerneye_enforcement_mechanism_available"].add_metric([m], 1 if em.mechanisms[m] is None else 0)
        rules = dict.fromkeys(L.ENFORCE_MECHANISMS, 0)
        for p in em.list():
            for r in p["rules"]:
                for m in r["mechanism"].split("+"):
                    if m in rules:
                        rules[m] += 1
            f["kerneye_enforcement_decisions_total"].add_metric([p["name"], "denied"], p["ndenied"])
            f["kerneye_enforcement_decisions_total"].add_metric([p["name"], "would_deny"], p["nmonitored"])
        for m, n in rules.items():
            f["kerneye_enforcement_rules"].add_metric([m], n)

    def _bpf(self, f: dict[str, Any]) -> None:
        a = self.agent
        ks = a.kernel_stats()
        for k in L.BPF_ERROR_KINDS:
            f["kerneye_bpf_errors_total"].add_metric([k], ks.get(k, 0))
        if self.map_fill is None:
            return
        fill = self.map_fill(a)
        for name in L.BPF_MAPS:
            if name in fill:
                n, cap = fill[name]
                f["kerneye_bpf_map_entries"].add_metric([name], n)
                f["kerneye_bpf_map_capacity"].add_metric([name], cap)

    def _sensors(self, f: dict[str, Any]) -> None:
        states = {s.name: s.state for s in list(self.agent.sensors.sensors)}
        for name in L.SENSORS:
            cur = states.get(name, "unloaded")
            for st in L.SENSOR_STATES:
                f["kerneye_sensor_state"].add_metric([name, st], 1 if st == cur else 0)


def _fold(counts: dict[str, int], allowed: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for k, n in counts.items():
        k = L.fold(k, allowed)
        out[k] = out.get(k, 0) + n
    return out


def build_registry(agent: Any, map_fill: MapFill | None = bpf_map_fill,
                   process_metrics: bool = True) -> tuple[CollectorRegistry, AgentCollector]:
    """A fresh registry with the agent's collector, plus the standard
    process_* (CPU, memory, fds) and python_* metrics of client_python."""
    reg = CollectorRegistry()
    col = AgentCollector(agent, map_fill)
    reg.register(col)
    if process_metrics:
        from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        GCCollector(registry=reg)
    return reg, col
