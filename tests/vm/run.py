"""Boot Debian's kernel in a qemu (TCG) VM over the host's root file system
and run the guest tests there, where BPF-LSM works: tests/vm/ (the LSM back
end) and tests/kernel/test_enforce_agent.py (the agent's enforcement, the
same file the host runs), in one boot.

    python tests/vm/run.py            # run both in the VM, exit with pytest's status
    python tests/vm/run.py -- -k exec # extra pytest arguments after --
    python tests/vm/run.py --paths tests/vm      # only these test paths
    python tests/vm/run.py --env KERNEYE_BPF_LIB=/var/tmp/objs   # environment for the guest
    python tests/vm/run.py --cmd 'bpftool prog list'   # any command, as root in the guest

How it works (docs/reference/vm-tests.md has the details and real output):

1. A tiny initramfs (busybox-static, plus the virtio-pci and 9p modules of
   the guest kernel resolved through its modules.dep) is written to a temp
   directory.
2. qemu boots /boot/vmlinuz-<6.x> with lsm=...,bpf under pure emulation
   (KVM guests hang on these machines), with two 9p shares: the host's / read
   only, and the temp directory's out/ read-write.
3. The initramfs mounts the shares, puts a tmpfs on /tmp and switch_roots
   into the host's root running out/stage2.sh, which mounts proc/sys/bpffs/
   securityfs/tracefs, cgroup2 at /sys/fs/cgroup/unified, brings lo up, runs
   pytest on the test paths with a junit report into out/ and powers the VM
   off.
4. The host reads out/rc and out/junit.xml. On timeout or failure the
   console log is kept (its path is printed); the qemu process, which this
   module started, is killed by its pid; the temp directory is removed.

The guest runs the very same files as the host: the repository, its .venv,
bpf/.output/*.bpf.o and the system libbpf.so.1.
"""
from __future__ import annotations

import argparse
import glob
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUSYBOX = "/bin/busybox"
LSM = "lockdown,capability,landlock,bpf"
# modules the initramfs needs to reach the 9p root (Debian builds them as =m)
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
GUEST_OUT = "/tmp/kerneye-vm"  # where out/ appears inside the guest
DEFAULT_TIMEOUT = 900.0
#: what the guest runs by default (one boot; TCG makes every boot and every
#: Python start-up expensive); tests/vm holds the LSM back-end tests and
#: test_kprobe_agent.py (TracingPolicies on kernel functions)
DEFAULT_PATHS = ("tests/vm", "tests/kernel/test_enforce_agent.py")
#: host variables handed on to the guest when set (paths must be outside
#: /tmp, which is the guest's own tmpfs)
FORWARD_ENV = ("KERNEYE_BPF_LIB",)


@dataclass
class VmResult:
    rc: int | None            # pytest's exit status in the guest; None if it never wrote one
    junit: str | None         # junit xml text
    console: str              # the serial console
    seconds: float
    timed_out: bool
    console_path: str | None  # kept on failure

    def tests(self) -> list["GuestTest"]:
        return guest_tests(self.junit) if self.junit else []


@dataclass
class GuestTest:
    """One test case of the guest's junit report."""

    file: str        # the junit classname, e.g. tests.kernel.test_enforce_agent
    name: str        # e.g. test_agent_killed_with_sigkill[default]
    outcome: str     # passed | failed | error | skipped
    message: str     # failure/skip message, lines joined with " | ", at most 600 characters
    properties: dict[str, str] = field(default_factory=dict)  # record_property() values


def guest_tests(junit: str) -> list[GuestTest]:
    root = ET.fromstring(junit)
    out = []
    for case in root.iter("testcase"):
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = "failed" if tag == "failure" else tag
                lines = [ln.strip() for ln in (el.get("message") or el.text or "").splitlines() if ln.strip()]
                message = " | ".join(lines)[:600]
                break
        props = {p.get("name", ""): p.get("value", "") for p in case.iter("property")}
        out.append(GuestTest(case.get("classname", ""), case.get("name", ""), outcome, message, props))
    return out


def find_kernel() -> tuple[str, str] | None:
    """(vmlinuz, modules dir) of an installed Debian 6.x kernel that has
    BTF, or None."""
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        ver = os.path.basename(vmlinuz)[len("vmlinuz-"):]
        mods = f"/lib/modules/{ver}"
        try:
            with open(f"/boot/config-{ver}") as f:
                cfg = f.read()
        except OSError:
            continue
        if ("CONFIG_BPF_LSM=y" in cfg and "CONFIG_DEBUG_INFO_BTF=y" in cfg
                and os.path.exists(os.path.join(mods, "modules.dep"))):
            return vmlinuz, mods
    return None


def skip_reason() -> str | None:
    """Why the VM test cannot run here, or None."""
    if shutil.which("qemu-system-x86_64") is None:
        return "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86, or `make apt`)"
    if find_kernel() is None:
        return ("no /boot/vmlinuz-* with BPF-LSM and BTF in its /boot/config-* and a /lib/modules/<ver> "
                "(apt-get install linux-image-amd64)")
    if not os.access(BUSYBOX, os.X_OK):
        return f"{BUSYBOX} is missing (apt-get install busybox-static)"
    if shutil.which("cpio") is None:
        return "cpio is not installed (apt-get install cpio)"
    if os.geteuid() != 0:
        return "needs root (qemu shares / with the guest, which runs as root)"
    return None


def _module_order(mods_dir: str, wanted: tuple[str, ...]) -> list[str]:
    """Paths (relative to mods_dir) of the wanted modules and their
    dependencies, dependencies first. Built-in ones are left out."""
    deps: dict[str, list[str]] = {}
    with open(os.path.join(mods_dir, "modules.dep")) as f:
        for line in f:
            path, _, rest = line.partition(":")
            deps[path.strip()] = rest.split()
    by_name = {os.path.basename(p).split(".ko")[0].replace("-", "_"): p for p in deps}
    order: list[str] = []

    def visit(p: str) -> None:
        if p in order:
            return
        # modules.dep lists every (transitive) dependency; load them in reverse
        for d in reversed(deps.get(p, [])):
            visit(d)
        order.append(p)

    for name in wanted:
        if name in by_name:
            visit(by_name[name])
    return order


STAGE1 = """#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /newroot
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs dev /dev
for m in {modules}; do /bin/busybox insmod /mods/$m || echo "kerneye-vm: insmod $m failed"; done
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=512000 kerneye_root /newroot || {{
  echo "kerneye-vm: cannot mount the host root"; /bin/busybox poweroff -f; }}
/bin/busybox mount -t tmpfs -o mode=1777 tmp /newroot/tmp
/bin/busybox mkdir -p /newroot{out}
/bin/busybox mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 kerneye_out /newroot{out}
/bin/busybox umount /proc /dev
exec /bin/busybox switch_root /newroot /bin/sh {out}/stage2.sh
"""

STAGE2 = """set -u
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm && mount -t devpts devpts /dev/pts && mount -t tmpfs shm /dev/shm
mount -t tmpfs run /run
mount -t bpf bpf /sys/fs/bpf
mount -t securityfs securityfs /sys/kernel/security
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || mount -t debugfs debugfs /sys/kernel/debug
# the kernel tests use /sys/fs/cgroup/unified (this host's hybrid layout); a
# tmpfs on /sys/fs/cgroup gives the mount point a place to live
mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup && mkdir /sys/fs/cgroup/unified
mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/tmp LANG=C.UTF-8
export PYTHONDONTWRITEBYTECODE=1 KERNEYE_IN_VM=1
# loopback up: network tests connect to 127.0.0.0/8 (a down lo gives ENETUNREACH)
ip link set lo up 2>/dev/null || busybox ip link set lo up
echo "kerneye-vm: stage2 up: $(uname -r) lsm=$(cat /sys/kernel/security/lsm)"
cd {root}
{cmd} > {out}/pytest.log 2>&1
echo $? > {out}/rc
cat {out}/pytest.log
sync
echo o > /proc/sysrq-trigger
sleep 30 2>/dev/null
"""


def _build_initramfs(work: str, mods_dir: str) -> str:
    tree = os.path.join(work, "initramfs")
    os.makedirs(os.path.join(tree, "bin"))
    os.makedirs(os.path.join(tree, "mods"))
    shutil.copy2(BUSYBOX, os.path.join(tree, "bin", "busybox"))
    names = []
    for rel in _module_order(mods_dir, ROOT_MODULES):
        src = os.path.join(mods_dir, rel)
        name = os.path.basename(rel)
        if name.endswith((".xz", ".zst", ".gz")):
            raise RuntimeError(f"compressed module {src}: busybox insmod cannot load it")
        shutil.copy2(src, os.path.join(tree, "mods", name))
        names.append(name)
    init = os.path.join(tree, "init")
    with open(init, "w") as f:
        f.write(STAGE1.format(modules=" ".join(names), out=GUEST_OUT))
    os.chmod(init, 0o755)
    img = os.path.join(work, "initramfs.cpio")
    with open(img, "wb") as out:
        subprocess.run("find . | cpio -o -H newc --quiet", shell=True, cwd=tree, stdout=out, check=True)
    return img


def run_vm(pytest_args: list[str] | None = None, timeout: float = DEFAULT_TIMEOUT, memory_mb: int = 2048,
           cpus: int = 2, keep_console_dir: str | None = None, guest_cmd: list[str] | None = None,
           paths: tuple[str, ...] | list[str] = DEFAULT_PATHS, guest_env: dict[str, str] | None = None) -> VmResult:
    """Boot the VM, run pytest on paths (plus pytest_args) inside, or
    guest_cmd instead (run from the repository root; its output is in the
    console), and collect the result. guest_env is exported in the guest
    (with the FORWARD_ENV variables the host has). Never leaves qemu running
    or the temp dir behind."""
    reason = skip_reason()
    if reason:
        raise RuntimeError(reason)
    kernel = find_kernel()
    assert kernel is not None
    vmlinuz, mods_dir = kernel
    work = tempfile.mkdtemp(prefix="kerneye-vm-")
    out = os.path.join(work, "out")
    os.makedirs(out)
    os.chmod(out, 0o777)
    console_path = os.path.join(work, "console.log")
    t0 = time.monotonic()
    proc: subprocess.Popen[bytes] | None = None
    timed_out = False
    try:
        initrd = _build_initramfs(work, mods_dir)
        py = os.path.join(ROOT, ".venv", "bin", "python")
        cmd = guest_cmd or [py, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", *paths,
                            f"--junitxml={GUEST_OUT}/junit.xml", *(pytest_args or [])]
        genv = {k: os.environ[k] for k in FORWARD_ENV if os.environ.get(k)}
        genv.update(guest_env or {})
        exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in genv.items())
        with open(os.path.join(out, "stage2.sh"), "w") as f:
            f.write(STAGE2.format(root=shlex.quote(ROOT), out=GUEST_OUT, cmd=exports + shlex.join(cmd)))
        append = (f"console=ttyS0 rdinit=/init lsm={LSM} panic=-1 oops=panic loglevel=4 "
                  "mitigations=off nokaslr tsc=reliable")
        argv = [
            "qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus),
            "-m", str(memory_mb), "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-kernel", vmlinuz, "-initrd", initrd, "-append", append,
            "-serial", f"file:{console_path}",
            "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=root,mount_tag=kerneye_root",
            "-fsdev", f"local,id=out,path={out},security_model=none",
            "-device", "virtio-9p-pci,fsdev=out,mount_tag=kerneye_out",
        ]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.kill(proc.pid, signal.SIGKILL)
            qemu_out, _ = proc.communicate()
        seconds = time.monotonic() - t0
        console = ""
        if os.path.exists(console_path):
            with open(console_path, errors="replace") as f:
                console = f.read()
        if qemu_out:
            console += "\n--- qemu ---\n" + qemu_out.decode(errors="replace")
        rc = None
        rc_path = os.path.join(out, "rc")
        if os.path.exists(rc_path):
            with open(rc_path) as f:
                txt = f.read().strip()
                rc = int(txt) if txt.lstrip("-").isdigit() else None
        junit = None
        if os.path.exists(os.path.join(out, "junit.xml")):
            with open(os.path.join(out, "junit.xml")) as f:
                junit = f.read()
        kept = None
        if rc != 0 or timed_out:
            keep = keep_console_dir or tempfile.gettempdir()
            kept = os.path.join(keep, f"kerneye-vm-console-{os.getpid()}-{int(time.time())}.log")
            with open(kept, "w") as f:
                f.write(console)
        return VmResult(rc, junit, console, seconds, timed_out, kept)
    finally:
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT)
    ap.add_argument("--console", action="store_true", help="print the whole console log")
    ap.add_argument("--cmd", help="run this shell command in the guest instead of pytest")
    ap.add_argument("--paths", nargs="+", default=list(DEFAULT_PATHS), help="test paths to run in the guest")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="export in the guest")
    ap.add_argument("pytest_args", nargs="*")
    a = ap.parse_args(argv)
    reason = skip_reason()
    if reason:
        print(f"kerneye-vm: cannot run: {reason}", file=sys.stderr)
        return 2
    genv = dict(e.split("=", 1) for e in a.env if "=" in e)
    r = run_vm(a.pytest_args, timeout=a.timeout, guest_cmd=["/bin/sh", "-c", a.cmd] if a.cmd else None,
               paths=a.paths, guest_env=genv)
    print(r.console if a.console or r.rc != 0 else r.console[r.console.find("kerneye-vm: stage2"):])
    for t in r.tests():
        for k, v in t.properties.items():
            print(f"kerneye-vm: {t.name}: {k}: {v}")
    status = "timed out" if r.timed_out else f"pytest rc={r.rc}"
    print(f"kerneye-vm: {status} after {r.seconds:.1f}s" + (f"; console kept at {r.console_path}" if r.console_path else ""))
    return 0 if r.rc == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
