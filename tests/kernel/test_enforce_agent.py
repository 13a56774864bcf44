"""Enforcement through the agent: policies in, operations blocked, events out.

Both policy surfaces are loaded into a real agent — TracingPolicies whose
selectors take `Override`, and kerneye EnforcementPolicies — and real
processes (cat, enftrig, copies of /bin/true) try the operations. Each test
asserts the errno the process got, the event the agent exported
(`action: KPROBE_ACTION_OVERRIDE`, the `enforcement` block) and that
deleting the policy lifts the block.

The same file runs on two kinds of kernel, and the assertions follow the
back end the manager picks there (`expect()`): without BPF-LSM (this host)
files and exec go to fanotify; with it (the qemu VM of
tests/kernel/test_vm_lsm.py, which runs this file too) plain-file rules,
exec deny/allow lists without `mounts:` and raw sockets go to BPF-LSM,
directory trees and exec-by-content stay with fanotify; the network, sysctls
and devices go to cgroup BPF on both. Tests of one back end's property say
so and skip elsewhere with the reason.

Network rules use 127.0.0.0/8 addresses nothing else on the host uses, or
are scoped to a cgroup the test creates; the agent's death tests run their
own agents.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import time
import sys
import uuid
from functools import lru_cache
from typing import Any, Callable

import pytest
import yaml

from agentctl import (AgentProc, body, decisions, enforcement_policy, env, is_decision, kerneye_cmd, listed, tp,
                      tracing_policy)
from agentctl import add_policy as add
from enfutil import CGROUP2, ENFTRIG, enftrig, free_port, unique_true
from kerneye.enforce.lsm import LsmEnforcer

PIN_ROOT = "/sys/fs/bpf/kerneye/enforce"

Ev = dict[str, Any]

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(not os.path.exists(ENFTRIG), reason="make -C tests/progs builds enftrig"),
    pytest.mark.skipif(not os.path.isfile(os.path.join(CGROUP2, "cgroup.procs")),
                       reason=f"no cgroup-v2 hierarchy at {CGROUP2}"),
]


# --- helpers -------------------------------------------------------------------

@lru_cache(maxsize=None)
def lsm_reason() -> str | None:
    """None if BPF-LSM enforcement works on this kernel, else why not."""
    return LsmEnforcer.available()


def expect(op: str) -> str:
    """The mechanism the manager picks here for a rule of kind op, as the
    policy list shows it: open (one file), exec-deny, exec-allow (no
    mounts:), exec-allow-mounts, tree (a directory), raw-socket (unscoped),
    connect, sysctl, device."""
    lsm = lsm_reason() is None
    return {"open": "bpf-lsm" if lsm else "fanotify",
            # BPF-LSM by inode, plus fanotify for copies (content)
            "exec-deny": "bpf-lsm+fanotify" if lsm else "fanotify",
            "exec-allow": "bpf-lsm" if lsm else "fanotify",
            "exec-allow-mounts": "fanotify", "tree": "fanotify",
            "raw-socket": "bpf-lsm" if lsm else "cgroup-bpf",
            "connect": "cgroup-bpf", "sysctl": "cgroup-bpf", "device": "cgroup-bpf"}[op]


needs_lsm = pytest.mark.skipif(lsm_reason() is not None,
                               reason=f"BPF-LSM back end only (runs in the qemu VM of test_vm_lsm.py): {lsm_reason()}")


def mechanisms(agent: AgentProc, name: str) -> dict[str, str]:
    """rule (spec.files[0], ...) -> mechanism(s) the agent chose for it."""
    return {x["where"]: x["mechanism"] for x in listed(agent)[name]["enforcement"]}


def cat(path: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["cat", path], capture_output=True, text=True, timeout=20)


def trig(cgroup: str | None, *ops: object) -> list[int]:
    return enftrig(*ops, cgroup=cgroup)


# --- fixtures -------------------------------------------------------------------

# --- files -------------------------------------------------------------------------

def test_enforcement_policy_denies_open_reports_and_lets_go(agent: AgentProc, work: str, name: str) -> None:
    secret, other = os.path.join(work, "secret"), os.path.join(work, "other")
    for p in (secret, other):
        with open(p, "w") as f:
            f.write("x\n")
    add(agent, work, enforcement_policy(name, {"files": [{"paths": [secret]}]}))
    mech = expect("open")
    r = cat(secret)
    assert r.returncode == 1 and "Operation not permitted" in r.stderr, r
    assert cat(other).returncode == 0
    [d] = decisions(agent, name)
    assert d["function_name"] == "file_open"
    assert d["args"] == [{"file_arg": {"path": secret}}]
    assert d["action"] == "KPROBE_ACTION_OVERRIDE"
    assert d["enforcement"] == {"operation": "open", "mechanism": mech, "mode": "enforce",
                                "verdict": "denied", "errno": "EPERM", "rule": "spec.files[0]"}
    assert d["process"]["binary"].endswith("/cat")
    assert d["process"]["arguments"] == secret
    pol = listed(agent)[name]
    assert pol["kind"] == "EnforcementPolicy" and pol["nenforce"] >= 1
    assert [(x["op"], x["mechanism"]) for x in pol["enforcement"]] == [("open", mech)]
    assert tp(agent, "delete", name).returncode == 0
    assert cat(secret).returncode == 0
    assert name not in listed(agent)


def test_monitor_mode_blocks_nothing_and_reports_what_it_would_block(agent: AgentProc, work: str,
                                                                      name: str) -> None:
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write("x\n")
    add(agent, work, enforcement_policy(name, {"mode": "monitor", "files": [{"paths": [secret]}]}))
    assert cat(secret).returncode == 0
    [d] = decisions(agent, name)
    assert d["action"] == "KPROBE_ACTION_POST"
    assert d["enforcement"]["verdict"] == "would_deny" and d["enforcement"]["mode"] == "monitor"
    assert "errno" not in d["enforcement"]
    # live switch to enforce, and back
    assert tp(agent, "set-mode", name, "enforce").returncode == 0
    assert cat(secret).returncode == 1
    assert tp(agent, "set-mode", name, "monitor").returncode == 0
    assert cat(secret).returncode == 0
    assert listed(agent)[name]["mode"] == "monitor"


def test_override_on_sys_openat_is_enforced(agent: AgentProc, work: str, name: str) -> None:
    secret = os.path.join(work, "secret")
    sub = os.path.join(work, "dir")
    os.mkdir(sub)
    for p in (secret, os.path.join(sub, "f")):
        with open(p, "w") as f:
            f.write("x\n")
    hook = {"call": "sys_openat", "syscall": True,
            "args": [{"index": 0, "type": "int"}, {"index": 1, "type": "string", "label": "path"},
                     {"index": 2, "type": "int"}],
            "selectors": [
                {"matchArgs": [{"index": 1, "operator": "Equal", "values": [secret]}],
                 "matchActions": [{"action": "Override", "argError": -1}]},
                {"matchArgs": [{"index": 1, "operator": "Prefix", "values": [sub + "/"]}],
                 "matchActions": [{"action": "Override", "argError": -13}]}]}
    add(agent, work, tracing_policy(name, {"kprobes": [hook]}))
    assert cat(secret).returncode == 1
    assert cat(os.path.join(sub, "f")).returncode == 1
    ds = decisions(agent, name, 2)
    assert {d["args"][0]["string_arg"] for d in ds} == {secret, os.path.join(sub, "f")}
    for d in ds:
        assert d["function_name"] == "__x64_sys_openat"
        assert d["action"] == "KPROBE_ACTION_OVERRIDE"
        assert d["args"][0]["label"] == "path"
    pol = listed(agent)[name]
    assert pol["kind"] == "TracingPolicy" and pol["hooks"] == []
    # one file -> the strongest back end; a directory prefix -> fanotify (trees)
    assert sorted(x["mechanism"] for x in pol["enforcement"]) == sorted([expect("open"), expect("tree")])
    # fanotify answers EPERM only: the EACCES of the second selector is reported, not silently changed
    assert any("EPERM, not EACCES" in w for w in pol["warnings"]), pol


@pytest.mark.parametrize("section", ["kprobes", "lsmhooks"])
def test_override_on_security_hooks_uses_the_best_back_end(agent: AgentProc, work: str, name: str,
                                                           section: str) -> None:
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write("x\n")
    sel = {"matchArgs": [{"index": 0, "operator": "Equal", "values": [secret]}],
           "matchActions": [{"action": "Override", "argError": -1}]}
    if section == "kprobes":
        hook = {"call": "security_file_open", "syscall": False, "args": [{"index": 0, "type": "file"}],
                "selectors": [sel]}
    else:
        hook = {"hook": "file_open", "args": [{"index": 0, "type": "file"}], "selectors": [sel]}
    add(agent, work, tracing_policy(name, {section: [hook]}))
    assert cat(secret).returncode == 1
    [d] = decisions(agent, name)
    assert d["args"] == [{"file_arg": {"path": secret}}]
    assert d["function_name"] == ("security_file_open" if section == "kprobes" else "file_open")
    assert ("process_kprobe" if section == "kprobes" else "process_lsm") in \
        agent.wait_for(is_decision(name))[0]


def test_override_does_not_swallow_the_policy_s_other_selectors(agent: AgentProc, work: str, name: str) -> None:
    secret, seen = os.path.join(work, "secret"), os.path.join(work, "seen")
    for p in (secret, seen):
        with open(p, "w") as f:
            f.write("x\n")
    hook = {"call": "sys_openat", "syscall": True, "args": [{"index": 1, "type": "string"}],
            "selectors": [{"matchArgs": [{"index": 1, "operator": "Equal", "values": [secret]}],
                           "matchActions": [{"action": "Override"}]},
                          {"matchArgs": [{"index": 1, "operator": "Equal", "values": [seen]}]}]}
    add(agent, work, tracing_policy(name, {"kprobes": [hook]}))
    assert cat(seen).returncode == 0 and cat(secret).returncode == 1
    posted = agent.wait_for(lambda e: body(e)[1].get("policy_name") == name and "enforcement" not in body(e)[1]
                            and body(e)[1].get("args") == [{"string_arg": seen}])
    assert posted and body(posted[0])[1]["action"] == "KPROBE_ACTION_POST"
    assert listed(agent)[name]["hooks"] == ["syscalls/sys_enter_openat"]


def test_the_agent_never_blocks_itself(agent: AgentProc, work: str, name: str) -> None:
    # deny every open of the agent's own export file: the agent keeps writing
    # it (its own opens are answered at once), everyone else is refused
    add(agent, work, enforcement_policy(name, {"files": [{"paths": [agent.export]}]}))
    assert cat(agent.export).returncode == 1
    marker = os.path.join(work, f"marker-{uuid.uuid4().hex[:6]}")
    subprocess.run(["/bin/true", marker], check=True)
    assert tp(agent, "delete", name).returncode == 0
    assert agent.wait_for(lambda e: "process_exec" in e and e["process_exec"]["process"]["arguments"] == marker)


# --- exec ---------------------------------------------------------------------------

def test_exec_deny_list_and_allow_list(agent: AgentProc, work: str, name: str) -> None:
    mnt = os.path.join(work, "mnt")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "kerneye-test", mnt], check=True)
    try:
        a, b, c = (os.path.join(mnt, n) for n in ("a", "b", "c"))
        for p in (a, b, c):
            unique_true(p)
        add(agent, work, enforcement_policy(name, {"exec": {"deny": [c], "allow": [a], "mounts": [mnt]}}))
        mechs = mechanisms(agent, name)
        assert mechs == {"spec.exec.deny": expect("exec-deny"), "spec.exec.allow": expect("exec-allow-mounts")}
        assert subprocess.run([a]).returncode == 0
        for p in (b, c):
            with pytest.raises(PermissionError):
                subprocess.run([p])
        ds = decisions(agent, name, 2)
        assert {d["args"][0]["linux_binprm_arg"]["path"] for d in ds} == {b, c}
        assert {d["function_name"] for d in ds} == {"bprm_check_security"}
        assert {d["enforcement"]["rule"] for d in ds} == {"spec.exec.allow", "spec.exec.deny"}
        for d in ds:  # events carry the back end that decided, one of the rule's
            assert d["enforcement"]["mechanism"] in mechs[d["enforcement"]["rule"]].split("+"), d
        # /bin/true on the root mount is outside the allow list's mounts
        assert subprocess.run(["/bin/true"]).returncode == 0
        assert tp(agent, "delete", name).returncode == 0
        assert subprocess.run([b]).returncode == 0
    finally:
        subprocess.run(["umount", "-l", mnt], check=False)


def test_override_on_execve_with_matchargs(agent: AgentProc, work: str, name: str) -> None:
    x = unique_true(os.path.join(work, "x"))
    hook = {"call": "sys_execve", "syscall": True, "args": [{"index": 0, "type": "string"}],
            "selectors": [{"matchArgs": [{"index": 0, "operator": "Equal", "values": [x]}],
                           "matchActions": [{"action": "Override", "argError": -1}]}]}
    add(agent, work, tracing_policy(name, {"kprobes": [hook]}))
    r = subprocess.run(["sh", "-c", f'"{x}"; echo rc=$?'], capture_output=True, text=True)
    assert "rc=126" in r.stdout, r
    [d] = decisions(agent, name)
    assert d["function_name"] == "__x64_sys_execve" and d["args"] == [{"string_arg": x}]
    assert d["process"]["binary"] in ("/bin/sh", "/usr/bin/dash", "/usr/bin/sh", "/bin/dash")


# --- network ---------------------------------------------------------------------------

def test_override_on_tcp_connect_daddr_dport(agent: AgentProc, work: str, name: str) -> None:
    port = free_port()
    hook = {"call": "tcp_connect", "syscall": False, "args": [{"index": 0, "type": "sock"}],
            "selectors": [{"matchArgs": [{"index": 0, "operator": "DAddr", "values": ["127.0.0.9"]},
                                         {"index": 0, "operator": "DPort", "values": [str(port)]}],
                           "matchActions": [{"action": "Override", "argError": -111}]}]}
    add(agent, work, tracing_policy(name, {"kprobes": [hook]}))
    assert trig(None, "connect4", "127.0.0.9", port, "connect4", "127.0.0.9", port + 1) == \
        [errno.ECONNREFUSED, errno.ECONNREFUSED]
    [d] = decisions(agent, name)
    # cgroup BPF can return the policy's errno: ECONNREFUSED from the rule, not from a closed port
    assert d["enforcement"]["mechanism"] == "cgroup-bpf" and d["enforcement"]["errno"] == "ECONNREFUSED"
    assert d["args"] == [{"sock_arg": {"family": "AF_INET", "protocol": "IPPROTO_TCP", "daddr": "127.0.0.9",
                                       "dport": port}}]
    assert len(agent.wait_for(is_decision(name), timeout=1, count=2)) == 1
    assert tp(agent, "delete", name).returncode == 0


def test_network_and_raw_sockets_scoped_to_a_cgroup(agent: AgentProc, work: str, name: str, cgroup: str) -> None:
    port = free_port()
    add(agent, work, enforcement_policy(name, {
        "scope": {"cgroups": [cgroup]},
        "network": [{"cidrs": ["127.0.0.1/32"], "ports": [port], "protocol": "tcp"}],
        "rawSockets": "deny"}))
    assert trig(cgroup, "connect4", "127.0.0.1", port, "connect4", "127.0.0.1", port + 1, "raw4") == \
        [errno.EPERM, errno.ECONNREFUSED, errno.EPERM]
    assert trig(None, "connect4", "127.0.0.1", port, "raw4") == [errno.ECONNREFUSED, 0]
    ds = decisions(agent, name, 2)
    ops = sorted(d["enforcement"]["operation"] for d in ds)
    assert ops == ["connect", "raw_socket"]
    conn = next(d for d in ds if d["enforcement"]["operation"] == "connect")
    assert conn["function_name"] == "socket_connect"
    assert conn["args"] == [{"sockaddr_arg": {"family": "AF_INET", "addr": "127.0.0.1", "port": port}}]
    assert conn["process"]["binary"] == ENFTRIG


def test_unenforceable_rules_are_refused_whole(agent: AgentProc, work: str, name: str) -> None:
    if lsm_reason() is None:
        pytest.skip("BPF-LSM is available on this kernel: module and BPF loads are enforceable here "
                    "(test_module_and_bpf_loads_denied_by_bpf_lsm checks that)")
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write("x\n")
    avail = json.loads(tp(agent, "list", "-o", "json").stdout)
    r = add(agent, work, enforcement_policy(name, {"files": [{"paths": [secret]}], "modules": "deny"}), check=False)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "kernel module load" in r.stderr and "BPF-LSM" in r.stderr, r.stderr
    # all or nothing: the file rule of the refused policy is not active
    assert name not in listed(agent) and cat(secret).returncode == 0
    hook = {"call": "sys_bpf", "syscall": True, "selectors": [{"matchActions": [{"action": "Override"}]}]}
    r = add(agent, work, tracing_policy(name, {"kprobes": [hook]}), check=False)
    assert r.returncode == 1 and "BPF program load" in r.stderr, r.stderr
    assert avail  # the list call worked before and after
    assert name not in listed(agent)


# --- when the agent dies ------------------------------------------------------------------

def _policy_dir(work: str, name: str, cgroup: str, secret: str, port: int) -> str:
    d = os.path.join(work, "policies")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"{name}.yaml"), "w") as f:
        yaml.safe_dump(enforcement_policy(name, {
            "scope": {"cgroups": [cgroup]}, "files": [{"paths": [secret]}],
            "network": [{"cidrs": ["127.0.0.1/32"], "ports": [port]}]}), f)
    return d


@pytest.mark.parametrize("keep", [True, False], ids=["keep-enforcement-on-exit", "default"])
def test_agent_killed_with_sigkill(work: str, cgroup: str, keep: bool) -> None:
    name = f"enf-{uuid.uuid4().hex[:8]}"
    secret = os.path.join(work, "secret")
    with open(secret, "w") as f:
        f.write("x\n")
    port = free_port()
    # the file rule is host-wide (a second policy), so that the SIGKILL checks below can use cat from
    # anywhere; the network rule is scoped to the test's cgroup
    pdir = _policy_dir(work, name, cgroup, secret, port)
    with open(os.path.join(pdir, f"{name}.yaml")) as f:
        doc = yaml.safe_load(f)
    files = doc["spec"].pop("files")
    with open(os.path.join(pdir, f"{name}.yaml"), "w") as f:
        yaml.safe_dump(doc, f)
    with open(os.path.join(pdir, f"{name}-files.yaml"), "w") as f:
        yaml.safe_dump(enforcement_policy(f"{name}-files", {"files": files}), f)
    flags = ["--tracing-policy-dir", pdir] + (["--keep-enforcement-on-exit"] if keep else [])
    a = AgentProc(os.path.join(work, "agent"), *flags)
    os.makedirs(a.workdir)
    a.start()
    try:
        assert trig(cgroup, "connect4", "127.0.0.1", port) == [errno.EPERM]
        assert cat(secret).returncode == 1
        file_mech = mechanisms(a, f"{name}-files")["spec.files[0]"]
        assert file_mech == expect("open")
        assert a.proc is not None
        os.kill(a.proc.pid, signal.SIGKILL)
        a.proc.wait(10)
        if file_mech == "fanotify":
            # fanotify always fails open: the kernel allows everything once the group is gone
            assert cat(secret).returncode == 0
        if keep:
            pinned = os.listdir(PIN_ROOT)
            assert any(p.startswith("net-") for p in pinned), pinned
            if file_mech == "bpf-lsm":  # pinned LSM programs hold the file deny without the agent
                assert "lsm" in pinned, pinned
            for _ in range(3):
                assert trig(cgroup, "connect4", "127.0.0.1", port) == [errno.EPERM]
                if file_mech == "bpf-lsm":
                    r = cat(secret)
                    assert r.returncode == 1 and "Operation not permitted" in r.stderr, r
                time.sleep(0.2)
            r = subprocess.run(kerneye_cmd("enforcement", "release"), env=env(), capture_output=True, text=True,
                               timeout=30)
            assert r.returncode == 0 and "released" in r.stdout, r
        deadline = time.monotonic() + 5  # link release is RCU-deferred
        while trig(cgroup, "connect4", "127.0.0.1", port) != [errno.ECONNREFUSED]:
            assert time.monotonic() < deadline, "the cgroup program stayed attached"
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while cat(secret).returncode != 0:  # BPF-LSM: detached with the agent, or released
            assert time.monotonic() < deadline, "the BPF-LSM file deny stayed attached"
            time.sleep(0.1)
        assert not os.path.isdir(PIN_ROOT) or not os.listdir(PIN_ROOT)
    finally:
        if a.proc is not None and a.proc.poll() is None:
            a.proc.kill()
            a.proc.wait()
        subprocess.run(kerneye_cmd("enforcement", "release"), env=env(), capture_output=True, timeout=30)


# --- sysctls and devices ---------------------------------------------------------------

def in_cgroup(cgroup: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", f'echo $$ > "{cgroup}/cgroup.procs" && {script}'], capture_output=True,
                          text=True, timeout=20)


def test_sysctl_and_device_rules_scoped_to_a_cgroup(agent: AgentProc, work: str, name: str, cgroup: str) -> None:
    add(agent, work, enforcement_policy(name, {
        "scope": {"cgroups": [cgroup]},
        "sysctls": {"deny": ["kernel/domainname"]},
        "devices": {"deny": ["c 1:5 r"]}}))
    # a new UTS namespace: even an allowed write changes nothing outside
    write = "unshare -u bash -c 'echo kerneye-test > /proc/sys/kernel/domainname'"
    r = in_cgroup(cgroup, write)
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    assert in_cgroup(cgroup, "cat /proc/sys/kernel/domainname").returncode == 0  # reads stay allowed
    r = in_cgroup(cgroup, "head -c1 /dev/zero >/dev/null")
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
    assert in_cgroup(cgroup, "head -c1 /dev/urandom >/dev/null").returncode == 0
    assert subprocess.run(["bash", "-c", write]).returncode == 0  # outside the cgroup
    ds = decisions(agent, name, 2)
    by_op = {d["enforcement"]["operation"]: d for d in ds}
    assert by_op["sysctl"]["args"] == [{"string_arg": "kernel/domainname"}]
    assert by_op["sysctl"]["function_name"] == "cgroup_sysctl"
    assert by_op["device"]["args"] == [{"string_arg": "c 1:5 r"}]
    assert {d["enforcement"]["mechanism"] for d in ds} == {"cgroup-bpf"}
    assert tp(agent, "delete", name).returncode == 0
    assert in_cgroup(cgroup, write).returncode == 0


def test_exec_deny_follows_copies_by_content(agent: AgentProc, work: str, name: str) -> None:
    x = unique_true(os.path.join(work, "x"))
    add(agent, work, enforcement_policy(name, {"exec": {"deny": [x]}}))
    assert mechanisms(agent, name) == {"spec.exec.deny": expect("exec-deny")}
    copy = os.path.join("/dev/shm", f"kerneye-test-{uuid.uuid4().hex[:8]}")
    shutil.copy(x, copy)  # another inode on another filesystem, same bytes
    try:
        for p in (x, copy):
            with pytest.raises(PermissionError):
                subprocess.run([p])
        ds = decisions(agent, name, 2)
        assert {d["args"][0]["linux_binprm_arg"]["path"] for d in ds} == {x, copy}
        by_path = {d["args"][0]["linux_binprm_arg"]["path"]: d["enforcement"]["mechanism"] for d in ds}
        assert by_path[copy] == "fanotify"  # only fanotify matches by content
        assert by_path[x] in expect("exec-deny").split("+")
    finally:
        os.unlink(copy)


# --- BPF-LSM only (the qemu VM) -----------------------------------------------------------

# BPF_PROG_LOAD of "r0 = 0; exit" as a socket filter through bpf(2); prints "ok" or the errno
PROG_LOAD = """import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
insns = (ctypes.c_uint64 * 2)(0xb7, 0x95)
lic = ctypes.create_string_buffer(b"GPL")
attr = (ctypes.c_uint8 * 128)()
for off, val, ctype in ((0, 1, ctypes.c_uint32), (4, 2, ctypes.c_uint32),
                        (8, ctypes.addressof(insns), ctypes.c_uint64), (16, ctypes.addressof(lic), ctypes.c_uint64)):
    ctypes.memmove(ctypes.addressof(attr) + off, ctypes.byref(ctype(val)), ctypes.sizeof(ctype))
fd = libc.syscall(321, 5, attr, 128)
print("ok" if fd >= 0 else ctypes.get_errno())
"""


def prog_load() -> str:
    r = subprocess.run([sys.executable, "-c", PROG_LOAD], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


@needs_lsm
def test_each_rule_gets_the_strongest_back_end(agent: AgentProc, work: str, name: str,
                                               record_property: Callable[[str, object], None]) -> None:
    """With BPF-LSM the manager picks it for what it covers and keeps the
    others; monitor mode, so nothing in the VM is blocked meanwhile."""
    f, d = os.path.join(work, "f"), os.path.join(work, "d")
    with open(f, "w") as fh:
        fh.write("x\n")
    os.mkdir(d)
    x = unique_true(os.path.join(work, "x"))
    add(agent, work, enforcement_policy(name, {
        "mode": "monitor", "files": [{"paths": [f]}, {"paths": [d + "/"]}, {"paths": [f], "access": "write"}],
        "exec": {"deny": [x], "allow": ["/bin/true"]}, "rawSockets": "deny", "modules": "deny", "bpf": "deny",
        "network": [{"cidrs": ["127.0.0.9/32"]}], "sysctls": {"deny": ["kernel/domainname"]},
        "devices": {"deny": ["c 1:5 r"]}}))
    mechs = {f"{x['where']} ({x['op']})": x["mechanism"] for x in listed(agent)[name]["enforcement"]}
    record_property("mechanisms", json.dumps(mechs))
    assert tp(agent, "delete", name).returncode == 0
    assert mechs == {
        "spec.files[0] (open)": "bpf-lsm", "spec.files[1] (open)": "fanotify", "spec.files[2] (write)": "bpf-lsm",
        "spec.exec.deny (exec)": "bpf-lsm+fanotify", "spec.exec.allow (exec)": "bpf-lsm",
        "spec.rawSockets (raw_socket)": "bpf-lsm", "spec.modules (module)": "bpf-lsm", "spec.bpf (bpf)": "bpf-lsm",
        "spec.network[0] (connect)": "cgroup-bpf", "spec.network[0] (sendmsg)": "cgroup-bpf",
        "spec.sysctls (sysctl)": "cgroup-bpf", "spec.devices (device)": "cgroup-bpf"}, mechs


@needs_lsm
def test_module_and_bpf_loads_denied_by_bpf_lsm(agent: AgentProc, work: str, name: str) -> None:
    ko = f"/lib/modules/{os.uname().release}/kernel/drivers/net/dummy.ko"
    if not os.path.exists(ko):
        pytest.skip(f"{ko} is not installed")
    subprocess.run(["modprobe", "-r", "dummy"], capture_output=True)
    assert prog_load() == "ok"
    add(agent, work, enforcement_policy(name, {"modules": "deny", "bpf": "deny"}))
    try:
        r = subprocess.run(["modprobe", "dummy"], capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
        assert "dummy" not in open("/proc/modules").read()
        assert prog_load() == str(errno.EPERM)
        ds = decisions(agent, name, 2)
        by_op = {d["enforcement"]["operation"]: d for d in ds}
        assert set(by_op) == {"module", "bpf"}, ds
        assert {d["enforcement"]["mechanism"] for d in ds} == {"bpf-lsm"}
        assert by_op["module"]["process"]["binary"].endswith("/kmod") or \
            by_op["module"]["process"]["binary"].endswith("/modprobe"), by_op["module"]["process"]
        assert by_op["bpf"]["process"]["binary"] in (sys.executable, os.path.realpath(sys.executable))
        assert agent.proc is not None and agent.proc.poll() is None  # the agent's own loads are exempt
    finally:
        assert tp(agent, "delete", name).returncode == 0
    assert prog_load() == "ok"  # the rule, nothing else, stopped them
    assert subprocess.run(["modprobe", "dummy"]).returncode == 0
    assert subprocess.run(["modprobe", "-r", "dummy"]).returncode == 0


@needs_lsm
def test_module_load_denied_in_a_cgroup_only(agent: AgentProc, work: str, name: str, cgroup: str) -> None:
    """BPF-LSM rules honour spec.scope: modprobe inside the cgroup (or a
    child of it) fails, the host's goes on."""
    ko = f"/lib/modules/{os.uname().release}/kernel/drivers/net/dummy.ko"
    if not os.path.exists(ko):
        pytest.skip(f"{ko} is not installed")
    subprocess.run(["modprobe", "-r", "dummy"], capture_output=True)
    child = os.path.join(cgroup, "child")
    os.mkdir(child)
    add(agent, work, enforcement_policy(name, {"scope": {"cgroups": [cgroup]}, "modules": "deny"}))
    try:
        assert mechanisms(agent, name) == {"spec.modules": "bpf-lsm"}
        for where in (cgroup, child):
            r = in_cgroup(where, "modprobe dummy")
            assert r.returncode != 0 and "Operation not permitted" in r.stderr, r
        assert "dummy" not in open("/proc/modules").read()
        d = decisions(agent, name, 1)[0]
        assert d["enforcement"]["operation"] == "module" and d["enforcement"]["mechanism"] == "bpf-lsm", d
        assert subprocess.run(["modprobe", "dummy"]).returncode == 0  # outside the cgroup
    finally:
        subprocess.run(["modprobe", "-r", "dummy"], capture_output=True)
        assert tp(agent, "delete", name).returncode == 0
        os.rmdir(child)


@needs_lsm
def test_exec_allow_list_denies_memfd_and_copies_with_bpf_lsm(agent: AgentProc, work: str, name: str) -> None:
    """Host-wide allow list (no mounts:): only python (the test and the CLI)
    and /bin/true may run. fanotify cannot see an exec of a memfd image."""
    copy = unique_true(os.path.join(work, "copy"))
    add(agent, work, enforcement_policy(name, {"exec": {"allow": [os.path.realpath(sys.executable), "/bin/true"]}}))
    try:
        assert mechanisms(agent, name) == {"spec.exec.allow": "bpf-lsm"}
        assert subprocess.run(["/bin/true"]).returncode == 0
        fd = os.memfd_create("kerneye-test")
        try:
            with open("/bin/true", "rb") as src:
                os.write(fd, src.read())
            with pytest.raises(PermissionError):
                subprocess.run([f"/proc/self/fd/{fd}"], pass_fds=(fd,))
        finally:
            os.close(fd)
        with pytest.raises(PermissionError):
            subprocess.run([copy])
        ds = decisions(agent, name, 2)
        assert {(d["enforcement"]["mechanism"], d["enforcement"]["rule"], d["function_name"]) for d in ds} == \
            {("bpf-lsm", "spec.exec.allow", "bprm_check_security")}
        assert copy in {d["args"][0]["linux_binprm_arg"]["path"] for d in ds}
    finally:
        assert tp(agent, "delete", name).returncode == 0
    assert subprocess.run([copy]).returncode == 0
