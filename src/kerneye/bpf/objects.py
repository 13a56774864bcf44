"""BPF objects: spec (file + pre-load settings) -> loaded object -> links.

Follows cilium/ebpf's rule: an `ObjectSpec` is built without touching the
kernel; `load()` is where the running kernel decides (CO-RE relocation,
verification); `attach()` returns `Link`s that must be closed. Closing a
`LoadedObject` destroys its links and frees its programs and maps, so an
agent that exits leaves nothing behind (kerneye pins nothing by default).
"""
from __future__ import annotations

import ctypes
import errno as errno_mod
import os
from dataclasses import dataclass, field

from ..errors import BpfError, NotSupported, VerifierError
from . import libbpf
from .elf import symbol_offsets


@dataclass
class ObjectSpec:
    """What to load and how to configure it before load."""

    path: str
    max_entries: dict[str, int] = field(default_factory=dict)
    rodata: dict[str, int] = field(default_factory=dict)  # const volatile __u32/__u64 tunables
    reuse_maps: dict[str, int] = field(default_factory=dict)  # map name -> fd of an owner map
    autoload: dict[str, bool] = field(default_factory=dict)  # program name -> load it?

    def name(self) -> str:
        return os.path.basename(self.path).split(".")[0]


class Link:
    """An attached program. `close()` detaches it; idempotent."""

    def __init__(self, ptr: int, prog: str) -> None:
        self._ptr = ptr
        self.prog = prog

    def close(self) -> None:
        if self._ptr:
            libbpf.lib().bpf_link__destroy(self._ptr)
            self._ptr = 0

    @property
    def attached(self) -> bool:
        return bool(self._ptr)


class FdLink:
    """An attachment held by a plain file descriptor (raw tracepoint opened
    with BPF_RAW_TRACEPOINT_OPEN). `close()` detaches; idempotent."""

    def __init__(self, fd: int, prog: str) -> None:
        self._fd = fd
        self.prog = prog

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def attached(self) -> bool:
        return self._fd >= 0


_BPF_RAW_TRACEPOINT_OPEN = 17
_SYS_BPF = 321  # x86-64


class _RawTpAttr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("pad", ctypes.c_uint32),
                ("cookie", ctypes.c_uint64)]


class _KprobeOpts(ctypes.Structure):
    """struct bpf_kprobe_opts as of libbpf 1.1 (later versions append
    attach_mode inside the trailing padding; zero is its default)."""

    _fields_ = [("sz", ctypes.c_size_t), ("bpf_cookie", ctypes.c_uint64), ("offset", ctypes.c_size_t),
                ("retprobe", ctypes.c_bool)]


class LoadedObject:
    """A loaded BPF object. Owns its maps, programs and links."""

    def __init__(self, spec: ObjectSpec) -> None:
        if not os.path.exists(spec.path):
            raise BpfError(f"BPF object {spec.path} is missing; build it with `make -C bpf`")
        self.spec = spec
        self.links: list[Link] = []
        l = libbpf.lib()
        libbpf.take_log()
        obj = l.bpf_object__open_file(spec.path.encode(), None)
        if not obj:
            err = libbpf.errno_()
            raise BpfError(f"cannot open {spec.path}: {libbpf.strerror(err)}", err, libbpf.take_log())
        self._obj = obj
        try:
            self._configure()
            rc = l.bpf_object__load(obj)
            if rc:
                self._raise_load_error(rc)
        except BaseException:
            l.bpf_object__close(obj)
            self._obj = None
            raise

    def _configure(self) -> None:
        l = libbpf.lib()
        for name, n in self.spec.max_entries.items():
            rc = l.bpf_map__set_max_entries(self._map(name), n)
            if rc:
                raise BpfError(f"{self.spec.name()}: cannot size map {name} to {n}: {libbpf.strerror(rc)}", rc)
        for name, fd in self.spec.reuse_maps.items():
            rc = l.bpf_map__reuse_fd(self._map(name), fd)
            if rc:
                raise BpfError(f"{self.spec.name()}: cannot share map {name}: {libbpf.strerror(rc)}", rc)
        for name, on in self.spec.autoload.items():
            prog = l.bpf_object__find_program_by_name(self._obj, name.encode())
            if not prog:
                raise BpfError(f"{self.spec.name()}: no program {name}")
            l.bpf_program__set_autoload(prog, on)
        if self.spec.rodata:
            self._set_rodata()

    def _set_rodata(self) -> None:
        l = libbpf.lib()
        offsets = symbol_offsets(self.spec.path, ".rodata")
        rodata = self._find_map_suffix(".rodata")
        size = ctypes.c_size_t()
        ptr = l.bpf_map__initial_value(rodata, ctypes.byref(size))
        if not ptr:
            raise BpfError(f"{self.spec.name()}: .rodata is not accessible")
        for var, value in self.spec.rodata.items():
            if var not in offsets:
                raise BpfError(f"{self.spec.name()}: no tunable {var} in .rodata")
            off, vsize = offsets[var]
            if off + vsize > size.value:
                raise BpfError(f"{self.spec.name()}: tunable {var} lies outside .rodata")
            ctypes.memmove(ptr + off, int(value).to_bytes(vsize, "little"), vsize)

    def _raise_load_error(self, rc: int) -> None:
        log = libbpf.take_log()
        err = -rc
        if err == errno_mod.EPERM:
            raise NotSupported(
                "bpf-load",
                f"loading {self.spec.name()} failed with EPERM: run as root (CAP_BPF, CAP_PERFMON, "
                "CAP_SYS_ADMIN) on a kernel that allows these program types",
            )
        if err in (errno_mod.EINVAL, errno_mod.EACCES, errno_mod.E2BIG, errno_mod.ENOSPC) and "-- BEGIN PROG LOAD LOG --" in log:
            tail = [ln for ln in log.splitlines() if ln.strip()][-3:]
            raise VerifierError(
                f"the kernel's verifier rejected {self.spec.name()} ({libbpf.strerror(err)}): "
                + " | ".join(tail),
                err,
                log,
            )
        last = [ln for ln in log.splitlines() if ln.strip()][-1:] or [""]
        raise BpfError(f"cannot load {self.spec.name()}: {libbpf.strerror(err)} {last[0]}".strip(), err, log)

    def _map(self, name: str) -> int:
        m = libbpf.lib().bpf_object__find_map_by_name(self._obj, name.encode())
        if not m:
            raise BpfError(f"{self.spec.name()}: no map {name}")
        return m

    def _find_map_suffix(self, suffix: str) -> int:
        l = libbpf.lib()
        m = l.bpf_object__next_map(self._obj, None)
        while m:
            if l.bpf_map__name(m).decode().endswith(suffix):
                return m
            m = l.bpf_object__next_map(self._obj, m)
        raise BpfError(f"{self.spec.name()}: no {suffix} map")

    def map_fd(self, name: str) -> int:
        return libbpf.lib().bpf_map__fd(self._map(name))

    def map_max_entries(self, name: str) -> int:
        return libbpf.lib().bpf_map__max_entries(self._map(name))

    def programs(self) -> list[str]:
        l = libbpf.lib()
        out = []
        p = l.bpf_object__next_program(self._obj, None)
        while p:
            if l.bpf_program__autoload(p):
                out.append(l.bpf_program__name(p).decode())
            p = l.bpf_object__next_program(self._obj, p)
        return out

    def autoattach_programs(self) -> list[str]:
        """Programs whose SEC() names a complete attach point (tp_btf/...),
        as opposed to generic ones attached explicitly per hook."""
        return [p for p in self.programs() if not p.startswith("kerneye_gen_")]

    def attach(self, prog_name: str) -> Link:
        """Attach by the program's SEC() definition (tp_btf/..., tp/..., uprobe...)."""
        l = libbpf.lib()
        prog = l.bpf_object__find_program_by_name(self._obj, prog_name.encode())
        if not prog:
            raise BpfError(f"{self.spec.name()}: no program {prog_name}")
        libbpf.take_log()
        link = l.bpf_program__attach(prog)
        if not link:
            err = libbpf.errno_()
            raise BpfError(f"cannot attach {prog_name}: {libbpf.strerror(err)}", err, libbpf.take_log())
        lk = Link(link, prog_name)
        self.links.append(lk)
        return lk

    def _prog(self, prog_name: str) -> int:
        prog = libbpf.lib().bpf_object__find_program_by_name(self._obj, prog_name.encode())
        if not prog:
            raise BpfError(f"{self.spec.name()}: no program {prog_name}")
        return prog

    def attach_tracepoint(self, prog_name: str, category: str, name: str, cookie: int = 0) -> Link:
        """Attach a tracepoint program to category/name; the cookie is what
        bpf_get_attach_cookie() returns in the program (v5.15+)."""
        opts = libbpf.TracepointOpts(ctypes.sizeof(libbpf.TracepointOpts), cookie)
        libbpf.take_log()
        link = libbpf.lib().bpf_program__attach_tracepoint_opts(self._prog(prog_name), category.encode(),
                                                               name.encode(), ctypes.byref(opts))
        if not link:
            err = libbpf.errno_()
            raise BpfError(f"cannot attach to tracepoint {category}/{name}: {libbpf.strerror(err)}", err,
                           libbpf.take_log())
        return Link(link, prog_name)

    def attach_raw_tracepoint(self, prog_name: str, name: str, cookie: int = 0) -> FdLink:
        """Attach a raw_tp program with a BPF cookie. libbpf 1.1 has no API
        for raw-tracepoint cookies, so this is the bpf(2) call itself; the
        kernel supports the cookie since v6.10."""
        fd = libbpf.lib().bpf_program__fd(self._prog(prog_name))
        cname = ctypes.create_string_buffer(name.encode())
        attr = _RawTpAttr(ctypes.cast(cname, ctypes.c_void_p).value or 0, fd, 0, cookie)
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        r = libc.syscall(ctypes.c_long(_SYS_BPF), ctypes.c_int(_BPF_RAW_TRACEPOINT_OPEN), ctypes.byref(attr),
                         ctypes.c_uint(ctypes.sizeof(attr)))
        if r < 0:
            err = ctypes.get_errno()
            hint = " (raw tracepoints with cookies need Linux 6.10+)" if err in (errno_mod.E2BIG, errno_mod.EINVAL) else ""
            raise BpfError(f"cannot attach raw tracepoint {name}: {libbpf.strerror(err)}{hint}", err)
        return FdLink(int(r), prog_name)

    def attach_uprobe(self, prog_name: str, path: str, symbol: str | None, offset: int, cookie: int = 0,
                      retprobe: bool = False, pid: int = -1) -> Link:
        """Attach a uprobe at symbol (+offset) or at a file offset in path."""
        opts = libbpf.UprobeOpts(ctypes.sizeof(libbpf.UprobeOpts), 0, cookie, retprobe,
                                 symbol.encode() if symbol else None)
        libbpf.take_log()
        link = libbpf.lib().bpf_program__attach_uprobe_opts(self._prog(prog_name), pid, path.encode(), offset,
                                                           ctypes.byref(opts))
        if not link:
            err = libbpf.errno_()
            what = f"{path}:{symbol or hex(offset)}"
            raise BpfError(f"cannot attach uprobe to {what}: {libbpf.strerror(err)}", err, libbpf.take_log())
        return Link(link, prog_name)

    def attach_kprobe(self, prog_name: str, function: str, cookie: int = 0, retprobe: bool = False) -> Link:
        """Attach a kprobe (or kretprobe) program to a kernel function, with a
        BPF cookie (perf-event kprobes carry one since v5.15)."""
        l = libbpf.lib()
        fn = l.bpf_program__attach_kprobe_opts
        if fn.argtypes is None:  # not in libbpf._SIGS: set here, once
            fn.restype = ctypes.c_void_p
            fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(_KprobeOpts)]
        opts = _KprobeOpts(ctypes.sizeof(_KprobeOpts), cookie, 0, retprobe)
        libbpf.take_log()
        link = fn(self._prog(prog_name), function.encode(), ctypes.byref(opts))
        if not link:
            err = libbpf.errno_()
            what = "kretprobe" if retprobe else "kprobe"
            raise BpfError(f"cannot attach {what} to {function}: {libbpf.strerror(err)}", err, libbpf.take_log())
        return Link(link, prog_name)

    def attach_all(self) -> list[Link]:
        return [self.attach(p) for p in self.autoattach_programs()]

    def close(self) -> None:
        """Detach all links and free the object. Idempotent."""
        for lk in self.links:
            lk.close()
        self.links.clear()
        if self._obj:
            libbpf.lib().bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self) -> "LoadedObject":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
