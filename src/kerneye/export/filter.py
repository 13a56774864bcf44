"""Event filters for exporters and ``getevents`` streams.

An :class:`EventFilter` selects events by process binary, PID, event type,
container and policy name. It is a small subset of Tetragon's ``Filter``
message (``binary_regex``, ``pid``, ``event_set``, ``container_id``,
``policy_names``) applied to events in Tetragon's JSON shape.

Guarantees:

* An empty list means "no constraint"; all non-empty constraints are ANDed,
  values inside one constraint are ORed. The empty filter matches everything.
* Every value is validated and every regex compiled when the filter is built,
  so :meth:`EventFilter.match` never raises on any input (malformed events
  simply do not match a constraint that needs the missing field).
* ``EventFilter.from_dict(f.to_dict()) == f`` and ``to_dict()`` is plain
  JSON (lists of str/int), so a filter can cross a socket.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kerneye.errors import ConfigError

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


def _event_body(event: Mapping[str, Any], kind: str) -> Mapping[str, Any]:
    body = event.get(kind) if kind else None
    return body if isinstance(body, Mapping) else {}


def _str_list(name: str, value: Any) -> list[str]:
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"filter field {name!r} must be a list of strings, got {value!r}")
    return list(value)


def _int_list(name: str, value: Any) -> list[int]:
    # bool is an int subclass; a JSON "true" is never a meaningful PID.
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"filter field {name!r} must be a list of integers, got {value!r}")
    return list(value)


@dataclass(frozen=True)
class EventFilter:
    """A conjunction of optional constraints on an event.

    Fields (each ``[]`` = unconstrained):

    * ``process_regex``: ``re.search`` on ``process.binary``; any may match.
    * ``pids``: ``process.pid`` is one of these.
    * ``event_types``: the event kind, given as the JSON key
      (``"process_exec"``) or the EventType enum name (``"PROCESS_EXEC"``);
      stored normalised to the JSON key.
    * ``container``: ``process.docker`` starts with one of these ids. A full
      64-hex id also matches the truncated id an event carries (either string
      may be the prefix of the other), so ids from ``docker ps --no-trunc``
      work. Host processes (no ``docker``) never match.
    * ``policy_names``: the event body's ``policy_name`` is one of these.

    The instance is frozen and its lists are private copies; build a new
    filter instead of mutating one. Raises :class:`ConfigError` on an
    invalid regex, an unknown event type, an empty container id or a value
    of the wrong type.
    """

    process_regex: list[str] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)
    event_types: list[str] = field(default_factory=list)
    container: list[str] = field(default_factory=list)
    policy_names: list[str] = field(default_factory=list)

    # Pre-computed matchers; not part of equality or the wire form.
    _regexes: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)
    _pid_set: frozenset[int] = field(init=False, repr=False, compare=False)
    _type_set: frozenset[str] = field(init=False, repr=False, compare=False)
    _policy_set: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        regexes = _str_list("process_regex", self.process_regex)
        pids = _int_list("pids", self.pids)
        types = [self._normalise_type(t) for t in _str_list("event_types", self.event_types)]
        containers = _str_list("container", self.container)
        policies = _str_list("policy_names", self.policy_names)
        if any(not c for c in containers):
            # "" is a prefix of every id and would silently mean "any container".
            raise ConfigError(
                "filter field 'container' contains an empty id; give a container id prefix"
            )

        compiled = []
        for pattern in regexes:
            try:
                compiled.append(re.compile(pattern))
            except re.error as err:
                raise ConfigError(
                    f"invalid process regex {pattern!r}: {err}; fix the pattern (Python re syntax)"
                ) from None

        setattr_ = object.__setattr__  # the dataclass is frozen
        setattr_(self, "process_regex", regexes)
        setattr_(self, "pids", pids)
        setattr_(self, "event_types", types)
        setattr_(self, "container", containers)
        setattr_(self, "policy_names", policies)
        setattr_(self, "_regexes", tuple(compiled))
        setattr_(self, "_pid_set", frozenset(pids))
        setattr_(self, "_type_set", frozenset(types))
        setattr_(self, "_policy_set", frozenset(policies))

    @staticmethod
    def _normalise_type(name: str) -> str:
        key = name.lower()
        if key not in EVENT_TYPES:
            known = ", ".join(sorted(EVENT_TYPES))
            raise ConfigError(f"unknown event type {name!r}; expected one of: {known}")
        return key

    def match(self, event: Mapping[str, Any]) -> bool:
        """Return True if ``event`` satisfies every non-empty constraint.

        Never raises; a field that is missing or of the wrong type fails the
        constraint that needs it.
        """
        kind = event_kind(event)
        if self._type_set and kind not in self._type_set:
            return False
        body = _event_body(event, kind)
        process = body.get("process")
        if not isinstance(process, Mapping):
            process = {}

        if self._regexes:
            binary = process.get("binary")
            if not isinstance(binary, str) or not any(r.search(binary) for r in self._regexes):
                return False
        if self._pid_set and process.get("pid") not in self._pid_set:
            return False
        if self.container:
            docker = process.get("docker")
            if not isinstance(docker, str) or not docker:
                return False
            if not any(docker.startswith(c) or c.startswith(docker) for c in self.container):
                return False
        if self._policy_set and body.get("policy_name") not in self._policy_set:
            return False
        return True

    def is_empty(self) -> bool:
        """True when the filter lets everything through."""
        return not (self.process_regex or self.pids or self.event_types or self.container or self.policy_names)

    def to_dict(self) -> dict[str, list[Any]]:
        """Return the filter as a JSON-serialisable dict of fresh lists."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self) if f.init}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EventFilter:
        """Build a filter from :meth:`to_dict` output (e.g. read off a socket).

        Missing keys are unconstrained; unknown keys raise
        :class:`ConfigError`, as does any invalid value.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"event filter must be a JSON object, got {type(data).__name__}")
        allowed = {f.name for f in fields(cls) if f.init}
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise ConfigError(
                f"unknown event filter field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(allowed))}"
            )
        return cls(**{str(k): v for k, v in data.items()})
