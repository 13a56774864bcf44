"""The JSON export pipeline (the ``export-file`` listener).

Per event::

    allow/deny FilterSet -> rate limit -> redaction -> field filters -> RotatingFileWriter

* Filtered-out events are counted in ``dropped["filtered"]``; events over
  the rate limit in ``dropped["rate_limited"]``; events the writer refused
  (:class:`~kerneye.errors.ExportError`, re-raised for the agent to count) in
  ``dropped["error"]``. ``exported`` counts event lines written, so
  ``exported + sum(dropped.values()) == received``.
* The rate limit is applied right after the allow/deny decision, before the
  (costlier) redaction and field filtering; since neither changes whether an
  event is exported, the output equals that of limiting last. It counts only
  events that passed the filters, as in Tetragon.
* ``rate_limit_info`` events (see :mod:`kerneye.export.ratelimit`) go
  straight to the writer: they are not filtered, limited or field-filtered,
  and are counted in ``rate_limit_info_events``, not in ``exported``. They
  are written from :meth:`on_event`/:meth:`flush` at most once per report
  interval, and once more on :meth:`close` for drops not reported yet.
* The allow/deny lists affect only this file export, not gRPC streams or
  the stdout listener (Tetragon: "the JSON export allow/deny lists do not
  affect gRPC streams").
* Fast path: with no filter, redaction, field filter or rate limit,
  ``on_event`` writes ``ev.to_json()`` and nothing else (no dict is built).
  With filters only, the dict is built only when a filter looks beyond the
  event type, and the cached ``ev.to_json()`` is written unless redaction or
  a field filter changed the event.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from kerneye.errors import ExportError
from kerneye.export.fieldfilter import FieldFilter, apply_field_filters, parse_field_filter_lines
from kerneye.export.filters import FilterSet, parse_filter_lines
from kerneye.export.jsonfile import RotatingFileWriter
from kerneye.export.ratelimit import RateLimiter, rate_limit_info_json
from kerneye.export.redact import Redactor, parse_redaction_filter_lines

__all__ = ["ExportPipeline", "DROP_REASONS"]

log = logging.getLogger("kerneye.export")

DROP_REASONS = ("filtered", "rate_limited", "error")

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class ExportPipeline:
    """A Listener writing filtered/redacted/limited JSON lines; see the module docstring.

    ``writer`` is owned (closed by :meth:`close`). Every other argument is
    optional; ``None``/empty disables that stage.
    """

    name = "export-file"

    def __init__(
        self,
        writer: RotatingFileWriter,
        filters: FilterSet | None = None,
        redactor: Redactor | None = None,
        field_filters: Iterable[FieldFilter] = (),
        rate_limiter: RateLimiter | None = None,
        node_name: str = "",
        time_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.writer = writer
        self.filters = filters if filters is not None and not filters.empty else None
        self.redactor = redactor if redactor else None
        self.field_filters = list(field_filters)
        self.rate_limiter = rate_limiter
        self.node_name = node_name
        self._time_ns = time_ns
        self.exported = 0
        self.dropped: dict[str, int] = dict.fromkeys(DROP_REASONS, 0)
        self.rate_limit_info_events = 0
        self._transform = self.redactor is not None or bool(self.field_filters)
        self.fast_path = self.filters is None and not self._transform and rate_limiter is None
        # Chosen once: the per-event code path has no configuration branches.
        self.on_event: Callable[[Any], None] = self._on_event_fast if self.fast_path else self._on_event_full

    # --- construction from agent options --------------------------------------
    @classmethod
    def from_config(cls, cfg: Any) -> ExportPipeline:
        """Build from an :class:`~kerneye.config.AgentConfig` (``export_*`` fields).

        Filter texts may be ``@FILE``. Everything is validated before the
        export file is opened; raises ConfigError/ExportError.
        """
        from kerneye.config_file import text_arg

        def opt(name: str, default: Any) -> Any:
            return getattr(cfg, name, default)

        allow = parse_filter_lines(text_arg(opt("export_allowlist", ""), "export-allowlist"), "--export-allowlist")
        deny = parse_filter_lines(text_arg(opt("export_denylist", ""), "export-denylist"), "--export-denylist")
        ffs = parse_field_filter_lines(text_arg(opt("field_filters", ""), "field-filters"), "--field-filters")
        rfs = parse_redaction_filter_lines(text_arg(opt("redaction_filters", ""), "redaction-filters"),
                                           "--redaction-filters")
        limit = int(opt("export_rate_limit", -1))
        limiter = RateLimiter(limit) if limit >= 0 else None
        writer = RotatingFileWriter(
            cfg.export_file,
            max(1, int(cfg.export_file_max_size_mb * (1 << 20))),
            cfg.export_file_max_backups,
            rotation_interval_s=float(opt("export_file_rotation_interval_s", 0.0)),
            compress=bool(opt("export_file_compress", False)),
            perm=int(opt("export_file_perm", 0o600)),
        )
        return cls(writer, FilterSet(allow, deny), Redactor(rfs), ffs, limiter, node_name=cfg.node_name)

    # --- Listener ---------------------------------------------------------------
    @property
    def received(self) -> int:
        return self.exported + sum(self.dropped.values())

    def _on_event_fast(self, ev: Any) -> None:
        try:
            self.writer.write(ev.to_json())
        except ExportError:
            self.dropped["error"] += 1
            raise
        self.exported += 1

    def _on_event_full(self, ev: Any) -> None:
        if self.filters is not None and not self.filters.allows_event(ev):
            self.dropped["filtered"] += 1
            return
        rl = self.rate_limiter
        if rl is not None and not rl.allow():
            self.dropped["rate_limited"] += 1
            self._report(rl.take_report())
            return
        if self._transform:
            d = ev.to_dict()
            out = d
            if self.redactor is not None:
                out = self.redactor.apply(out)
            if self.field_filters:
                out = apply_field_filters(self.field_filters, out)
            line = ev.to_json() if out is d else _dumps(out)
        else:
            line = ev.to_json()
        try:
            self.writer.write(line)
        except ExportError:
            self.dropped["error"] += 1
            raise
        self.exported += 1

    def _report(self, dropped: int) -> None:
        if dropped <= 0:
            return
        try:
            self.writer.write(rate_limit_info_json(dropped, self.node_name, self._time_ns()))
        except (ExportError, ValueError):
            log.warning("could not export rate_limit_info (%d events dropped by --export-rate-limit)", dropped)
            return
        self.rate_limit_info_events += 1

    def flush(self) -> None:
        if self.rate_limiter is not None:
            self._report(self.rate_limiter.take_report())
        self.writer.flush()

    def close(self) -> None:
        if self.rate_limiter is not None:
            self._report(self.rate_limiter.take_all())
        try:
            self.writer.close()
        finally:
            log.info(
                "export to %s closed: received %d, exported %d, dropped filtered=%d rate_limited=%d error=%d, "
                "rate_limit_info events %d",
                self.writer.path, self.received, self.exported, self.dropped["filtered"],
                self.dropped["rate_limited"], self.dropped["error"], self.rate_limit_info_events,
            )

    def stats(self) -> dict[str, Any]:
        """Counters for status/metrics."""
        return {
            "received": self.received,
            "exported": self.exported,
            "dropped": dict(self.dropped),
            "rate_limit_info_events": self.rate_limit_info_events,
            "rotations": self.writer.rotations,
        }
