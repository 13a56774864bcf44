from __future__ import annotations

import os
import shutil
import tempfile
from typing import Iterator

import pytest

from agentctl import AgentProc


@pytest.fixture(scope="module")
def agent() -> Iterator[AgentProc]:
    """One real agent per test module (loading takes ~1 s)."""
    d = tempfile.mkdtemp(prefix="kerneye-test-")
    a = AgentProc(d).start()
    try:
        yield a
    finally:
        a.stop()
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def world_dir() -> Iterator[str]:
    """A temp directory every uid can enter (for non-root processes)."""
    d = tempfile.mkdtemp(prefix="kerneye-cwd-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)
