"""BPF-LSM enforcement, tested where it works: in a qemu (TCG) VM.

This host's kernel refuses LSM programs (EPERM), so the first tests check
that kerneye says so plainly; the last two boot Debian's kernel with
lsm=...,bpf over this very root file system (tests/vm/run.py), once, and
run there both the LSM back-end tests (tests/vm/) and the agent-level
enforcement tests (tests/kernel/test_enforce_agent.py, the same file this
host runs, whose assertions follow the back end the manager picks). They
fail if any guest test fails or skips without an accepted reason, and name
the tests.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Any, Iterator

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
    with pytest.raises(KerneyeError, match="not a cgroup-v2 directory"):
        enf.deny_module_load(4, cgroups=str(tmp_path))
    assert enf.rules() == []
    with pytest.raises(KerneyeError, match="not started"):
        enf.read_decisions()


VM_TIMEOUT = 900
LSM_SUITE = "tests.vm.test_lsm"
AGENT_SUITE = "tests.kernel.test_enforce_agent"
KPROBE_SUITE = "tests.vm.test_kprobe_agent"
#: guest tests that may skip, and the reason they must give: a property of
#: the host kernel that the VM's kernel does not have
ACCEPTED_SKIPS = {
    (AGENT_SUITE, "test_unenforceable_rules_are_refused_whole"): "BPF-LSM is available on this kernel",
}


@pytest.fixture(scope="module")
def vm() -> Iterator[Any]:
    """One boot for both guest suites (~10 s of boot, and every Python
    start-up costs seconds under TCG)."""
    run = _runner()
    reason = run.skip_reason()
    if reason:
        pytest.skip(f"cannot boot the test VM: {reason}")
    r = run.run_vm(timeout=VM_TIMEOUT)
    where = f" (console log: {r.console_path})" if r.console_path else ""
    print(f"kerneye-vm: {len(r.tests())} guest tests, rc={r.rc}, {r.seconds:.1f} s wall")
    assert not r.timed_out, f"the VM did not finish within {VM_TIMEOUT} s{where}; console tail:\n{r.console[-3000:]}"
    assert r.junit is not None, f"the guest wrote no junit report{where}; console tail:\n{r.console[-3000:]}"
    yield r


def _check_suite(r: Any, suite: str, must_pass: set[str], at_least: int) -> dict[str, Any]:
    where = f" (console log: {r.console_path})" if r.console_path else ""
    tests = {t.name: t for t in r.tests() if t.file == suite}
    bad = [f"{t.name}: {t.outcome}: {t.message}" for t in tests.values()
           if t.outcome in ("failed", "error")
           or (t.outcome == "skipped" and ACCEPTED_SKIPS.get((suite, t.name.split("[")[0]), "\0") not in t.message)]
    assert not bad, f"{suite} in the VM{where}:\n" + "\n".join(bad) + f"\n--- console tail ---\n{r.console[-4000:]}"
    assert len(tests) >= at_least, f"only {len(tests)} tests of {suite} ran in the VM{where}"
    missing = {n for n in must_pass if n not in tests or tests[n].outcome != "passed"}
    assert not missing, f"{suite}: these did not pass in the VM: {sorted(missing)}"
    return tests


@pytest.mark.slow
def test_guest_suite_passes_in_the_vm(vm: Any) -> None:
    # the feature probes pick kprobe/fentry/lsm on a kernel that has them
    _check_suite(vm, LSM_SUITE, {"test_feature_probe_finds_backend[kprobe]",
                                 "test_feature_probe_finds_backend[fentry]",
                                 "test_feature_probe_finds_backend[lsm]", "test_keep_on_exit_survives_sigkill",
                                 "test_cgroup_scoped_open_denied_inside_only",
                                 "test_cgroup_scoped_raw_sockets_and_shared_slots",
                                 "test_cgroup_scoped_module_load"}, 24)


@pytest.mark.slow
def test_agent_enforcement_suite_passes_in_the_vm(vm: Any) -> None:
    """The agent picks BPF-LSM where it can, and the agent-level tests hold
    there too: the BPF-LSM-only ones (module/BPF load deny, memfd exec
    denied by an allow list, a pinned file deny surviving SIGKILL) ran and
    passed."""
    tests = _check_suite(vm, AGENT_SUITE, {
        "test_enforcement_policy_denies_open_reports_and_lets_go",
        "test_each_rule_gets_the_strongest_back_end", "test_module_and_bpf_loads_denied_by_bpf_lsm",
        "test_exec_allow_list_denies_memfd_and_copies_with_bpf_lsm", "test_module_load_denied_in_a_cgroup_only",
        "test_agent_killed_with_sigkill[keep-enforcement-on-exit]", "test_agent_killed_with_sigkill[default]"}, 20)
    print("kerneye-vm: mechanisms chosen in the guest:",
          tests["test_each_rule_gets_the_strongest_back_end"].properties.get("mechanisms"))


@pytest.mark.slow
def test_kprobe_suite_passes_in_the_vm(vm: Any) -> None:
    """TracingPolicies on kernel functions (kprobes, a kretprobe) through a
    real agent on Debian's 6.1: every test ran and passed (none skipped)."""
    _check_suite(vm, KPROBE_SUITE, {"test_security_file_open_reports_the_file",
                                    "test_kretprobe_reports_the_return_value",
                                    "test_second_register_and_int_argument",
                                    "test_tcp_connect_reports_the_socket",
                                    "test_policies_listed_and_missing_function_refused"}, 5)
