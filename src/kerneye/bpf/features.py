"""Feature probes: which hook back ends does the running kernel allow?

Each probe loads and attaches a tiny program (bpf/probes/*.bpf.c) and
detaches it at once. Results are cached for the process. A probe answers
None when supported, or a one-line reason when not ("kprobes: attach failed:
Operation not supported (CONFIG_KPROBES is probably off)"). Probing beats
version checks: distributions backport and disable features freely.
"""
from __future__ import annotations

import os
from functools import lru_cache

from ..errors import KerneyeError
from .objects import LoadedObject, ObjectSpec

_HINTS = {
    "kprobe": "the kernel needs CONFIG_KPROBES and CONFIG_KPROBE_EVENTS",
    "fentry": "the kernel needs BPF trampolines (CONFIG_DEBUG_INFO_BTF, x86-64/arm64, v5.5+) and must allow tracing programs",
    "lsm": "the kernel needs CONFIG_BPF_LSM and 'bpf' in the lsm= boot parameter (v5.7+)",
}

BACKENDS = ("kprobe", "fentry", "lsm")


@lru_cache(maxsize=None)
def probe(bpf_dir: str, backend: str) -> str | None:
    """None if `backend` works here, else why not."""
    path = os.path.join(bpf_dir, f"probe_{backend}.bpf.o")
    if not os.path.exists(path):
        return f"{backend}: probe object {path} missing (make -C bpf)"
    try:
        with LoadedObject(ObjectSpec(path)) as obj:
            obj.attach_all()
    except KerneyeError as e:
        msg = str(e).split(":")[-1].strip() if "EPERM" not in str(e) else "load failed with EPERM"
        return f"{backend} programs are unavailable on this kernel ({msg}); {_HINTS[backend]}"
    return None


@lru_cache(maxsize=None)
def rawtp_cookie(bpf_dir: str) -> str | None:
    """None if raw_tp programs may read their attach cookie (the generic
    sensor's raw tracepoint hooks need it; v6.10+), else why not."""
    path = os.path.join(bpf_dir, "probe_rawtp_cookie.bpf.o")
    if not os.path.exists(path):
        return f"probe object {path} missing (make -C bpf)"
    try:
        with LoadedObject(ObjectSpec(path)):
            pass
    except KerneyeError:
        return ("raw tracepoint hooks are unavailable on this kernel: raw_tp programs cannot read their attach "
                "cookie (Linux 6.10+); use the tracepoint's regular (non-raw) form")
    return None


def summary(bpf_dir: str) -> dict[str, str]:
    """{backend: "available" | reason} for status output."""
    return {b: (probe(bpf_dir, b) or "available") for b in BACKENDS}
