"""Strict YAML → :mod:`kerneye.policy.model` loader for Tetragon TracingPolicies.

Public API::

    load_str(text, source="<string>", *, supported_hooks=None) -> TracingPolicy
    load_file(path, *, supported_hooks=None) -> TracingPolicy
    load_dir(path, *, supported_hooks=None) -> list[TracingPolicy]

Each raises :class:`~kerneye.policy.errors.PolicyError` (one problem) or
:class:`~kerneye.policy.errors.PolicyErrors` (several, in document order);
every error carries a code, the YAML path and the line/column of the
offending node. Nothing here touches the kernel.

How it works: PyYAML only *composes* the text into nodes (keeping marks); a
schema-driven walk then checks each node and builds the frozen model. One
walk does everything, so every error points at a real node:

* structure: unknown keys (with the allowed ones and a did-you-mean), duplicate
  keys, YAML types (a quoted ``"1"`` is not an integer, a scalar is not a list);
* vocabulary: operators, actions, argument types, namespaces, capabilities,
  list types, option names, canonicalised on the way in (vocab.py);
* cross references: matchArgs indexes against ``args``, ``sizeArgIndex``,
  ``returnArg`` for return filters, ``list:NAME`` against ``spec.lists``,
  NotifyEnforcer against ``spec.enforcers``;
* selector macros: a selector's ``macros`` are merged field by field (a field
  set twice is an error, as in Tetragon) and the macro's filters are checked
  against the hook that uses them, with positions inside the macro;
* limits of Tetragon's docs (vocab.py ``MAX_*``).

Value-count limit: Tetragon's docs say 4 values per matchArgs, but its code
(and its own docs example with 14 Prefix values) keeps strings, prefixes,
addresses and ports in BPF maps without a count limit; the loader applies the
limit only where values are stored inline (vocab.inline_values).

Where Tetragon itself is lenient the loader is too, on purpose, so that
policies written for Tetragon keep loading: action parameters that the action
ignores (``Sigkill`` with ``argError``) are accepted; matchArgs/namespace
``values`` may be unquoted integers (kept as their source text, ``0x40``
stays ``0x40``); unknown ``type`` case is folded (``Int`` → ``int``).
Kubernetes ObjectMeta keys (``creationTimestamp`` ...) are accepted and ignored,
and policy names may contain ``_`` (Tetragon's docs use ``example_ns_1``).
Stricter than Tetragon, because the result would silently differ from what the
author meant: unknown ``options`` names, ``Signal`` without ``argSig``,
``sizeArgIndex`` on a non-buffer argument or pointing at itself, filters
without values. All 71 policies of Tetragon's examples/tracingpolicy load.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, replace
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from kerneye.policy import vocab as V
from kerneye.policy.errors import PolicyError, raise_collected
from kerneye.policy.model import (
    ActionSpec,
    ArgFilter,
    ArgSpec,
    BinaryFilter,
    CapabilityFilter,
    EnforcerSpec,
    KProbeSpec,
    LabelRequirement,
    LabelSelector,
    ListSpec,
    Loc,
    LsmHookSpec,
    NamespaceChangeFilter,
    NamespaceFilter,
    PidFilter,
    PolicySpec,
    Selector,
    TracepointSpec,
    TracingPolicy,
    UProbeSpec,
    UsdtSpec,
    WorkloadSelector,
)

__all__ = ["load_str", "load_file", "load_dir", "API_VERSION", "KINDS", "HOOK_SECTIONS"]

API_VERSION = "cilium.io/v1alpha1"
KINDS: tuple[str, ...] = ("TracingPolicy", "TracingPolicyNamespaced")
HOOK_SECTIONS: tuple[str, ...] = ("kprobes", "fentries", "tracepoints", "uprobes", "usdts", "lsmhooks")

# Allowed keys of each mapping, as YAML spells them.
_TOP_KEYS = ("apiVersion", "kind", "metadata", "spec")
_METADATA_KEYS = ("name", "namespace", "labels", "annotations")
# The rest of Kubernetes' ObjectMeta, found in `kubectl get -o yaml` output:
# accepted (as Tetragon does) and ignored.
_OBJECT_META_KEYS = (
    *_METADATA_KEYS, "generateName", "uid", "resourceVersion", "generation", "creationTimestamp",
    "deletionTimestamp", "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "managedFields", "selfLink",
)
_SPEC_KEYS = (
    *HOOK_SECTIONS, "lists", "options", "loader", "enforcers",
    "podSelector", "containerSelector", "hostSelector", "nodeSelector", "selectorsMacros",
)
_KPROBE_KEYS = (
    "call", "syscall", "return", "message", "args", "data", "returnArg",
    "returnArgAction", "selectors", "tags", "ignore",
)
_TRACEPOINT_KEYS = ("subsystem", "event", "raw", "message", "args", "selectors", "tags")
_UPROBE_KEYS = (
    "path", "btfPath", "symbols", "offsets", "addrs", "refCtrOffsets", "message", "args",
    "data", "selectors", "tags", "return", "returnArg", "binaryDigests", "ignore",
)
_USDT_KEYS = ("path", "btfPath", "provider", "name", "message", "args", "selectors", "tags")
_LSM_KEYS = ("hook", "message", "args", "selectors", "tags")
_ARG_KEYS = (
    "index", "type", "resolve", "sizeArgIndex", "returnCopy", "maxData", "label",
    "source", "btfType", "btfTypeModule",
)
_LIST_KEYS = ("name", "type", "values", "pattern", "validated")
_OPTION_KEYS = ("name", "value")
_ENFORCER_KEYS = ("calls",)
_FILTER_FIELDS = (
    "matchArgs", "matchData", "matchReturnArgs", "matchPIDs", "matchBinaries",
    "matchParentBinaries", "matchNamespaces", "matchNamespaceChanges",
    "matchCapabilities", "matchCapabilityChanges", "matchActions",
    "matchReturnActions", "matchWorkloads",
)
_SELECTOR_KEYS = ("label", "macros", *_FILTER_FIELDS)
_ARG_FILTER_KEYS = ("index", "args", "operator", "values")
_PID_KEYS = ("operator", "values", "isNamespacePID", "followForks")
_BINARY_KEYS = ("operator", "values", "followChildren")
_NS_KEYS = ("namespace", "operator", "values")
_NS_CHANGE_KEYS = ("operator", "values")
_CAP_KEYS = ("type", "operator", "isNamespaceCapability", "values")
_WORKLOAD_KEYS = ("podSelector", "containerSelector", "hostSelector")
_LABEL_SELECTOR_KEYS = ("matchLabels", "matchExpressions")
_LABEL_REQ_KEYS = ("key", "operator", "values")
_LABEL_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")
_ACTION_KEYS = (
    "action", "argError", "argSig", "argSock", "argUrl", "argFqdn", "argIndex", "argValue",
    "argRegs", "argNewSymbol", "argNewAddr", "argNewOffset", "rateLimit", "rateLimitScope",
    "kernelStackTrace", "userStackTrace", "imaHash",
)
_POST_ONLY_KEYS = ("rateLimit", "kernelStackTrace", "userStackTrace", "imaHash")
_OVERRIDE_ONLY_KEYS = ("argRegs", "argNewSymbol", "argNewAddr", "argNewOffset")
_REQUIRED_ACTION_PARAM = {"Signal": "argSig", "GetUrl": "argUrl", "DnsLookup": "argFqdn"}
# Keys that existed in older Tetragon releases: say why they are rejected.
_KEY_HINTS = {
    "argFd": "argFd belonged to the FollowFD/UnfollowFD/CopyFD actions, which Tetragon removed",
    "argName": "argName belonged to the FollowFD/UnfollowFD/CopyFD actions, which Tetragon removed",
    "status": "status is written by Kubernetes, not part of a policy file",
}

# DNS-1123 subdomain, plus '_' which Tetragon's own docs use (example_ns_1)
# and its file loader accepts; a name ends up in pin paths and metric labels.
_POLICY_NAME = re.compile(r"[a-z0-9]([-_a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-_a-z0-9]*[a-z0-9])?)*\Z")
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_SHA256_DIGEST = re.compile(r"sha256:[0-9a-fA-F]{64}\Z")

_STR, _INT, _BOOL, _NULL, _FLOAT = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "bool", "null", "float"))
_CONSTRUCTOR = SafeConstructor()

# A schema-driven walk over aliased nodes can revisit shared subtrees; cap the
# work so a "billion laughs" file fails fast instead of hanging the agent.
_MAX_NODES = 100_000


def _kind_of(node: Node) -> str:
    if isinstance(node, MappingNode):
        return "a mapping"
    if isinstance(node, SequenceNode):
        return "a list"
    return {
        _STR: "a string", _INT: "an integer", _BOOL: "a boolean", _NULL: "null", _FLOAT: "a number",
    }.get(node.tag, "a " + node.tag.rsplit(":", 1)[-1])


def _describe(node: Node) -> str:
    if isinstance(node, ScalarNode) and node.tag != _NULL:
        text = node.value if len(node.value) <= 40 else node.value[:37] + "..."
        return f"{_kind_of(node)} ({text!r})"
    return _kind_of(node)


def _one_of(options: Iterable[str]) -> str:
    return ", ".join(options)


def _j(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _is_null(node: Node | None) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _NULL


def _lacks_items(m: _Map, key: str) -> bool:
    """True when ``key`` is absent, null or an empty list. A value of the
    wrong type, or a list whose items were all bad, was reported already."""
    if key not in m or _is_null(m[key][1]):
        return True
    node = m[key][1]
    return isinstance(node, SequenceNode) and not node.value


def _is_true(node: Node) -> bool:
    return isinstance(node, ScalarNode) and node.tag == _BOOL and bool(_CONSTRUCTOR.construct_yaml_bool(node))


_Map = dict[str, tuple[Node, Node]]
"""A checked mapping: key -> (key node, value node)."""
_Fields = dict[str, list[tuple[Any, Node, str]]]
"""Selector field -> its entries as (model object, node, YAML path)."""


class _Abort(Exception):
    """Stops the walk of a document that is too big to check."""


@dataclass
class _HookCtx:
    """What selector checks need to know about the hook using the selector."""

    section: str
    args: tuple[ArgSpec, ...]
    data: tuple[ArgSpec, ...]
    return_arg: ArgSpec | None
    is_return: bool
    position: Callable[[int], int | None]


class _Walker:
    """One document's walk: errors are collected, not raised."""

    def __init__(self, file: str, supported_hooks: Collection[str] | None) -> None:
        self.file = file
        self.supported_hooks = supported_hooks
        self.errors: list[PolicyError] = []
        self.nodes = 0
        self.lists: dict[str, ListSpec] = {}
        self.macro_nodes: dict[str, tuple[Node, str]] = {}
        self.n_enforcers = 0
        self.follow_children = 0
        # id(mapping node) -> keys suggested for a misspelled key there; a
        # missing required key that was suggested is not reported again.
        self.suggested: dict[int, set[str]] = {}

    # ------------------------------------------------------------- errors

    def err(self, code: str, node: Node | None, path: str, msg: str) -> None:
        line = col = 0
        if node is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
        self.errors.append(PolicyError(code, msg, path=path, file=self.file, line=line, col=col))

    def loc(self, node: Node, path: str) -> Loc:
        return Loc(self.file, node.start_mark.line + 1, node.start_mark.column + 1, path)

    # ------------------------------------------------------------- node helpers

    def mapping(self, node: Node, path: str, allowed: tuple[str, ...], what: str) -> _Map | None:
        """Key → (key node, value node) of a mapping with only ``allowed`` keys."""
        self.count(node, path)
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return {}
        if not isinstance(node, MappingNode):
            self.err("wrong-type", node, path, f"{what} must be a mapping, got {_describe(node)}")
            return None
        out: _Map = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, ScalarNode) else None
            if key is None:
                self.err("wrong-type", knode, path, f"{what} keys must be strings, got {_kind_of(knode)}")
                continue
            kpath = f"{path}.{key}" if path else key
            if key in out:
                self.err("duplicate-key", knode, kpath, f"duplicate key {key!r} in {what}")
                continue
            if key not in allowed:
                hint = _KEY_HINTS.get(key)
                close = difflib.get_close_matches(key, allowed, n=1)
                msg = f"unknown key {key!r} in {what}"
                if hint:
                    msg += f" ({hint})"
                elif close:
                    msg += f"; did you mean {close[0]!r}?"
                    self.suggested.setdefault(id(node), set()).add(close[0])
                self.err("unknown-key", knode, kpath, f"{msg}; allowed keys: {_one_of(allowed)}")
                continue
            out[key] = (knode, vnode)
        return out

    def count(self, node: Node, path: str) -> None:
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            self.err("limit", node, path, f"the document expands to more than {_MAX_NODES} mappings and lists "
                     "(through YAML aliases?); not checking further")
            raise _Abort

    def seq(self, node: Node, path: str, what: str) -> list[Node] | None:
        self.count(node, path)
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return []
        if not isinstance(node, SequenceNode):
            self.err("wrong-type", node, path, f"{what} must be a list, got {_describe(node)}")
            return None
        return list(node.value)

    def string(self, node: Node, path: str, what: str) -> str | None:
        if isinstance(node, ScalarNode):
            if node.tag == _STR:
                return str(node.value)
            if node.tag == _NULL:
                return None
        self.err("wrong-type", node, path, f"{what} must be a string, got {_describe(node)}")
        return None

    def value_text(self, node: Node, path: str, what: str) -> str | None:
        """A filter value: a string, or an unquoted integer kept as written."""
        if isinstance(node, ScalarNode) and node.tag in (_STR, _INT):
            return str(node.value)
        self.err("wrong-type", node, path, f"{what} must be a string, got {_describe(node)}")
        return None

    def boolean(self, node: Node, path: str, what: str) -> bool | None:
        if isinstance(node, ScalarNode):
            if node.tag == _BOOL:
                return bool(_CONSTRUCTOR.construct_yaml_bool(node))
            if node.tag == _NULL:
                return None
        self.err("wrong-type", node, path, f"{what} must be true or false, got {_describe(node)}")
        return None

    def integer(self, node: Node, path: str, what: str, lo: int, hi: int) -> int | None:
        value: int | None = None
        if isinstance(node, ScalarNode):
            if node.tag == _NULL:
                return None
            if node.tag == _INT:
                value = int(_CONSTRUCTOR.construct_yaml_int(node))
            elif node.tag == _STR and node.style is None:
                # Go's YAML reads plain 0o17 as an integer; PyYAML (YAML 1.1) does not.
                try:
                    value = V.parse_int(node.value)
                except ValueError:
                    value = None
        if value is None:
            self.err("wrong-type", node, path, f"{what} must be an integer, got {_describe(node)}")
            return None
        if not lo <= value <= hi:
            self.err("bad-value", node, path, f"{what} must be between {lo} and {hi}, got {value}")
            return None
        return value

    def strings(self, node: Node, path: str, what: str, item: Callable[[Node, str, str], str | None] | None = None) -> list[tuple[str, Node]]:
        """A list of strings as (value, node) pairs; bad items are reported and dropped."""
        item = item or self.string
        nodes = self.seq(node, path, what)
        out = []
        for i, n in enumerate(nodes or ()):
            v = item(n, f"{path}[{i}]", f"each entry of {what}")
            if v is not None:
                out.append((v, n))
        return out

    def string_map(self, node: Node, path: str, what: str) -> dict[str, str]:
        if isinstance(node, ScalarNode) and node.tag == _NULL:
            return {}
        if not isinstance(node, MappingNode):
            self.err("wrong-type", node, path, f"{what} must be a mapping, got {_describe(node)}")
            return {}
        out: dict[str, str] = {}
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, ScalarNode) else ""
            kpath = f"{path}.{key}"
            if key in out:
                self.err("duplicate-key", knode, kpath, f"duplicate key {key!r} in {what}")
                continue
            v = self.string(vnode, kpath, f"{what} values")
            if v is not None:
                out[key] = v
        return out

    def required(self, m: _Map, key: str, node: Node, path: str, what: str) -> Node | None:
        if key in m and not _is_null(m[key][1]):
            return m[key][1]
        if key in self.suggested.get(id(node), ()):
            return None  # already reported as a misspelling
        self.err("missing-field", node, _j(path, key), f"{what} needs {key!r}")
        return None

    def required_str(self, m: _Map, key: str, node: Node, path: str, what: str) -> str:
        vnode = self.required(m, key, node, path, what)
        if vnode is None:
            return ""
        v = self.string(vnode, _j(path, key), f"{what} {key}")
        if v == "":
            self.err("missing-field", vnode, _j(path, key), f"{what} {key} must not be empty")
        return v or ""

    # Small accessors for optional fields: return default when absent/invalid.
    def opt_str(self, m: _Map, key: str, path: str, what: str, default: str = "") -> str:
        if key not in m:
            return default
        v = self.string(m[key][1], _j(path, key), f"{what} {key}")
        return default if v is None else v

    def opt_bool(self, m: _Map, key: str, path: str, what: str, default: bool = False) -> bool:
        if key not in m:
            return default
        v = self.boolean(m[key][1], _j(path, key), f"{what} {key}")
        return default if v is None else v

    def opt_int(self, m: _Map, key: str, path: str, what: str, lo: int, hi: int) -> int | None:
        if key not in m:
            return None
        return self.integer(m[key][1], _j(path, key), f"{what} {key}", lo, hi)

    # ------------------------------------------------------------- document

    def policy(self, root: Node) -> TracingPolicy | None:
        m = self.mapping(root, "", _TOP_KEYS, "the policy document")
        if m is None:
            return None
        api = self.required_str(m, "apiVersion", root, "", "the policy")
        if api and api != API_VERSION:
            self.err("bad-value", m["apiVersion"][1], "apiVersion", f"apiVersion must be {API_VERSION!r}, got {api!r}")
        kind = self.required_str(m, "kind", root, "", "the policy")
        if kind and kind not in KINDS:
            self.err("unknown-value", m["kind"][1], "kind",
                     f"unknown kind {kind!r}; valid kinds: {_one_of(KINDS + ('EnforcementPolicy',))}")
        name, namespace, labels, annotations = "", None, {}, {}
        mnode = self.required(m, "metadata", root, "", "the policy")
        if mnode is not None:
            md = self.mapping(mnode, "metadata", _OBJECT_META_KEYS, "metadata")
            if md is not None:
                name = self.required_str(md, "name", mnode, "metadata", "metadata")
                if name and (len(name) > 253 or not _POLICY_NAME.match(name)):
                    self.err("bad-value", md["name"][1], "metadata.name",
                             f"metadata.name {name!r} must be a DNS-1123 name: lower-case letters, digits, "
                             "'-', '_' and '.', starting and ending with a letter or digit, at most 253 characters")
                if "namespace" in md:
                    namespace = self.string(md["namespace"][1], "metadata.namespace", "metadata.namespace")
                    nsnode = md["namespace"][1]
                    if namespace is not None and (len(namespace) > 63 or not _DNS1123_LABEL.match(namespace)):
                        self.err("bad-value", nsnode, "metadata.namespace",
                                 f"metadata.namespace {namespace!r} must be a DNS-1123 label (at most 63 "
                                 "lower-case letters, digits and '-')")
                    if namespace and kind == "TracingPolicy":
                        self.err("bad-value", md["namespace"][0], "metadata.namespace",
                                 "a TracingPolicy is cluster-wide and takes no metadata.namespace; "
                                 "use kind TracingPolicyNamespaced")
                if kind == "TracingPolicyNamespaced" and not namespace:
                    self.err("missing-field", mnode, "metadata.namespace",
                             "a TracingPolicyNamespaced needs metadata.namespace")
                if "labels" in md:
                    labels = self.string_map(md["labels"][1], "metadata.labels", "metadata.labels")
                if "annotations" in md:
                    annotations = self.string_map(md["annotations"][1], "metadata.annotations", "metadata.annotations")
        snode = self.required(m, "spec", root, "", "the policy")
        spec = PolicySpec() if snode is None else self.spec(snode, kind)
        return TracingPolicy(
            api_version=api, kind=kind, name=name, namespace=namespace or None, labels=labels,
            annotations=annotations, spec=spec or PolicySpec(), source_file=self.file, loc=self.loc(root, ""),
        )

    def spec(self, node: Node, kind: str) -> PolicySpec | None:
        m = self.mapping(node, "spec", _SPEC_KEYS, "spec")
        if m is None:
            return None
        p = "spec"
        if self.supported_hooks is not None:
            for section in HOOK_SECTIONS:
                if section in m and section not in self.supported_hooks:
                    vnode = m[section][1]
                    if isinstance(vnode, SequenceNode) and not vnode.value:
                        continue
                    self.err("unavailable-hook", m[section][0], f"{p}.{section}",
                             f"hook section {section!r} is not supported here; supported: "
                             f"{_one_of(s for s in HOOK_SECTIONS if s in self.supported_hooks) or 'none'}")
        # Order matters: lists, enforcers and macros are referenced by hooks.
        lists = self.section(m, "lists", p, self.list_spec)
        enforcers = self.section(m, "enforcers", p, self.enforcer)
        if len(enforcers) > V.MAX_ENFORCERS:
            self.err("limit", m["enforcers"][1].value[V.MAX_ENFORCERS], f"{p}.enforcers[{V.MAX_ENFORCERS}]",
                     f"at most {V.MAX_ENFORCERS} enforcer per policy, got {len(enforcers)}")
        options = self.options(m["options"][1], f"{p}.options") if "options" in m else {}
        macros = self.macros(m["selectorsMacros"][1], f"{p}.selectorsMacros") if "selectorsMacros" in m else {}
        kprobes = self.section(m, "kprobes", p, lambda n, q: self.kprobe(n, q, "kprobes"))
        fentries = self.section(m, "fentries", p, lambda n, q: self.kprobe(n, q, "fentries"))
        tracepoints = self.section(m, "tracepoints", p, self.tracepoint)
        uprobes = self.section(m, "uprobes", p, self.uprobe)
        usdts = self.section(m, "usdts", p, self.usdt)
        lsmhooks = self.section(m, "lsmhooks", p, self.lsmhook)
        if self.follow_children > V.MAX_FOLLOW_CHILDREN:
            self.err("limit", node, p, f"at most {V.MAX_FOLLOW_CHILDREN} matchBinaries sections with "
                     f"followChildren per policy, got {self.follow_children}")
        sels = {}
        for key in ("podSelector", "containerSelector", "hostSelector", "nodeSelector"):
            if key in m:
                sels[key] = self.label_selector(m[key][1], f"{p}.{key}", key)
        host = sels.get("hostSelector")
        if host is not None:
            self.check_host_selector(host, m["hostSelector"][1], f"{p}.hostSelector")
            if kind == "TracingPolicyNamespaced":
                self.err("bad-value", m["hostSelector"][0], f"{p}.hostSelector",
                         "a TracingPolicyNamespaced applies to its namespace's pods only and takes no hostSelector")
        return PolicySpec(
            kprobes=tuple(kprobes), fentries=tuple(fentries), tracepoints=tuple(tracepoints),
            uprobes=tuple(uprobes), usdts=tuple(usdts), lsmhooks=tuple(lsmhooks), lists=tuple(lists),
            options=options, loader=self.opt_bool(m, "loader", p, "spec"), enforcers=tuple(enforcers),
            pod_selector=sels.get("podSelector"), container_selector=sels.get("containerSelector"),
            host_selector=host, node_selector=sels.get("nodeSelector"), selectors_macros=macros,
            loc=self.loc(node, p),
        )

    def section(self, m: _Map, key: str, path: str, parse: Callable[[Node, str], Any]) -> list[Any]:
        if key not in m:
            return []
        out = []
        for i, n in enumerate(self.seq(m[key][1], f"{path}.{key}", f"{path}.{key}") or ()):
            v = parse(n, f"{path}.{key}[{i}]")
            if v is not None:
                out.append(v)
        return out

    # ------------------------------------------------------------- lists, options, enforcers

    def list_spec(self, node: Node, path: str) -> ListSpec | None:
        m = self.mapping(node, path, _LIST_KEYS, "a list")
        if m is None:
            return None
        name = self.required_str(m, "name", node, path, "a list")
        ltype = None
        if "type" in m:
            raw = self.string(m["type"][1], f"{path}.type", "list type")
            if raw:
                ltype = raw.lower()
                if ltype not in V.LIST_TYPES:
                    self.err("unknown-value", m["type"][1], f"{path}.type",
                             f"unknown list type {raw!r}; valid types: {_one_of(V.LIST_TYPES)}")
                    ltype = None
        values = [v for v, _ in self.strings(m["values"][1], f"{path}.values", "list values")] if "values" in m else []
        pattern = self.string(m["pattern"][1], f"{path}.pattern", "list pattern") if "pattern" in m else None
        self.opt_bool(m, "validated", path, "a list")  # Tetragon-internal flag; type-checked, ignored
        if ltype in V.GENERATED_LIST_TYPES and values:
            self.err("bad-value", m["values"][0], f"{path}.values",
                     f"a {ltype} list is generated from the kernel and takes no values")
        if ltype == "generated_ftrace" and not pattern:
            self.err("missing-field", node, f"{path}.pattern", "a generated_ftrace list needs a 'pattern'")
        if pattern is not None and ltype != "generated_ftrace":
            self.err("bad-value", m["pattern"][0], f"{path}.pattern", "'pattern' applies only to generated_ftrace lists")
        if pattern:
            try:
                re.compile(pattern)
            except re.error as e:
                self.err("bad-value", m["pattern"][1], f"{path}.pattern", f"pattern is not a regular expression: {e}")
        if ltype not in V.GENERATED_LIST_TYPES and name and _lacks_items(m, "values"):
            self.err("missing-field", m["values"][1] if "values" in m else node, f"{path}.values",
                     f"list {name!r} has no values")
        if name in self.lists:
            self.err("duplicate-name", m["name"][1], f"{path}.name", f"list name {name!r} is used twice")
        spec = ListSpec(name=name, type=ltype, values=tuple(values), pattern=pattern, loc=self.loc(node, path))
        if name:
            self.lists.setdefault(name, spec)
        return spec

    def list_ref(self, value: str, node: Node, path: str) -> ListSpec | None:
        """Resolve ``list:NAME``; report a missing list."""
        name = value[len(V.LIST_PREFIX):]
        lst = self.lists.get(name)
        if lst is None:
            known = _one_of(self.lists) or "none defined"
            self.err("unknown-list", node, path, f"{value!r} names no entry of spec.lists (lists: {known})")
        return lst

    def enforcer(self, node: Node, path: str) -> EnforcerSpec | None:
        m = self.mapping(node, path, _ENFORCER_KEYS, "an enforcer")
        if m is None:
            return None
        calls = []
        if self.required(m, "calls", node, path, "an enforcer") is not None:
            for i, (v, n) in enumerate(self.strings(m["calls"][1], f"{path}.calls", "enforcer calls")):
                if v.startswith(V.LIST_PREFIX):
                    self.list_ref(v, n, f"{path}.calls[{i}]")
                calls.append(v)
        self.n_enforcers += 1
        return EnforcerSpec(calls=tuple(calls), loc=self.loc(node, path))

    def options(self, node: Node, path: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for i, n in enumerate(self.seq(node, path, "spec.options") or ()):
            q = f"{path}[{i}]"
            m = self.mapping(n, q, _OPTION_KEYS, "an option")
            if m is None:
                continue
            name = self.required_str(m, "name", n, q, "an option")
            value = self.opt_str(m, "value", q, "option")
            if not name:
                continue
            vnode = m["value"][1] if "value" in m else n
            shape = V.OPTIONS.get(name)
            if shape is None:
                self.err("unknown-value", m["name"][1], f"{q}.name",
                         f"unknown option {name!r}; known options: {_one_of(V.OPTIONS)}")
                continue
            if name in out:
                self.err("bad-value", m["name"][1], f"{q}.name", f"option {name!r} is set twice")
                continue
            ok = True
            if shape == "bool":
                ok = value in V.GO_BOOLS
            elif shape == "positive integer":
                ok = value.isdigit() and int(value) > 0
            else:
                ok = value in shape.split("|")
            if not ok:
                self.err("bad-value", vnode, f"{q}.value", f"option {name!r} must be {shape}, got {value!r}")
                continue
            out[name] = value
        return out

    # ------------------------------------------------------------- label selectors

    def label_selector(self, node: Node, path: str, what: str) -> LabelSelector | None:
        m = self.mapping(node, path, _LABEL_SELECTOR_KEYS, what)
        if m is None:
            return None
        labels = self.string_map(m["matchLabels"][1], f"{path}.matchLabels", "matchLabels") if "matchLabels" in m else {}
        exprs = []
        if "matchExpressions" in m:
            q = f"{path}.matchExpressions"
            for i, n in enumerate(self.seq(m["matchExpressions"][1], q, "matchExpressions") or ()):
                qi = f"{q}[{i}]"
                r = self.mapping(n, qi, _LABEL_REQ_KEYS, "a label requirement")
                if r is None:
                    continue
                key = self.required_str(r, "key", n, qi, "a label requirement")
                op = self.required_str(r, "operator", n, qi, "a label requirement")
                if op and op not in _LABEL_OPERATORS:
                    self.err("unknown-operator", r["operator"][1], f"{qi}.operator",
                             f"unknown label operator {op!r}; valid operators: {_one_of(_LABEL_OPERATORS)}")
                values = [v for v, _ in self.strings(r["values"][1], f"{qi}.values", "values")] if "values" in r else []
                if op in ("In", "NotIn") and not values:
                    self.err("missing-field", n, f"{qi}.values", f"label operator {op} needs values")
                if op in ("Exists", "DoesNotExist") and values:
                    self.err("bad-value", r["values"][0], f"{qi}.values", f"label operator {op} takes no values")
                exprs.append(LabelRequirement(key=key, operator=op, values=tuple(values), loc=self.loc(n, qi)))
        return LabelSelector(match_labels=labels, match_expressions=tuple(exprs), loc=self.loc(node, path))

    def check_host_selector(self, sel: LabelSelector, node: Node, path: str) -> None:
        if sel.match_labels or sel.match_expressions:
            self.err("bad-value", node, path, "hostSelector must be null or {} (all host processes); "
                     "labels do not apply to host processes")

    # ------------------------------------------------------------- hooks

    def common_hook(self, m: _Map, node: Node, path: str, what: str) -> tuple[str, tuple[str, ...]]:
        message = self.opt_str(m, "message", path, what)
        if len(message) > V.MAX_MESSAGE_LEN:
            self.err("limit", m["message"][1], f"{path}.message",
                     f"message is {len(message)} characters long, at most {V.MAX_MESSAGE_LEN} allowed")
        tags: list[tuple[str, Node]] = self.strings(m["tags"][1], f"{path}.tags", "tags") if "tags" in m else []
        if len(tags) > V.MAX_TAGS:
            self.err("limit", tags[V.MAX_TAGS][1], f"{path}.tags[{V.MAX_TAGS}]",
                     f"at most {V.MAX_TAGS} tags per hook, got {len(tags)}")
        return message, tuple(t for t, _ in tags)

    def hook_args(self, m: _Map, key: str, path: str, section: str, *, data: bool = False) -> tuple[ArgSpec, ...]:
        if key not in m:
            return ()
        q = f"{path}.{key}"
        out = []
        for i, n in enumerate(self.seq(m[key][1], q, key) or ()):
            a = self.arg_spec(n, f"{q}[{i}]", section, data=data)
            if a is not None:
                out.append(a)
        return tuple(out)

    def arg_spec(self, node: Node, path: str, section: str, *, data: bool = False, ret: bool = False) -> ArgSpec | None:
        what = "a data entry" if data else "returnArg" if ret else "an argument"
        m = self.mapping(node, path, _ARG_KEYS, what)
        if m is None:
            return None
        raw = section == "tracepoints:raw"
        func_like = section in ("kprobes", "fentries", "uprobes", "lsmhooks")
        index = 0
        if ret:
            index = self.opt_int(m, "index", path, what, 0, 2**32 - 1) or 0
        else:
            inode = self.required(m, "index", node, path, what)
            if inode is not None:
                hi = 2**32 - 1
                if func_like:
                    hi = V.MAX_FUNC_ARG_INDEX
                elif raw:
                    hi = V.MAX_RAW_TP_ARG_INDEX
                v = self.integer(inode, f"{path}.index", f"{what} index", 0, 2**32 - 1)
                if v is not None and v > hi:
                    self.err("bad-value", inode, f"{path}.index",
                             f"{what} index {v} is out of range: {section.split(':')[0]} take indexes 0 to {hi}")
                index = v or 0
        atype = "auto"
        if "type" in m:
            raw_type = self.string(m["type"][1], f"{path}.type", f"{what} type")
            if raw_type is not None:
                canon = V.canonical_arg_type(raw_type)
                if canon is None:
                    close = difflib.get_close_matches(raw_type.lower(), V.ARG_TYPE_NAMES, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.err("unknown-arg-type", m["type"][1], f"{path}.type",
                             f"unknown argument type {raw_type!r}{hint}; valid types: {_one_of(V.ARG_TYPE_NAMES)}")
                else:
                    atype = canon
        size_idx = self.opt_int(m, "sizeArgIndex", path, what, 0, V.MAX_SIZE_ARG_INDEX) or 0
        if size_idx:
            snode = m["sizeArgIndex"][1]
            if atype not in V.SIZED_BUFFER_TYPES:
                self.err("bad-value", snode, f"{path}.sizeArgIndex",
                         f"sizeArgIndex applies only to char_buf and char_iovec arguments, not {atype}")
            elif func_like and size_idx > V.MAX_FUNC_ARG_INDEX + 1:
                self.err("bad-value", snode, f"{path}.sizeArgIndex",
                         f"sizeArgIndex {size_idx} is out of range: it is 1-based (argument index + 1), "
                         f"so 1 to {V.MAX_FUNC_ARG_INDEX + 1}")
            elif size_idx == index + 1 and not ret:
                self.err("bad-value", snode, f"{path}.sizeArgIndex",
                         f"sizeArgIndex {size_idx} points at this argument itself (sizeArgIndex is index + 1 "
                         "of the argument holding the size)")
        source = self.opt_str(m, "source", path, what)
        resolve = self.opt_str(m, "resolve", path, what)
        if data:
            if source not in V.DATA_SOURCES:
                vnode = m["source"][1] if "source" in m else node
                code = "missing-field" if not source else "unknown-value"
                self.err(code, vnode, f"{path}.source",
                         f"a data entry needs 'source': {' or '.join(V.DATA_SOURCES)}" + (f", got {source!r}" if source else ""))
            if not resolve:
                self.err("missing-field", node, f"{path}.resolve", "a data entry needs 'resolve'")
        elif source:
            self.err("bad-value", m["source"][0], f"{path}.source",
                     "'source' is only valid in data entries, not in args or returnArg")
        return ArgSpec(
            index=index, type=atype, size_arg_index=size_idx,
            return_copy=self.opt_bool(m, "returnCopy", path, what),
            max_data=self.opt_bool(m, "maxData", path, what),
            label=self.opt_str(m, "label", path, what), resolve=resolve, source=source,
            btf_type=self.opt_str(m, "btfType", path, what),
            btf_type_module=self.opt_str(m, "btfTypeModule", path, what),
            loc=self.loc(node, path),
        )

    def check_arg_count(self, m: _Map, node: Node, path: str, args: tuple[ArgSpec, ...], data: tuple[ArgSpec, ...]) -> None:
        if len(args) + len(data) > V.MAX_HOOK_ARGS:
            key = "data" if data else "args"
            self.err("limit", m[key][1], f"{path}.{key}",
                     f"at most {V.MAX_HOOK_ARGS} args and data entries per hook, got {len(args) + len(data)}")

    def return_arg(self, m: _Map, path: str, section: str, is_return: bool, node: Node) -> ArgSpec | None:
        if "returnArg" in m and not _is_null(m["returnArg"][1]):
            return self.arg_spec(m["returnArg"][1], f"{path}.returnArg", section, ret=True)
        if is_return:
            self.err("missing-field", m["return"][0], f"{path}.returnArg",
                     "return: true needs a 'returnArg' describing the return value")
        return None

    def kprobe(self, node: Node, path: str, section: str) -> KProbeSpec | None:
        what = "a kprobe" if section == "kprobes" else "an fentry"
        m = self.mapping(node, path, _KPROBE_KEYS, what)
        if m is None:
            return None
        call = self.required_str(m, "call", node, path, what)
        syscall = self.opt_bool(m, "syscall", path, what, True)
        calls: tuple[str, ...] = (call,) if call else ()
        call_list = None
        if call.startswith(V.LIST_PREFIX):
            call_list = call[len(V.LIST_PREFIX):]
            lst = self.list_ref(call, m["call"][1], f"{path}.call")
            calls = ()
            if lst is not None:
                if lst.type not in V.GENERATED_LIST_TYPES:
                    calls = lst.values
                if lst.type in V.SYSCALL_LIST_TYPES:
                    syscall = True  # as in Tetragon: a syscall list makes the hook a syscall hook
        is_return = self.opt_bool(m, "return", path, what)
        message, tags = self.common_hook(m, node, path, what)
        args = self.hook_args(m, "args", path, section)
        data = self.hook_args(m, "data", path, section, data=True)
        self.check_arg_count(m, node, path, args, data)
        ret = self.return_arg(m, path, section, is_return, node)
        ret_action = None
        if "returnArgAction" in m:
            raw = self.string(m["returnArgAction"][1], f"{path}.returnArgAction", "returnArgAction")
            if raw:
                ret_action = V.canonical_action(raw)
                if ret_action not in V.RETURN_ARG_ACTIONS:
                    self.err("unknown-action", m["returnArgAction"][1], f"{path}.returnArgAction",
                             f"returnArgAction {raw!r} is not supported; use {_one_of(V.RETURN_ARG_ACTIONS)}")
                    ret_action = None
        ignore = False
        if "ignore" in m:
            im = self.mapping(m["ignore"][1], f"{path}.ignore", ("callNotFound",), "ignore")
            if im is not None:
                ignore = self.opt_bool(im, "callNotFound", f"{path}.ignore", "ignore")
        spec = KProbeSpec(
            call=call, calls=calls, call_list=call_list, syscall=syscall, is_return=is_return,
            message=message, args=args, data=data, return_arg=ret, return_arg_action=ret_action,
            tags=tags, ignore_call_not_found=ignore, loc=self.loc(node, path),
        )
        hook = _HookCtx(section, args, data, ret, is_return, spec.arg_position)
        return replace(spec, selectors=self.selectors(m, path, hook))

    def tracepoint(self, node: Node, path: str) -> TracepointSpec | None:
        what = "a tracepoint"
        m = self.mapping(node, path, _TRACEPOINT_KEYS, what)
        if m is None:
            return None
        subsystem = self.required_str(m, "subsystem", node, path, what)
        event = self.required_str(m, "event", node, path, what)
        raw = self.opt_bool(m, "raw", path, what)
        message, tags = self.common_hook(m, node, path, what)
        args = self.hook_args(m, "args", path, "tracepoints:raw" if raw else "tracepoints")
        self.check_arg_count(m, node, path, args, ())
        spec = TracepointSpec(subsystem=subsystem, event=event, raw=raw, message=message, args=args,
                              tags=tags, loc=self.loc(node, path))
        hook = _HookCtx("tracepoints", args, (), None, False, spec.arg_position)
        return replace(spec, selectors=self.selectors(m, path, hook))

    def uprobe(self, node: Node, path: str) -> UProbeSpec | None:
        what = "a uprobe"
        m = self.mapping(node, path, _UPROBE_KEYS, what)
        if m is None:
            return None
        upath = self.required_str(m, "path", node, path, what)
        symbols = tuple(v for v, _ in self.strings(m["symbols"][1], f"{path}.symbols", "symbols")) if "symbols" in m else ()

        def ints(key: str) -> tuple[int, ...]:
            if key not in m:
                return ()
            out = []
            for i, n in enumerate(self.seq(m[key][1], f"{path}.{key}", key) or ()):
                v = self.integer(n, f"{path}.{key}[{i}]", f"each entry of {key}", 0, 2**64 - 1)
                if v is not None:
                    out.append(v)
            return tuple(out)

        offsets, addrs, refs = ints("offsets"), ints("addrs"), ints("refCtrOffsets")
        given = [k for k, v in (("symbols", symbols), ("offsets", offsets), ("addrs", addrs)) if v]
        if len(given) != 1:
            msg = ("a uprobe needs one of symbols, offsets or addrs" if not given
                   else f"a uprobe takes only one of symbols, offsets or addrs, got {' and '.join(given)}")
            self.err("missing-field" if not given else "bad-value", node if not given else m[given[1]][0],
                     path if not given else f"{path}.{given[1]}", msg)
        if refs and len(refs) != len(symbols or offsets or addrs):
            self.err("bad-value", m["refCtrOffsets"][1], f"{path}.refCtrOffsets",
                     "refCtrOffsets needs one entry per probed symbol, offset or address")
        digests = []
        if "binaryDigests" in m:
            for i, (d, n) in enumerate(self.strings(m["binaryDigests"][1], f"{path}.binaryDigests", "binaryDigests")):
                if not _SHA256_DIGEST.match(d):
                    self.err("bad-value", n, f"{path}.binaryDigests[{i}]", f"digest {d!r} must look like sha256:<64 hex digits>")
                digests.append(d)
        is_return = self.opt_bool(m, "return", path, what)
        message, tags = self.common_hook(m, node, path, what)
        args = self.hook_args(m, "args", path, "uprobes")
        data = self.hook_args(m, "data", path, "uprobes", data=True)
        self.check_arg_count(m, node, path, args, data)
        ret = self.return_arg(m, path, "uprobes", is_return, node)
        ignore = False
        if "ignore" in m:
            im = self.mapping(m["ignore"][1], f"{path}.ignore", ("digestVerificationFailure",), "ignore")
            if im is not None:
                ignore = self.opt_bool(im, "digestVerificationFailure", f"{path}.ignore", "ignore")
        spec = UProbeSpec(
            path=upath, btf_path=self.opt_str(m, "btfPath", path, what), symbols=symbols, offsets=offsets,
            addrs=addrs, ref_ctr_offsets=refs, message=message, args=args, data=data, tags=tags,
            is_return=is_return, return_arg=ret, binary_digests=tuple(digests),
            ignore_digest_verification_failure=ignore, loc=self.loc(node, path),
        )
        hook = _HookCtx("uprobes", args, data, ret, is_return, spec.arg_position)
        return replace(spec, selectors=self.selectors(m, path, hook))

    def usdt(self, node: Node, path: str) -> UsdtSpec | None:
        what = "a usdt"
        m = self.mapping(node, path, _USDT_KEYS, what)
        if m is None:
            return None
        upath = self.required_str(m, "path", node, path, what)
        provider = self.required_str(m, "provider", node, path, what)
        name = self.required_str(m, "name", node, path, what)
        message, tags = self.common_hook(m, node, path, what)
        args = self.hook_args(m, "args", path, "usdts")
        self.check_arg_count(m, node, path, args, ())
        spec = UsdtSpec(path=upath, provider=provider, name=name, btf_path=self.opt_str(m, "btfPath", path, what),
                        message=message, args=args, tags=tags, loc=self.loc(node, path))
        hook = _HookCtx("usdts", args, (), None, False, spec.arg_position)
        return replace(spec, selectors=self.selectors(m, path, hook))

    def lsmhook(self, node: Node, path: str) -> LsmHookSpec | None:
        what = "an lsm hook"
        m = self.mapping(node, path, _LSM_KEYS, what)
        if m is None:
            return None
        hook_name = self.required_str(m, "hook", node, path, what)
        message, tags = self.common_hook(m, node, path, what)
        args = self.hook_args(m, "args", path, "lsmhooks")
        self.check_arg_count(m, node, path, args, ())
        spec = LsmHookSpec(hook=hook_name, message=message, args=args, tags=tags, loc=self.loc(node, path))
        hook = _HookCtx("lsmhooks", args, (), None, False, spec.arg_position)
        return replace(spec, selectors=self.selectors(m, path, hook))

    # ------------------------------------------------------------- selectors and macros

    def macros(self, node: Node, path: str) -> dict[str, Selector]:
        if not isinstance(node, MappingNode):
            if not (isinstance(node, ScalarNode) and node.tag == _NULL):
                self.err("wrong-type", node, path, f"selectorsMacros must be a mapping of name to selector, got {_describe(node)}")
            return {}
        out: dict[str, Selector] = {}
        for knode, vnode in node.value:
            name = knode.value if isinstance(knode, ScalarNode) else ""
            q = f"{path}.{name}"
            if not name:
                self.err("wrong-type", knode, path, "macro names must be non-empty strings")
                continue
            if name in self.macro_nodes:
                self.err("duplicate-key", knode, q, f"macro {name!r} is defined twice")
                continue
            self.macro_nodes[name] = (vnode, q)
            if isinstance(vnode, MappingNode):
                for k, _ in vnode.value:
                    if isinstance(k, ScalarNode) and k.value == "macros":
                        self.err("bad-value", k, f"{q}.macros", f"macro {name!r} uses macros; a macro cannot use other macros")
            sel = self.selector(vnode, q, None, macro=True)
            if sel is not None:
                out[name] = sel
        return out

    def selectors(self, m: _Map, path: str, hook: _HookCtx) -> tuple[Selector, ...]:
        if "selectors" not in m:
            return ()
        q = f"{path}.selectors"
        nodes = self.seq(m["selectors"][1], q, "selectors") or []
        if len(nodes) > V.MAX_SELECTORS:
            self.err("limit", nodes[V.MAX_SELECTORS], f"{q}[{V.MAX_SELECTORS}]",
                     f"at most {V.MAX_SELECTORS} selectors per hook, got {len(nodes)}")
        out = []
        for i, n in enumerate(nodes):
            s = self.selector(n, f"{q}[{i}]", hook)
            if s is not None:
                out.append(s)
        return tuple(out)

    def selector(self, node: Node, path: str, hook: _HookCtx | None, *, macro: bool = False) -> Selector | None:
        m = self.mapping(node, path, _SELECTOR_KEYS, "a selector")
        if m is None:
            return None
        label = self.opt_str(m, "label", path, "selector")
        # field → (items as (object, node, path)), and where it came from
        fields = self.selector_fields(m, path, hook)
        origin: dict[str, str] = {k: "this selector" for k, v in fields.items() if v}
        used: list[str] = []
        if "macros" in m and not macro:
            for i, (name, mnode) in enumerate(self.strings(m["macros"][1], f"{path}.macros", "macros")):
                mq = f"{path}.macros[{i}]"
                if name not in self.macro_nodes:
                    known = _one_of(self.macro_nodes) or "none defined"
                    self.err("unknown-macro", mnode, mq, f"undefined macro {name!r} (spec.selectorsMacros: {known})")
                    continue
                dnode, dpath = self.macro_nodes[name]
                dm = self.mapping(dnode, dpath, _SELECTOR_KEYS, "a selector")
                if dm is None:
                    continue
                used.append(name)
                if not label and "label" in dm:
                    label = self.opt_str(dm, "label", dpath, "selector")
                for key, items in self.selector_fields(dm, dpath, hook).items():
                    if not items:
                        continue
                    if fields.get(key):
                        self.err("macro-conflict", mnode, mq,
                                 f"{key} is set both by {origin[key]} and by macro {name!r}; "
                                 "a selector field may come from only one place")
                        continue
                    fields[key] = items
                    origin[key] = f"macro {name!r}"
        self.selector_limits(fields, node, path, hook)

        def objs(key: str) -> tuple[Any, ...]:
            return tuple(o for o, _, _ in fields.get(key, ()))

        workloads = objs("matchWorkloads")
        return Selector(
            match_args=objs("matchArgs"), match_data=objs("matchData"),
            match_return_args=objs("matchReturnArgs"), match_pids=objs("matchPIDs"),
            match_binaries=objs("matchBinaries"), match_parent_binaries=objs("matchParentBinaries"),
            match_namespaces=objs("matchNamespaces"), match_namespace_changes=objs("matchNamespaceChanges"),
            match_capabilities=objs("matchCapabilities"), match_capability_changes=objs("matchCapabilityChanges"),
            match_actions=objs("matchActions"), match_return_actions=objs("matchReturnActions"),
            match_workloads=workloads[0] if workloads else None, label=label, macros=tuple(used),
            loc=self.loc(node, path),
        )

    def selector_fields(self, m: _Map, path: str, hook: _HookCtx | None) -> _Fields:
        parsers: dict[str, Callable[[Node, str, _HookCtx | None], Any]] = {
            "matchArgs": lambda n, q, h: self.arg_filter(n, q, h, "matchArgs"),
            "matchData": lambda n, q, h: self.arg_filter(n, q, h, "matchData"),
            "matchReturnArgs": lambda n, q, h: self.arg_filter(n, q, h, "matchReturnArgs"),
            "matchPIDs": self.pid_filter,
            "matchBinaries": self.binary_filter,
            "matchParentBinaries": self.binary_filter,
            "matchNamespaces": self.namespace_filter,
            "matchNamespaceChanges": self.namespace_change_filter,
            "matchCapabilities": self.capability_filter,
            "matchCapabilityChanges": self.capability_filter,
            "matchActions": self.action,
            "matchReturnActions": self.action,
        }
        out: _Fields = {}
        for key in _FILTER_FIELDS:
            if key not in m:
                continue
            q = f"{path}.{key}"
            vnode = m[key][1]
            if key == "matchWorkloads":
                w = self.workloads(vnode, q)
                out[key] = [(w, vnode, q)] if w is not None else []
                continue
            items = []
            for i, n in enumerate(self.seq(vnode, q, key) or ()):
                obj = parsers[key](n, f"{q}[{i}]", hook)
                if obj is not None:
                    items.append((obj, n, f"{q}[{i}]"))
            out[key] = items
        return out

    def selector_limits(self, fields: _Fields, node: Node, path: str, hook: _HookCtx | None) -> None:
        """Limits over the merged selector (own fields plus macros)."""
        if hook is None:
            return
        argf = fields.get("matchArgs", []) + fields.get("matchData", [])
        if len(argf) > V.MAX_ARG_FILTERS:
            _, n, q = argf[V.MAX_ARG_FILTERS]
            self.err("limit", n, q, f"at most {V.MAX_ARG_FILTERS} matchArgs and matchData filters per selector, "
                     f"got {len(argf)}")
        npids = 0
        for pf, n, q in fields.get("matchPIDs", []):
            before = npids
            npids += len(pf.values)
            if npids > V.MAX_PID_VALUES >= before:
                self.err("limit", n, q, f"at most {V.MAX_PID_VALUES} PID values per selector, "
                         f"got {sum(len(p.values) for p, _, _ in fields['matchPIDs'])}")
        for key in ("matchBinaries", "matchParentBinaries"):
            items = fields.get(key, [])
            if len(items) > V.MAX_BINARY_FILTERS:
                _, n, q = items[V.MAX_BINARY_FILTERS]
                self.err("limit", n, q, f"at most {V.MAX_BINARY_FILTERS} {key} entry per selector; "
                         "put all paths in the values of one entry")
            self.follow_children += sum(1 for b, _, _ in items if b.follow_children)
        for key, lim in (("matchNamespaces", V.MAX_NAMESPACE_FILTERS), ("matchNamespaceChanges", V.MAX_NAMESPACE_CHANGE_FILTERS)):
            items = fields.get(key, [])
            if len(items) > lim:
                _, n, q = items[lim]
                self.err("limit", n, q, f"at most {lim} {key} entries per selector, got {len(items)}")
        if fields.get("matchReturnArgs") or fields.get("matchReturnActions"):
            key = "matchReturnArgs" if fields.get("matchReturnArgs") else "matchReturnActions"
            _, n, q = fields[key][0]
            if hook.section in ("tracepoints", "lsmhooks", "usdts"):
                self.err("bad-value", n, q, f"{key} is not supported on {hook.section}")
            elif hook.return_arg is None or not hook.is_return:
                self.err("missing-field", n, q, f"{key} needs the hook to set return: true and a returnArg")
        for key in ("matchActions", "matchReturnActions"):
            for a, n, q in fields.get(key, []):
                if a.action == "Set" and hook.section != "usdts":
                    self.err("bad-value", n, f"{q}.action", "the Set action is only supported on usdts")
                if a.action == "NotifyEnforcer" and not self.n_enforcers:
                    self.err("missing-field", n, f"{q}.action",
                             "NotifyEnforcer needs an enforcer: add spec.enforcers with the calls to enforce on")

    def workloads(self, node: Node, path: str) -> WorkloadSelector | None:
        m = self.mapping(node, path, _WORKLOAD_KEYS, "matchWorkloads")
        if m is None:
            return None
        sels = {k: self.label_selector(m[k][1], f"{path}.{k}", k) for k in _WORKLOAD_KEYS if k in m}
        host = sels.get("hostSelector")
        if host is not None:
            self.check_host_selector(host, m["hostSelector"][1], f"{path}.hostSelector")
        return WorkloadSelector(pod_selector=sels.get("podSelector"), container_selector=sels.get("containerSelector"),
                                host_selector=host, loc=self.loc(node, path))

    # ------------------------------------------------------------- filters

    def set_operator(self, m: _Map, node: Node, path: str, what: str, valid: tuple[str, ...]) -> str:
        raw = self.required_str(m, "operator", node, path, what)
        if not raw:
            return ""
        op = V.canonical_operator(raw)
        if op not in valid:
            self.err("unknown-operator", m["operator"][1], f"{path}.operator",
                     f"unknown operator {raw!r} for {what}; valid operators: {_one_of(valid)}")
            return ""
        return op

    def arg_filter(self, node: Node, path: str, hook: _HookCtx | None, field_name: str) -> ArgFilter | None:
        what = f"a {field_name} filter"
        m = self.mapping(node, path, _ARG_FILTER_KEYS, what)
        if m is None:
            return None
        op = self.set_operator(m, node, path, field_name, V.ARG_OPERATORS)
        index = self.opt_int(m, "index", path, field_name, 0, 2**32 - 1)
        positions: list[tuple[int, Node]] = []
        if "args" in m:
            for i, n in enumerate(self.seq(m["args"][1], f"{path}.args", "args") or ()):
                v = self.integer(n, f"{path}.args[{i}]", "each entry of args", 0, 2**32 - 1)
                if v is not None:
                    positions.append((v, n))
        values = [] if "values" not in m else self.strings(m["values"][1], f"{path}.values", "values", self.value_text)

        # Which declared argument does this filter read? (None: unknown here)
        atype: str | None = None
        if hook is not None:
            atype = self.filter_target(m, node, path, hook, field_name, index, positions)
        if op:
            self.filter_values(m, node, path, op, atype, values, positions, hook is None)
        return ArgFilter(index=index or 0, args=tuple(p for p, _ in positions), operator=op,
                         values=tuple(v for v, _ in values), loc=self.loc(node, path))

    def filter_target(self, m: _Map, node: Node, path: str, hook: _HookCtx, field_name: str,
                      index: int | None, positions: list[tuple[int, Node]]) -> str | None:
        """Check the filter's index/args against the hook; return the argument
        type when it is known statically (not auto, not BTF-resolved)."""

        def type_of(a: ArgSpec) -> str | None:
            return None if a.resolve or a.type == "auto" else a.type

        inode = m["index"][1] if "index" in m else node
        ipath = f"{path}.index"
        idx = index or 0
        if field_name == "matchReturnArgs":
            ra = hook.return_arg
            if ra is None:
                return None  # reported once per selector
            if idx != ra.index:
                self.err("bad-index", inode, ipath, f"matchReturnArgs index {idx} does not match returnArg index {ra.index}")
                return None
            return type_of(ra)
        table = hook.data if field_name == "matchData" else hook.args
        decl = "data" if field_name == "matchData" else "args"
        if positions:
            found = None
            for p, n in positions:
                if p >= len(table):
                    self.err("bad-index", n, f"{path}.args",
                             f"{field_name} args entry {p} is not a position in {decl} ({len(table)} declared)")
                elif found is None:
                    found = table[p]
            return type_of(found) if found else None
        if field_name == "matchData":
            pos = idx if idx < len(table) else None
        else:
            pos = hook.position(idx)
        if pos is None:
            if field_name == "matchData":
                have = f"positions 0 to {len(table) - 1}" if table else "no data entries are declared"
            else:
                have = ("declared indexes: " + ", ".join(str(a.index) for a in table)) if table else "no args are declared"
            self.err("bad-index", inode, ipath, f"{field_name} index {idx} does not refer to a declared "
                     f"{'data entry' if decl == 'data' else 'argument'} ({have})")
            return None
        return type_of(table[pos])

    def filter_values(self, m: _Map, node: Node, path: str, op: str, atype: str | None,
                      values: list[tuple[str, Node]], positions: list[tuple[int, Node]], macro_def: bool) -> None:
        vpath = f"{path}.values"
        vnode = m["values"][1] if "values" in m else node
        if op == "CapabilitiesGained" and len(positions) != 2:
            self.err("bad-value", m["args"][1] if "args" in m else node, f"{path}.args",
                     "CapabilitiesGained needs 'args' with exactly two positions: the new and the old capability set")
        if op in V.NO_VALUE_OPERATORS:
            if values:
                self.err("bad-value", m["values"][0], vpath, f"operator {op} takes no values")
            return
        if not values:
            if _lacks_items(m, "values"):
                self.err("missing-field", vnode, vpath, f"operator {op} needs at least one value")
            return
        limit = V.MAX_MATCH_VALUES
        if not macro_def and len(values) > limit and V.inline_values(op, atype):
            self.err("limit", values[limit][1], f"{vpath}[{limit}]",
                     f"at most {limit} values for operator {op}" + (f" on a {atype} argument" if atype else "")
                     + f", got {len(values)}; use InMap/NotInMap for larger sets")
        for i, (v, n) in enumerate(values):
            problem = self.value_problem(op, atype, v, n, f"{vpath}[{i}]")
            if problem:
                self.err("bad-value", n, f"{vpath}[{i}]", problem)
        if atype is not None:
            problem = _type_mismatch(op, atype)
            if problem:
                self.err("bad-value", m["operator"][1], f"{path}.operator", problem)

    def value_problem(self, op: str, atype: str | None, v: str, node: Node, path: str) -> str | None:
        """Why value ``v`` is unusable with ``op`` on an ``atype`` argument, or None."""
        if op in ("Prefix", "NotPrefix") and len(v) > V.MAX_PREFIX_LEN:
            return f"prefix is {len(v)} characters long, at most {V.MAX_PREFIX_LEN} allowed"
        if op in ("Postfix", "NotPostfix") and len(v) > V.MAX_POSTFIX_LEN:
            return f"postfix is {len(v)} characters long, at most {V.MAX_POSTFIX_LEN} allowed"
        if op in ("SubString", "SubStringIgnCase") and len(v) > V.MAX_SUBSTRING_LEN:
            return f"substring is {len(v)} characters long, at most {V.MAX_SUBSTRING_LEN} allowed"
        if op in ("FileType", "NotFileType") and v not in V.FILE_TYPE_VALUES:
            return f"unknown file type {v!r}; valid: {_one_of(V.FILE_TYPE_VALUES)}"
        if op in ("SAddr", "NotSAddr", "DAddr", "NotDAddr"):
            try:
                ipaddress.ip_network(v, strict=False) if "/" in v else ipaddress.ip_address(v)
            except ValueError:
                return f"{v!r} is not an IP address or CIDR"
            return None
        if op in ("SPort", "NotSPort", "DPort", "NotDPort"):
            if not _is_range(v, 10, 16):
                return f"{v!r} is not a port or port range (e.g. 80 or 1024:65535)"
            return None
        if op in ("InMap", "NotInMap"):
            if v.startswith(V.LIST_PREFIX):
                lst = self.list_ref(v, node, path)
                if lst is not None and lst.type not in V.SYSCALL_LIST_TYPES:
                    return (f"{op} reads list {lst.name!r} as syscall numbers, so it must be a syscalls or "
                            f"generated_syscalls list, not {lst.type or 'untyped'}")
                return None
            if atype in V.INT_TYPE_WIDTH and not _is_range(v, 10, 64, allow_single=True, signed=V.INT_TYPE_WIDTH[atype][1]):
                return f"{v!r} is not a decimal integer or min:max range"
            return None
        if op in ("InRange", "NotInRange"):
            if not _is_range(v, 0, 64, allow_single=False, signed=True):
                return f"{v!r} is not a min:max range of integers"
            return None
        if atype is None:
            return None
        if op in ("Equal", "NotEqual", "Mask", "GreaterThan", "LessThan"):
            if atype in V.INT_TYPE_WIDTH:
                bits, signed = V.INT_TYPE_WIDTH[atype]
                try:
                    V.parse_int(v, bits=bits, signed=signed)
                except ValueError as e:
                    return f"{e} (argument type {atype})"
            elif atype in V.CAP_ARG_TYPES:
                try:
                    V.parse_int(v, bits=64, signed=False)
                except ValueError:
                    bad = [c for c in v.split(",") if V.canonical_capability(c) is None]
                    if bad:
                        return f"{v!r} is neither an integer mask nor a comma-separated list of CAP_* names"
        return None

    def pid_filter(self, node: Node, path: str, hook: _HookCtx | None) -> PidFilter | None:
        m = self.mapping(node, path, _PID_KEYS, "a matchPIDs filter")
        if m is None:
            return None
        op = self.set_operator(m, node, path, "matchPIDs", V.SET_OPERATORS)
        pids = []
        if self.required(m, "values", node, path, "a matchPIDs filter") is not None:
            for i, n in enumerate(self.seq(m["values"][1], f"{path}.values", "matchPIDs values") or ()):
                v = self.integer(n, f"{path}.values[{i}]", "a PID", 0, 2**32 - 1)
                if v is not None:
                    pids.append(v)
        return PidFilter(operator=op, values=tuple(pids),
                         is_namespace_pid=self.opt_bool(m, "isNamespacePID", path, "matchPIDs"),
                         follow_forks=self.opt_bool(m, "followForks", path, "matchPIDs"), loc=self.loc(node, path))

    def binary_filter(self, node: Node, path: str, hook: _HookCtx | None) -> BinaryFilter | None:
        m = self.mapping(node, path, _BINARY_KEYS, "a matchBinaries filter")
        if m is None:
            return None
        op = self.set_operator(m, node, path, "matchBinaries", V.BINARY_OPERATORS)
        values = self.strings(m["values"][1], f"{path}.values", "values") if "values" in m else []
        if _lacks_items(m, "values"):
            self.err("missing-field", m["values"][1] if "values" in m else node, f"{path}.values",
                     "matchBinaries needs at least one value")
        limit = {"Prefix": V.MAX_PREFIX_LEN, "NotPrefix": V.MAX_PREFIX_LEN,
                 "Postfix": V.MAX_POSTFIX_LEN, "NotPostfix": V.MAX_POSTFIX_LEN}.get(op, V.MAX_BINARY_PATH_LEN)
        for i, (v, n) in enumerate(values):
            if len(v) > limit:
                self.err("limit", n, f"{path}.values[{i}]",
                         f"matchBinaries {op or 'path'} value is {len(v)} characters long, at most {limit} allowed")
        follow = self.opt_bool(m, "followChildren", path, "matchBinaries")
        if follow and op and op not in V.SET_OPERATORS:
            self.err("bad-value", m["followChildren"][1], f"{path}.followChildren",
                     f"followChildren works only with the In and NotIn operators, not {op}")
        return BinaryFilter(operator=op, values=tuple(v for v, _ in values), follow_children=follow,
                            loc=self.loc(node, path))

    def namespace_filter(self, node: Node, path: str, hook: _HookCtx | None) -> NamespaceFilter | None:
        m = self.mapping(node, path, _NS_KEYS, "a matchNamespaces filter")
        if m is None:
            return None
        ns = ""
        raw = self.required_str(m, "namespace", node, path, "a matchNamespaces filter")
        if raw:
            ns = V.canonical_namespace(raw) or ""
            if not ns:
                self.err("unknown-value", m["namespace"][1], f"{path}.namespace",
                         f"unknown namespace {raw!r}; valid namespaces: {_one_of(V.NAMESPACES)}")
        op = self.set_operator(m, node, path, "matchNamespaces", V.SET_OPERATORS)
        values = self.strings(m["values"][1], f"{path}.values", "values", self.value_text) if "values" in m else []
        if _lacks_items(m, "values"):
            self.err("missing-field", m["values"][1] if "values" in m else node, f"{path}.values",
                     "matchNamespaces needs at least one value")
        if len(values) > V.MAX_NAMESPACE_VALUES:
            self.err("limit", values[V.MAX_NAMESPACE_VALUES][1], f"{path}.values[{V.MAX_NAMESPACE_VALUES}]",
                     f"at most {V.MAX_NAMESPACE_VALUES} values per matchNamespaces filter, got {len(values)}")
        for i, (v, n) in enumerate(values):
            if v == V.HOST_NS:
                continue
            try:
                V.parse_int(v, bits=32, signed=False, base0=False)
            except ValueError:
                self.err("bad-value", n, f"{path}.values[{i}]",
                         f"namespace value {v!r} must be a namespace inode number or {V.HOST_NS!r}")
        return NamespaceFilter(namespace=ns, operator=op, values=tuple(v for v, _ in values), loc=self.loc(node, path))

    def namespace_change_filter(self, node: Node, path: str, hook: _HookCtx | None) -> NamespaceChangeFilter | None:
        m = self.mapping(node, path, _NS_CHANGE_KEYS, "a matchNamespaceChanges filter")
        if m is None:
            return None
        op = self.set_operator(m, node, path, "matchNamespaceChanges", V.SET_OPERATORS)
        out = []
        values = self.strings(m["values"][1], f"{path}.values", "values") if "values" in m else []
        if _lacks_items(m, "values"):
            self.err("missing-field", m["values"][1] if "values" in m else node, f"{path}.values",
                     "matchNamespaceChanges needs at least one namespace")
        for i, (v, n) in enumerate(values):
            ns = V.canonical_namespace(v)
            if ns is None:
                self.err("unknown-value", n, f"{path}.values[{i}]",
                         f"unknown namespace {v!r}; valid namespaces: {_one_of(V.NAMESPACES)}")
            else:
                out.append(ns)
        return NamespaceChangeFilter(operator=op, values=tuple(out), loc=self.loc(node, path))

    def capability_filter(self, node: Node, path: str, hook: _HookCtx | None) -> CapabilityFilter | None:
        m = self.mapping(node, path, _CAP_KEYS, "a matchCapabilities filter")
        if m is None:
            return None
        ctype = "Effective"
        if "type" in m:
            raw = self.string(m["type"][1], f"{path}.type", "capability type")
            if raw:
                ctype = V.canonical_capability_type(raw) or ""
                if not ctype:
                    self.err("unknown-value", m["type"][1], f"{path}.type",
                             f"unknown capability type {raw!r}; valid types: {_one_of(V.CAPABILITY_TYPES)}")
        op = self.set_operator(m, node, path, "matchCapabilities", V.SET_OPERATORS)
        caps = []
        values = self.strings(m["values"][1], f"{path}.values", "values") if "values" in m else []
        if _lacks_items(m, "values"):
            self.err("missing-field", m["values"][1] if "values" in m else node, f"{path}.values",
                     "matchCapabilities needs at least one capability")
        for i, (v, n) in enumerate(values):
            cap = V.canonical_capability(v)
            if cap is None:
                close = difflib.get_close_matches(v.strip().upper(), V.CAPABILITIES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.err("unknown-value", n, f"{path}.values[{i}]",
                         f"unknown capability {v!r}{hint}; valid capabilities: {_one_of(V.CAPABILITIES)}")
            else:
                caps.append(cap)
        return CapabilityFilter(type=ctype or "Effective", operator=op,
                                is_namespace_capability=self.opt_bool(m, "isNamespaceCapability", path, "matchCapabilities"),
                                values=tuple(caps), loc=self.loc(node, path))

    # ------------------------------------------------------------- actions

    def action(self, node: Node, path: str, hook: _HookCtx | None) -> ActionSpec | None:
        m = self.mapping(node, path, _ACTION_KEYS, "an action")
        if m is None:
            return None
        raw = self.required_str(m, "action", node, path, "an action")
        act = ""
        if raw:
            act = V.canonical_action(raw) or ""
            if not act:
                removed = " (Tetragon removed it)" if raw.lower() in V.REMOVED_ACTIONS else ""
                self.err("unknown-action", m["action"][1], f"{path}.action",
                         f"unknown action {raw!r}{removed}; valid actions: {_one_of(V.ACTIONS)}")
        if act:
            if act != "Post":
                for key in _POST_ONLY_KEYS:
                    if key in m and (key == "rateLimit" or _is_true(m[key][1])):
                        self.err("bad-value", m[key][0], f"{path}.{key}", f"{key} is only valid with the Post action, not {act}")
            if act != "Override":
                for key in _OVERRIDE_ONLY_KEYS:
                    if key in m:
                        self.err("bad-value", m[key][0], f"{path}.{key}", f"{key} is only valid with the Override action")
            need = _REQUIRED_ACTION_PARAM.get(act)
            if need and need not in m:
                self.err("missing-field", m["action"][1], f"{path}.{need}", f"action {act} needs {need!r}")
        redirects = [k for k in ("argNewSymbol", "argNewAddr", "argNewOffset") if k in m]
        if len(redirects) > 1:
            self.err("bad-value", m[redirects[1]][0], f"{path}.{redirects[1]}",
                     "Override takes at most one of argNewSymbol, argNewAddr and argNewOffset")
        rate = None
        if "rateLimit" in m and act == "Post":
            rnode = m["rateLimit"][1]
            text = self.value_text(rnode, f"{path}.rateLimit", "rateLimit")
            if text is not None:
                try:
                    rate = V.parse_rate_limit(text)
                except ValueError as e:
                    self.err("bad-value", rnode, f"{path}.rateLimit", str(e))
        scope = None
        if "rateLimitScope" in m:
            raw_scope = self.string(m["rateLimitScope"][1], f"{path}.rateLimitScope", "rateLimitScope")
            if raw_scope is not None:
                scope = raw_scope.lower()
                if scope not in V.RATE_LIMIT_SCOPES:
                    self.err("unknown-value", m["rateLimitScope"][1], f"{path}.rateLimitScope",
                             f"unknown rateLimitScope {raw_scope!r}; valid scopes: {_one_of(V.RATE_LIMIT_SCOPES)}")
                    scope = None
        if rate is not None and scope is None:
            scope = "thread"
        regs = tuple(v for v, _ in self.strings(m["argRegs"][1], f"{path}.argRegs", "argRegs")) if "argRegs" in m else ()
        u32 = 2**32 - 1
        return ActionSpec(
            action=act,
            arg_error=self.opt_int(m, "argError", path, "action", -(2**31), 2**31 - 1),
            arg_sig=self.opt_int(m, "argSig", path, "action", 0, u32),
            arg_sock=self.opt_int(m, "argSock", path, "action", 0, u32),
            arg_index=self.opt_int(m, "argIndex", path, "action", 0, u32),
            arg_value=self.opt_int(m, "argValue", path, "action", 0, u32),
            arg_url=self.string(m["argUrl"][1], f"{path}.argUrl", "argUrl") if "argUrl" in m else None,
            arg_fqdn=self.string(m["argFqdn"][1], f"{path}.argFqdn", "argFqdn") if "argFqdn" in m else None,
            arg_regs=regs,
            arg_new_symbol=self.opt_str(m, "argNewSymbol", path, "action") if "argNewSymbol" in m else None,
            arg_new_addr=self.opt_int(m, "argNewAddr", path, "action", 0, 2**64 - 1),
            arg_new_offset=self.opt_int(m, "argNewOffset", path, "action", -(2**63), 2**63 - 1),
            rate_limit=rate, rate_limit_scope=scope,
            kernel_stack_trace=self.opt_bool(m, "kernelStackTrace", path, "action"),
            user_stack_trace=self.opt_bool(m, "userStackTrace", path, "action"),
            ima_hash=self.opt_bool(m, "imaHash", path, "action"),
            loc=self.loc(node, path),
        )


def _is_range(v: str, base: int, bits: int, *, allow_single: bool = True, signed: bool = False) -> bool:
    parts = v.split(":")
    if len(parts) > 2 or (len(parts) == 1 and not allow_single):
        return False
    try:
        for p in parts:
            V.parse_int(p, bits=bits, signed=signed, base0=base == 0)
    except ValueError:
        return False
    return True


def _type_mismatch(op: str, atype: str) -> str | None:
    """Operator/argument-type combinations Tetragon refuses, or None."""
    sock_ops = {"SPort", "NotSPort", "DPort", "NotDPort", "Protocol", "Family", "State"}
    addr_ops = {"SAddr", "NotSAddr", "DAddr", "NotDAddr"}
    priv_ops = {"SPortPriv", "NotSPortPriv", "DPortPriv", "NotDPortPriv"}
    numeric = set(V.INT_TYPE_WIDTH)
    if op in sock_ops:
        if atype == "sockaddr_un":
            return None if op == "Family" else "sockaddr_un arguments support only Family and the string operators"
        if atype not in V.SOCK_ARG_TYPES:
            return f"operator {op} applies to sock, skb, sockaddr, socket and sockaddr_un arguments, not {atype}"
        if atype == "sockaddr" and op in {"DPort", "NotDPort", "Protocol", "State"}:
            return f"sockaddr arguments do not support {op}"
    elif op in addr_ops or op in priv_ops:
        if atype not in V.SOCK_ARG_TYPES:
            return f"operator {op} applies to sock, skb, sockaddr and socket arguments, not {atype}"
        if atype == "sockaddr" and op in {"DAddr", "NotDAddr", "DPortPriv", "NotDPortPriv"}:
            return f"sockaddr arguments do not support {op}"
    elif op in ("FileType", "NotFileType"):
        if atype not in ("file", "path"):
            return f"operator {op} applies to file and path arguments, not {atype}"
    elif op in ("Mask", "GreaterThan", "LessThan"):
        if atype not in numeric and atype not in V.CAP_ARG_TYPES:
            return f"operator {op} compares integers; it does not apply to {atype} arguments"
    elif op in ("InRange", "NotInRange", "InMap", "NotInMap"):
        if atype not in numeric:
            return f"operator {op} applies to integer arguments, not {atype}"
    elif op in ("Equal", "NotEqual"):
        if atype in V.SOCK_ARG_TYPES:
            return f"operator {op} does not apply to {atype} arguments; use the address and port operators"
    elif op in ("SubString", "SubStringIgnCase"):
        if atype not in V.STRING_ARG_TYPES:
            return f"operator {op} applies to string-like arguments, not {atype}"
    elif op == "CapabilitiesGained":
        if atype not in V.CAP_ARG_TYPES:
            return f"CapabilitiesGained applies to capability-set arguments, not {atype}"
    return None


# --------------------------------------------------------------------------
# Entry points


def _compose(text: str, source: str) -> Node:
    loader = yaml.SafeLoader(text)
    docs: list[Node] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None or (isinstance(node, ScalarNode) and node.tag == _NULL):
                continue  # an empty document ("---" with nothing after it)
            docs.append(node)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = " ".join(filter(None, [e.context, e.problem]))
        raise PolicyError("yaml-parse", f"invalid YAML: {problem}", file=source, line=line, col=col) from None
    except yaml.YAMLError as e:
        raise PolicyError("yaml-parse", f"invalid YAML: {e}", file=source) from None
    finally:
        loader.dispose()
    if not docs:
        raise PolicyError("empty-document", "the file holds no policy", file=source, line=1, col=1)
    if len(docs) > 1:
        m = docs[1].start_mark
        raise PolicyError("multi-document", f"the file holds {len(docs)} YAML documents; put one policy per file",
                          file=source, line=m.line + 1, col=m.column + 1)
    return docs[0]


def load_str(text: str, source: str = "<string>", *, supported_hooks: Collection[str] | None = None) -> TracingPolicy:
    """Parse and validate one policy from ``text``; ``source`` names it in errors.

    ``supported_hooks``, when given, lists the hook sections (``kprobes``,
    ``tracepoints`` ...) the caller can run; others are ``unavailable-hook``.
    """
    return walk_document(text, source, _Walker(source, supported_hooks))


def walk_document(text: str | Node, source: str, w: "_Walker") -> Any:
    """Run the walker's policy() over one YAML document (text, or its
    composed root node); raise every problem found, each once, in document
    order."""
    root = _compose(text, source) if isinstance(text, str) else text
    try:
        policy = w.policy(root)
    except _Abort:
        policy = None
    # Macros are re-checked in every selector that uses them: report each
    # problem once, in document order.
    seen: set[tuple[Any, ...]] = set()
    errors = []
    for e in sorted(w.errors, key=lambda e: (e.line, e.col)):
        key = (e.code, e.line, e.col, e.message)
        if key not in seen:
            seen.add(key)
            errors.append(e)
    raise_collected(errors)
    if policy is None:  # pragma: no cover - a None result always comes with an error
        raise PolicyError("yaml-parse", "the document could not be read", file=source)
    return policy


def load_file(path: str | os.PathLike[str], *, supported_hooks: Collection[str] | None = None) -> TracingPolicy:
    """Load one policy file (UTF-8 YAML, exactly one document)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError("io", f"cannot read policy file: {e}", file=name) from None
    return load_str(text, name, supported_hooks=supported_hooks)


def load_dir(path: str | os.PathLike[str], *, supported_hooks: Collection[str] | None = None) -> list[TracingPolicy]:
    """Load every ``*.yaml``/``*.yml`` file of a directory (not recursive), in
    name order. All files are checked; if any is bad, all problems are raised
    together and nothing is returned. Two policies with one name are an error."""
    name = os.fspath(path)
    try:
        entries = sorted(os.listdir(name))
    except OSError as e:
        raise PolicyError("io", f"cannot read policy directory: {e}", file=name) from None
    policies: list[TracingPolicy] = []
    errors: list[PolicyError] = []
    by_name: dict[str, str] = {}
    for entry in entries:
        full = os.path.join(name, entry)
        if not entry.endswith((".yaml", ".yml")) or not os.path.isfile(full):
            continue
        try:
            pol = load_file(full, supported_hooks=supported_hooks)
        except PolicyError as e:
            errors.extend(e.errors)
            continue
        if pol.name in by_name:
            errors.append(PolicyError("duplicate-name", f"policy name {pol.name!r} is already used by {by_name[pol.name]}",
                                      path="metadata.name", file=full, line=pol.loc.line, col=pol.loc.col))
            continue
        by_name[pol.name] = full
        policies.append(pol)
    raise_collected(errors)
    return policies
