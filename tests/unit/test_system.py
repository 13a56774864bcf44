"""Pre-flight checks give one clear line naming the fix."""
from __future__ import annotations

import pytest

from kerneye import system
from kerneye.errors import KerneyeError, NotSupported


def test_missing_btf_names_the_kernel_option(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(system, "BTF_PATH", str(tmp_path / "no-btf"))
    with pytest.raises(NotSupported) as e:
        system.check_btf()
    msg = str(e.value)
    assert "CONFIG_DEBUG_INFO_BTF=y" in msg and "\n" not in msg
    assert e.value.feature == "btf"


def test_missing_capabilities_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(system, "effective_caps", lambda: 0)
    with pytest.raises(KerneyeError) as e:
        system.check_privileges()
    msg = str(e.value)
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_SYS_ADMIN"):
        assert cap in msg
    assert "run it as root" in msg


def test_all_needed_capabilities_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    mask = sum(1 << bit for bit in system.NEEDED_CAPS)
    monkeypatch.setattr(system, "effective_caps", lambda: mask)
    system.check_privileges()


def test_second_agent_lock(tmp_path) -> None:
    a = system.AgentLock(str(tmp_path))
    a.acquire()
    try:
        b = system.AgentLock(str(tmp_path))
        with pytest.raises(KerneyeError) as e:
            b.acquire()
        assert "already running" in str(e.value)
    finally:
        a.release()
    # released: a new agent may start
    c = system.AgentLock(str(tmp_path))
    c.acquire()
    c.release()


def test_unmountable_target_names_the_command(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a path that is not a mount point and cannot be mounted on (a file)
    f = tmp_path / "not-a-dir"
    f.write_text("x")
    with pytest.raises(KerneyeError) as e:
        system.ensure_mount(str(f), "bpf")
    assert "mount -t bpf bpf" in str(e.value)
