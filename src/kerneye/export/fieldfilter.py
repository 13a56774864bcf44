"""Field filters: Tetragon's ``FieldFilter`` (``--field-filters``, gRPC
``GetEventsRequest.field_filters``, ``getevents -f/-F``).

One filter is a JSON object::

    {"event_set": ["PROCESS_EXEC"], "fields": "process.binary,process.pid,parent.binary",
     "action": "INCLUDE", "invert_event_set": false}

* ``fields``: comma-separated dotted paths (a FieldMask; a JSON list of paths
  works too), relative to the event body: ``process.binary`` is
  ``event["process_exec"]["process"]["binary"]``. Paths are snake_case JSON
  names; lowerCamelCase segments (FieldMask JSON form) are converted. A path
  that runs through a list (``ancestors.binary``, ``args.file_arg``) applies
  to every element, like protobuf repeated fields.
* ``action``: ``INCLUDE`` (keep only these fields; default, as the proto's
  zero value) or ``EXCLUDE`` (remove these fields). Case-insensitive; 0/1
  also accepted.
* ``event_set``: the filter applies only to these event types (names,
  JSON keys or numbers, as in :mod:`kerneye.export.filters`); empty = all.
  ``invert_event_set: true`` applies it to every type *not* listed (it has no
  effect with an empty ``event_set``).

The envelope (``node_name``, ``time``, ...) is never touched. Filters apply
in the order given, each to the previous one's output, so an EXCLUDE always
wins over an INCLUDE of the same field. ``apply`` never mutates its input
(the event dict is shared with other listeners): it returns new dicts along
the filtered paths and shares untouched sub-trees.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kerneye.errors import ConfigError
from kerneye.export.filter import event_kind
from kerneye.export.filters import normalise_event_type, parse_json_lines

__all__ = ["FieldFilter", "parse_field_filter_lines", "apply_field_filters"]

_Mask = dict[str, "_Mask"]  # nested; {} at a leaf = the whole field

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_KEYS = ("event_set", "fields", "action", "invert_event_set")


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _paths(value: Any) -> list[str]:
    if isinstance(value, str):
        raw = value.split(",")
    elif isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        raw = [p for v in value for p in v.split(",")]
    else:
        raw = None
    if raw is None:
        raise ConfigError(f"field filter 'fields' must be a comma-separated string of paths, got {value!r}")
    out = []
    for p in raw:
        p = p.strip()
        if not p:
            continue
        segs = p.split(".")
        if not all(_SEGMENT.fullmatch(s) for s in segs):
            raise ConfigError(f"field filter: invalid field path {p!r}; use dotted names like process.binary")
        out.append(".".join(_snake(s) for s in segs))
    if not out:
        raise ConfigError("field filter: 'fields' is empty; list paths like \"process.binary,process.pid\"")
    return out


def _mask(paths: Iterable[str]) -> _Mask:
    root: _Mask = {}
    for p in paths:
        node = root
        segs = p.split(".")
        for i, s in enumerate(segs):
            if s in node and not node[s]:
                break  # a shorter path already covers the whole field
            if i == len(segs) - 1:
                node[s] = {}
            else:
                node = node.setdefault(s, {})
    return root


def _include(value: Any, mask: _Mask) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            sub = mask.get(k)
            if sub is None:
                continue
            out[k] = v if not sub else _include(v, sub)
        return out
    if isinstance(value, list):
        return [_include(v, mask) for v in value]
    return value  # a scalar under a deeper path: nothing to narrow


def _exclude(value: Any, mask: _Mask) -> Any:
    if isinstance(value, Mapping):
        out = dict(value)
        for k, sub in mask.items():
            if k not in out:
                continue
            if not sub:
                del out[k]
            else:
                out[k] = _exclude(out[k], sub)
        return out
    if isinstance(value, list):
        return [_exclude(v, mask) for v in value]
    return value


def _action(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool) and value in (0, 1):
        return ("INCLUDE", "EXCLUDE")[value]
    if isinstance(value, str) and value.strip().upper() in ("INCLUDE", "EXCLUDE"):
        return value.strip().upper()
    raise ConfigError(f"field filter 'action' must be INCLUDE or EXCLUDE, got {value!r}")


@dataclass(frozen=True)
class FieldFilter:
    """One field filter; see the module docstring. Validated at construction."""

    fields: list[str] = field(default_factory=list)
    action: str = "INCLUDE"
    event_set: list[str] = field(default_factory=list)
    invert_event_set: bool = False

    _mask: _Mask = field(init=False, repr=False, compare=False)
    _kinds: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "fields", _paths(self.fields))
        set_(self, "action", _action(self.action))
        es = self.event_set
        if isinstance(es, (str, int)):
            es = [es]
        if not isinstance(es, (list, tuple)):
            raise ConfigError(f"field filter 'event_set' must be a list of event types, got {es!r}")
        kinds = [normalise_event_type(v, "field filter event_set") for v in es]
        set_(self, "event_set", kinds)
        if not isinstance(self.invert_event_set, bool):
            raise ConfigError(f"field filter 'invert_event_set' must be true or false, got {self.invert_event_set!r}")
        set_(self, "_mask", _mask(self.fields))
        set_(self, "_kinds", frozenset(kinds))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldFilter:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a field filter must be a JSON object, got {type(data).__name__}: {data!r}")
        kwargs: dict[str, Any] = {}
        for k, v in data.items():
            name = _snake(str(k))
            if name not in _KEYS:
                raise ConfigError(f"unknown field filter key {k!r}; allowed: {', '.join(_KEYS)}")
            if v is not None:
                kwargs[name] = v
        if "fields" not in kwargs:
            raise ConfigError("field filter needs 'fields', e.g. {\"fields\":\"process.binary\",\"action\":\"INCLUDE\"}")
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"fields": ",".join(self.fields), "action": self.action}
        if self.event_set:
            d["event_set"] = list(self.event_set)
        if self.invert_event_set:
            d["invert_event_set"] = True
        return d

    def applies_to(self, kind: str) -> bool:
        if not self._kinds:
            return True
        return (kind in self._kinds) != self.invert_event_set

    def apply(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """The event with this filter applied (``event`` itself if it does not apply)."""
        kind = event_kind(event)
        if not kind or not self.applies_to(kind):
            return event
        body = event.get(kind)
        if not isinstance(body, Mapping):
            return event
        new_body = _include(body, self._mask) if self.action == "INCLUDE" else _exclude(body, self._mask)
        out = dict(event)
        out[kind] = new_body
        return out


def parse_field_filter_lines(text: str, what: str = "field filters") -> list[FieldFilter]:
    """JSON lines (``--field-filters``) -> [FieldFilter]; ConfigError on any problem."""
    out = []
    for n, obj in enumerate(parse_json_lines(text, what), 1):
        try:
            out.append(FieldFilter.from_dict(obj))
        except ConfigError as err:
            raise ConfigError(f"{what} entry {n}: {err}") from None
    return out


def apply_field_filters(filters: Iterable[FieldFilter], event: Mapping[str, Any]) -> Mapping[str, Any]:
    """Apply ``filters`` in order; returns ``event`` itself when none applies."""
    for f in filters:
        event = f.apply(event)
    return event
