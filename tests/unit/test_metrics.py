"""Metrics: the collector on a fake agent (exact names, labels, values), the
bounded binary label, sampled latency, the HTTP endpoint and the generated
reference. No kernel, no libbpf: the BPF map reader is a fake."""
from __future__ import annotations

import importlib.util
import os
import re
import urllib.request
from types import SimpleNamespace as NS
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kerneye.errors import ConfigError
from kerneye.export.filter import EVENT_TYPES as EXPORT_EVENT_TYPES
from kerneye.metrics import labels as L
from kerneye.metrics.collector import METRICS, SPECS, AgentCollector, build_registry
from kerneye.metrics.latency import BUCKETS, LatencyHistogram
from kerneye.metrics.server import MetricsServer, parse_addr
from kerneye.observer.dispatch import Dispatcher
from kerneye.process.cache import ProcessCache

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- a fake agent -------------------------------------------------------------------

def fake_agent(**over: Any) -> NS:
    d = Dispatcher()
    d.received.update({5: 7, 7: 6, 23: 3, 13: 4, 99: 2})
    d.errors.update({"handler": 2, "unknown_op": 1})
    hist = LatencyHistogram()
    hist.observe(5, 3e-6)     # first bucket
    hist.observe(5, 2e-4)     # le=0.00025
    hist.observe(13, 5.0)     # +Inf only
    d.latency = hist
    bins = L.BinaryCounter(limit=2, promote_after=2)
    for b in ["/bin/a", "/bin/a", "/bin/a", "/bin/b", "", "", "", "/bin/c", "/bin/c"]:
        bins.add(b)
    cache = ProcessCache(max_size=100)
    cache.stats.evictions, cache.stats.misses, cache.stats.collected = 4, 5, 6
    cache._by_id.update({"x": None, "y": None})  # type: ignore[dict-item]  # two entries for size
    policies = NS(
        list=lambda: [
            {"name": "files", "state": "enabled", "mode": "enforce", "npost": 10, "nenforce": 2, "nmonitor": 0,
             "nratelimited": 1, "nlost": 0},
            {"name": "net", "state": "disabled", "mode": "monitor", "npost": 0, "nenforce": 0, "nmonitor": 3,
             "nratelimited": 0, "nlost": 7},
        ],
        hooks={1: NS(compiled=NS(kind=0)), 2: NS(compiled=NS(kind=0)), 3: NS(compiled=NS(kind=2))},
        unknown_hook=1,
        obj=None,
    )
    a = NS(
        ready=True,
        events_by_kind={"process_exec": 5, "process_exit": 4, "process_kprobe": 10, "made_up": 1},
        binaries=bins,
        lost=lambda: {"ringbuf": 3, "queue": 0, "api_clients": 2, "execve_map_full": 1},
        kernel_stats=lambda: {"rb_lost_exec": 2, "rb_lost_exit": 0, "rb_lost_clone": 0, "execve_map_full": 1,
                              "rb_lost_generic": 1, "gen_stash_full": 0},
        dispatcher=d,
        listeners=[NS(name="export-file", exported=19, dropped={"filtered": 4, "rate_limited": 6, "error": 0}),
                   NS(name="api", exported=3, dropped=lambda: 2), NS(name="mystery", exported=1)],
        listener_errors=2,
        eventcache=[object()],
        tracker=NS(missing_parent=1),
        cache=cache,
        reader=NS(records=42, peak_fill=0.5),
        rb=NS(pending=lambda: 1024, size=4096),
        cfg=NS(rb_size=4096),
        sensors=NS(sensors=[NS(name="base", state="loaded"), NS(name="generic", state="error")], shared_fds={}),
        policies=policies,
        policy_errors={"/etc/kerneye/tracing-policies/broken.yaml": "bad selector"},
    )
    for k, v in over.items():
        setattr(a, k, v)
    return a


def fake_maps(_agent: Any) -> dict[str, tuple[int, int]]:
    return {"kerneye_execve_map": (321, 65536), "kerneye_str_eq": (2, 16384), "kerneye_hooks": (3, 4096)}


def scrape(agent: Any, map_fill: Any = fake_maps) -> tuple[Samples, dict[str, str]]:
    reg, _ = build_registry(agent, map_fill, process_metrics=False)
    text = generate_latest(reg).decode()
    samples: Samples = {}
    types: dict[str, str] = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples, types


def v(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def series(samples: Samples, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {lab: val for (n, lab), val in samples.items() if n == name}


# --- the collector --------------------------------------------------------------------

def test_event_metrics_exact() -> None:
    s, types = scrape(fake_agent())
    from kerneye import __version__

    assert series(s, "kerneye_build_info") == {frozenset({("version", __version__)}): 1}
    assert v(s, "kerneye_agent_ready") == 1
    assert types["kerneye_events"] == "counter"
    ev = {dict(k)["type"]: val for k, val in series(s, "kerneye_events_total").items()}
    assert ev == {t: 0 for t in L.EVENT_TYPES} | {"process_exec": 5, "process_exit": 4, "process_kprobe": 10,
                                                  "other": 1}
    assert {dict(k)["sink"]: val for k, val in series(s, "kerneye_events_exported_total").items()} == {
        "export-file": 19, "api": 3, "other": 1}
    # export_ratelimit: from the export pipeline's drop counters (Agent.lost() does not report it)
    assert {dict(k)["stage"]: val for k, val in series(s, "kerneye_events_lost_total").items()} == {
        "ringbuf": 3, "queue": 0, "api_clients": 2, "execve_map_full": 1, "export_ratelimit": 6,
        "enforcement_reports": 0}
    assert {dict(k)["reason"]: val for k, val in series(s, "kerneye_export_events_dropped_total").items()} == {
        "filtered": 4, "rate_limited": 6, "error": 0, "other": 0}
    assert {dict(k)["op"]: val for k, val in series(s, "kerneye_observer_messages_total").items()} == {
        "execve": 7, "exit": 6, "clone": 3, "generic": 4, "other": 2}
    assert {dict(k)["kind"]: val for k, val in series(s, "kerneye_decode_errors_total").items()} == {
        "empty": 0, "unknown_op": 1, "handler": 2, "unknown_hook": 1}
    assert v(s, "kerneye_listener_errors_total") == 2


def test_events_by_binary_bounded() -> None:
    s, _ = scrape(fake_agent())
    # limit 2, promote after 2: /bin/a (3 events: its first 2 in other, then
    # labelled), "" likewise (as "unknown"); then the labels are all taken and
    # /bin/b and /bin/c only ever count in "other"
    got = {dict(k)["binary"]: val for k, val in series(s, "kerneye_events_by_binary_total").items()}
    assert got == {"/bin/a": 1, "unknown": 1, "other": 7}
    assert sum(got.values()) == 9


def test_handler_latency_histogram() -> None:
    s, types = scrape(fake_agent())
    assert types["kerneye_handler_latency_seconds"] == "histogram"
    assert v(s, "kerneye_handler_latency_seconds_bucket", op="execve", le="5e-06") == 1
    assert v(s, "kerneye_handler_latency_seconds_bucket", op="execve", le="0.0001") == 1
    assert v(s, "kerneye_handler_latency_seconds_bucket", op="execve", le="0.00025") == 2
    assert v(s, "kerneye_handler_latency_seconds_bucket", op="execve", le="+Inf") == 2
    assert v(s, "kerneye_handler_latency_seconds_count", op="execve") == 2
    assert v(s, "kerneye_handler_latency_seconds_sum", op="execve") == pytest.approx(2.03e-4)
    assert v(s, "kerneye_handler_latency_seconds_bucket", op="generic", le="1.0") == 0
    assert v(s, "kerneye_handler_latency_seconds_bucket", op="generic", le="+Inf") == 1
    les = [dict(k)["le"] for k in series(s, "kerneye_handler_latency_seconds_bucket") if dict(k)["op"] == "execve"]
    assert len(les) == len(BUCKETS) + 1


def test_ringbuf_and_cache_metrics_exact() -> None:
    s, _ = scrape(fake_agent())
    assert v(s, "kerneye_ringbuf_size_bytes") == 4096
    assert v(s, "kerneye_ringbuf_fill_ratio") == 0.25
    assert v(s, "kerneye_ringbuf_peak_fill_ratio") == 0.5
    assert v(s, "kerneye_ringbuf_records_total") == 42
    assert v(s, "kerneye_process_cache_size") == 2
    assert v(s, "kerneye_process_cache_capacity") == 100
    assert v(s, "kerneye_process_cache_evictions_total") == 4
    assert v(s, "kerneye_process_cache_misses_total") == 5
    assert v(s, "kerneye_process_cache_collected_total") == 6
    assert v(s, "kerneye_eventcache_parked") == 1
    assert v(s, "kerneye_process_missing_parent_total") == 1


def test_policy_metrics_exact() -> None:
    s, _ = scrape(fake_agent())
    assert v(s, "kerneye_policies_loaded") == 2
    state = {(dict(k)["policy"], dict(k)["state"]): val for k, val in series(s, "kerneye_policy_state").items()}
    assert state == {("files", "enabled"): 1, ("files", "disabled"): 0, ("files", "error"): 0,
                     ("net", "enabled"): 0, ("net", "disabled"): 1, ("net", "error"): 0,
                     ("broken.yaml", "enabled"): 0, ("broken.yaml", "disabled"): 0, ("broken.yaml", "error"): 1}
    mode = {(dict(k)["policy"], dict(k)["mode"]): val for k, val in series(s, "kerneye_policy_mode").items()}
    assert mode == {("files", "enforce"): 1, ("files", "monitor"): 0, ("net", "enforce"): 0, ("net", "monitor"): 1}
    acts = {(dict(k)["policy"], dict(k)["action"]): val for k, val in series(s, "kerneye_policy_events_total").items()}
    assert acts == {("files", "posted"): 10, ("files", "enforced"): 2, ("files", "monitored"): 0,
                    ("files", "ratelimited"): 1, ("net", "posted"): 0, ("net", "enforced"): 0,
                    ("net", "monitored"): 3, ("net", "ratelimited"): 0}
    assert v(s, "kerneye_policy_events_lost_total", policy="net") == 7
    assert v(s, "kerneye_policy_events_lost_total", policy="files") == 0
    hooks = {dict(k)["kind"]: val for k, val in series(s, "kerneye_policy_hooks").items()}
    assert hooks == {"syscall": 2, "tracepoint": 0, "uprobe": 1, "raw_tracepoint": 0, "kprobe": 0}


def test_bpf_and_sensor_metrics_exact() -> None:
    s, _ = scrape(fake_agent())
    errs = {dict(k)["kind"]: val for k, val in series(s, "kerneye_bpf_errors_total").items()}
    assert errs == {"rb_lost_exec": 2, "rb_lost_exit": 0, "rb_lost_clone": 0, "rb_lost_generic": 1,
                    "execve_map_full": 1, "gen_stash_full": 0}
    assert {dict(k)["map"]: val for k, val in series(s, "kerneye_bpf_map_entries").items()} == {
        "kerneye_execve_map": 321, "kerneye_str_eq": 2, "kerneye_hooks": 3}
    assert {dict(k)["map"]: val for k, val in series(s, "kerneye_bpf_map_capacity").items()} == {
        "kerneye_execve_map": 65536, "kerneye_str_eq": 16384, "kerneye_hooks": 4096}
    st = {(dict(k)["sensor"], dict(k)["state"]): val for k, val in series(s, "kerneye_sensor_state").items() if val}
    assert st == {("base", "loaded"): 1, ("generic", "error"): 1}


def test_agent_before_start_scrapes_cleanly() -> None:
    """No reader, ring buffer, policies or sensors yet: zeros, no errors."""
    a = fake_agent(ready=False, reader=None, rb=None, policies=None, policy_errors={},
                   sensors=NS(sensors=[], shared_fds={}), kernel_stats=lambda: {})
    s, _ = scrape(a, lambda _a: {})
    assert v(s, "kerneye_agent_ready") == 0
    assert v(s, "kerneye_ringbuf_size_bytes") == 4096
    assert v(s, "kerneye_ringbuf_records_total") == 0
    assert v(s, "kerneye_policies_loaded") == 0
    assert v(s, "kerneye_decode_errors_total", kind="unknown_hook") == 0
    assert v(s, "kerneye_sensor_state", sensor="base", state="unloaded") == 1
    assert not series(s, "kerneye_bpf_map_entries")


def test_a_failing_source_costs_only_its_section() -> None:
    def boom() -> dict[str, int]:
        raise OSError("map gone")

    s, _ = scrape(fake_agent(lost=boom))
    assert not series(s, "kerneye_events_lost_total")
    assert v(s, "kerneye_observer_messages_total", op="execve") == 7  # other sections are intact
    assert v(s, "kerneye_process_cache_size") == 2
    assert v(s, "kerneye_policies_loaded") == 2


def test_closed_collector_reads_nothing() -> None:
    a = fake_agent()
    reg, col = build_registry(a, fake_maps, process_metrics=False)
    col.close()
    a.lost = None  # would raise if read
    text = generate_latest(reg).decode()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert [s.value for s in fams["kerneye_agent_ready"].samples] == [0]
    assert [s.labels for s in fams["kerneye_build_info"].samples] == [{"version": "0.1.0"}]
    assert not fams["kerneye_events"].samples


def test_registries_are_per_agent() -> None:
    """No global registry: several agents (or tests) in one process."""
    r1, _ = build_registry(fake_agent(), fake_maps)
    r2, _ = build_registry(fake_agent(events_by_kind={"process_exec": 99}), fake_maps)
    assert r1.get_sample_value("kerneye_events_total", {"type": "process_exec"}) == 5
    assert r2.get_sample_value("kerneye_events_total", {"type": "process_exec"}) == 99
    assert r1.get_sample_value("process_cpu_seconds_total") is not None


# --- naming and label rules (STYLE.md §6.3) ---------------------------------------------

def test_names_and_declared_labels() -> None:
    assert len(SPECS) == len(METRICS)
    for m in METRICS:
        assert re.fullmatch(r"kerneye_[a-z0-9_]+", m.name), m.name
        assert m.kind in ("counter", "gauge", "histogram")
        assert m.name.endswith("_total") == (m.kind == "counter"), m.name
        assert m.help and m.help.endswith("."), m.name
        for name, vals in m.labels:
            assert vals, (m.name, name)
            if isinstance(vals, tuple):
                assert len(set(vals)) == len(vals) and all(vals), (m.name, name)


def test_every_emitted_label_value_is_declared() -> None:
    s, _ = scrape(fake_agent())
    for (name, labs), _val in s.items():
        base = re.sub(r"_(bucket|count|sum)$", "", name)
        spec = SPECS.get(base) or SPECS.get(base + "_total") or SPECS[name]
        allowed = dict(spec.labels)
        for k, val in labs:
            if k == "le":
                continue
            assert k in allowed, (name, k)
            if isinstance(allowed[k], tuple):
                assert val in allowed[k], (name, k, val)


def test_event_types_cover_the_export_vocabulary() -> None:
    assert set(EXPORT_EVENT_TYPES) <= set(L.EVENT_TYPES)


def test_export_drop_reasons_cover_the_pipeline() -> None:
    pipeline = pytest.importorskip("kerneye.export.pipeline")
    assert set(pipeline.DROP_REASONS) <= set(L.EXPORT_DROP_REASONS)


def test_loss_stage_reported_by_the_agent_wins() -> None:
    a = fake_agent(lost=lambda: {"ringbuf": 0, "export_ratelimit": 11})
    s, _ = scrape(a)
    assert v(s, "kerneye_events_lost_total", stage="export_ratelimit") == 11


def test_bpf_error_kinds_match_the_abi() -> None:
    from kerneye.abi.types import StatIdx

    names = {i.name.lower() for i in StatIdx if i != StatIdx.MAX}
    assert set(L.BPF_ERROR_KINDS) == names


def test_maps_listed_exist_in_the_bpf_sources() -> None:
    src = ""
    for p in ("bpf/lib/common.bpf.h", "bpf/lib/execve_map.bpf.h", "bpf/generic/generic.bpf.c"):
        with open(os.path.join(ROOT, p)) as f:
            src += f.read()
    for m in L.BPF_MAPS:
        assert re.search(rf"\}} {m} SEC\(\"\.maps\"\)", src), m


# --- the binary label ------------------------------------------------------------------

def test_binary_counter_bound_and_invariants() -> None:
    c = L.BinaryCounter(limit=3, promote_after=4)
    seen: dict[str, float] = {}
    total = 0
    for round_ in range(50):
        for i in range(20):  # 20 binaries, bin0 the most frequent
            for _ in range(20 - i):
                c.add(f"/bin/b{i}")
                total += 1
        counts, other = c.snapshot()
        assert len(counts) <= 3
        assert sum(counts.values()) + other == total
        for k, n in {**counts, "other": other}.items():
            assert n >= seen.get(k, 0), "counters never go down"
            seen[k] = n
    assert set(c.snapshot()[0]) == {"/bin/b0", "/bin/b1", "/bin/b2"}


def test_binary_counter_candidates_stay_bounded() -> None:
    c = L.BinaryCounter(limit=2, promote_after=3)
    for i in range(10000):
        c.add(f"/tmp/once-{i}")
    assert not c.counts and c.other == 10000
    assert len(c._cand) <= c._cand_cap


# --- sampled latency in the dispatcher -----------------------------------------------------

def test_dispatcher_times_one_call_in_n() -> None:
    d = Dispatcher()
    calls = []
    d.register(5, "t", calls.append)
    d.dispatch(b"\x05a")  # sampling off: nothing observed, nothing breaks
    h = LatencyHistogram()
    d.sample_latency(h, 4)
    for _ in range(20):
        d.dispatch(b"\x05x")
    assert len(calls) == 21
    buckets, _sum = h.snapshot()["execve"]
    assert buckets[-1] == ("+Inf", 5)
    d.sample_latency(None, 4)
    d.dispatch(b"\x05y")
    assert len(calls) == 22


def test_dispatcher_counts_handler_errors_when_sampled() -> None:
    d = Dispatcher()
    d.register(5, "t", lambda raw: 1 / 0)
    d.sample_latency(LatencyHistogram(), 1)
    d.dispatch(b"\x05")
    assert d.errors["handler"] == 1


# --- the HTTP endpoint ------------------------------------------------------------------

@pytest.mark.parametrize("addr,want", [
    ("127.0.0.1:2112", ("127.0.0.1", 2112)),
    (":2112", ("0.0.0.0", 2112)),
    ("[::1]:9090", ("::1", 9090)),
    ("localhost:0", ("localhost", 0)),
])
def test_parse_addr(addr: str, want: tuple[str, int]) -> None:
    assert parse_addr(addr) == want


@pytest.mark.parametrize("addr", ["2112", "host:", ":99999", "::1:2112", "x:y"])
def test_parse_addr_rejects(addr: str) -> None:
    with pytest.raises(ConfigError):
        parse_addr(addr)


def test_http_endpoint_serves_and_stops() -> None:
    reg, _ = build_registry(fake_agent(), fake_maps)
    srv = MetricsServer("127.0.0.1:0", reg)
    srv.start()
    try:
        assert srv.port > 0
        with urllib.request.urlopen(srv.url, timeout=5) as r:
            body = r.read().decode()
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        assert 'kerneye_events_total{type="process_exec"} 5.0' in body
        assert "process_resident_memory_bytes" in body
    finally:
        srv.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(srv.url, timeout=2)


def test_http_endpoint_port_in_use_is_a_config_error() -> None:
    reg, _ = build_registry(fake_agent(), fake_maps, process_metrics=False)
    a = MetricsServer("127.0.0.1:0", reg)
    a.start()
    try:
        b = MetricsServer(f"127.0.0.1:{a.port}", reg)
        with pytest.raises(ConfigError, match="cannot serve metrics"):
            b.start()
    finally:
        a.close()


def test_cli_and_config_have_the_flag() -> None:
    from kerneye.cli.main import _parser
    from kerneye.config import AgentConfig

    ns = _parser().parse_args(["agent", "--metrics-server", ":2112"])
    assert ns.metrics_server == ":2112"
    assert _parser().parse_args(["agent"]).metrics_server == ""
    assert AgentConfig(node_name="n", bpf_dir="/x").metrics_server == ""


# --- the generated reference ---------------------------------------------------------------

def test_reference_docs_are_up_to_date() -> None:
    spec = importlib.util.spec_from_file_location("gen_metrics_docs", os.path.join(ROOT, "tools", "gen_metrics_docs.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with open(os.path.join(ROOT, "docs", "reference", "metrics.md"), encoding="utf-8") as f:
        assert f.read() == mod.render(), "docs/reference/metrics.md is stale: run python3 tools/gen_metrics_docs.py"
    for m in METRICS:
        assert f"## {m.name}\n" in mod.render()
