"""Unit tests for kerneye.policy.loader: the strict TracingPolicy front end.

No kernel, no root. Malformed policies are inline YAML next to the expected
error (code, message fragment, line); well-formed ones are Tetragon's own
syscall/tracepoint examples under tests/data/policies/tetragon/.
"""
from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from kerneye.errors import KerneyeError
from kerneye.policy import vocab
from kerneye.policy.errors import PolicyError, PolicyErrors
from kerneye.policy.loader import load_dir, load_file, load_str
from kerneye.policy.model import ArgFilter, Loc, Selector, TracingPolicy

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "policies" / "tetragon"

# Every `_doc` policy starts with these five lines, so its body starts on line 6.
HEADER = "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: t\nspec:\n"


def _doc(body: str) -> str:
    return HEADER + textwrap.indent(textwrap.dedent(body).lstrip("\n"), "  ")


def _errors(text: str, **kw: object) -> list[PolicyError]:
    with pytest.raises(PolicyError) as info:
        load_str(text, "p.yaml", **kw)  # type: ignore[arg-type]
    return info.value.errors


# A kprobe on sys_openat with three declared args, reused by many cases.
OPENAT = """
kprobes:
- call: sys_openat
  args:
  - index: 0
    type: int
  - index: 1
    type: string
  - index: 2
    type: int
"""



def _openat(selectors: str) -> str:
    """OPENAT (lines 6-14) followed by ``selectors`` (from line 15), indented under the kprobe."""
    return _doc(OPENAT + textwrap.indent(textwrap.dedent(selectors).lstrip("\n"), "  "))


# (id, yaml, code, message fragment, line). Each document has exactly one problem.
MALFORMED: list[tuple[str, str, str, str, int]] = [
    ("yaml-syntax", HEADER + "  kprobes: [\n  - call: x\n", "yaml-parse", "invalid YAML", 7),
    ("two-documents", HEADER + "  loader: true\n---\n" + HEADER, "multi-document", "one policy per file", 8),
    ("no-document", "# only a comment\n", "empty-document", "no policy", 1),
    ("duplicate-key", _doc("""
        kprobes:
        - call: sys_write
          call: sys_read
        """), "duplicate-key", "duplicate key 'call'", 8),
    ("unknown-top-key", HEADER.replace("spec:", "specs:") + "  loader: true\n", "unknown-key",
     "did you mean 'spec'", 5),
    ("unknown-filter-key", _openat("""
          selectors:
          - matchArgs:
            - index: 1
              operater: Equal
              values: ["/etc/passwd"]
        """), "unknown-key", "unknown key 'operater' in a matchArgs filter; did you mean 'operator'?", 18),
    ("removed-action-param", _doc("""
        kprobes:
        - call: sys_dup
          selectors:
          - matchActions:
            - action: Post
              argFd: 0
        """), "unknown-key", "FollowFD", 11),
    ("index-not-int", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: "x"
            type: int
        """), "wrong-type", "must be an integer, got a string ('x')", 9),
    ("values-not-list", _openat("""
          selectors:
          - matchArgs:
            - index: 1
              operator: Postfix
              values: "/opt/myapp"
        """), "wrong-type", "values must be a list", 19),
    ("selectors-not-list", _doc("""
        kprobes:
        - call: sys_write
          selectors:
            matchPIDs: []
        """), "wrong-type", "selectors must be a list, got a mapping", 9),
    ("quoted-bool", _doc("""
        kprobes:
        - call: sys_write
          syscall: "true"
        """), "wrong-type", "must be true or false", 8),
    ("quoted-pid", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchPIDs:
            - operator: In
              values: ["1"]
        """), "wrong-type", "a PID must be an integer", 11),
    ("api-version", HEADER.replace("cilium.io/v1alpha1", "cilium.io/v1") + "  loader: true\n", "bad-value",
     "apiVersion must be 'cilium.io/v1alpha1'", 1),
    ("kind", HEADER.replace("kind: TracingPolicy", "kind: TracingPolicies") + "  loader: true\n", "unknown-value",
     "valid kinds: TracingPolicy, TracingPolicyNamespaced", 2),
    ("no-name", "apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  labels: {a: b}\nspec: {}\n",
     "missing-field", "metadata needs 'name'", 4),
    ("bad-name", HEADER.replace("name: t", "name: Bad Name") + "  loader: true\n", "bad-value",
     "must be a DNS-1123 name", 4),
    ("namespaced-no-namespace", HEADER.replace("kind: TracingPolicy", "kind: TracingPolicyNamespaced") + "  loader: true\n",
     "missing-field", "needs metadata.namespace", 4),
    ("unknown-operator", _openat("""
          selectors:
          - matchArgs:
            - index: 1
              operator: Equals
              values: ["/etc/passwd"]
        """), "unknown-operator", "unknown operator 'Equals' for matchArgs; valid operators: Equal, NotEqual", 18),
    ("pid-operator", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchPIDs:
            - operator: Equal
              values: [1]
        """), "unknown-operator", "valid operators: In, NotIn", 10),
    ("unknown-action", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Kill
        """), "unknown-action", "unknown action 'Kill'; valid actions: Post, Sigkill", 10),
    ("removed-action", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: FollowFD
        """), "unknown-action", "Tetragon removed it", 10),
    ("unknown-arg-type", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 1
            type: charbuf
        """), "unknown-arg-type", "did you mean 'char_buf'?", 10),
    ("unknown-namespace", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchNamespaces:
            - namespace: Network
              operator: In
              values: [host_ns]
        """), "unknown-value", "unknown namespace 'Network'; valid namespaces: Uts, Ipc, Mnt", 10),
    ("unknown-capability", _doc("""
        kprobes:
        - call: create_user_ns
          syscall: false
          selectors:
          - matchCapabilities:
            - operator: NotIn
              values: [CAP_SYS_ADMN]
        """), "unknown-value", "did you mean 'CAP_SYS_ADMIN'?", 12),
    ("unknown-list-type", _doc("""
        lists:
        - name: dups
          type: syscall
          values: [sys_dup]
        """), "unknown-value", "valid types: syscalls, generated_syscalls, generated_ftrace", 8),
    ("six-selectors", _doc("""
        kprobes:
        - call: sys_write
          selectors: [{}, {}, {}, {}, {}, {}]
        """), "limit", "at most 5 selectors per hook, got 6", 8),
    ("six-arg-filters", _openat("""
          selectors:
          - matchArgs:
            - {index: 0, operator: Equal, values: ["1"]}
            - {index: 0, operator: Equal, values: ["2"]}
            - {index: 0, operator: Equal, values: ["3"]}
            - {index: 2, operator: Mask, values: ["1"]}
            - {index: 2, operator: Mask, values: ["2"]}
            - {index: 1, operator: Prefix, values: ["/etc"]}
        """), "limit", "at most 5 matchArgs and matchData filters per selector, got 6", 22),
    ("five-int-values", _openat("""
          selectors:
          - matchArgs:
            - index: 0
              operator: Equal
              values: ["1", "2", "3", "4", "5"]
        """), "limit", "at most 4 values for operator Equal on a int argument", 19),
    ("five-pids", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchPIDs:
            - operator: NotIn
              values: [1, 2, 3]
            - operator: NotIn
              values: [4, 5]
        """), "limit", "at most 4 PID values per selector, got 5", 12),
    ("two-match-binaries", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchBinaries:
            - {operator: In, values: [/usr/bin/bash]}
            - {operator: In, values: [/usr/bin/sh]}
        """), "limit", "at most 1 matchBinaries entry per selector", 11),
    ("long-prefix", _openat(f"""
          selectors:
          - matchArgs:
            - index: 1
              operator: Prefix
              values: ["/{'a' * 256}"]
        """), "bad-value", "prefix is 257 characters long, at most 256 allowed", 19),
    ("long-postfix", _openat(f"""
          selectors:
          - matchArgs:
            - index: 1
              operator: NotPostfix
              values: ["{'a' * 129}"]
        """), "bad-value", "postfix is 129 characters long, at most 128 allowed", 19),
    ("seventeen-tags", _doc("""
        kprobes:
        - call: sys_write
          tags: [t1, t2, t3, t4, t5, t6, t7, t8, t9, t10, t11, t12, t13, t14, t15, t16,
                 t17]
        """), "limit", "at most 16 tags per hook, got 17", 9),
    ("long-message", _doc(f"""
        kprobes:
        - call: sys_write
          message: "{'m' * 257}"
        """), "limit", "at most 256 allowed", 8),
    ("five-namespace-values", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchNamespaces:
            - namespace: Mnt
              operator: In
              values: [1, 2, 3, 4, 5]
        """), "limit", "at most 4 values per matchNamespaces filter", 12),
    ("follow-children-prefix", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchBinaries:
            - operator: Prefix
              values: [/usr/]
              followChildren: true
        """), "bad-value", "followChildren works only with the In and NotIn operators, not Prefix", 12),
    ("undeclared-index", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 0
            type: int
          selectors:
          - matchArgs:
            - index: 2
              operator: Equal
              values: ["1"]
        """), "bad-index", "matchArgs index 2 does not refer to a declared argument (declared indexes: 0)", 13),
    ("size-arg-on-int", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 0
            type: int
            sizeArgIndex: 3
        """), "bad-value", "sizeArgIndex applies only to char_buf and char_iovec", 11),
    ("size-arg-out-of-range", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 1
            type: char_buf
            sizeArgIndex: 7
        """), "bad-value", "1-based (argument index + 1), so 1 to 5", 11),
    ("return-args-without-return-arg", _doc("""
        kprobes:
        - call: sys_openat
          selectors:
          - matchReturnArgs:
            - index: 0
              operator: Equal
              values: ["0"]
        """), "missing-field", "matchReturnArgs needs the hook to set return: true and a returnArg", 10),
    ("return-without-return-arg", _doc("""
        kprobes:
        - call: sys_openat
          return: true
        """), "missing-field", "return: true needs a 'returnArg'", 8),
    ("unknown-macro", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - macros: [nope]
        """), "unknown-macro", "undefined macro 'nope' (spec.selectorsMacros: none defined)", 9),
    ("macro-conflict", _doc("""
        selectorsMacros:
          bins:
            matchBinaries:
            - {operator: In, values: [/usr/bin/bash]}
        kprobes:
        - call: sys_write
          selectors:
          - matchBinaries:
            - {operator: In, values: [/usr/bin/sh]}
            macros: [bins]
        """), "macro-conflict", "matchBinaries is set both by this selector and by macro 'bins'", 15),
    ("missing-list", _doc("""
        kprobes:
        - call: "list:nope"
        """), "unknown-list", "'list:nope' names no entry of spec.lists (lists: none defined)", 7),
    ("rate-limit-format", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Post
              rateLimit: 5 minutes
        """), "bad-value", "is not a duration", 11),
    ("rate-limit-not-post", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Sigkill
              rateLimit: 1m
        """), "bad-value", "rateLimit is only valid with the Post action, not Sigkill", 11),
    ("signal-without-sig", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Signal
        """), "missing-field", "action Signal needs 'argSig'", 10),
    ("notify-without-enforcer", _doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: NotifyEnforcer
              argSig: 9
        """), "missing-field", "NotifyEnforcer needs an enforcer", 10),
    ("policy-mode", _doc("""
        options:
        - name: policy-mode
          value: audit
        """), "bad-value", "option 'policy-mode' must be monitor|enforce, got 'audit'", 8),
    ("unknown-option", _doc("""
        options:
        - name: policy_mode
          value: enforce
        """), "unknown-value", "unknown option 'policy_mode'; known options: disable-kprobe-multi", 7),
    ("int-value-not-int", _openat("""
          selectors:
          - matchArgs:
            - index: 2
              operator: Mask
              values: ["O_CREAT"]
        """), "bad-value", "'O_CREAT' is not an integer", 19),
    ("int-value-overflow", _openat("""
          selectors:
          - matchArgs:
            - index: 0
              operator: Equal
              values: ["0x1ffffffff"]
        """), "bad-value", "out of range for int32 (argument type int)", 19),
    ("bad-address", _doc("""
        kprobes:
        - call: tcp_connect
          syscall: false
          args:
          - index: 0
            type: sock
          selectors:
          - matchArgs:
            - index: 0
              operator: DAddr
              values: ["10.0.0.300"]
        """), "bad-value", "is not an IP address or CIDR", 16),
    ("operator-type-mismatch", _openat("""
          selectors:
          - matchArgs:
            - index: 1
              operator: DPort
              values: ["80"]
        """), "bad-value", "operator DPort applies to sock, skb, sockaddr, socket and sockaddr_un arguments, not string", 18),
    ("duplicate-list", _doc("""
        lists:
        - name: l
          values: [sys_dup]
        - name: l
          values: [sys_dup2]
        """), "duplicate-name", "list name 'l' is used twice", 9),
    ("cluster-policy-namespace", HEADER.replace("  name: t\n", "  name: t\n  namespace: default\n") + "  loader: true\n",
     "bad-value", "use kind TracingPolicyNamespaced", 5),
    ("func-arg-index", _doc("""
        kprobes:
        - call: sys_write
          args:
          - index: 5
            type: int
        """), "bad-value", "kprobes take indexes 0 to 4", 9),
    ("raw-tp-arg-index", _doc("""
        tracepoints:
        - subsystem: sched
          event: sched_process_exec
          raw: true
          args:
          - index: 6
            type: linux_binprm
        """), "bad-value", "tracepoints take indexes 0 to 5", 11),
]


@pytest.mark.parametrize(("text", "code", "fragment", "line"), [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_policy_is_rejected_with_code_message_and_line(text: str, code: str, fragment: str, line: int) -> None:
    errs = _errors(text)
    assert len(errs) == 1, "\n".join(map(str, errs))
    err = errs[0]
    assert (err.code, err.line) == (code, line), str(err)
    assert fragment in err.message, str(err)
    assert err.file == "p.yaml" and err.col >= 1
    assert str(err).startswith(f"p.yaml:{line}:{err.col}: ")
    assert "\n" not in str(err)


def test_malformed_table_is_large_and_distinct() -> None:
    assert len(MALFORMED) >= 25
    assert len({c[0] for c in MALFORMED}) == len(MALFORMED)
    assert len({c[1] for c in MALFORMED}) == len(MALFORMED)
    codes = {c[2] for c in MALFORMED}
    assert codes >= {"yaml-parse", "unknown-key", "wrong-type", "unknown-operator", "unknown-action",
                     "limit", "missing-field", "bad-value", "bad-index", "macro-conflict", "unknown-list"}


def test_error_paths_name_the_offending_node() -> None:
    (err,) = _errors(dict((c[0], c[1]) for c in MALFORMED)["unknown-operator"])
    assert err.path == "spec.kprobes[0].selectors[0].matchArgs[0].operator"
    assert err.col == 19  # the value node after `operator: `
    (err,) = _errors(dict((c[0], c[1]) for c in MALFORMED)["five-int-values"])
    assert err.path == "spec.kprobes[0].selectors[0].matchArgs[0].values[4]"
    (err,) = _errors(HEADER.replace("spec:", "specs:") + "  loader: true\n")
    assert err.path == "specs"
    assert "allowed keys: apiVersion, kind, metadata, spec" in err.message


def test_all_problems_are_collected_in_document_order() -> None:
    text = _doc("""
        kprobes:
        - call: sys_write
          bogus: 1
          selectors:
          - matchActions:
            - action: Explode
        tracepoints:
        - subsystem: raw_syscalls
        """)
    with pytest.raises(PolicyErrors) as info:
        load_str(text, "p.yaml")
    errs = info.value.errors
    assert [(e.code, e.line) for e in errs] == [("unknown-key", 8), ("unknown-action", 11), ("missing-field", 13)]
    assert str(info.value) == "; ".join(str(e) for e in errs)
    assert info.value.code == "unknown-key" and info.value.line == 8
    assert isinstance(info.value, KerneyeError)
    assert info.value.to_dict()["errors"][1]["path"] == "spec.kprobes[0].selectors[0].matchActions[0].action"


def test_policy_error_format_and_location() -> None:
    e = PolicyError("limit", "too\nmany", path="spec.kprobes[0]", file="f.yaml", line=3, col=7)
    assert str(e) == "f.yaml:3:7: spec.kprobes[0]: too many"
    assert e.location == Loc("f.yaml", 3, 7, "spec.kprobes[0]")
    assert e.errors == [e]
    with pytest.raises(ValueError):
        PolicyError("not-a-code", "x")


def test_unavailable_hook_when_caller_restricts_sections() -> None:
    text = _doc("""
        lsmhooks:
        - hook: file_open
        kprobes:
        - call: sys_write
        """)
    (err,) = _errors(text, supported_hooks={"kprobes", "tracepoints"})
    assert (err.code, err.line, err.path) == ("unavailable-hook", 6, "spec.lsmhooks")
    assert "supported: kprobes, tracepoints" in err.message
    assert load_str(text).spec.lsmhooks[0].hook == "file_open"


def test_alias_bomb_fails_fast() -> None:
    # 100 aliased kprobes x 100 aliased selectors x 100 aliased filters: a
    # few kilobytes of YAML that would take a million filter checks.
    many = lambda ref: "[" + ", ".join([ref] * 100) + "]"  # noqa: E731
    text = _doc(f"""
        selectorsMacros:
          m: &ma {{index: 0, operator: Equal, values: ["1"]}}
          s: &sel {{matchArgs: {many("*ma")}}}
          k: &kp {{call: sys_write, args: [{{index: 0, type: int}}], selectors: {many("*sel")}}}
        kprobes: {many("*kp")}
        """)
    assert len(text) < 5000
    errs = _errors(text)
    assert any(e.code == "limit" and "100000 mappings and lists" in e.message for e in errs)


# --------------------------------------------------------------------------
# Well-formed: Tetragon's syscall and tracepoint examples, loaded unchanged.

FIXTURE_NAMES = sorted(p.name for p in FIXTURES.glob("*.yaml"))


def test_fixture_set_is_present() -> None:
    assert len(FIXTURE_NAMES) >= 10


@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_tetragon_example_loads(name: str) -> None:
    pol = load_file(FIXTURES / name)
    assert isinstance(pol, TracingPolicy)
    assert pol.api_version == "cilium.io/v1alpha1" and pol.kind == "TracingPolicy"
    assert pol.source_file == str(FIXTURES / name)
    hooks = list(pol.spec.hooks())
    assert hooks and {s for s, _, _ in hooks} <= {"kprobes", "tracepoints"}
    for _, _, hook in hooks:
        assert hook.loc.file == str(FIXTURES / name) and hook.loc.line > 0
        for sel in hook.selectors:
            for f in sel.match_args:
                assert f.operator in vocab.ARG_OPERATORS


def test_write_example_model() -> None:
    pol = load_file(FIXTURES / "write.yaml")
    assert pol.name == "sys-write"
    (kp,) = pol.spec.kprobes
    assert (kp.call, kp.calls, kp.syscall, kp.is_return) == ("sys_write", ("sys_write",), True, False)
    assert [(a.index, a.type, a.size_arg_index) for a in kp.args] == [(0, "int", 0), (1, "char_buf", 3), (2, "size_t", 0)]
    (sel,) = kp.selectors
    (pid,) = sel.match_pids
    assert (pid.operator, pid.values, pid.follow_forks, pid.is_namespace_pid) == ("NotIn", (1,), True, True)
    assert sel.match_args == (ArgFilter(index=0, operator="Equal", values=("1",)),)
    assert kp.arg_position(0) == 0 and sel.match_actions == ()
    assert sel.match_args[0].loc.path == "spec.kprobes[0].selectors[0].matchArgs[0]"
    assert sel.match_args[0].loc.line == 26  # line 1 of the fixture is a comment


def test_openat_example_return_filters() -> None:
    (kp,) = load_file(FIXTURES / "openat_write.yaml").spec.kprobes
    assert kp.is_return and kp.return_arg is not None and kp.return_arg.type == "int"
    (sel,) = kp.selectors
    assert [(f.index, f.operator, f.values) for f in sel.match_args] == [
        (1, "Equal", ("/etc/passwd",)), (2, "Mask", ("64", "1", "2"))]
    assert sel.match_return_args == (ArgFilter(index=0, operator="GreaterThan", values=("0",)),)


def test_simple_syscall_examples() -> None:
    for name, call, types in [
        ("sys_setuid.yaml", "sys_setuid", ["int"]),
        ("sys_mount.yaml", "sys_mount", ["string", "string"]),
        ("sys_ptrace.yaml", "sys_ptrace", ["int"]),
        ("sys_pivot_root.yaml", "sys_pivot_root", ["string", "string"]),
        ("sys_clock_settime.yaml", "sys_clock_settime", ["int"]),
    ]:
        (kp,) = load_file(FIXTURES / name).spec.kprobes
        assert kp.call == call and kp.syscall
        assert [a.type for a in kp.args] == types
    (kp,) = load_file(FIXTURES / "sys_ptrace.yaml").spec.kprobes
    assert kp.args[0].index == 2
    (kp,) = load_file(FIXTURES / "sys_clock_settime.yaml").spec.kprobes
    assert [p.values for p in kp.selectors[0].match_pids] == [(1,), (0,)]


def test_override_and_namespace_examples() -> None:
    (kp,) = load_file(FIXTURES / "hardlink-override.yaml").spec.kprobes
    (act,) = kp.selectors[0].match_actions
    assert (act.action, act.arg_error, act.rate_limit) == ("Override", -1, None)
    kps = load_file(FIXTURES / "process.credentials.changes.at.syscalls.yaml").spec.kprobes
    assert [k.call for k in kps] == ["sys_setuid", "sys_setgid", "sys_setreuid", "sys_setregid",
                                     "sys_setresuid", "sys_setresgid", "sys_setfsuid", "sys_setfsgid"]
    for k in kps:
        (ns,) = k.selectors[0].match_namespaces
        assert (ns.namespace, ns.operator, ns.values) == ("Pid", "NotIn", ("host_ns",))


def test_tracepoint_examples() -> None:
    (tp,) = load_file(FIXTURES / "raw_syscalls.yaml").spec.tracepoints
    assert (tp.subsystem, tp.event, tp.raw) == ("raw_syscalls", "sys_enter", False)
    assert [(a.index, a.type) for a in tp.args] == [(4, "syscall64")]
    (tp,) = load_file(FIXTURES / "rawtp.yaml").spec.tracepoints
    assert tp.raw and tp.args[0].type == "linux_binprm"
    (tp,) = load_file(FIXTURES / "tracepoint-lseek-pid.yaml").spec.tracepoints
    assert [a.type for a in tp.args] == ["auto", "auto"]
    # index 7 names the declared field 7, i.e. position 0 of args
    assert tp.arg_position(tp.selectors[0].match_args[0].index) == 0
    assert tp.selectors[0].match_pids[0].values == (1111,)


def test_list_examples() -> None:
    pol = load_file(FIXTURES / "list-syscalls.yaml")
    (kp,) = pol.spec.kprobes
    assert (kp.call, kp.call_list, kp.calls, kp.syscall) == ("list:syscalls", "syscalls", ("sys_dup", "sys_dup2"), True)
    assert pol.spec.list_named("syscalls").type == "syscalls"  # type: ignore[union-attr]

    pol = load_file(FIXTURES / "list-syscalls-generated.yaml")
    (kp,) = pol.spec.kprobes
    assert (kp.call_list, kp.calls) == ("all-syscalls", ())  # generated on the target kernel
    assert pol.spec.lists[0].type == "generated_syscalls" and pol.spec.lists[0].values == ()

    (tp,) = load_file(FIXTURES / "list-syscalls-tracepoint.yaml").spec.tracepoints
    f = tp.selectors[0].match_args[0]
    # tracepoint filters may use a position in args: index 0 -> the args entry with index 4
    assert (f.index, f.operator, f.values, tp.arg_position(f.index)) == (0, "InMap", ("list:dups",), 0)

    pol = load_file(FIXTURES / "killer.yaml")
    assert pol.spec.enforcers[0].calls == ("list:dups",)
    (act,) = pol.spec.tracepoints[0].selectors[0].match_actions
    assert (act.action, act.arg_error, act.arg_sig) == ("NotifyEnforcer", -1, 9)
    assert pol.spec.tracepoints[0].selectors[0].match_binaries[0].values == ("/usr/bin/bash",)


def test_load_dir(tmp_path: Path) -> None:
    for name in ("write.yaml", "openat_write.yaml", "killer.yaml"):
        shutil.copy(FIXTURES / name, tmp_path / name)
    shutil.copy(FIXTURES / "rawtp.yaml", tmp_path / "rawtp.yml")
    (tmp_path / "README.md").write_text("not a policy")
    (tmp_path / "sub.yaml").mkdir()
    pols = load_dir(tmp_path)
    assert [os.path.basename(p.source_file) for p in pols] == ["killer.yaml", "openat_write.yaml", "rawtp.yml", "write.yaml"]

    (tmp_path / "zz-bad.yaml").write_text(HEADER + "  kprobes: {}\n")
    shutil.copy(FIXTURES / "write.yaml", tmp_path / "aa-dup.yaml")
    with pytest.raises(PolicyErrors) as info:
        load_dir(tmp_path)
    got = [(os.path.basename(e.file), e.code) for e in info.value.errors]
    assert got == [("write.yaml", "duplicate-name"), ("zz-bad.yaml", "wrong-type")]


def test_load_file_and_dir_io_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError) as info:
        load_file(tmp_path / "missing.yaml")
    assert info.value.code == "io"
    with pytest.raises(PolicyError) as info:
        load_dir(tmp_path / "nope")
    assert info.value.code == "io"


def test_model_is_frozen_and_loc_is_not_compared() -> None:
    pol = load_file(FIXTURES / "sys_setuid.yaml")
    with pytest.raises(AttributeError):
        pol.name = "x"  # type: ignore[misc]
    again = load_str((FIXTURES / "sys_setuid.yaml").read_text().replace("apiVersion", "\napiVersion"),
                     str(FIXTURES / "sys_setuid.yaml"))
    assert again.spec == pol.spec and again.spec.kprobes[0].loc != pol.spec.kprobes[0].loc


# --------------------------------------------------------------------------
# Canonical names


def _one_arg_filter(op: str, arg_type: str = "int", value: str = '"1"') -> ArgFilter:
    pol = load_str(_doc(f"""
        kprobes:
        - call: fn
          syscall: false
          args:
          - index: 0
            type: {arg_type}
          selectors:
          - matchArgs:
            - index: 0
              operator: {op}
              values: [{value}]
        """))
    return pol.spec.kprobes[0].selectors[0].match_args[0]


@pytest.mark.parametrize(("alias", "canonical", "arg_type", "value"), [
    ("eq", "Equal", "int", '"1"'), ("neq", "NotEqual", "int", '"1"'),
    ("gt", "GreaterThan", "int", '"1"'), ("GT", "GreaterThan", "int", '"1"'),
    ("lt", "LessThan", "uint64", '"1"'), ("LT", "LessThan", "int", '"1"'),
    ("mask", "Mask", "int", '"0x40"'), ("prefix", "Prefix", "string", '"/etc"'),
    ("notpostfix", "NotPostfix", "string", '"passwd"'),
    ("saddr", "SAddr", "sock", '"10.0.0.0/8"'), ("NotDaddr", "NotDAddr", "skb", '"::1"'),
    ("Sport", "SPort", "sock", '"1024:65535"'), ("dport", "DPort", "sock", '"443"'),
    ("family", "Family", "sock", '"AF_INET"'), ("protocol", "Protocol", "sock", '"IPPROTO_TCP"'),
    ("InMap", "InMap", "uint32", '"1:9"'),
])
def test_operator_aliases_are_canonicalised(alias: str, canonical: str, arg_type: str, value: str) -> None:
    assert _one_arg_filter(alias, arg_type, value).operator == canonical


@pytest.mark.parametrize("spelling", ["NotSportPriv", "notsportpriv", "NotSPortPriv"])
def test_priv_port_operator_spellings(spelling: str) -> None:
    pol = load_str(_doc(f"""
        kprobes:
        - call: tcp_connect
          syscall: false
          args: [{{index: 0, type: sock}}]
          selectors:
          - matchArgs: [{{index: 0, operator: {spelling}}}]
        """))
    assert pol.spec.kprobes[0].selectors[0].match_args[0].operator == "NotSPortPriv"


def test_operators_are_case_sensitive_like_tetragon() -> None:
    (err,) = _errors(_doc("""
        kprobes:
        - call: fn
          args: [{index: 0, type: int}]
          selectors:
          - matchArgs: [{index: 0, operator: EQ, values: ["1"]}]
        """))
    assert err.code == "unknown-operator"


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("sigkill", "Sigkill"), ("SIGKILL", "Sigkill"), ("post", "Post"), ("nopost", "NoPost"),
    ("override", "Override"), ("NOTIFYENFORCER", "NotifyEnforcer"), ("untracksock", "UntrackSock"),
])
def test_action_names_are_canonicalised(spelling: str, canonical: str) -> None:
    extra = {"NotifyEnforcer": "argSig: 9", "Override": "argError: -1"}.get(canonical, "argSock: 0")
    pol = load_str(_doc(f"""
        enforcers: [{{calls: [sys_write]}}]
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: {spelling}
              {extra}
        """))
    assert pol.spec.kprobes[0].selectors[0].match_actions[0].action == canonical


@pytest.mark.parametrize(("spelling", "canonical"), [
    ("sint32", "int32"), ("int32", "int32"), ("long", "int64"), ("sint64", "int64"), ("ulong", "uint64"),
    ("Int", "int"), ("CHAR_BUF", "char_buf"), ("sint8", "int8"), ("auto", "auto"), ("syscall64", "syscall64"),
])
def test_arg_types_are_canonicalised(spelling: str, canonical: str) -> None:
    pol = load_str(_doc(f"""
        kprobes:
        - call: fn
          args: [{{index: 0, type: {spelling}}}]
        """))
    assert pol.spec.kprobes[0].args[0].type == canonical


def test_namespace_capability_and_scope_names_are_canonicalised() -> None:
    pol = load_str(_doc("""
        kprobes:
        - call: fn
          selectors:
          - matchNamespaces:
            - {namespace: pid, operator: In, values: [4026531836, host_ns]}
            matchNamespaceChanges:
            - {operator: In, values: [mnt, NET]}
            matchCapabilities:
            - {type: permitted, operator: In, values: [cap_sys_admin, " CAP_BPF ", DAC_OVERRIDE]}
            matchActions:
            - {action: Post, rateLimit: 1m, rateLimitScope: Process}
        """))
    sel = pol.spec.kprobes[0].selectors[0]
    assert sel.match_namespaces[0].namespace == "Pid"
    assert sel.match_namespaces[0].values == ("4026531836", "host_ns")
    assert sel.match_namespace_changes[0].values == ("Mnt", "Net")
    cap = sel.match_capabilities[0]
    assert (cap.type, cap.values) == ("Permitted", ("CAP_SYS_ADMIN", "CAP_BPF", "CAP_DAC_OVERRIDE"))
    assert sel.match_actions[0].rate_limit_scope == "process"


def test_unquoted_integer_values_keep_their_source_text() -> None:
    f = _one_arg_filter("Mask", "int", "0x40")
    assert f.values == ("0x40",)
    assert _one_arg_filter("Equal", "uint32", "0o17").values == ("0o17",)
    assert _one_arg_filter("InRange", "int", '"-5:0x10"').values == ("-5:0x10",)


# --------------------------------------------------------------------------
# Macros

MACROS = """
selectorsMacros:
  notMyApp:
    label: not-my-app
    matchBinaries:
    - operator: NotPrefix
      values: [/opt/myapp]
  passwd:
    matchArgs:
    - index: 1
      operator: Postfix
      values: [passwd]
kprobes:
- call: sys_open
  args: [{index: 0, type: string}]
  selectors:
  - matchArgs:
    - {index: 0, operator: Postfix, values: [passwd]}
    macros: [notMyApp]
- call: sys_openat
  args: [{index: 0, type: int}, {index: 1, type: string}]
  selectors:
  - macros: [notMyApp, passwd]
    matchActions: [{action: Sigkill}]
"""


def test_macros_are_merged_into_selectors() -> None:
    spec = load_str(_doc(MACROS)).spec
    open_sel = spec.kprobes[0].selectors[0]
    openat_sel = spec.kprobes[1].selectors[0]
    assert open_sel.macros == ("notMyApp",) and openat_sel.macros == ("notMyApp", "passwd")
    assert open_sel.label == openat_sel.label == "not-my-app"
    assert open_sel.match_binaries == openat_sel.match_binaries == spec.selectors_macros["notMyApp"].match_binaries
    assert open_sel.match_binaries[0].operator == "NotPrefix"
    assert [(f.index, f.values) for f in openat_sel.match_args] == [(1, ("passwd",))]
    assert openat_sel.match_actions[0].action == "Sigkill"
    # the merged filter keeps the position of its definition in the macro
    assert openat_sel.match_args[0].loc.path == "spec.selectorsMacros.passwd.matchArgs[0]"
    assert set(spec.selectors_macros) == {"notMyApp", "passwd"}
    assert isinstance(spec.selectors_macros["passwd"], Selector)


def test_macro_filters_are_checked_against_each_hook_that_uses_them() -> None:
    # sys_open declares only index 0, so the 'passwd' macro (index 1) fails there
    text = _doc(MACROS.replace("    macros: [notMyApp]\n", "    macros: [passwd]\n")
                .replace("  - matchArgs:\n    - {index: 0, operator: Postfix, values: [passwd]}\n", "  - matchActions: [{action: Post}]\n"))
    (err,) = _errors(text)
    assert err.code == "bad-index" and err.line == 14  # `- index: 1` inside the macro definition
    assert err.path == "spec.selectorsMacros.passwd.matchArgs[0].index"


def test_two_macros_setting_one_field_conflict() -> None:
    text = _doc("""
        selectorsMacros:
          a: {matchPIDs: [{operator: In, values: [1]}]}
          b: {matchPIDs: [{operator: In, values: [2]}]}
        kprobes:
        - call: sys_write
          selectors:
          - macros: [a, b]
        """)
    (err,) = _errors(text)
    assert (err.code, err.line) == ("macro-conflict", 12)
    assert "matchPIDs is set both by macro 'a' and by macro 'b'" in err.message


def test_macro_cannot_use_macros_and_errors_in_unused_macros_are_reported() -> None:
    text = _doc("""
        selectorsMacros:
          a: {macros: [b]}
          b: {matchArgs: [{index: 0, operator: Nope, values: ["1"]}]}
        """)
    errs = _errors(text)
    assert [(e.code, e.line) for e in errs] == [("bad-value", 7), ("unknown-operator", 8)]


# --------------------------------------------------------------------------
# rateLimit


def _post(rate: str, scope: str = "") -> tuple[float | None, str | None]:
    pol = load_str(_doc(f"""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Post
              rateLimit: {rate}
              {scope}
        """))
    act = pol.spec.kprobes[0].selectors[0].match_actions[0]
    return act.rate_limit, act.rate_limit_scope


@pytest.mark.parametrize(("text", "seconds"), [
    ('"5m"', 300.0), ('"30s"', 30.0), ('"1h"', 3600.0), ('"10"', 10.0), ("10", 10.0), ("2M", 120.0),
    ("0", 0.0), ('"90S"', 90.0), ("24h", 86400.0),
])
def test_rate_limit_parsing(text: str, seconds: float) -> None:
    assert _post(text) == (seconds, "thread")


@pytest.mark.parametrize("text", ['"5x"', "m", '"1.5m"', '"-1"', '""', "5 m", "true", "1e3"])
def test_rate_limit_rejects_bad_durations(text: str) -> None:
    errs = _errors(_doc(f"""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - action: Post
              rateLimit: {text}
        """))
    assert len(errs) == 1 and errs[0].code in ("bad-value", "wrong-type") and errs[0].line == 11


def test_rate_limit_scope() -> None:
    assert _post("1m", "rateLimitScope: global") == (60.0, "global")
    (err,) = _errors(_doc("""
        kprobes:
        - call: sys_write
          selectors:
          - matchActions:
            - {action: Post, rateLimit: 1m, rateLimitScope: cluster}
        """))
    assert err.code == "unknown-value" and "thread, process, global" in err.message


# --------------------------------------------------------------------------
# Value parsers shared with the compiler


@pytest.mark.parametrize(("text", "kw", "value"), [
    ("0x40", {}, 64), ("0o17", {}, 15), ("017", {}, 15), ("0b101", {}, 5), ("1_000", {}, 1000),
    ("-1", {"bits": 32}, -1), ("4294967295", {"bits": 32, "signed": False}, 2**32 - 1), ("0", {}, 0),
    ("42", {"base0": False}, 42),
])
def test_parse_int_accepts_go_syntax(text: str, kw: dict, value: int) -> None:
    assert vocab.parse_int(text, **kw) == value


@pytest.mark.parametrize(("text", "kw"), [
    ("08", {}), ("0x", {}), ("1__0", {}), ("_1", {}), ("", {}), (" 1", {}), ("-1", {"signed": False}),
    ("2147483648", {"bits": 32}), ("0x10", {"base0": False}), ("1.0", {}),
])
def test_parse_int_rejects(text: str, kw: dict) -> None:
    with pytest.raises(ValueError):
        vocab.parse_int(text, **kw)
