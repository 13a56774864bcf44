"""Private ctypes bindings to the system libbpf.so.1 (libbpf >= 1.0).

libbpf 1.x returns NULL and sets errno for pointer-returning calls, and a
negative errno for int-returning ones. Only the functions kerneye uses are
bound; callers go through objects.py, maps.py and ringbuf.py.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from ctypes import POINTER, c_bool, c_char_p, c_int, c_size_t, c_uint, c_void_p

from ..errors import BpfError

_lib: ctypes.CDLL | None = None
_libc = ctypes.CDLL(None, use_errno=True)
_log_lock = threading.Lock()
_log_lines: list[str] = []

# libbpf_print_fn_t: int (*)(enum libbpf_print_level, const char *, va_list).
# va_list is passed as a pointer on x86-64 and arm64; vsnprintf formats it.
_PRINT_FN = ctypes.CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
_libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
_libc.vsnprintf.restype = c_int


def _print(level: int, fmt: bytes, ap: int) -> int:
    buf = ctypes.create_string_buffer(4096)
    _libc.vsnprintf(buf, len(buf), fmt, ap)
    with _log_lock:
        _log_lines.append(buf.value.decode(errors="replace"))
        if len(_log_lines) > 20000:
            del _log_lines[:10000]
    return 0


_print_cb = _PRINT_FN(_print)  # kept alive for the process lifetime

class TracepointOpts(ctypes.Structure):
    """struct bpf_tracepoint_opts (libbpf >= 0.8)."""

    _fields_ = [("sz", c_size_t), ("bpf_cookie", ctypes.c_uint64)]


class UprobeOpts(ctypes.Structure):
    """struct bpf_uprobe_opts as of libbpf 1.1 (later versions only append)."""

    _fields_ = [("sz", c_size_t), ("ref_ctr_offset", c_size_t), ("bpf_cookie", ctypes.c_uint64),
                ("retprobe", c_bool), ("func_name", c_char_p)]


_SIGS: dict[str, tuple[object, list[object]]] = {
    "libbpf_set_print": (c_void_p, [_PRINT_FN]),
    "libbpf_num_possible_cpus": (c_int, []),
    "bpf_object__open_file": (c_void_p, [c_char_p, c_void_p]),
    "bpf_object__load": (c_int, [c_void_p]),
    "bpf_object__close": (None, [c_void_p]),
    "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
    "bpf_object__next_program": (c_void_p, [c_void_p, c_void_p]),
    "bpf_object__next_map": (c_void_p, [c_void_p, c_void_p]),
    "bpf_program__name": (c_char_p, [c_void_p]),
    "bpf_program__set_autoload": (c_int, [c_void_p, c_bool]),
    "bpf_program__autoload": (c_bool, [c_void_p]),
    "bpf_program__attach": (c_void_p, [c_void_p]),
    "bpf_program__attach_cgroup": (c_void_p, [c_void_p, c_int]),
    "bpf_program__attach_tracepoint_opts": (c_void_p, [c_void_p, c_char_p, c_char_p, POINTER(TracepointOpts)]),
    "bpf_program__attach_uprobe_opts": (c_void_p, [c_void_p, ctypes.c_int, c_char_p, c_size_t, POINTER(UprobeOpts)]),
    "bpf_program__fd": (c_int, [c_void_p]),
    "bpf_link__destroy": (c_int, [c_void_p]),
    "bpf_link__fd": (c_int, [c_void_p]),
    "bpf_map__name": (c_char_p, [c_void_p]),
    "bpf_map__fd": (c_int, [c_void_p]),
    "bpf_map__set_max_entries": (c_int, [c_void_p, c_uint]),
    "bpf_map__max_entries": (c_uint, [c_void_p]),
    "bpf_map__value_size": (c_uint, [c_void_p]),
    "bpf_map__key_size": (c_uint, [c_void_p]),
    "bpf_map__reuse_fd": (c_int, [c_void_p, c_int]),
    "bpf_map__initial_value": (c_void_p, [c_void_p, POINTER(c_size_t)]),
    "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, ctypes.c_uint64]),
    "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
    "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
    "bpf_prog_get_next_id": (c_int, [c_uint, POINTER(c_uint)]),
    "bpf_prog_get_fd_by_id": (c_int, [c_uint]),
    "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, POINTER(c_uint)]),
}


def lib() -> ctypes.CDLL:
    """Load libbpf once; raise BpfError naming the package to install."""
    global _lib
    if _lib is not None:
        return _lib
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        l = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise BpfError(f"cannot load libbpf ({e}); install it: apt-get install libbpf1") from None
    for fn, (res, args) in _SIGS.items():
        try:
            f = getattr(l, fn)
        except AttributeError:
            raise BpfError(f"libbpf lacks {fn}; kerneye needs libbpf >= 1.0 (apt-get install libbpf1)") from None
        f.restype = res
        f.argtypes = args
    l.libbpf_set_print(_print_cb)
    _lib = l
    return l


def take_log() -> str:
    """Return and clear what libbpf printed (verifier logs included)."""
    with _log_lock:
        out = "".join(_log_lines)
        _log_lines.clear()
    return out


def errno_() -> int:
    return ctypes.get_errno()


def strerror(err: int) -> str:
    return os.strerror(abs(err)) if err else "unknown error"
