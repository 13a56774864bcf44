"""Enforcement for some processes only: a container's cgroup, or chosen
callers, through the agent.

Files and exec on this kernel go to fanotify, whose marks are host-wide: the
responder checks the caller's cgroup-v2 path (/proc/PID/cgroup) and
executable before it denies. An exec policy bound to callers ("nginx may run
nothing") marks every executable mount and cannot use the allow-cache, so
each exec on the host is answered by the responder while it is loaded.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import yaml

from agentctl import AgentProc, decisions, tp
from agentctl import add_policy as add
from enfutil import CGROUP2

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(not os.path.isfile(os.path.join(CGROUP2, "cgroup.procs")),
                                 reason=f"no cgroup-v2 hierarchy at {CGROUP2}")]


def in_cgroup(cgroup: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && {script}'], capture_output=True,
                          text=True, timeout=20)


def test_file_rule_scoped_to_a_cgroup(agent: AgentProc, work: str, name: str, cgroup: str) -> None:
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write("x\n")
    add(agent, work, {"apiVersion": "kerneye.io/v1alpha1", "kind": "EnforcementPolicy", "metadata": {"name": name},
                      "spec": {"scope": {"cgroups": [cgroup]}, "files": [{"paths": [secret]}]}})
    r = in_cgroup(cgroup, f"cat {secret}")
    assert r.returncode == 1 and "Operation not permitted" in r.stderr, r
    assert subprocess.run(["cat", secret], capture_output=True).returncode == 0  # outside the cgroup
    [d] = decisions(agent, name)
    assert d["process"]["binary"].endswith("/cat") and d["enforcement"]["mechanism"] in ("fanotify", "bpf-lsm")


def _mysh(work: str) -> str:
    p = os.path.join(work, "mysh")
    shutil.copy("/bin/dash" if os.path.exists("/bin/dash") else "/bin/sh", p)
    return p


def test_override_on_execve_for_chosen_callers(agent: AgentProc, work: str, name: str) -> None:
    """Tetragon's "this binary may not spawn anything": matchBinaries and
    Override on sys_execve, no path filter."""
    mysh = _mysh(work)
    hook = {"call": "sys_execve", "syscall": True, "args": [{"index": 0, "type": "string"}],
            "selectors": [{"matchBinaries": [{"operator": "In", "values": [mysh]}],
                           "matchActions": [{"action": "Override", "argError": -1}]}]}
    add(agent, work, {"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicy", "metadata": {"name": name},
                      "spec": {"kprobes": [hook]}})
    r = subprocess.run([mysh, "-c", "/bin/true; echo rc=$?"], capture_output=True, text=True, timeout=20)
    assert "rc=126" in r.stdout, r
    r = subprocess.run(["/bin/sh", "-c", "/bin/true; echo rc=$?"], capture_output=True, text=True, timeout=20)
    assert "rc=0" in r.stdout, r  # other callers are not bound
    [d] = decisions(agent, name)
    assert d["process"]["binary"] == mysh
    assert d["args"] == [{"string_arg": "/usr/bin/true"}] or d["args"][0]["string_arg"].endswith("/true")
    assert d["action"] == "KPROBE_ACTION_OVERRIDE"
    assert tp(agent, "delete", name).returncode == 0
    r = subprocess.run([mysh, "-c", "/bin/true; echo rc=$?"], capture_output=True, text=True, timeout=20)
    assert "rc=0" in r.stdout, r


def test_exec_allow_list_for_chosen_callers(agent: AgentProc, work: str, name: str) -> None:
    mysh = _mysh(work)
    add(agent, work, {"apiVersion": "kerneye.io/v1alpha1", "kind": "EnforcementPolicy", "metadata": {"name": name},
                      "spec": {"exec": {"allow": ["/bin/true"], "binaries": [mysh]}}})
    r = subprocess.run([mysh, "-c", "/bin/true; echo a=$?; /bin/false; echo b=$?"], capture_output=True, text=True,
                       timeout=20)
    assert "a=0" in r.stdout and "b=126" in r.stdout, r
    assert subprocess.run(["/bin/false"]).returncode == 1  # this caller is not bound
    [d] = decisions(agent, name)
    assert d["args"][0]["linux_binprm_arg"]["path"].endswith("/false")
    assert d["enforcement"]["rule"] == "spec.exec.allow"


def test_empty_allow_list_without_callers_is_refused(agent: AgentProc, work: str, name: str) -> None:
    path = os.path.join(work, "p.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"apiVersion": "kerneye.io/v1alpha1", "kind": "EnforcementPolicy", "metadata": {"name": name},
                        "spec": {"exec": {"allow": []}}}, f)
    r = tp(agent, "add", path)
    assert r.returncode == 1 and "would stop every exec on the host" in r.stderr, r.stderr
    assert f"{path}:" in r.stderr


@pytest.mark.parametrize(("spec", "fragment"), [
    ({"files": [{"paths": ["/nonexistent/kerneye-x"]}]}, "spec.files[0]: /nonexistent/kerneye-x does not exist"),
    ({"files": [{"paths": ["/etc/hostname"], "binaries": ["/no/such/bin"]}]},
     "spec.files[0]: binaries: /no/such/bin does not exist"),
    ({"network": [{"cidrs": ["10.0.0.0/8"], "exceptBinaries": ["/nope"]}]},
     "spec.network[0]: binaries: /nope does not exist"),
    ({"scope": {"cgroups": ["/sys/fs/cgroup/unified/kerneye-nope"]}, "rawSockets": "deny"},
     "spec.scope: /sys/fs/cgroup/unified/kerneye-nope is not a cgroup-v2 directory"),
    ({"scope": {"containers": ["abcdef1234567890"]}, "rawSockets": "deny"},
     "spec.scope: no cgroup under"),
])
def test_rules_that_cannot_be_installed_name_the_rule(agent: AgentProc, work: str, name: str, spec: dict,
                                                       fragment: str) -> None:
    path = os.path.join(work, "bad.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"apiVersion": "kerneye.io/v1alpha1", "kind": "EnforcementPolicy", "metadata": {"name": name},
                        "spec": spec}, f)
    r = tp(agent, "add", path)
    assert r.returncode == 1, r
    assert r.stderr.startswith(f"kerneye: error: {path}: ") and fragment in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert "rule 1" not in r.stderr
    lst = tp(agent, "list", "-o", "json")
    assert name not in lst.stdout
