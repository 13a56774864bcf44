"""Redaction filters (``--redaction-filters``), after Tetragon's ``RedactionFilter``.

One filter is a JSON object::

    {"redact": ["(?:--password|-p)(?:\\\\s+|=)(\\\\S*)"], "binary_regex": ["mysql$"],
     "match": [{"event_set": ["PROCESS_EXEC"]}]}

* ``redact`` (required): regexes; in every match, each capture group's text
  is replaced by ``*****`` (:data:`REDACTED`). A regex without a capture group
  would redact nothing, so it is rejected; wrap what to hide in ``(...)`` and
  use ``(?:...)`` for the rest. Nested groups are redacted once, as a whole.
* ``binary_regex``: redact only the arguments of processes whose ``binary``
  matches one of these (each process record is judged by its own binary:
  the parent's arguments by the parent's binary). Empty = every binary.
* ``match``: optional list of :class:`~kerneye.export.filters.Filter`
  objects (ORed), the older Tetragon form: the filter applies only to events
  matching one of them. Empty = every event.

What is redacted: ``arguments`` of ``process``, ``parent`` and every entry
of ``ancestors``, and the values of ``environment_variables`` when present
(Tetragon redacts both). Several filters apply in order.

:meth:`Redactor.apply` never mutates its input (the event dict is shared
with other listeners); it returns the same object when nothing changed, new
dicts along the changed paths otherwise.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kerneye.errors import ConfigError
from kerneye.export.filter import event_kind
from kerneye.export.filters import Filter, _compile_regexes, _str_list, parse_json_lines

__all__ = ["REDACTED", "RedactionFilter", "Redactor", "parse_redaction_filter_lines", "redact_string"]

REDACTED = "*****"
_KEYS = ("redact", "binary_regex", "match")


def redact_string(regex: re.Pattern[str], text: str) -> str:
    """Replace every capture group of every match of ``regex`` in ``text``."""
    if regex.groups == 0:
        return text

    def sub(m: re.Match[str]) -> str:
        base = m.start()
        whole = m.group(0)
        parts = []
        last = 0
        for g in range(1, regex.groups + 1):
            a, b = m.span(g)
            if a < 0:
                continue  # group did not take part in the match
            a -= base
            b -= base
            if a < last:
                continue  # nested inside a group already redacted
            parts.append(whole[last:a])
            parts.append(REDACTED)
            last = b
        parts.append(whole[last:])
        return "".join(parts)

    return regex.sub(sub, text)


@dataclass(frozen=True)
class RedactionFilter:
    """One redaction filter; see the module docstring."""

    redact: list[str] = field(default_factory=list)
    binary_regex: list[str] = field(default_factory=list)
    match: list[Filter] = field(default_factory=list)

    _redact: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _binary: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        redact = _str_list("redact", self.redact)
        if not redact:
            raise ConfigError("redaction filter needs 'redact': regexes whose capture groups are hidden")
        compiled = _compile_regexes("redact", redact)
        for r in compiled:
            if r.groups == 0:
                raise ConfigError(
                    f"redaction regex {r.pattern!r} has no capture group, so it would hide nothing; "
                    "put the secret part in (...), e.g. \"password=(\\\\S+)\""
                )
        binary = _str_list("binary_regex", self.binary_regex)
        match = [m if isinstance(m, Filter) else Filter.from_dict(m) for m in self._match_list(self.match)]
        set_(self, "redact", redact)
        set_(self, "binary_regex", binary)
        set_(self, "match", match)
        set_(self, "_redact", compiled)
        set_(self, "_binary", _compile_regexes("binary_regex", binary))

    @staticmethod
    def _match_list(value: Any) -> list[Any]:
        if isinstance(value, Mapping):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"redaction filter 'match' must be a list of filters, got {value!r}")
        return list(value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RedactionFilter:
        if not isinstance(data, Mapping):
            raise ConfigError(f"a redaction filter must be a JSON object, got {type(data).__name__}: {data!r}")
        kwargs: dict[str, Any] = {}
        for k, v in data.items():
            name = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", str(k)).lower()
            if name not in _KEYS:
                raise ConfigError(f"unknown redaction filter key {k!r}; allowed: {', '.join(_KEYS)}")
            if v is not None:
                kwargs[name] = v
        return cls(**kwargs)

    def applies_to_event(self, event: Mapping[str, Any]) -> bool:
        return not self.match or any(f.matches(event) for f in self.match)

    def applies_to_binary(self, binary: Any) -> bool:
        if not self._binary:
            return True
        return isinstance(binary, str) and any(r.search(binary) for r in self._binary)

    def redact_text(self, text: str) -> str:
        for r in self._redact:
            text = redact_string(r, text)
        return text


class Redactor:
    """Applies a list of redaction filters to event dicts (copy-on-write)."""

    __slots__ = ("filters",)

    def __init__(self, filters: Iterable[RedactionFilter]) -> None:
        self.filters = list(filters)

    def __bool__(self) -> bool:
        return bool(self.filters)

    def apply(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        kind = event_kind(event)
        body = event.get(kind) if kind else None
        if not isinstance(body, Mapping):
            return event
        active = [f for f in self.filters if f.applies_to_event(event)]
        if not active:
            return event
        new_body: dict[str, Any] | None = None
        for key in ("process", "parent"):
            p = body.get(key)
            if isinstance(p, Mapping):
                q = self._process(p, active)
                if q is not p:
                    new_body = new_body if new_body is not None else dict(body)
                    new_body[key] = q
        ancestors = body.get("ancestors")
        if isinstance(ancestors, list):
            new_anc = [self._process(a, active) if isinstance(a, Mapping) else a for a in ancestors]
            if any(x is not y for x, y in zip(new_anc, ancestors)):
                new_body = new_body if new_body is not None else dict(body)
                new_body["ancestors"] = new_anc
        if new_body is None:
            return event
        out = dict(event)
        out[kind] = new_body
        return out

    @staticmethod
    def _process(p: Mapping[str, Any], active: list[RedactionFilter]) -> Mapping[str, Any]:
        binary = p.get("binary")
        filters = [f for f in active if f.applies_to_binary(binary)]
        if not filters:
            return p
        changed: dict[str, Any] = {}
        args = p.get("arguments")
        if isinstance(args, str) and args:
            new = args
            for f in filters:
                new = f.redact_text(new)
            if new != args:
                changed["arguments"] = new
        env = p.get("environment_variables")
        if isinstance(env, list):
            new_env = []
            for item in env:
                if isinstance(item, Mapping):
                    for vk in ("value", "Value"):
                        v = item.get(vk)
                        if isinstance(v, str):
                            nv = v
                            for f in filters:
                                nv = f.redact_text(nv)
                            if nv != v:
                                item = {**item, vk: nv}
                new_env.append(item)
            if any(x is not y for x, y in zip(new_env, env)):
                changed["environment_variables"] = new_env
        if not changed:
            return p
        return {**p, **changed}


def parse_redaction_filter_lines(text: str, what: str = "redaction filters") -> list[RedactionFilter]:
    """JSON lines (``--redaction-filters``) -> [RedactionFilter]; ConfigError on any problem."""
    out = []
    for n, obj in enumerate(parse_json_lines(text, what), 1):
        try:
            out.append(RedactionFilter.from_dict(obj))
        except ConfigError as err:
            raise ConfigError(f"{what} entry {n}: {err}") from None
    return out
