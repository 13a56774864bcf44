"""Guest-side tests: they run only inside the VM that tests/vm/run.py boots
(KERNEYE_IN_VM=1), where BPF-LSM, kprobes and fentry work. On the host the
whole directory is skipped; tests/kernel/test_vm_lsm.py runs it in the VM."""
from __future__ import annotations

import os

import pytest

IN_VM = os.environ.get("KERNEYE_IN_VM") == "1"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if IN_VM:
        return
    skip = pytest.mark.skip(reason="guest-side test: runs inside the qemu VM (tests/kernel/test_vm_lsm.py, make test-vm)")
    for item in items:
        if "/tests/vm/" in str(item.fspath):
            item.add_marker(skip)
