"""TracingPolicy Override selectors -> enforcement rules (kerneye.enforce.translate),
and the EnforcementPolicy kind (kerneye.policy.enforcement). No kernel."""
from __future__ import annotations

import errno
import textwrap

import pytest

from kerneye.enforce import translate
from kerneye.enforce.rules import Rule
from kerneye.policy import enforcement, loader
from kerneye.policy.errors import PolicyError


def tp(body: str, name: str = "t") -> loader.TracingPolicy:  # type: ignore[name-defined]
    text = f"apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec:\n" + \
        textwrap.indent(textwrap.dedent(body), "  ")
    return loader.load_str(text, "p.yaml")


def split(body: str) -> tuple[object, list[Rule]]:
    rest, plan = translate.split(tp(body), "enforce")
    return rest, (plan.rules if plan else [])


def err(body: str) -> PolicyError:
    with pytest.raises(PolicyError) as e:
        split(body)
    return e.value


OPENAT = """
kprobes:
- call: sys_openat
  syscall: true
  args:
  - index: 0
    type: int
  - index: 1
    type: string
    label: path
  - index: 2
    type: int
  selectors:
"""


def test_policy_without_override_is_untouched() -> None:
    p = tp(OPENAT + "  - matchArgs:\n    - index: 1\n      operator: Equal\n      values: [/etc/x]\n")
    rest, plan = translate.split(p, "enforce")
    assert rest is p and plan is None


def test_openat_equal_and_prefix_become_open_rules() -> None:
    rest, rules = split(OPENAT + """\
  - matchArgs:
    - index: 1
      operator: Equal
      values: [/etc/shadow]
    matchActions:
    - action: Override
      argError: -13
  - matchArgs:
    - index: 1
      operator: Prefix
      values: [/etc/ssh/]
    matchActions:
    - action: Override
""")
    assert rest is None  # every selector enforced: nothing left to trace
    assert [(r.op, r.paths, r.errno) for r in rules] == [("open", ("/etc/shadow",), errno.EACCES),
                                                          ("open", ("/etc/ssh/",), errno.EPERM)]
    r = rules[0]
    assert r.report.kind == "process_kprobe" and r.report.function_name == "__x64_sys_openat"
    assert r.report.arg_slots == (("", "int", ""), ("path", "string", "path"), ("flags", "int", ""))
    assert r.where == "spec.kprobes[0].selectors[0]"


def test_write_flags_make_a_write_rule_and_other_selectors_stay_traced() -> None:
    rest, rules = split(OPENAT + """\
  - matchArgs:
    - index: 1
      operator: Equal
      values: [/etc/passwd]
    - index: 2
      operator: Mask
      values: ["1"]
    matchActions:
    - action: Override
  - matchArgs:
    - index: 1
      operator: Prefix
      values: [/tmp/]
""")
    assert [r.op for r in rules] == ["write"]
    assert rest is not None and len(rest.spec.kprobes[0].selectors) == 1  # type: ignore[attr-defined]


def test_lsm_exec_with_binaries_and_allow_list() -> None:
    _, rules = split("""
lsmhooks:
- hook: bprm_check_security
  args:
  - index: 0
    type: linux_binprm
  selectors:
  - matchBinaries:
    - operator: NotIn
      values: [/usr/bin/bash]
    matchArgs:
    - index: 0
      operator: NotEqual
      values: [/usr/bin/ls, /usr/bin/cat]
    matchActions:
    - action: Override
""")
    (r,) = rules
    assert (r.op, r.action, r.paths, r.binaries, r.binaries_not) == \
        ("exec", "allow", ("/usr/bin/ls", "/usr/bin/cat"), ("/usr/bin/bash",), True)
    assert r.report.kind == "process_lsm" and r.report.function_name == "bprm_check_security"


def test_tcp_connect_daddr_dport_and_exceptions() -> None:
    _, rules = split("""
kprobes:
- call: tcp_connect
  syscall: false
  args:
  - index: 0
    type: sock
  selectors:
  - matchArgs:
    - index: 0
      operator: NotDAddr
      values: [127.0.0.0/8, 10.1.0.0/16]
    - index: 0
      operator: DPort
      values: ["22", "8000:8080"]
    matchActions:
    - action: Override
""")
    (r,) = rules
    assert r.op == "connect" and r.cidrs == () and r.except_cidrs == ("127.0.0.0/8", "10.1.0.0/16")
    assert r.ports == ((22, 22), (8000, 8080))


def test_socket_raw_and_module_and_bpf() -> None:
    _, rules = split("""
kprobes:
- call: sys_socket
  syscall: true
  args:
  - index: 0
    type: int
  - index: 1
    type: int
  selectors:
  - matchArgs:
    - index: 0
      operator: Equal
      values: ["17"]
    - index: 1
      operator: Equal
      values: ["3"]
    matchActions:
    - action: Override
- call: sys_finit_module
  syscall: true
  selectors:
  - matchActions:
    - action: Override
- call: security_bpf
  syscall: false
  args:
  - index: 0
    type: int
  selectors:
  - matchArgs:
    - index: 0
      operator: Equal
      values: ["5"]
    matchActions:
    - action: Override
""")
    assert [(r.op, r.family) for r in rules] == [("raw_socket", "packet"), ("module", "any"), ("bpf", "any")]


@pytest.mark.parametrize(("body", "fragment", "line"), [
    ("""
kprobes:
- call: sys_write
  syscall: true
  selectors:
  - matchActions:
    - action: Override
""", "Override on sys_write", 12),
    (OPENAT + """\
  - matchArgs:
    - index: 1
      operator: Postfix
      values: [shadow]
    matchActions:
    - action: Override
""", "Postfix on a path with Override", 20),
    (OPENAT + """\
  - matchArgs:
    - index: 1
      operator: Prefix
      values: [/etc/pass]
    matchActions:
    - action: Override
""", "must name a directory", 20),
    (OPENAT + """\
  - matchPIDs:
    - operator: In
      values: [1]
    matchActions:
    - action: Override
""", "matchPIDs cannot be combined with Override", 19),
    (OPENAT + """\
  - matchActions:
    - action: Override
""", "needs a matchArgs path filter", 19),
    ("""
kprobes:
- call: sys_socket
  syscall: true
  args:
  - index: 1
    type: int
  selectors:
  - matchArgs:
    - index: 1
      operator: Equal
      values: ["1"]
    matchActions:
    - action: Override
""", "raw sockets", 14),
])
def test_unenforceable_override_is_a_located_error(body: str, fragment: str, line: int) -> None:
    e = err(body)
    assert fragment in str(e), str(e)
    assert e.line == line, (e.line, str(e))
    assert e.file == "p.yaml"


EP = """\
apiVersion: kerneye.io/v1alpha1
kind: EnforcementPolicy
metadata:
  name: lock
spec:
"""


def ep(spec: str) -> enforcement.RulePlan:  # type: ignore[name-defined]
    return enforcement.load_str(EP + textwrap.indent(textwrap.dedent(spec), "  "), "e.yaml")


def test_enforcement_policy_every_section() -> None:
    plan = ep("""
mode: monitor
errno: EACCES
scope:
  cgroups: [/sys/fs/cgroup/unified/x]
  containers: [3f2a9c0d]
exec:
  deny: [/usr/bin/nc, "sha256:""" + "a" * 64 + """"]
  allow: [/usr/bin/python3]
  mounts: [/home]
files:
- paths: [/etc/shadow, /etc/ssh/]
  access: write
  exceptBinaries: [/usr/sbin/sshd]
protect: [/usr/sbin/kerneye]
network:
- action: allow
  operations: [connect, bind]
  cidrs: [10.0.0.0/8]
  ports: [22, 8000-9000]
  protocol: tcp
  binaries: [/usr/bin/ssh]
rawSockets: deny
modules: deny
bpf: deny
sysctls:
  deny: [kernel.modprobe, net/ipv4/]
devices:
  deny: ["c 1:5 rwm", "b *:* m"]
""")
    assert plan.mode == "monitor" and plan.kind == "EnforcementPolicy" and plan.policy == "lock"
    ops = [(r.op, r.action) for r in plan.rules]
    assert ops == [("exec", "deny"), ("exec", "allow"), ("write", "deny"), ("protect", "deny"),
                   ("connect", "allow"), ("bind", "allow"), ("raw_socket", "deny"), ("module", "deny"),
                   ("bpf", "deny"), ("sysctl", "deny"), ("device", "deny")]
    by = {r.op: r for r in plan.rules}
    assert all(r.errno == errno.EACCES for r in plan.rules)
    assert all(r.scope == ("/sys/fs/cgroup/unified/x", "container:3f2a9c0d") for r in plan.rules)
    assert plan.rules[0].paths == ("/usr/bin/nc", "sha256:" + "a" * 64)
    assert plan.rules[1].mounts == ("/home",)
    assert by["write"].binaries == ("/usr/sbin/sshd",) and by["write"].binaries_not
    assert by["connect"].ports == ((22, 22), (8000, 9000)) and by["connect"].protocol == "tcp"
    assert by["sysctl"].sysctls == ("kernel/modprobe", "net/ipv4/")
    assert by["device"].devices == (("c", 1, 5, "rwm"), ("b", -1, -1, "m"))
    assert by["exec"].report.function_name == "bprm_check_security"


@pytest.mark.parametrize(("spec", "fragment", "line"), [
    ("files:\n- paths: [etc/shadow]\n", "must be an absolute path", 7),
    ("files:\n- paths: [/x]\n  acess: write\n", "did you mean 'access'", 8),
    ("network:\n- ports: [70000]\n", "not a port", 7),
    ("network:\n- cidrs: [10.0.0.300/8]\n", "not an IP address", 7),
    ("devices:\n  deny: [\"x 1:5 r\"]\n", "TYPE MAJOR:MINOR ACCESS", 7),
    ("exec:\n  deny: [\"sha256:abc\"]\n", "64 hex digits", 7),
    ("mode: audit\n", "mode must be one of monitor, enforce", 6),
    ("scope:\n  containers: [xyz]\n", "not a container id", 7),
    ("{}\n", "prevents nothing", 6),
    ("files:\n- paths: [/x]\n  binaries: [/a]\n  exceptBinaries: [/b]\n", "not both", 9),
    ("files:\n- paths: [/x]\n  action: allow\n", "action allow needs binaries", 8),
])
def test_enforcement_policy_errors_are_located(spec: str, fragment: str, line: int) -> None:
    with pytest.raises(PolicyError) as e:
        ep(spec)
    assert fragment in str(e.value), str(e.value)
    assert f"e.yaml:{line}:" in str(e.value), str(e.value)


def test_file_allow_means_only_these_binaries() -> None:
    (r,) = ep("files:\n- paths: [/etc/shadow]\n  action: allow\n  binaries: [/usr/bin/passwd]\n").rules
    assert (r.op, r.action, r.binaries, r.binaries_not) == ("open", "deny", ("/usr/bin/passwd",), True)


def test_routing_by_kind() -> None:
    assert isinstance(enforcement.load_any(EP + "  rawSockets: deny\n"), enforcement.RulePlan)
    # the kind is read from the document, whatever its YAML style
    flow = '{apiVersion: kerneye.io/v1alpha1, "kind": EnforcementPolicy, metadata: {name: x}, spec: {bpf: deny}}'
    assert isinstance(enforcement.load_any(flow), enforcement.RulePlan)
    tp = enforcement.load_any("apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata: {name: t}\n"
                              "spec: {tracepoints: [{subsystem: sched, event: sched_process_exit}]}\n")
    assert isinstance(tp, loader.TracingPolicy)
    with pytest.raises(PolicyError, match="valid kinds: .*EnforcementPolicy"):
        enforcement.load_any("apiVersion: cilium.io/v1alpha1\nkind: Enforcement\nmetadata: {name: t}\nspec: {}\n")


def test_protect_hooks_read_the_file_parameter() -> None:
    # security_path_rename(old_dir, old_dentry, ...): the renamed file is parameter 1, as for unlink;
    # security_path_chmod(path, mode): parameter 0
    for call, idx in (("security_path_rename", 1), ("security_path_unlink", 1), ("security_path_chmod", 0)):
        _, rules = split(f"""
kprobes:
- call: {call}
  syscall: false
  args:
  - index: {idx}
    type: path
  selectors:
  - matchArgs:
    - index: {idx}
      operator: Equal
      values: [/etc/passwd]
    matchActions:
    - action: Override
""")
        assert [(r.op, r.paths) for r in rules] == [("protect", ("/etc/passwd",))], call
