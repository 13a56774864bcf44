#!/usr/bin/env python3
"""Capture the base sensor's ring-buffer records of one command (root only).

    tools/capture.py OUT.bin [--rb-size BYTES] -- COMMAND [ARGS...]

Loads bpf/.output/base.bpf.o, attaches its programs, runs COMMAND, and keeps
the records of COMMAND's process and of every process it forks, in ring
order: first the clone of COMMAND's pid from this tool, then its exec, the
forks and execs of its descendants and all their exits. Records of anything
else on the host are dropped. OUT.bin is a sequence of
    u32 little-endian length | record bytes
which tests/unit/golden.py reads back as golden input for the decoders.

The process map is not seeded from /proc, so the kernel reports this tool
as an unknown parent (EXEC_FLAG_PARENT_MISS) of COMMAND's fork and exec.
The object is closed before the tool exits, so no program stays attached
(the kernel frees the programs a moment later, after an RCU grace period).
The command's exit status is the tool's exit status.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import struct
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "src"))

from kerneye.abi.types import MsgClone, MsgCommon, MsgExec, MsgExit, MsgOp  # noqa: E402
from kerneye.bpf import libbpf  # noqa: E402
from kerneye.bpf.objects import LoadedObject, ObjectSpec  # noqa: E402
from kerneye.bpf.ringbuf import RingBuffer  # noqa: E402
from kerneye.errors import KerneyeError  # noqa: E402

OBJECT = os.path.join(ROOT, "bpf", ".output", "base.bpf.o")
_LEN = struct.Struct("<I")
_HDR_SIZE = ctypes.sizeof(MsgCommon)
# Fixed part each opcode must carry before we read key/parent from it.
_MIRROR = {MsgOp.EXECVE: MsgExec, MsgOp.CLONE: MsgClone, MsgOp.EXIT: MsgExit}


class Selector:
    """Keeps the records of one process tree, given the root's pid.

    A pid joins the tree when a clone record names a member as its parent.
    The kernel emits the clone from the parent's context before the child
    first runs, and the ring is ordered by reservation, so a child's clone
    always precedes its own records: one pass in ring order suffices."""

    def __init__(self, root_pid: int) -> None:
        self.pids = {root_pid}
        self.kept: list[bytes] = []
        self.seen = 0

    def feed(self, raw: bytes) -> None:
        self.seen += 1
        if len(raw) < _HDR_SIZE:
            return
        op = raw[0]
        mirror = _MIRROR.get(op)  # type: ignore[call-overload]
        if mirror is None or len(raw) < ctypes.sizeof(mirror):
            return  # an opcode this tool does not know: not ours
        m = mirror.from_buffer_copy(raw)
        if op == MsgOp.CLONE and m.parent.pid in self.pids:
            self.pids.add(m.key.pid)
        if m.key.pid in self.pids:
            self.kept.append(raw)


def write_records(path: str, records: list[bytes]) -> None:
    with open(path, "wb") as f:
        for r in records:
            f.write(_LEN.pack(len(r)))
            f.write(r)


def capture(cmd: list[str], rb_size: int, settle_s: float = 0.2) -> tuple[list[bytes], int, int]:
    """Run cmd under the base sensor. Returns (records kept, records seen,
    the command's exit status)."""
    spec = ObjectSpec(
        OBJECT,
        max_entries={"kerneye_events_rb": rb_size,
                     "kerneye_exec_heap": libbpf.lib().libbpf_num_possible_cpus(),
                     "kerneye_execve_map": 65536},
        # 0: every record wakes wait(), so a busy host cannot fill the
        # ring while we sleep between polls
        rodata={"cfg_wakeup_bytes": 0},
    )
    obj = LoadedObject(spec)
    rb = None
    try:
        obj.attach_all()
        rb = RingBuffer(obj.map_fd("kerneye_events_rb"), rb_size)
        rb.drain(1 << 62)  # whatever happened between attach and now
        proc = subprocess.Popen(cmd)
        sel = Selector(proc.pid)
        while proc.poll() is None:
            rb.wait(0.01)
            for raw in rb.drain():
                sel.feed(raw)
        # The exit records are submitted before the parent's wait() returns;
        # a short settle catches any straggler a slow CPU has not committed.
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            for raw in rb.drain():
                sel.feed(raw)
            rb.wait(0.01)
        return sel.kept, sel.seen, proc.returncode
    finally:
        if rb is not None:
            rb.close()
        obj.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Record the base sensor's ring-buffer messages of one command tree (root only).",
        usage="%(prog)s OUT.bin [--rb-size BYTES] -- COMMAND [ARGS...]",
    )
    ap.add_argument("out", metavar="OUT.bin")
    ap.add_argument("--rb-size", type=int, default=8 << 20, help="ring buffer size, a power of two (default 8 MiB)")
    args_in = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args_in:
        ap.error("give the command after --")
    cut = args_in.index("--")
    opts = ap.parse_args(args_in[:cut])
    cmd = args_in[cut + 1 :]
    if not cmd:
        ap.error("no command after --")
    if os.geteuid() != 0:
        print("capture: must run as root to load BPF programs", file=sys.stderr)
        return 1
    try:
        records, seen, status = capture(cmd, opts.rb_size)
    except KerneyeError as e:
        print(f"capture: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # the command could not be started
        print(f"capture: cannot run {cmd[0]}: {e.strerror}", file=sys.stderr)
        return 127
    write_records(opts.out, records)
    ops = [MsgOp(r[0]).name for r in records]
    print(f"capture: kept {len(records)} of {seen} records ({' '.join(ops)}) -> {opts.out}", file=sys.stderr)
    if status < 0:
        return 128 - status
    return status


if __name__ == "__main__":
    sys.exit(main())
