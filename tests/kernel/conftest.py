from __future__ import annotations

import os
import shutil
import tempfile
import uuid
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


@pytest.fixture
def work(world_dir: str) -> str:
    """A temp directory for one test's files (policies, targets)."""
    return world_dir


@pytest.fixture
def cgroup() -> Iterator[str]:
    """A fresh child cgroup-v2 for one test, removed afterwards (modules
    that need one per module import enfutil's instead)."""
    from enfutil import make_cgroup, remove_cgroup

    path = make_cgroup()
    try:
        yield path
    finally:
        remove_cgroup(path)


@pytest.fixture
def name(agent: AgentProc) -> Iterator[str]:
    """A unique policy name; the policy is deleted after the test, whatever it left."""
    from agentctl import tp

    n = f"t-{uuid.uuid4().hex[:8]}"
    yield n
    tp(agent, "delete", n)
