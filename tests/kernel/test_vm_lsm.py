"""BPF-LSM enforcement, tested where it works: in a qemu (TCG) VM.

This host's kernel refuses LSM programs (EPERM), so the first tests check
that kerneye says so plainly; the last one boots Debian's kernel with
lsm=...,bpf over this very root file system (tests/vm/run.py), runs the
guest tests in tests/vm/ there and fails if any of them fails or skips.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from kerneye.enforce.lsm import LsmEnforcer
from kerneye.errors import KerneyeError

pytestmark = pytest.mark.kernel
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _runner():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("kerneye_vm_run", os.path.join(ROOT, "tests", "vm", "run.py"))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look the module up
    spec.loader.exec_module(mod)
    return mod


def test_unavailable_lsm_is_a_clear_one_line_error() -> None:
    reason = LsmEnforcer.available()
    if reason is None:
        pytest.skip("BPF-LSM works on this host; the VM test covers the rest")
    assert "\n" not in reason and ("lsm" in reason.lower())
    with pytest.raises(KerneyeError) as ei:
        LsmEnforcer().start()
    assert "\n" not in str(ei.value) and str(ei.value).startswith("cannot start BPF-LSM enforcement: ")
    # and no traceback for a user of the module either
    code = ("from kerneye.enforce.lsm import LsmEnforcer\nfrom kerneye.errors import KerneyeError\n"
            "try:\n    LsmEnforcer().start()\nexcept KerneyeError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.count("\n") == 1 and "Traceback" not in r.stderr


def test_bad_rules_are_clear_errors(tmp_path: object) -> None:
    enf = LsmEnforcer()
    with pytest.raises(KerneyeError, match="cannot stat /nonexistent/file"):
        enf.deny_open(1, "/nonexistent/file")
    with pytest.raises(KerneyeError, match="mode must be one of"):
        enf.deny_raw_sockets(2, mode="loud")
    with pytest.raises(KerneyeError, match="at least one tgid"):
        enf.protect_tasks(3, [])
    with pytest.raises(KerneyeError, match="not started"):
        enf.read_decisions()


@pytest.mark.slow
def test_guest_suite_passes_in_the_vm() -> None:
    run = _runner()
    reason = run.skip_reason()
    if reason:
        pytest.skip(f"cannot boot the test VM: {reason}")
    r = run.run_vm(timeout=600)
    where = f" (console log: {r.console_path})" if r.console_path else ""
    assert not r.timed_out, f"the VM did not finish within 600 s{where}; console tail:\n{r.console[-3000:]}"
    assert r.junit is not None, f"the guest wrote no junit report{where}; console tail:\n{r.console[-3000:]}"
    suite = ET.fromstring(r.junit)
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    assert suite is not None
    tests, failures, errors, skipped = (int(suite.get(k, "0")) for k in ("tests", "failures", "errors", "skipped"))
    names = {c.get("name") for c in suite.iter("testcase")}
    assert r.rc == 0 and failures == 0 and errors == 0, f"guest tests failed{where}:\n{r.console[-6000:]}"
    assert skipped == 0, f"{skipped} guest tests skipped{where}:\n{r.console[-3000:]}"
    assert tests >= 20
    # the feature probes pick kprobe/fentry/lsm on a kernel that has them
    assert {"test_feature_probe_finds_backend[kprobe]", "test_feature_probe_finds_backend[fentry]",
            "test_feature_probe_finds_backend[lsm]", "test_keep_on_exit_survives_sigkill"} <= names
