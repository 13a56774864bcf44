"""Shared fixtures. Kernel tests skip (never fail) when the machine cannot
run them: not root, no BTF, objects not built."""
from __future__ import annotations

import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))
sys.path.insert(0, os.path.join(ROOT, "tests"))

BPF_DIR = os.path.join(ROOT, "bpf", ".output")
PROGS = os.path.join(ROOT, "tests", "progs", ".output")


def kernel_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to load BPF programs"
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "kernel has no BTF"
    if not os.path.exists(os.path.join(BPF_DIR, "base.bpf.o")):
        return "BPF objects not built (make -C bpf)"
    if not os.path.exists(os.path.join(PROGS, "forkexec")):
        return "test programs not built (make -C tests/progs)"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = kernel_skip_reason()
    if reason is None:
        return
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))
