"""Typed model of a Tetragon TracingPolicy (``cilium.io/v1alpha1``).

The loader (:mod:`kerneye.policy.loader`) is the only producer of these
objects from YAML; the compiler consumes them. Invariants the loader
guarantees, so consumers need not re-check them:

* Every value is already validated against the schema, the closed
  vocabularies and the limits of :mod:`kerneye.policy.vocab`.
* Names are canonical: operators (``"eq"`` → ``"Equal"``, ``"NotSportPriv"``
  → ``"NotSPortPriv"``), actions (``"sigkill"`` → ``"Sigkill"``), argument
  types (``"sint32"`` → ``"int32"``, ``"long"`` → ``"int64"``), namespaces
  (``"pid"`` → ``"Pid"``), capabilities (``"cap_kill"`` → ``"CAP_KILL"``).
* Selector macros are already expanded; ``Selector.macros`` only records
  which macros contributed.
* Filter values of matchArgs/matchData/matchReturnArgs stay strings exactly
  as written (``"0x40"`` stays ``"0x40"``): their meaning depends on the
  argument type, which is the compiler's business (see
  :func:`kerneye.policy.vocab.parse_int`). PIDs are ints.

Objects are frozen dataclasses with tuple sequences. ``loc`` fields give the
YAML position of each object and take no part in equality.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Union


@dataclass(frozen=True, slots=True)
class Loc:
    """Where an object was written."""

    file: str = "<none>"
    """Source file name, or ``<string>`` for text loaded from memory."""
    line: int = 0
    """1-based line of the object's first character (0: unknown)."""
    col: int = 0
    """1-based column of the object's first character (0: unknown)."""
    path: str = ""
    """YAML path, e.g. ``spec.kprobes[0].selectors[1].matchArgs[0]``."""

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


NO_LOC = Loc()


def _loc() -> Loc:
    return field(default=NO_LOC, compare=False, repr=False)


# --------------------------------------------------------------------------
# Arguments


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgSpec:
    """One entry of ``args``, ``data`` or ``returnArg``."""

    index: int
    """Function argument position (kprobes, uprobes, LSM: 0-4) or tracepoint
    format-field index; for ``data`` entries an ordinal."""
    type: str = "auto"
    """Canonical argument type (:data:`vocab.ARG_TYPE_CANONICAL` values)."""
    size_arg_index: int = 0
    """1-based position of the argument holding the buffer size of a
    ``char_buf``/``char_iovec`` (Tetragon's quirk: index + 1); 0 = unset."""
    return_copy: bool = False
    """Read the buffer again when the function returns."""
    max_data: bool = False
    """Read up to 327360 bytes of a ``char_buf`` instead of 4096."""
    label: str = ""
    """Name of the argument in the exported event."""
    resolve: str = ""
    """BTF member path to dereference (``cred.uid.val``) or, for
    ``source: pt_regs``, a register name."""
    source: str = ""
    """``data`` only: ``current_task`` or ``pt_regs``."""
    btf_type: str = ""
    """BTF type to cast the argument to before ``resolve``."""
    btf_type_module: str = ""
    """Kernel module holding ``btf_type``."""
    loc: Loc = _loc()


# --------------------------------------------------------------------------
# Selector filters


@dataclass(frozen=True, slots=True, kw_only=True)
class ArgFilter:
    """One matchArgs / matchData / matchReturnArgs entry."""

    index: int = 0
    """For matchArgs: the ``index`` of a declared ``args`` entry (tracepoints
    also accept a position in ``args``); for matchData: a position in
    ``data``; for matchReturnArgs: the returnArg's index. Ignored when
    ``args`` is set. Use the hook's :meth:`arg_position` to resolve it."""
    args: tuple[int, ...] = ()
    """Positions in the hook's ``args`` list; when set, it wins over
    ``index``. ``CapabilitiesGained`` needs exactly two."""
    operator: str
    """Canonical operator (:data:`vocab.ARG_OPERATORS`)."""
    values: tuple[str, ...] = ()
    """Values as written; interpretation depends on operator and arg type."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class PidFilter:
    """One matchPIDs entry."""

    operator: str
    """``In`` or ``NotIn``."""
    values: tuple[int, ...]
    """PIDs (uint32)."""
    is_namespace_pid: bool = False
    """Compare the PID as seen in the task's PID namespace."""
    follow_forks: bool = False
    """Also match descendants of the listed PIDs."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class BinaryFilter:
    """One matchBinaries / matchParentBinaries entry."""

    operator: str
    """One of :data:`vocab.BINARY_OPERATORS` (canonical)."""
    values: tuple[str, ...]
    """Executable paths (or prefixes/postfixes of them)."""
    follow_children: bool = False
    """Also match processes descending from a matching binary (In/NotIn only)."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceFilter:
    """One matchNamespaces entry."""

    namespace: str
    """Canonical namespace kind (:data:`vocab.NAMESPACES`)."""
    operator: str
    """``In`` or ``NotIn``."""
    values: tuple[str, ...]
    """Namespace inode numbers as decimal strings, or ``host_ns``."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class NamespaceChangeFilter:
    """The matchNamespaceChanges entry."""

    operator: str
    """``In`` or ``NotIn``."""
    values: tuple[str, ...]
    """Canonical namespace kinds whose change is matched."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class CapabilityFilter:
    """One matchCapabilities / matchCapabilityChanges entry."""

    type: str = "Effective"
    """``Effective``, ``Inheritable`` or ``Permitted``."""
    operator: str
    """``In`` or ``NotIn``."""
    is_namespace_capability: bool = False
    """Match only when the task is outside the host user namespace."""
    values: tuple[str, ...]
    """Canonical ``CAP_*`` names."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelRequirement:
    """One matchExpressions entry of a Kubernetes label selector."""

    key: str
    """Label key."""
    operator: str
    """``In``, ``NotIn``, ``Exists`` or ``DoesNotExist``."""
    values: tuple[str, ...] = ()
    """Values for In/NotIn; empty for Exists/DoesNotExist."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class LabelSelector:
    """A Kubernetes label selector; the empty selector matches everything."""

    match_labels: dict[str, str] = field(default_factory=dict)
    """Exact label matches, ANDed."""
    match_expressions: tuple[LabelRequirement, ...] = ()
    """Set-based requirements, ANDed."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkloadSelector:
    """A selector's matchWorkloads block."""

    pod_selector: LabelSelector | None = None
    """Pod labels."""
    container_selector: LabelSelector | None = None
    """Container fields (``name``)."""
    host_selector: LabelSelector | None = None
    """Only None or the empty selector (all host workloads)."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionSpec:
    """One matchActions / matchReturnActions entry.

    Parameters are None/False when absent. Post-only (rateLimit, stack traces,
    imaHash) and Override-only (argRegs, argNew*) parameters are rejected on
    other actions; other parameters an action ignores are kept as written
    (Tetragon's own examples put ``argError`` on ``Sigkill``) and must be
    ignored by consumers."""

    action: str
    """Canonical action (:data:`vocab.ACTIONS`)."""
    arg_error: int | None = None
    """Override/NotifyEnforcer: errno-style return value (int32)."""
    arg_sig: int | None = None
    """Signal/NotifyEnforcer: signal number. Required by Signal."""
    arg_fd: int | None = None
    """Parameter of the removed FollowFD/CopyFD actions; always None (kept so
    consumers can rely on the attribute)."""
    arg_name: int | None = None
    """Parameter of the removed FollowFD/CopyFD actions; always None."""
    arg_url: str | None = None
    """GetUrl: URL fetched by user space."""
    arg_fqdn: str | None = None
    """DnsLookup: name resolved by user space."""
    arg_sock: int | None = None
    """TrackSock/UntrackSock: argument position holding the socket."""
    arg_index: int | None = None
    """Set (USDT): argument to write."""
    arg_value: int | None = None
    """Set (USDT): value to write."""
    arg_regs: tuple[str, ...] = ()
    """Override on uprobes: register assignments (``rax=11``)."""
    arg_new_symbol: str | None = None
    """Override on uprobes: redirect to this symbol."""
    arg_new_addr: int | None = None
    """Override on uprobes: redirect to this address."""
    arg_new_offset: int | None = None
    """Override on uprobes: redirect to this offset."""
    rate_limit: float | None = None
    """Post: at most one event per this many seconds (None: no limit)."""
    rate_limit_scope: str | None = None
    """Post with rate_limit: ``thread`` (default), ``process`` or ``global``."""
    kernel_stack_trace: bool = False
    """Post: attach the kernel stack."""
    user_stack_trace: bool = False
    """Post: attach the user stack."""
    ima_hash: bool = False
    """Post: attach the file's IMA hash."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class Selector:
    """One selector: its filters are ANDed; a hook's selectors are ORed and
    the actions of the first match run (default action: Post)."""

    match_args: tuple[ArgFilter, ...] = ()
    """Filters on ``args``."""
    match_data: tuple[ArgFilter, ...] = ()
    """Filters on ``data``."""
    match_return_args: tuple[ArgFilter, ...] = ()
    """Filters on the return value (needs ``return``/``returnArg``)."""
    match_pids: tuple[PidFilter, ...] = ()
    """PID filters."""
    match_binaries: tuple[BinaryFilter, ...] = ()
    """At most one executable filter."""
    match_parent_binaries: tuple[BinaryFilter, ...] = ()
    """At most one parent-executable filter."""
    match_namespaces: tuple[NamespaceFilter, ...] = ()
    """Namespace filters."""
    match_namespace_changes: tuple[NamespaceChangeFilter, ...] = ()
    """At most one namespace-change filter."""
    match_capabilities: tuple[CapabilityFilter, ...] = ()
    """Capability filters."""
    match_capability_changes: tuple[CapabilityFilter, ...] = ()
    """Capability-change filters."""
    match_actions: tuple[ActionSpec, ...] = ()
    """Actions run when the selector matches."""
    match_return_actions: tuple[ActionSpec, ...] = ()
    """Actions run when matchReturnArgs match."""
    match_workloads: WorkloadSelector | None = None
    """Pod/container/host restriction of this selector."""
    label: str = ""
    """Free-form name of the selector (from the selector or its macro)."""
    macros: tuple[str, ...] = ()
    """Names of the selectorsMacros merged into this selector (already applied)."""
    loc: Loc = _loc()


# --------------------------------------------------------------------------
# Hooks


def _position_by_index(args: tuple[ArgSpec, ...], index: int) -> int | None:
    for pos, a in enumerate(args):
        if a.index == index:
            return pos
    return None


@dataclass(frozen=True, slots=True, kw_only=True)
class KProbeSpec:
    """One ``kprobes`` (or ``fentries``) entry.

    List calls: ``call: "list:NAME"`` is kept as written, and ``calls`` holds
    the resolved names, one probe per name, all sharing this spec (Tetragon
    does the same). For a ``syscalls`` list (or an untyped list) ``calls`` are
    the list's values as written (``sys_dup``; the arch prefix is added by
    the compiler); for ``generated_syscalls``/``generated_ftrace`` lists,
    whose content depends on the running kernel, ``calls`` is empty and
    ``call_list`` names the list to generate. Syscall-typed lists force
    ``syscall`` to True. For a plain call, ``calls == (call,)``.
    """

    call: str
    """Function name or ``list:NAME`` as written."""
    calls: tuple[str, ...] = ()
    """Resolved function names (see class docstring)."""
    call_list: str | None = None
    """Name of the spec.lists entry when ``call`` is ``list:NAME``."""
    syscall: bool = True
    """The function is a syscall (the arch prefix gets added)."""
    is_return: bool = False
    """Also hook the return (YAML ``return``); needs ``return_arg``."""
    message: str = ""
    """Text added to the event (≤256 characters)."""
    args: tuple[ArgSpec, ...] = ()
    """Function arguments to read."""
    data: tuple[ArgSpec, ...] = ()
    """Extra values read from ``current_task`` or ``pt_regs``."""
    return_arg: ArgSpec | None = None
    """How to read the return value."""
    return_arg_action: str | None = None
    """``TrackSock`` or ``UntrackSock`` applied to the return value."""
    selectors: tuple[Selector, ...] = ()
    """In-kernel filters and actions (≤5)."""
    tags: tuple[str, ...] = ()
    """Free-form tags copied to events (≤16)."""
    ignore_call_not_found: bool = False
    """Skip, rather than fail on, functions missing from this kernel."""
    loc: Loc = _loc()

    def arg_position(self, index: int) -> int | None:
        """Position in ``args`` of the entry declared with this index."""
        return _position_by_index(self.args, index)


@dataclass(frozen=True, slots=True, kw_only=True)
class TracepointSpec:
    """One ``tracepoints`` entry."""

    subsystem: str
    """Tracepoint group (``raw_syscalls``, ``syscalls``, ``sched``)."""
    event: str
    """Tracepoint name (``sys_enter``)."""
    raw: bool = False
    """Attach as a raw tracepoint (args are the raw arguments, index ≤5)."""
    message: str = ""
    """Text added to the event (≤256 characters)."""
    args: tuple[ArgSpec, ...] = ()
    """Format fields (or raw arguments) to read, by ``index``."""
    selectors: tuple[Selector, ...] = ()
    """In-kernel filters and actions (≤5)."""
    tags: tuple[str, ...] = ()
    """Free-form tags copied to events (≤16)."""
    loc: Loc = _loc()

    def arg_position(self, index: int) -> int | None:
        """Position in ``args`` a matchArgs ``index`` refers to.

        As in Tetragon, the index first names a declared field index and,
        failing that, a position in ``args`` (``args: [{index: 4}]`` can be
        filtered with ``index: 4`` or ``index: 0``).
        """
        pos = _position_by_index(self.args, index)
        if pos is None and 0 <= index < len(self.args):
            pos = index
        return pos


@dataclass(frozen=True, slots=True, kw_only=True)
class UProbeSpec:
    """One ``uprobes`` entry."""

    path: str
    """Binary or library to probe."""
    btf_path: str = ""
    """BTF file describing the binary's types."""
    symbols: tuple[str, ...] = ()
    """Symbols to probe (exactly one of symbols/offsets/addrs is set)."""
    offsets: tuple[int, ...] = ()
    """File offsets to probe."""
    addrs: tuple[int, ...] = ()
    """Virtual addresses to probe."""
    ref_ctr_offsets: tuple[int, ...] = ()
    """Semaphore (reference counter) offsets, one per probe."""
    message: str = ""
    """Text added to the event (≤256 characters)."""
    args: tuple[ArgSpec, ...] = ()
    """Function arguments to read."""
    data: tuple[ArgSpec, ...] = ()
    """Extra values read from ``pt_regs``/``current_task``."""
    selectors: tuple[Selector, ...] = ()
    """In-kernel filters and actions (≤5)."""
    tags: tuple[str, ...] = ()
    """Free-form tags copied to events (≤16)."""
    is_return: bool = False
    """Also probe the return (YAML ``return``); needs ``return_arg``."""
    return_arg: ArgSpec | None = None
    """How to read the return value."""
    binary_digests: tuple[str, ...] = ()
    """Allowed ``sha256:<hex>`` digests of ``path``."""
    ignore_digest_verification_failure: bool = False
    """Load even when the digest does not match."""
    loc: Loc = _loc()

    def arg_position(self, index: int) -> int | None:
        return _position_by_index(self.args, index)


@dataclass(frozen=True, slots=True, kw_only=True)
class UsdtSpec:
    """One ``usdts`` entry."""

    path: str
    """Binary holding the USDT probe."""
    provider: str
    """USDT provider name."""
    name: str
    """USDT probe name."""
    btf_path: str = ""
    """BTF file describing the binary's types."""
    message: str = ""
    """Text added to the event (≤256 characters)."""
    args: tuple[ArgSpec, ...] = ()
    """Probe arguments to read."""
    selectors: tuple[Selector, ...] = ()
    """In-kernel filters and actions (≤5)."""
    tags: tuple[str, ...] = ()
    """Free-form tags copied to events (≤16)."""
    loc: Loc = _loc()

    def arg_position(self, index: int) -> int | None:
        return _position_by_index(self.args, index)


@dataclass(frozen=True, slots=True, kw_only=True)
class LsmHookSpec:
    """One ``lsmhooks`` entry."""

    hook: str
    """LSM hook name without the ``security_`` prefix (``file_open``)."""
    message: str = ""
    """Text added to the event (≤256 characters)."""
    args: tuple[ArgSpec, ...] = ()
    """Hook arguments to read."""
    selectors: tuple[Selector, ...] = ()
    """In-kernel filters and actions (≤5)."""
    tags: tuple[str, ...] = ()
    """Free-form tags copied to events (≤16)."""
    loc: Loc = _loc()

    def arg_position(self, index: int) -> int | None:
        return _position_by_index(self.args, index)


Hook = Union[KProbeSpec, TracepointSpec, UProbeSpec, UsdtSpec, LsmHookSpec]


# --------------------------------------------------------------------------
# Policy


@dataclass(frozen=True, slots=True, kw_only=True)
class ListSpec:
    """One ``lists`` entry, referenced as ``list:NAME``."""

    name: str
    """List name, unique in the policy."""
    type: str | None = None
    """``syscalls``, ``generated_syscalls``, ``generated_ftrace`` or None
    (plain function names)."""
    values: tuple[str, ...] = ()
    """Entries as written; empty for generated lists."""
    pattern: str | None = None
    """generated_ftrace only: regular expression over available functions."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class EnforcerSpec:
    """One ``enforcers`` entry (target of the NotifyEnforcer action)."""

    calls: tuple[str, ...]
    """Syscalls (or ``list:NAME``) the enforcer program attaches to."""
    loc: Loc = _loc()


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicySpec:
    """The ``spec`` of a policy."""

    kprobes: tuple[KProbeSpec, ...] = ()
    """kprobe hooks."""
    fentries: tuple[KProbeSpec, ...] = ()
    """fentry/fexit hooks (same shape as kprobes)."""
    tracepoints: tuple[TracepointSpec, ...] = ()
    """Tracepoint and raw tracepoint hooks."""
    uprobes: tuple[UProbeSpec, ...] = ()
    """User-space probes."""
    usdts: tuple[UsdtSpec, ...] = ()
    """User statically-defined tracepoints."""
    lsmhooks: tuple[LsmHookSpec, ...] = ()
    """BPF-LSM hooks."""
    lists: tuple[ListSpec, ...] = ()
    """Named value lists (``list:NAME``)."""
    options: dict[str, str] = field(default_factory=dict)
    """spec.options as name → value (names from :data:`vocab.OPTIONS`)."""
    loader: bool = False
    """Emit process_loader events."""
    enforcers: tuple[EnforcerSpec, ...] = ()
    """At most one enforcer."""
    pod_selector: LabelSelector | None = None
    """Pods the policy applies to."""
    container_selector: LabelSelector | None = None
    """Containers the policy applies to."""
    host_selector: LabelSelector | None = None
    """None or the empty selector (also apply to host processes)."""
    node_selector: LabelSelector | None = None
    """Nodes that load the policy."""
    selectors_macros: dict[str, Selector] = field(default_factory=dict)
    """Macro definitions as written (already applied to the hooks' selectors)."""
    loc: Loc = _loc()

    @property
    def policy_mode(self) -> str | None:
        """``monitor``, ``enforce`` or None when the policy does not say."""
        return self.options.get("policy-mode")

    def hooks(self) -> Iterator[tuple[str, int, Hook]]:
        """Every hook as (section, index in section, spec), in section order."""
        for section in ("kprobes", "fentries", "tracepoints", "uprobes", "usdts", "lsmhooks"):
            for i, h in enumerate(getattr(self, section)):
                yield section, i, h

    def list_named(self, name: str) -> ListSpec | None:
        """The ``lists`` entry called ``name`` (without ``list:``)."""
        for lst in self.lists:
            if lst.name == name:
                return lst
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class TracingPolicy:
    """A whole policy document."""

    api_version: str = "cilium.io/v1alpha1"
    """Always ``cilium.io/v1alpha1``."""
    kind: str = "TracingPolicy"
    """``TracingPolicy`` (cluster-wide) or ``TracingPolicyNamespaced``."""
    name: str
    """metadata.name (a DNS-1123 subdomain)."""
    namespace: str | None = None
    """metadata.namespace; set exactly for TracingPolicyNamespaced."""
    labels: dict[str, str] = field(default_factory=dict)
    """metadata.labels."""
    annotations: dict[str, str] = field(default_factory=dict)
    """metadata.annotations."""
    spec: PolicySpec = field(default_factory=PolicySpec)
    """The policy body."""
    source_file: str = "<string>"
    """File the policy was read from, ``<string>`` for load_str."""
    loc: Loc = _loc()
