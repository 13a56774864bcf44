"""The always-on process sensor: bpf/process/base.bpf.c plus its decoders."""
from __future__ import annotations

import ctypes
import logging
import os

from ..abi.types import ExecFlag, ExecveMapValue, MsgExec, MsgOp, StatIdx
from ..bpf import libbpf, maps
from ..bpf.objects import ObjectSpec
from ..process import procfs
from ..process.tracker import ProcessTracker
from .base import Sensor

log = logging.getLogger("kerneye.sensors.exec")

NAME = "base"


def object_path(bpf_dir: str) -> str:
    return os.path.join(bpf_dir, "base.bpf.o")


def make(bpf_dir: str, tracker: ProcessTracker, rb_size: int, wakeup_bytes: int,
         execve_map_size: int = 65536) -> Sensor:
    ncpu = libbpf.lib().libbpf_num_possible_cpus()
    spec = ObjectSpec(
        object_path(bpf_dir),
        max_entries={"kerneye_events_rb": rb_size, "kerneye_exec_heap": ncpu,
                     "kerneye_execve_map": execve_map_size},
        rodata={"cfg_wakeup_bytes": wakeup_bytes},
    )
    return Sensor(
        NAME,
        [spec],
        handlers={
            MsgOp.EXECVE: tracker.handle_exec,
            MsgOp.CLONE: tracker.handle_clone,
            MsgOp.EXIT: tracker.handle_exit,
        },
    )


def seed(sensor: Sensor) -> list[bytes]:
    """Scan /proc after the programs are attached, write the processes the
    kernel does not know yet into kerneye_execve_map, and return their
    msg_exec records for the normal decode path (oldest first)."""
    fd = sensor.loaded[0].map_fd("kerneye_execve_map")
    out = []
    for r in procfs.scan():
        v = procfs.map_value(r)
        # A parent that forked/exec'd after attach has the kernel's identity.
        pv = ExecveMapValue()
        if maps.lookup(fd, ctypes.c_uint32(r.ppid), pv) and not pv.flags & ExecFlag.PROCFS:
            v.parent = pv.key
            msg = bytearray(r.msg)
            off = MsgExec.parent.offset
            msg[off : off + ctypes.sizeof(pv.key)] = bytes(pv.key)
            r.msg = bytes(msg)
        try:
            maps.update(fd, ctypes.c_uint32(r.pid), v, maps.BPF_NOEXIST)
        except Exception:  # noqa: BLE001 - EEXIST: the kernel already tracks it (forked or exec'd since attach)
            continue
        out.append(r.msg)
    return out


def kernel_stats(sensor: Sensor) -> dict[str, int]:
    fd = sensor.loaded[0].map_fd("kerneye_stats")
    return {i.name.lower(): maps.percpu_sum_u64(fd, i) for i in StatIdx if i != StatIdx.MAX}
