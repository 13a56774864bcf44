"""kprobes on kernel functions (`syscall: false`): the compile path, without
a kernel. `features={"kprobe": None}` stands for a kernel whose kprobe
probe passed; the set of traceable functions is passed in. The kernel side
runs in the qemu VM (tests/vm/test_kprobe_agent.py)."""
from __future__ import annotations

import textwrap

import pytest

from kerneye.abi.types import GenArgSrc, GenArgType, GenFilterKind, GenOp
from kerneye.errors import KerneyeError
from kerneye.policy import loader
from kerneye.policy.compile import HK_KPROBE, Compiler, traceable_functions

FUNCS = frozenset({"security_file_open", "tcp_connect", "fd_install", "security_bprm_check"})
WITH_KPROBES = {"kprobe": None, "fentry": None, "lsm": None, "rawtp": None}


def compile_(body: str, features: dict[str, str | None] | None = None, name: str = "kp") -> list:
    text = (f"apiVersion: cilium.io/v1alpha1\nkind: TracingPolicy\nmetadata:\n  name: {name}\nspec:\n"
            + textwrap.indent(textwrap.dedent(body), "  "))
    tp = loader.load_str(text, "policy.yaml")
    c = Compiler({}, WITH_KPROBES if features is None else features, kernel_functions=FUNCS)
    return c.compile(tp).hooks


FILE_OPEN = """\
kprobes:
- call: security_file_open
  syscall: false
  args:
  - index: 0
    type: file
  selectors:
  - matchArgs:
    - index: 0
      operator: Prefix
      values: [/tmp/x/]
"""


def test_file_arg_is_a_kernel_pointer_read_from_a_register() -> None:
    [h] = compile_(FILE_OPEN)
    assert h.kind == HK_KPROBE and h.attach == ("security_file_open",) and h.exit_attach is None
    assert h.event_kind == "process_kprobe" and h.header == {"function_name": "security_file_open"}
    [(_spec, info, g)] = h.args
    assert (info.type, info.json_key, info.user) == (GenArgType.FILE, "file_arg", False)
    assert g["src"] == GenArgSrc.REG and g["index"] == 0 and g["user"] == 0
    [sel] = h.selectors
    [f] = sel.filters
    assert f.kind == GenFilterKind.ARG and f.op == GenOp.PREFIX and f.strs == [("prefix", b"/tmp/x/")]


def test_sock_arg_and_daddr_filter() -> None:
    [h] = compile_("""\
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
              values: [127.0.0.1]
        """)
    [(_s, info, g)] = h.args
    assert info.type == GenArgType.KSOCK and info.json_key == "sock_arg" and g["user"] == 0
    [f] = h.selectors[0].filters
    assert f.op == GenOp.DADDR and f.addrs == [(b"\0" * 10 + b"\xff\xff" + bytes([127, 0, 0, 1]), 128)]


def test_kretprobe_has_an_exit_attachment_and_a_return_type() -> None:
    [h] = compile_("""\
        kprobes:
        - call: fd_install
          syscall: false
          return: true
          args:
          - index: 0
            type: int
          - index: 1
            type: file
          returnArg:
            index: 0
            type: int
        """)
    assert h.is_return and h.exit_attach == ("fd_install",)
    assert h.ret is not None and h.ret.json_key == "int_arg"
    assert [i.type for _s, i, _g in h.args] == [GenArgType.S32, GenArgType.FILE]
    assert all(g["src"] == GenArgSrc.REG and g["user"] == 0 for _s, _i, g in h.args)


def test_a_list_of_functions_gives_one_hook_each() -> None:
    hooks = compile_("""\
        lists:
        - name: fns
          values: [security_file_open, security_bprm_check]
        kprobes:
        - call: list:fns
          syscall: false
        """)
    assert [h.attach for h in hooks] == [("security_file_open",), ("security_bprm_check",)]


def test_unknown_function_is_refused_with_its_line() -> None:
    with pytest.raises(KerneyeError) as ei:
        compile_("""\
            kprobes:
            - call: no_such_function_xyz
              syscall: false
            """)
    msg = str(ei.value)
    assert "policy.yaml:7" in msg and "spec.kprobes[0]" in msg
    assert "no_such_function_xyz: no traceable kernel function" in msg and "callNotFound" in msg
    assert "\n" not in msg


def test_unknown_function_skipped_with_ignore_call_not_found() -> None:
    hooks = compile_("""\
        lists:
        - name: fns
          values: [no_such_function_xyz, tcp_connect]
        kprobes:
        - call: list:fns
          syscall: false
          ignore:
            callNotFound: true
        """)
    assert [h.attach for h in hooks] == [("tcp_connect",)]


def test_register_index_limit() -> None:
    with pytest.raises(KerneyeError, match="index 5 is out of range: kprobes take indexes 0 to 4"):
        compile_("""\
            kprobes:
            - call: tcp_connect
              syscall: false
              args:
              - index: 5
                type: sock
            """)


@pytest.mark.parametrize("features, needs", [
    ({"kprobe": "kprobe programs are unavailable on this kernel (x); the kernel needs CONFIG_KPROBES",
      "fentry": "fentry programs are unavailable (y)", "lsm": "z"}, "needs kprobe programs: kprobe programs are unavailable"),
    # fentry there, kprobes not: kerneye does not trace with fentry (yet)
    ({"kprobe": "kprobe programs are unavailable on this kernel (x)", "fentry": None, "lsm": None},
     "tracing with fentry programs is not implemented by kerneye"),
])
def test_without_kprobes_the_probe_reason_is_given(features: dict[str, str | None], needs: str) -> None:
    with pytest.raises(KerneyeError) as ei:
        compile_(FILE_OPEN, features)
    assert "kernel function security_file_open (syscall: false)" in str(ei.value) and needs in str(ei.value)


def test_syscall_hooks_are_unchanged_with_kprobes() -> None:
    """syscall: true still goes to the syscall tracepoints, not to a kprobe."""
    [h] = compile_("""\
        kprobes:
        - call: sys_openat
          syscall: true
          args:
          - index: 1
            type: string
        """)
    assert h.kind != HK_KPROBE and h.attach == ("syscalls", "sys_enter_openat")


def test_traceable_functions_of_this_kernel() -> None:
    """The look-up reads available_filter_functions or /proc/kallsyms; a
    function every kernel has is in it."""
    fns = traceable_functions()
    if not fns:
        pytest.skip("neither available_filter_functions nor /proc/kallsyms is readable here")
    assert "do_exit" in fns or "do_group_exit" in fns


def test_struct_socket_is_refused_with_the_alternative() -> None:
    with pytest.raises(KerneyeError, match="type 'socket' .* use type sock"):
        compile_("""\
            kprobes:
            - call: tcp_connect
              syscall: false
              args:
              - index: 0
                type: socket
            """)
