"""The agent: loads sensors, runs the event pipeline, serves the local API.

Threads:
  kerneye-rb-reader   drains the ring buffer into a bounded queue
  main (run())        decodes batches -> process tracker -> listeners;
                      ticks the event cache, the process-cache GC, flushes
  kerneye-api_*       gRPC API workers (one per GetEvents stream, see api/grpc_server.py)
The process cache and event cache are touched only by the main thread.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from typing import Any

from . import __version__, system
from .abi import btfcheck
from .bpf.ringbuf import RingBuffer
from .config import AgentConfig
from .errors import ConfigError, KerneyeError
from .events.event import Event
from .eventcache import EventCache
from .export.pipeline import ExportPipeline
from .metrics.collector import build_registry
from .metrics.labels import BinaryCounter
from .metrics.latency import SAMPLE_EVERY, LatencyHistogram
from .metrics.server import MetricsServer
from .observer.dispatch import Dispatcher
from .observer.listeners import Listener, StdoutListener
from .observer.reader import Reader
from .process import procfs
from .process.cache import ProcessCache
from .process.identity import Clock
from .process.tracker import ProcessTracker
from .sensors import exec as exec_sensor
from .sensors.base import Sensor, SensorManager
from .enforce.manager import EnforcementManager, Installed, PolicyEntry, Verdict, render_args
from .enforce.rules import RulePlan, errno_name
from .sensors.generic import PolicyManager

log = logging.getLogger("kerneye.agent")


class Agent:
    def __init__(self, cfg: AgentConfig) -> None:
        self.cfg = cfg
        self.clock = Clock()
        self.dispatcher = Dispatcher()
        self.cache = ProcessCache(cfg.process_cache_size, cfg.process_cache_grace_s)
        self.eventcache = EventCache()
        self.listeners: list[Listener] = []
        self.listener_errors = 0
        self.events_by_kind: dict[str, int] = {}
        self.binaries = BinaryCounter()  # kerneye_events_by_binary_total (bounded labels)
        self._count_binary = self.binaries.add
        self.tracker = ProcessTracker(cfg.node_name, self.clock, procfs.host_ns(), self.cache, self.eventcache,
                                      self.emit, ancestors=cfg.enable_ancestors)
        self.sensors = SensorManager(self.dispatcher)
        self.base: Sensor | None = None
        self.rb: RingBuffer | None = None
        self.reader: Reader | None = None
        self.queue: queue.Queue[list[bytes]] = queue.Queue(maxsize=cfg.queue_batches)
        self.lock = system.AgentLock(cfg.run_dir)
        self.api: Any = None
        self.policies: PolicyManager | None = None
        self.enforcement: EnforcementManager | None = None
        self.policy_errors: dict[str, str] = {}
        self.features: dict[str, str | None] = {}
        self.ready = False
        self.started_at = time.time()
        self._stop = threading.Event()
        self._last_lost = 0
        self._last_enf_lost = 0
        # Prometheus: a registry per agent, read at scrape time (metrics/collector.py)
        self.registry, self._metrics_collector = build_registry(self)
        self.metrics_server: MetricsServer | None = None

    # --- lifecycle --------------------------------------------------------
    def start(self) -> None:
        """Everything up to 'ready'. On failure, undo what was done and raise."""
        cfg = self.cfg
        system.check_privileges()
        system.check_btf()
        if cfg.rb_size & (cfg.rb_size - 1) or cfg.rb_size < 4096:
            raise ConfigError(f"--rb-size {cfg.rb_size} must be a power of two of at least 4096 bytes")
        base_obj = exec_sensor.object_path(cfg.bpf_dir)
        if not os.path.exists(base_obj):
            raise ConfigError(f"BPF objects not found in {cfg.bpf_dir}: build them with `make -C bpf` or set --bpf-lib")
        # Refuse to start on any layout mismatch: the anchor object carries
        # every ABI type, each sensor object the ones it uses.
        btfcheck.check(os.path.join(cfg.bpf_dir, "abi_anchor.bpf.o"))
        btfcheck.check(base_obj, require_all=False)
        self.lock.acquire()
        try:
            system.ensure_mount(system.BPFFS, "bpf")
            try:
                system.ensure_mount(system.TRACEFS, "tracefs")
            except KerneyeError as e:  # only policy sensors need it
                log.warning("%s", e)
            if cfg.export_file:
                self.listeners.append(ExportPipeline.from_config(cfg))
            if cfg.output in ("compact", "json"):
                self.listeners.append(StdoutListener(cfg.output, cfg.color))
            self.base = exec_sensor.make(cfg.bpf_dir, self.tracker, cfg.rb_size, cfg.rb_wakeup_bytes)
            self.sensors.load(self.base)
            self.rb = RingBuffer(self.sensors.shared_fds["kerneye_events_rb"], cfg.rb_size)
            self._load_generic()
            # Attached first, then scanned: a process is either in /proc at
            # scan time or seen by the programs (or both; the map decides).
            if cfg.procfs_scan:
                for raw in exec_sensor.seed(self.base):
                    self.dispatcher.dispatch(raw)
            self.reader = Reader(self.rb, self.queue, cfg.rb_poll_ms / 1000)
            self.reader.start()
            if cfg.api:
                from .api.grpc_server import GrpcServer

                self.api = GrpcServer(self, cfg.socket_path, address=cfg.server_address,
                                      tls_cert_file=cfg.server_tls_cert_file, tls_key_file=cfg.server_tls_key_file,
                                      tls_client_ca_files=cfg.server_tls_client_ca_files,
                                      insecure=cfg.server_insecure, client_queue=cfg.api_client_queue_size,
                                      redaction_filters=getattr(cfg, "redaction_filters", ""))
                self.api.start()
                self.listeners.append(self.api)
            if cfg.metrics_server:
                self.dispatcher.sample_latency(LatencyHistogram(), SAMPLE_EVERY)
                self.metrics_server = MetricsServer(cfg.metrics_server, self.registry)
                self.metrics_server.start()
        except BaseException:
            self.shutdown()
            raise
        self._load_static_policies()
        self.ready = True
        system.sd_notify("READY=1")  # systemd Type=notify (contrib/systemd/kerneye.service)
        log.info("kerneye %s ready on %s: %d processes known, programs: %s", __version__, cfg.node_name,
                 len(self.cache), ", ".join(self.base.programs()))

    def _load_generic(self) -> None:
        from .bpf import features
        from .policy.compile import Compiler

        for b in features.BACKENDS:
            self.features[b] = features.probe(self.cfg.bpf_dir, b)
            if self.features[b]:
                log.info("%s", self.features[b])
        # what the compiler may use: the hook back ends, and raw tracepoints (cookies from v6.10)
        cfeatures = dict(self.features, rawtp=features.rawtp_cookie(self.cfg.bpf_dir))
        if cfeatures["rawtp"]:
            log.info("%s", cfeatures["rawtp"])
        self.policies = PolicyManager(self.cfg.bpf_dir, self.sensors.shared_fds,
                                      Compiler(self.tracker.host_ns, cfeatures), self.cfg.node_name, self.clock,
                                      self.cache, self.eventcache, self.emit, self.cfg.enable_ancestors,
                                      self.cfg.rb_wakeup_bytes, self.cfg.policy_events_full_process)
        self.sensors.load(self.policies.sensor())
        self.enforcement = EnforcementManager(bpf_dir=self.cfg.bpf_dir,
                                              keep_on_exit=self.cfg.keep_enforcement_on_exit,
                                              execve_map_fd=self.sensors.shared_fds.get("kerneye_execve_map"),
                                              binaries=self.policies)

    def _load_static_policies(self) -> None:
        """--tracing-policy / --tracing-policy-dir: a broken policy is logged
        (one line, with file:line) and listed with state error; the agent and
        the other policies run on."""
        files = list(self.cfg.tracing_policies)
        if self.cfg.tracing_policy_dir:
            d = self.cfg.tracing_policy_dir
            if not os.path.isdir(d):
                raise ConfigError(f"--tracing-policy-dir {d} is not a directory")
            files += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith((".yaml", ".yml")))
        for path in files:
            try:
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError) as e:
                log.error("policy %s not loaded: cannot read it: %s", path, e)
                self.policy_errors[path] = str(e)
                continue
            try:
                self.add_policy(text, path, self.cfg.policy_mode or None)
            except KerneyeError as e:
                log.error("policy %s not loaded: %s", path, e)
                self.policy_errors[path] = str(e)

    def add_policy(self, text: str, source: str, mode: str | None) -> dict[str, Any]:
        """A TracingPolicy (its Override selectors go to the enforcement back
        ends, the rest to the policy sensor) or a kerneye EnforcementPolicy."""
        from .enforce import translate
        from .policy import enforcement

        assert self.policies is not None and self.enforcement is not None
        doc = enforcement.load_any(text, source)
        if isinstance(doc, RulePlan):
            plan = doc
            if mode:
                plan.mode = mode
            if plan.policy in self.policies.policies:
                raise KerneyeError(f"a policy named {plan.policy} is already loaded; delete it first")
            entry = self.enforcement.add(plan)
            return {"ok": True, "name": plan.policy, "mode": plan.mode, "hooks": 0, "rules": len(entry.rules)}
        tp = doc
        pmode = mode or tp.spec.policy_mode or "enforce"
        traced, plan = translate.split(tp, pmode)
        if self.enforcement.has(tp.name):
            raise KerneyeError(f"a policy named {tp.name} is already loaded; delete it first")
        hooks = 0
        if traced is not None:
            st = self.policies.add(traced, mode)
            hooks = len(st.hook_ids)
        nrules = 0
        if plan is not None:
            try:
                nrules = len(self.enforcement.add(plan).rules)
            except BaseException:
                if traced is not None:
                    self.policies.delete(tp.name)
                raise
        return {"ok": True, "name": tp.name, "mode": pmode, "hooks": hooks, "rules": nrules}

    def policy_command(self, req: dict[str, Any]) -> dict[str, Any]:
        """tracingpolicy add|list|delete|enable|disable|set-mode from the API."""
        pm = self.policies
        if pm is None:
            raise KerneyeError("the policy engine is not loaded")
        cmd = req.get("cmd")
        enf = self.enforcement
        if cmd == "tp_add":
            return self.add_policy(req.get("yaml", ""), req.get("source") or "<api>", req.get("mode") or None)
        if cmd == "tp_list":
            out = pm.list()
            if enf is not None:
                by_name = {p["name"]: p for p in out}
                for e in enf.list():
                    p = by_name.get(e["name"])
                    if p is None:
                        p = {"name": e["name"], "state": e["state"], "mode": e["mode"], "hooks": [],
                             "source": e["source"], "npost": 0, "nenforce": 0, "nmonitor": 0, "nratelimited": 0,
                             "nlost": 0}
                        out.append(p)
                    p["kind"] = e["kind"]
                    p["enforcement"] = e["rules"]
                    p["nenforce"] = p.get("nenforce", 0) + e["ndenied"]
                    p["nmonitor"] = p.get("nmonitor", 0) + e["nmonitored"]
                    if e["warnings"]:
                        p["warnings"] = e["warnings"]
            for path, err in self.policy_errors.items():
                out.append({"name": os.path.basename(path), "state": "error", "mode": "", "hooks": [], "error": err,
                            "source": path, "npost": 0, "nenforce": 0, "nmonitor": 0, "nratelimited": 0, "nlost": 0})
            feats = {k: v or "available" for k, v in self.features.items()}
            if enf is not None and enf.mechanisms is not None:
                feats.update({f"enforce:{k}": v or "available" for k, v in enf.mechanisms.items()})
            return {"policies": out, "features": feats}
        name = req.get("name", "")
        traced = name in pm.policies
        enforced = enf is not None and enf.has(name)
        if cmd not in ("tp_delete", "tp_enable", "tp_disable", "tp_set_mode"):
            raise KerneyeError(f"unknown policy command {cmd}")
        if not traced and not enforced:
            raise KerneyeError(f"no policy named {name}; `kerneye tracingpolicy list` shows the loaded ones")
        if cmd == "tp_delete":
            if traced:
                pm.delete(name)
            if enforced:
                enf.delete(name)  # type: ignore[union-attr]
        elif cmd in ("tp_enable", "tp_disable"):
            if traced:
                pm.set_enabled(name, cmd == "tp_enable")
            if enforced:
                enf.set_enabled(name, cmd == "tp_enable")  # type: ignore[union-attr]
        else:
            if traced:
                pm.set_mode(name, req.get("mode", ""))
            if enforced:
                enf.set_mode(name, req.get("mode", ""))  # type: ignore[union-attr]
        return {"ok": True}

    def run(self) -> None:
        """Consume until stop() is called."""
        next_tick = time.monotonic()
        next_gc = next_tick + 5
        dispatch = self.dispatcher.dispatch
        while not self._stop.is_set():
            try:
                batch = self.queue.get(timeout=0.05)
            except queue.Empty:
                batch = None
            if batch:
                for raw in batch:
                    dispatch(raw)
            now = time.monotonic()
            if self.enforcement is not None and not self.enforcement.verdicts.empty():
                self.enforcement.drain(self._enforcement_event)
            if now >= next_tick:
                next_tick = now + 0.1
                self.eventcache.retry()
                self._flush()
                self._report_loss()
            if now >= next_gc:
                next_gc = now + 5
                self.cache.gc()

    def stop(self) -> None:
        self._stop.set()

    def shutdown(self) -> None:
        """Detach everything and drain what was already produced. Idempotent."""
        if self.ready:
            system.sd_notify("STOPPING=1")
        self.ready = False
        if self.metrics_server is not None:
            self.metrics_server.close()
            self.metrics_server = None
        self._metrics_collector.close()  # no scrape reads BPF maps from here on
        if self.enforcement is not None:
            self.enforcement.close()
            self.enforcement.drain(self._enforcement_event)
            self.enforcement = None
        if self.reader is not None:
            self.reader.stop()
            self.reader.join(timeout=5)
            self.reader = None
        while True:
            try:
                batch = self.queue.get_nowait()
            except queue.Empty:
                break
            for raw in batch:
                self.dispatcher.dispatch(raw)
        self.eventcache.flush()
        self._report_loss()
        if self.api is not None:
            self.api.close()
            self.api = None
        self.sensors.unload_all()
        if self.rb is not None:
            self.rb.close()
            self.rb = None
        for l in self.listeners:
            try:
                l.close()
            except Exception:  # noqa: BLE001
                log.warning("listener %s failed to close", l.name, exc_info=True)
        self.listeners.clear()
        self.lock.release()

    # --- events -------------------------------------------------------------
    def _enforcement_event(self, inst: Installed, entry: PolicyEntry, v: Verdict) -> None:
        """A decision as a policy event, through the policy sensor's emitter
        (same process lookup, record shape and event-cache parking)."""
        r = inst.rule.report
        extra: dict[str, Any] = {"function_name": r.function_name, "args": render_args(inst, v),
                                 "action": "KPROBE_ACTION_OVERRIDE" if v.blocked else "KPROBE_ACTION_POST",
                                 "policy_name": inst.policy}
        if r.message:
            extra["message"] = r.message
        if r.tags:
            extra["tags"] = list(r.tags)
        enf: dict[str, Any] = {"operation": inst.rule.op, "mechanism": inst.mechanism,
                               "mode": "monitor" if v.monitor and not v.blocked else "enforce",
                               "verdict": "denied" if v.blocked else "would_deny"}
        if v.blocked:
            enf["errno"] = errno_name(v.err or 1)
        if inst.rule.where:
            enf["rule"] = inst.rule.where
        extra["enforcement"] = enf
        body = "".join(f',"{k}":{json.dumps(val, separators=(",", ":"), ensure_ascii=False)}'
                       for k, val in extra.items())
        assert self.policies is not None
        self.policies.emit_event(r.kind, (v.pid, 0, v.tid), body, v.time_ns)

    def emit(self, ev: Event) -> None:
        self.events_by_kind[ev.kind] = self.events_by_kind.get(ev.kind, 0) + 1
        p = ev.process
        self._count_binary(p.binary if p is not None else "")
        for l in self.listeners:
            try:
                l.on_event(ev)
            except Exception:  # noqa: BLE001 - one bad sink must not stop the others
                self.listener_errors += 1
                log.debug("listener %s failed", l.name, exc_info=True)

    def _flush(self) -> None:
        for l in self.listeners:
            try:
                l.flush()
            except Exception:  # noqa: BLE001
                self.listener_errors += 1

    def kernel_stats(self) -> dict[str, int]:
        """The BPF programs' loss and error counters (kerneye_stats)."""
        return exec_sensor.kernel_stats(self.base) if self.base and self.base.loaded else {}

    def lost(self) -> dict[str, int]:
        k = self.kernel_stats()
        rb_lost = sum(v for n, v in k.items() if n.startswith("rb_lost"))
        return {
            "ringbuf": rb_lost,
            "queue": self.reader.queue_lost if self.reader else 0,
            "api_clients": self.api.dropped() if self.api else 0,
            "execve_map_full": k.get("execve_map_full", 0),
            "enforcement_reports": self.enforcement.lost_reports() if self.enforcement is not None else 0,
        }

    def _report_loss(self) -> None:
        lost = self.lost()
        total = lost["ringbuf"] + lost["queue"]
        if total > self._last_lost:
            log.warning("lost %d events (ring buffer full: %d, queue full: %d so far); raise --rb-size or reduce load",
                        total - self._last_lost, lost["ringbuf"], lost["queue"])
            self._last_lost = total
        if lost["enforcement_reports"] > self._last_enf_lost:
            log.warning("%d enforcement decisions were applied but not reported (%d so far): the back end's report "
                        "buffer was full", lost["enforcement_reports"] - self._last_enf_lost,
                        lost["enforcement_reports"])
            self._last_enf_lost = lost["enforcement_reports"]

    def status(self) -> dict[str, Any]:
        cs = self.cache.snapshot_stats()
        seen = sum(self.dispatcher.received.values())
        exported = {l.name: getattr(l, "exported", 0) for l in self.listeners}
        return {
            "ready": self.ready,
            "version": __version__,
            "node_name": self.cfg.node_name,
            "pid": os.getpid(),
            "uptime_s": round(time.time() - self.started_at, 1),
            "events": {
                "seen": seen,
                "by_type": dict(self.events_by_kind),
                "exported": exported,
                "export_dropped": {l.name: dict(l.dropped) for l in self.listeners
                                   if isinstance(getattr(l, "dropped", None), dict)},
                "lost": self.lost(),
                "decode_errors": dict(self.dispatcher.errors),
                "parked": len(self.eventcache),
                "missing_parent": self.tracker.missing_parent,
                "missing_process": self.tracker.missing_process,
            },
            "ringbuf": {
                "size": self.cfg.rb_size,
                "records": self.reader.records if self.reader else 0,
                "peak_fill": round(self.reader.peak_fill, 4) if self.reader else 0,
            },
            "process_cache": {"size": cs.size, "evictions": cs.evictions, "misses": cs.misses,
                              "collected": cs.collected},
            "sensors": [{"name": s.name, "state": s.state, "programs": s.programs(), "error": s.error}
                        for s in self.sensors.sensors],
            "policies": len(self.policies.policies) if self.policies else 0,
            "hook_backends": {"tracepoint": "available", "uprobe": "available",
                              **{k: v or "available" for k, v in self.features.items()}},
            # gRPC API: per-GetEvents-stream sent/dropped/queued
            "api": self.api.stats() if self.api is not None and hasattr(self.api, "stats") else {},
        }
