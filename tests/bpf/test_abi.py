"""The kernel/user ABI: the committed ctypes mirror against the BTF of the
compiled objects (STYLE.md §6.2 rule 4). No root, no kernel: reading BTF
is pure Python; only the last test compiles, with clang-16.

After changing bpf/include/kerneye/abi.h: `make -C bpf && make abi`.
"""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import types
from pathlib import Path

import pytest

from kerneye.abi import _generated, btfcheck
from kerneye.abi.gen import generate
from kerneye.errors import LayoutMismatch

ROOT = Path(__file__).resolve().parents[2]
BPF = ROOT / "bpf"
OUTPUT = BPF / ".output"
ANCHOR = OUTPUT / "abi_anchor.bpf.o"
BASE = OUTPUT / "base.bpf.o"
HEADER = BPF / "include" / "kerneye" / "abi.h"
MIRROR = ROOT / "src" / "kerneye" / "abi" / "_generated.py"

pytestmark = pytest.mark.skipif(not ANCHOR.exists(), reason=f"{ANCHOR.relative_to(ROOT)} not built (make -C bpf)")
needs_clang = pytest.mark.skipif(shutil.which("clang-16") is None or shutil.which("make") is None,
                                 reason="needs clang-16 and make to compile BPF objects")

STRUCT_NAMES = {"msg_common", "msg_execve_key", "msg_cred", "msg_ns", "msg_exec", "msg_exit", "msg_clone",
                "execve_map_value"}


def _stale_hint(obj: Path) -> str:
    if obj.stat().st_mtime < HEADER.stat().st_mtime:
        return f" ({obj.name} is older than abi.h: rebuild with `make -C bpf`, then `make abi`)"
    return " (run `make abi` and commit the result)"


def _mirror_from_text(text: str, name: str = "mutated_mirror") -> types.ModuleType:
    mod = types.ModuleType(name)
    exec(compile(text, f"<{name}>", "exec"), mod.__dict__)
    return mod


def _mutate_msg_exit_code(text: str) -> str:
    """Widen msg_exit.code to 64 bits, inside the MsgExit class only."""
    cls = re.search(r"^class MsgExit\(ctypes\.Structure\):\n(?:    .*\n|\n)*?    \]\n", text, re.M)
    assert cls, "MsgExit not found in the generated mirror"
    body = cls.group(0)
    new_body = body.replace('("code", ctypes.c_uint32)', '("code", ctypes.c_uint64)')
    assert new_body != body, "MsgExit has no u32 'code' field any more; update this test"
    return text[: cls.start()] + new_body + text[cls.end() :]


# (a) ------------------------------------------------------------------------

def test_regenerated_mirror_is_byte_identical() -> None:
    fresh = generate(str(ANCHOR), str(HEADER))
    committed = MIRROR.read_text()
    assert fresh == committed, "src/kerneye/abi/_generated.py differs from what the BTF gives" + _stale_hint(ANCHOR)


def test_generated_mirror_shape() -> None:
    text = MIRROR.read_text()
    assert text.startswith('"""ctypes mirror of bpf/include/kerneye/abi.h.')
    assert "DO NOT EDIT" in text[:400]
    names = {getattr(o, "C_NAME", None) for o in vars(_generated).values()}
    assert STRUCT_NAMES <= names
    assert {"msg_op", "exec_flag", "stat_idx"} <= names
    assert ctypes.sizeof(_generated.MsgCommon) == 16
    assert ctypes.sizeof(_generated.MsgExec) % 8 == 0


# (b) ------------------------------------------------------------------------

def test_btfcheck_passes_on_the_anchor() -> None:
    try:
        n = btfcheck.check(str(ANCHOR))
    except LayoutMismatch as e:
        pytest.fail(str(e) + _stale_hint(ANCHOR))
    mirrored = [o for o in vars(_generated).values() if getattr(o, "C_NAME", None)]
    assert n == len(mirrored)  # every mirrored type is in the anchor


@pytest.mark.skipif(not BASE.exists(), reason="bpf/.output/base.bpf.o not built (make -C bpf)")
def test_btfcheck_passes_on_base_object() -> None:
    try:
        n = btfcheck.check(str(BASE), require_all=False)
    except LayoutMismatch as e:
        pytest.fail(str(e) + _stale_hint(BASE))
    assert n >= 3  # at least the three messages it emits


@pytest.mark.skipif(not BASE.exists(), reason="bpf/.output/base.bpf.o not built (make -C bpf)")
def test_btfcheck_require_all_reports_absent_types() -> None:
    # the base object need not carry every mirrored type; if it lacks any,
    # the strict check names it
    absent = _mirror_from_text(MIRROR.read_text() + "\n\nclass NotInBtf(ctypes.Structure):\n"
                               "    C_NAME = \"no_such_struct\"\n    _fields_ = [(\"x\", ctypes.c_uint32)]\n")
    with pytest.raises(LayoutMismatch, match="struct no_such_struct is mirrored but absent"):
        btfcheck.check(str(BASE), mirror=absent)
    assert btfcheck.check(str(BASE), mirror=absent, require_all=False) >= 3


# (c) ------------------------------------------------------------------------

def test_mutated_mirror_is_rejected() -> None:
    text = MIRROR.read_text()
    assert btfcheck.check(str(ANCHOR), mirror=_mirror_from_text(text, "unchanged_mirror")) > 0
    bad = _mirror_from_text(_mutate_msg_exit_code(text))
    assert ctypes.sizeof(bad.MsgExit) != ctypes.sizeof(_generated.MsgExit)
    with pytest.raises(LayoutMismatch) as ei:
        btfcheck.check(str(ANCHOR), mirror=bad)
    msg = str(ei.value)
    assert "msg_exit" in msg
    assert f"size {ctypes.sizeof(_generated.MsgExit)} in BTF, {ctypes.sizeof(bad.MsgExit)} in Python" in msg
    for other in STRUCT_NAMES - {"msg_exit"}:
        assert f"struct {other}:" not in msg  # only the broken struct is blamed


def test_mutated_enum_is_rejected() -> None:
    text = MIRROR.read_text()
    assert "    CLONE = 23\n" in text
    bad = _mirror_from_text(text.replace("    CLONE = 23\n", "    CLONE = 24\n", 1))
    with pytest.raises(LayoutMismatch, match="enum msg_op"):
        btfcheck.check(str(ANCHOR), mirror=bad)


# (d) ------------------------------------------------------------------------

# Each change compiles (the C code uses field names, and the static size
# asserts still hold) but moves an offset. base.bpf.o carries in its BTF only
# the types its programs keep (msg_exec and what it embeds, not msg_exit), so
# it is checked only for the change it can see.
HEADER_CHANGES = [
    pytest.param("msg_exit", r"(struct msg_exit \{[^}]*?)__u32 code;", r"\1__u64 code;",
                 ["abi_anchor.bpf.o"], id="msg_exit-code-u64"),
    pytest.param("msg_exec", r"(struct msg_exec \{[^}]*?)(\t__u32 tid;[^\n]*\n)(\t__u32 ppid;[^\n]*\n)",
                 r"\1\3\2", ["abi_anchor.bpf.o", "base.bpf.o"], id="msg_exec-swap-tid-ppid"),
]


@needs_clang
@pytest.mark.parametrize("struct, pattern, repl, objects", HEADER_CHANGES)
def test_object_built_from_changed_header_is_rejected(tmp_path: Path, struct: str, pattern: str, repl: str,
                                                      objects: list[str]) -> None:
    copy = tmp_path / "bpf"
    shutil.copytree(BPF, copy, ignore=shutil.ignore_patterns(".output"))
    hdr = copy / "include" / "kerneye" / "abi.h"
    changed, n = re.subn(pattern, repl, hdr.read_text(), count=1, flags=re.S)
    assert n == 1, f"struct {struct} no longer matches {pattern!r}; update this test"
    hdr.write_text(changed)
    r = subprocess.run(["make", "-s", "-C", str(copy)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"building the modified copy failed:\n{r.stdout}\n{r.stderr}"

    for name in objects:
        obj = copy / ".output" / name
        with pytest.raises(LayoutMismatch) as ei:
            btfcheck.check(str(obj), require_all=name == "abi_anchor.bpf.o")
        assert f"struct {struct}:" in str(ei.value), name
