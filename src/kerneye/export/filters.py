"""Tetragon's ``Filter`` language: JSON export allow/deny lists and gRPC
``GetEvents`` allow/deny lists.

A :class:`Filter` is one JSON object such as
``{"event_set": ["PROCESS_EXEC"], "binary_regex": ["curl$"]}``. Keys are
Tetragon's snake_case field names (lowerCamelCase, as protobuf JSON also
accepts, works too). Every key is optional.

Semantics (as Tetragon):

* The keys present in one Filter are ANDed; the values inside one key are
  ORed ("any of these regexes").
* The filters of one list are ORed.
* :meth:`FilterSet.allows` = (no allowlist, or some allow filter matches)
  AND no deny filter matches. The denylist wins over the allowlist.
* A key that needs the event's process (every key but ``event_set``,
  ``policy_names`` and ``cel_expression``) never matches an event that has
  no process (``rate_limit_info``).

Fields:

``event_set``
    Event types, as ``EventType`` names (``PROCESS_EXEC``), JSON keys
    (``process_exec``) or enum numbers (``1``).
``binary_regex`` / ``parent_binary_regex``
    Regex searched in ``process.binary`` / ``parent.binary``.
``ancestor_binary_regex``
    Regex searched in the binary of each entry of ``ancestors[]`` (present
    only with ``--enable-ancestors``); the parent is not part of
    ``ancestors``, use ``parent_binary_regex`` for it.
``arguments_regex`` / ``parent_arguments_regex``
    Regex searched in ``process.arguments`` / ``parent.arguments``.
``pid``
    ``process.pid`` is one of these.
``pid_set``
    ``process.pid``, ``parent.pid`` or an ancestor's pid is one of these.
    Like Tetragon, a process matched through its parent is remembered so
    that its own children match later even without ``ancestors`` (at most
    :data:`PID_SET_MAX_CHILDREN` remembered pids, oldest forgotten first).
    The state lives in the Filter object: build one per stream.
``namespace`` / ``namespace_regex``
    Kubernetes namespace of ``process.pod``. kerneye has no Kubernetes
    integration and never sets ``pod``, so every process has namespace ``""``:
    ``"namespace": [""]`` matches every process event and any other value
    matches none (Tetragon: ``""`` means "not in a pod").
``pod_regex`` / ``container_name_regex`` / ``labels``
    Match ``process.pod.name`` / ``pod.container.name`` / ``pod.pod_labels``
    (``labels`` uses Kubernetes label-selector syntax: ``a=b``, ``a!=b``,
    ``a in (x,y)``, ``a notin (x)``, ``a``, ``!a``, comma = AND). kerneye never
    sets ``pod``, so these never match; they are accepted (and validated) so
    Tetragon filter files load unchanged.
``health_check``
    Tetragon's liveness/readiness probe detection needs pod specs; kerneye
    considers no event a health check: ``true`` never matches, ``false``
    matches every process event.
``container_id``
    Regex matched at the *start* of ``process.docker`` (``re.match``), so a
    plain id is a prefix match; a plain hex id longer than the event's
    truncated id also matches when the event's id is its prefix (ids from
    ``docker ps --no-trunc`` work). Host processes (no ``docker``) never match.
``policy_names``
    The event's ``policy_name`` is one of these.
``capabilities``
    ``{"effective": {"any": [...]}, "permitted": {"all": [...]},
    "inheritable": {"none": [...]}}``, after Tetragon's ``CapFilter``: one
    optional ``CapFilterSet`` per capability set, each with ``any`` (at least
    one present), ``all`` (all present), ``exactly`` (the set equals these)
    and/or ``none`` (none present). Values are ``CAP_*`` names (the prefix
    may be omitted) or capability numbers. Tetragon allows one operator per
    set; kerneye allows several and ANDs them. Events without ``process.cap``
    (policy events unless ``--policy-events-full-process``) never match.
``in_init_tree``
    ``process.in_init_tree`` equals this (absent counts as false). Only
    container processes (non-empty ``docker``) can match; kerneye does not
    compute ``in_init_tree`` yet, so ``false`` matches every container process
    and ``true`` none.
``cel_expression``
    CEL expressions (cel-python, compiled once); the key matches if any of
    them evaluates to ``true``. The variables are those of Tetragon: the
    event body under its JSON key (``process_exec``, ``process_exit``,
    ``process_kprobe``, ...; only the one the event has is defined), plus
    ``node_name`` and ``time`` (strings). Example:
    ``process_exec.process.pid > 100 && process_exec.process.binary.endsWith("/curl")``.
    Referring to an undefined variable (another event type), a runtime
    error or a non-bool result counts as no match.

Regexes use Python's ``re`` syntax with search semantics (like RE2's
``MatchString``). Everything is validated and compiled when the Filter is
built; an invalid regex, CEL expression, unknown key or wrong type raises
:class:`~kerneye.errors.ConfigError` with a one-line message. Matching never
raises.
"""
from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from kerneye.errors import ConfigError
from kerneye.export.filter import EVENT_TYPES, event_kind
from kerneye.process.caps import CAP_NAMES

__all__ = [
    "Filter",
    "FilterSet",
    "parse_filter_lines",
    "parse_json_lines",
    "normalise_event_type",
    "EVENT_TYPE_NUMBERS",
    "PID_SET_MAX_CHILDREN",
]

# EventType enum (events.proto): name -> number.
EVENT_TYPE_NUMBERS: dict[str, int] = {
    "PROCESS_EXEC": 1,
    "PROCESS_EXIT": 5,
    "PROCESS_KPROBE": 9,
    "PROCESS_TRACEPOINT": 10,
    "PROCESS_LOADER": 11,
    "PROCESS_UPROBE": 12,
    "PROCESS_THROTTLE": 27,
    "PROCESS_LSM": 28,
    "PROCESS_USDT": 29,
    "TEST": 40000,
    "RATE_LIMIT_INFO": 40001,
}
_NUMBER_TO_KEY = {n: name.lower() for name, n in EVENT_TYPE_NUMBERS.items()}

PID_SET_MAX_CHILDREN = 65536

_CAP_SETS = ("effective", "permitted", "inheritable")
_CAP_OPS = ("any", "all", "exactly", "none")


def _snake(name: str) -> str:
    """lowerCamelCase -> snake_case (protobuf JSON names); snake stays."""
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def normalise_event_type(value: Any, where: str = "event_set") -> str:
    """``"PROCESS_EXEC"`` / ``"process_exec"`` / ``1`` -> ``"process_exec"``.

    Raises ConfigError for anything else.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        key = _NUMBER_TO_KEY.get(value)
    elif isinstance(value, str):
        key = value.strip().lower()
        if key not in EVENT_TYPES:
            key = None
    else:
        key = None
    if key is None:
        known = ", ".join(EVENT_TYPE_NUMBERS)
        raise ConfigError(f"{where}: unknown event type {value!r}; expected one of {known}")
    return key


def _str_list(name: str, value: Any) -> list[str]:
    if isinstance(value, str):  # a lone string is a common slip; accept it
        return [value]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"filter field {name!r} must be a list of strings, got {value!r}")
    return list(value)


def _int_list(name: str, value: Any) -> list[int]:
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value
    ):
        raise ConfigError(f"filter field {name!r} must be a list of non-negative integers, got {value!r}")
    return list(value)


def _opt_bool(name: str, value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ConfigError(f"filter field {name!r} must be true or false, got {value!r}")


def _compile_regexes(name: str, patterns: list[str]) -> tuple[re.Pattern[str], ...]:
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p))
        except re.error as err:
            raise ConfigError(f"filter field {name!r}: invalid regex {p!r}: {err}") from None
    return tuple(out)


def _cap_name(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value < len(CAP_NAMES):
            return CAP_NAMES[value]
        if 0 <= value < 64:
            return f"CAP_{value}"
    elif isinstance(value, str):
        name = value.strip().upper()
        if not name.startswith("CAP_"):
            name = "CAP_" + name
        if name in CAP_NAMES or re.fullmatch(r"CAP_\d+", name):
            return name
    raise ConfigError(f"filter field 'capabilities': unknown capability {value!r}; use names like CAP_SYS_ADMIN")


def _compile_caps(value: Any) -> dict[str, dict[str, frozenset[str]]]:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(
            "filter field 'capabilities' must be an object like "
            '{"effective": {"any": ["CAP_SYS_ADMIN"]}}'
        )
    out: dict[str, dict[str, frozenset[str]]] = {}
    for set_name, ops in value.items():
        sname = _snake(str(set_name))
        if sname not in _CAP_SETS:
            raise ConfigError(
                f"filter field 'capabilities': unknown capability set {set_name!r}; "
                f"expected {', '.join(_CAP_SETS)}"
            )
        if not isinstance(ops, Mapping) or not ops:
            raise ConfigError(
                f"filter field 'capabilities.{sname}' must be an object with one of {', '.join(_CAP_OPS)}"
            )
        compiled: dict[str, frozenset[str]] = {}
        for op, caps in ops.items():
            if op not in _CAP_OPS:
                raise ConfigError(
                    f"filter field 'capabilities.{sname}': unknown operator {op!r}; expected {', '.join(_CAP_OPS)}"
                )
            if not isinstance(caps, (list, tuple)) or not caps:
                raise ConfigError(f"filter field 'capabilities.{sname}.{op}' must be a non-empty list")
            compiled[op] = frozenset(_cap_name(c) for c in caps)
        out[sname] = compiled
    return out


def _caps_ok(have: frozenset[str], ops: dict[str, frozenset[str]]) -> bool:
    for op, want in ops.items():
        if op == "any":
            if have.isdisjoint(want):
                return False
        elif op == "all":
            if not want <= have:
                return False
        elif op == "exactly":
            if have != want:
                return False
        elif not have.isdisjoint(want):  # none
            return False
    return True


# --- Kubernetes label selectors (syntax only matters: kerneye has no pods) --

_LABEL_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_LABEL_VAL = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_REQ_RE = re.compile(
    rf"^\s*(?:(?P<notkey>!\s*{_LABEL_KEY})"
    rf"|(?P<key>{_LABEL_KEY})\s*(?:(?P<op>==|!=|=)\s*(?P<val>{_LABEL_VAL})"
    rf"|\s+(?P<setop>in|notin)\s*\((?P<set>[^)]*)\))?)\s*$"
)

# A requirement: (operator, key, values); operators: exists, !exists, =, !=, in, notin.
_LabelReq = tuple[str, str, frozenset[str]]


def _split_selector(sel: str) -> list[str]:
    # Commas separate requirements except inside "in (a,b)" sets.
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in sel:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _compile_selector(sel: str) -> list[_LabelReq]:
    reqs: list[_LabelReq] = []
    if not sel.strip():
        return reqs  # the empty selector matches every labelled pod
    for part in _split_selector(sel):
        m = _REQ_RE.match(part)
        if not m:
            raise ConfigError(f"filter field 'labels': invalid label selector {sel!r} near {part.strip()!r}")
        if m.group("notkey"):
            reqs.append(("!exists", m.group("notkey")[1:].strip(), frozenset()))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append((op, m.group("key"), frozenset([m.group("val")])))
        elif m.group("setop"):
            values = frozenset(x.strip() for x in m.group("set").split(",") if x.strip())
            reqs.append((m.group("setop"), m.group("key"), values))
        else:
            reqs.append(("exists", m.group("key"), frozenset()))
    return reqs


def _label_ok(labels: Mapping[str, Any], req: _LabelReq) -> bool:
    op, key, values = req
    if op == "exists":
        return key in labels
    if op == "!exists":
        return key not in labels
    if op in ("=", "in"):
        return labels.get(key) in values
    return labels.get(key) not in values  # != and notin: also true when the label is absent


# --- CEL ------------------------------------------------------------------

def _compile_cel(exprs: list[str]) -> list[Any]:
    if not exprs:
        return []
    try:
        import celpy  # cel-python
    except ImportError:  # pragma: no cover - dependency of the package
        raise ConfigError("filter field 'cel_expression' needs the cel-python package (pip install cel-python)") from None
    env = celpy.Environment()
    programs = []
    for expr in exprs:
        if not expr.strip():
            raise ConfigError("filter field 'cel_expression': empty expression")
        try:
            programs.append(env.program(env.compile(expr)))
        except Exception as err:  # noqa: BLE001 - CELParseError and friends
            col = getattr(err, "column", None)
            if col is not None:
                msg = f"syntax error at column {col}"
            else:
                msg = " ".join(str(err).split()) or type(err).__name__
            raise ConfigError(f"filter field 'cel_expression': invalid CEL {expr!r}: {msg}") from None
    return programs


def _cel_activation(kind: str, event: Mapping[str, Any]) -> dict[str, Any]:
    import celpy

    act: dict[str, Any] = {}
    if kind:
        act[kind] = celpy.json_to_cel(event.get(kind))
    for k in ("node_name", "time"):
        if k in event:
            act[k] = celpy.json_to_cel(event[k])
    return act


def _is_true(value: Any) -> bool:
    # celpy returns celtypes.BoolType (an int subclass), another CEL value
    # (a non-bool result never matches) or an error object.
    from celpy import celtypes

    return value is True or (isinstance(value, celtypes.BoolType) and bool(value))


# --- Filter -----------------------------------------------------------------

_Pred = Callable[[str, Mapping[str, Any], Mapping[str, Any]], bool]  # (kind, body, event)


def _proc(body: Mapping[str, Any], key: str = "process") -> Mapping[str, Any] | None:
    p = body.get(key)
    return p if isinstance(p, Mapping) else None


def _regex_pred(regexes: tuple[re.Pattern[str], ...], who: str, attr: str) -> _Pred:
    def pred(kind: str, body: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
        p = _proc(body, who)
        if p is None:
            return False
        v = p.get(attr)
        if not isinstance(v, str):
            return False
        return any(r.search(v) for r in regexes)

    return pred


def _pod_field(p: Mapping[str, Any], *path: str) -> Any:
    cur: Any = p.get("pod")
    for k in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(k)
    return cur


@dataclass(frozen=True)
class Filter:
    """One Tetragon ``Filter``; see the module docstring for each field.

    Build with keyword arguments or :meth:`from_dict`; all values are
    validated and compiled at construction. ``matches(event)`` tests one
    event dict and never raises.
    """

    event_set: list[str] = field(default_factory=list)
    binary_regex: list[str] = field(default_factory=list)
    parent_binary_regex: list[str] = field(default_factory=list)
    ancestor_binary_regex: list[str] = field(default_factory=list)
    arguments_regex: list[str] = field(default_factory=list)
    parent_arguments_regex: list[str] = field(default_factory=list)
    pid: list[int] = field(default_factory=list)
    pid_set: list[int] = field(default_factory=list)
    namespace: list[str] = field(default_factory=list)
    namespace_regex: list[str] = field(default_factory=list)
    pod_regex: list[str] = field(default_factory=list)
    container_name_regex: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    container_id: list[str] = field(default_factory=list)
    policy_names: list[str] = field(default_factory=list)
    capabilities: dict[str, Any] | None = None
    in_init_tree: bool | None = None
    health_check: bool | None = None
    cel_expression: list[str] = field(default_factory=list)

    _kinds: frozenset[str] | None = field(init=False, repr=False, compare=False)
    _preds: tuple[_Pred, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # noqa: C901 - one block per field, in order
        set_ = object.__setattr__
        preds: list[_Pred] = []

        event_set = [normalise_event_type(v) for v in self._list("event_set", self.event_set, allow_int=True)]
        set_(self, "event_set", event_set)
        set_(self, "_kinds", frozenset(event_set) if event_set else None)

        pids = _int_list("pid", self.pid)
        set_(self, "pid", pids)
        if pids:
            pid_set = frozenset(pids)

            def p_pid(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                return p is not None and p.get("pid") in pid_set

            preds.append(p_pid)

        policies = _str_list("policy_names", self.policy_names)
        set_(self, "policy_names", policies)
        if policies:
            pol = frozenset(policies)
            preds.append(lambda kind, body, ev: body.get("policy_name") in pol)

        for name, who, attr in (
            ("binary_regex", "process", "binary"),
            ("parent_binary_regex", "parent", "binary"),
            ("arguments_regex", "process", "arguments"),
            ("parent_arguments_regex", "parent", "arguments"),
        ):
            pats = _str_list(name, getattr(self, name))
            set_(self, name, pats)
            if pats:
                preds.append(_regex_pred(_compile_regexes(name, pats), who, attr))

        anc = _str_list("ancestor_binary_regex", self.ancestor_binary_regex)
        set_(self, "ancestor_binary_regex", anc)
        if anc:
            anc_re = _compile_regexes("ancestor_binary_regex", anc)

            def p_anc(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                ancestors = body.get("ancestors")
                if not isinstance(ancestors, list):
                    return False
                for a in ancestors:
                    b = a.get("binary") if isinstance(a, Mapping) else None
                    if isinstance(b, str) and any(r.search(b) for r in anc_re):
                        return True
                return False

            preds.append(p_anc)

        container_ids = _str_list("container_id", self.container_id)
        set_(self, "container_id", container_ids)
        if container_ids:
            cid_re = _compile_regexes("container_id", container_ids)
            hex_ids = tuple(c.lower() for c in container_ids if re.fullmatch(r"[0-9a-fA-F]+", c))

            def p_cid(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                d = p.get("docker") if p is not None else None
                if not isinstance(d, str) or not d:
                    return False
                if any(r.match(d) for r in cid_re):
                    return True
                return any(h.startswith(d.lower()) for h in hex_ids)

            preds.append(p_cid)

        pidset = _int_list("pid_set", self.pid_set)
        set_(self, "pid_set", pidset)
        if pidset:
            preds.append(self._make_pid_set(frozenset(pidset)))

        namespaces = _str_list("namespace", self.namespace)
        set_(self, "namespace", namespaces)
        if namespaces:
            ns_set = frozenset(namespaces)

            def p_ns(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                if p is None:
                    return False
                ns = _pod_field(p, "namespace")
                return (ns if isinstance(ns, str) else "") in ns_set

            preds.append(p_ns)

        ns_re_pats = _str_list("namespace_regex", self.namespace_regex)
        set_(self, "namespace_regex", ns_re_pats)
        if ns_re_pats:
            ns_re = _compile_regexes("namespace_regex", ns_re_pats)

            def p_ns_re(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                ns = _pod_field(p, "namespace") if p is not None else None
                return isinstance(ns, str) and any(r.search(ns) for r in ns_re)

            preds.append(p_ns_re)

        for name, path in (("pod_regex", ("name",)), ("container_name_regex", ("container", "name"))):
            pats = _str_list(name, getattr(self, name))
            set_(self, name, pats)
            if pats:
                rx = _compile_regexes(name, pats)

                def p_pod(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any],
                          rx: tuple[re.Pattern[str], ...] = rx, path: tuple[str, ...] = path) -> bool:
                    p = _proc(body)
                    v = _pod_field(p, *path) if p is not None else None
                    return isinstance(v, str) and any(r.search(v) for r in rx)

                preds.append(p_pod)

        labels = _str_list("labels", self.labels)
        set_(self, "labels", labels)
        if labels:
            selectors = [_compile_selector(s) for s in labels]

            def p_labels(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                if p is None or not isinstance(p.get("pod"), Mapping):
                    return False  # never matches host (non-pod) events
                lb = _pod_field(p, "pod_labels")
                lb = lb if isinstance(lb, Mapping) else {}
                return any(all(_label_ok(lb, req) for req in sel) for sel in selectors)

            preds.append(p_labels)

        if self.capabilities is not None:
            caps = _compile_caps(self.capabilities)
            set_(self, "capabilities", {s: {op: sorted(v) for op, v in ops.items()} for s, ops in caps.items()})

            def p_caps(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                cap = p.get("cap") if p is not None else None
                if not isinstance(cap, Mapping):
                    return False
                for sname, ops in caps.items():
                    have = cap.get(sname)
                    have_set = frozenset(have) if isinstance(have, list) else frozenset()
                    if not _caps_ok(have_set, ops):
                        return False
                return True

            preds.append(p_caps)

        init_tree = _opt_bool("in_init_tree", self.in_init_tree)
        if init_tree is not None:
            def p_init(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                p = _proc(body)
                if p is None or not p.get("docker"):
                    return False
                return bool(p.get("in_init_tree", False)) == init_tree

            preds.append(p_init)

        health = _opt_bool("health_check", self.health_check)
        if health is not None:
            # kerneye never flags an event as a health check.
            preds.append(lambda kind, body, ev: (not health) and _proc(body) is not None)

        cel_exprs = _str_list("cel_expression", self.cel_expression)
        set_(self, "cel_expression", cel_exprs)
        programs = _compile_cel(cel_exprs)
        if programs:

            def p_cel(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
                try:
                    act = _cel_activation(kind, ev)
                except Exception:  # noqa: BLE001 - unconvertible value
                    return False
                for prg in programs:
                    try:
                        if _is_true(prg.evaluate(act)):
                            return True
                    except Exception:  # noqa: BLE001 - undeclared variable, type error...
                        continue
                return False

            preds.append(p_cel)

        set_(self, "_preds", tuple(preds))

    @staticmethod
    def _list(name: str, value: Any, allow_int: bool = False) -> list[Any]:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            return [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"filter field {name!r} must be a list, got {value!r}")
        return list(value)

    def _make_pid_set(self, roots: frozenset[int]) -> _Pred:
        children: dict[int, None] = {}  # insertion-ordered set of learned descendants
        lock = threading.Lock()

        def known(pid: Any) -> bool:
            return pid in roots or pid in children

        def pred(kind: str, body: Mapping[str, Any], ev: Mapping[str, Any]) -> bool:
            p = _proc(body)
            if p is None:
                return False
            pid = p.get("pid")
            if known(pid):
                return True
            par = _proc(body, "parent")
            hit = par is not None and known(par.get("pid"))
            if not hit:
                ancestors = body.get("ancestors")
                if isinstance(ancestors, list):
                    hit = any(isinstance(a, Mapping) and known(a.get("pid")) for a in ancestors)
            if hit and isinstance(pid, int):
                with lock:
                    children[pid] = None
                    if len(children) > PID_SET_MAX_CHILDREN:
                        del children[next(iter(children))]
            return hit

        return pred

    # --- public API

    @property
    def kind_only(self) -> bool:
        """True when the filter looks only at the event type (no dict needed)."""
        return not self._preds

    def matches(self, event: Mapping[str, Any]) -> bool:
        """True if ``event`` (a Tetragon-shaped dict) satisfies every key."""
        if not isinstance(event, Mapping):
            return False
        return self._match(event_kind(event), event)

    def _match(self, kind: str, event: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> bool:
        if self._kinds is not None and kind not in self._kinds:
            return False
        if not self._preds:
            return True
        ev = event() if callable(event) else event
        body = ev.get(kind)
        if not isinstance(body, Mapping):
            body = {}
        for pred in self._preds:
            if not pred(kind, body, ev):
                return False
        return True

    def to_dict(self) -> dict[str, Any]:
        """The non-empty fields, in snake_case JSON form (``from_dict`` round-trips)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if not f.init:
                continue
            v = getattr(self, f.name)
            if v is None or v == []:
                continue
            out[f.name] = list(v) if isinstance(v, list) else v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Filter:
        """Build from a JSON object with Tetragon's snake_case (or camelCase) keys.

        Unknown keys and invalid values raise ConfigError.
        """
        if not isinstance(data, Mapping):
            raise ConfigError(f"a filter must be a JSON object, got {type(data).__name__}: {data!r}")
        allowed = {f.name for f in fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for k, v in data.items():
            name = _snake(str(k))
            if name not in allowed:
                raise ConfigError(f"unknown filter field {k!r}; allowed: {', '.join(sorted(allowed))}")
            if v is None:
                continue
            kwargs[name] = v
        return cls(**kwargs)


# --- FilterSet ----------------------------------------------------------------


class FilterSet:
    """Allow/deny lists: allowed = (no allowlist or any allow matches) and no deny matches.

    ``allows(event_dict)`` for dicts; ``allows_event(ev)`` for kerneye
    :class:`~kerneye.events.event.Event` objects (anything with ``kind`` and
    ``to_dict()``), which builds the dict only when a filter needs more than
    the event type.
    """

    __slots__ = ("allow", "deny")

    def __init__(self, allow: Iterable[Filter] = (), deny: Iterable[Filter] = ()) -> None:
        self.allow = list(allow)
        self.deny = list(deny)
        for f in (*self.allow, *self.deny):
            if not isinstance(f, Filter):
                raise TypeError(f"FilterSet takes Filter objects, got {type(f).__name__}")

    @classmethod
    def from_text(cls, allow: str = "", deny: str = "") -> FilterSet:
        """From JSON-lines text, as ``--export-allowlist``/``--export-denylist``."""
        return cls(parse_filter_lines(allow, "allowlist"), parse_filter_lines(deny, "denylist"))

    @property
    def empty(self) -> bool:
        """True when everything is allowed (no allow and no deny filter)."""
        return not self.allow and not self.deny

    def allows(self, event: Mapping[str, Any]) -> bool:
        if not isinstance(event, Mapping):
            return False
        return self._allows(event_kind(event), event)

    def allows_event(self, ev: Any) -> bool:
        return self._allows(ev.kind, ev.to_dict)

    def _allows(self, kind: str, event: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> bool:
        if self.allow:
            for f in self.allow:
                if f._match(kind, event):
                    break
            else:
                return False
        for f in self.deny:
            if f._match(kind, event):
                return False
        return True

    def __repr__(self) -> str:
        return f"FilterSet(allow={self.allow!r}, deny={self.deny!r})"


def parse_json_lines(text: str, what: str = "filter") -> list[Any]:
    """Decode a stream of JSON values: one object per line as Tetragon's
    flags take them (any whitespace between values works, and so does a
    pretty-printed object or a JSON array of objects). Blank text -> [].
    Raises ConfigError naming the line of a syntax error.
    """
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected JSON text, got {type(text).__name__}")
    dec = json.JSONDecoder()
    out: list[Any] = []
    i, n = 0, len(text)
    while True:
        while i < n and text[i] in " \t\r\n":
            i += 1
        if i >= n:
            return out
        try:
            value, i = dec.raw_decode(text, i)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{what}: invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
        if isinstance(value, list):
            out.extend(value)
        else:
            out.append(value)


def parse_filter_lines(text: str, what: str = "filter list") -> list[Filter]:
    """``{"event_set":["PROCESS_EXEC"]}\\n{"pid":[1]}`` -> [Filter, Filter].

    The format of ``--export-allowlist`` / ``--export-denylist``. Raises
    ConfigError (one line, naming the entry) on any problem.
    """
    out = []
    for n, obj in enumerate(parse_json_lines(text, what), 1):
        try:
            out.append(Filter.from_dict(obj))
        except ConfigError as err:
            raise ConfigError(f"{what} entry {n}: {err}") from None
    return out
