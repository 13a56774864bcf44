"""Map access by fd: update/lookup/delete/iterate with ctypes buffers."""
from __future__ import annotations

import ctypes
from typing import Iterator

from ..errors import BpfError
from . import libbpf

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2


def update(fd: int, key: ctypes.Structure | ctypes._SimpleCData, value: ctypes.Structure | ctypes._SimpleCData,
           flags: int = BPF_ANY) -> None:
    rc = libbpf.lib().bpf_map_update_elem(fd, ctypes.byref(key), ctypes.byref(value), flags)
    if rc:
        raise BpfError(f"map update failed: {libbpf.strerror(rc)}", -rc)


def lookup(fd: int, key: ctypes.Structure | ctypes._SimpleCData, value: ctypes.Structure | ctypes.Array) -> bool:
    """Fill value; return False if the key is absent."""
    return libbpf.lib().bpf_map_lookup_elem(fd, ctypes.byref(key), ctypes.byref(value)) == 0


def delete(fd: int, key: ctypes.Structure | ctypes._SimpleCData) -> bool:
    return libbpf.lib().bpf_map_delete_elem(fd, ctypes.byref(key)) == 0


def keys(fd: int, key_type: type) -> Iterator[ctypes._SimpleCData]:
    l = libbpf.lib()
    cur = key_type()
    nxt = key_type()
    rc = l.bpf_map_get_next_key(fd, None, ctypes.byref(nxt))
    while rc == 0:
        yield key_type.from_buffer_copy(nxt)
        ctypes.memmove(ctypes.byref(cur), ctypes.byref(nxt), ctypes.sizeof(key_type))
        rc = l.bpf_map_get_next_key(fd, ctypes.byref(cur), ctypes.byref(nxt))


def percpu_sum_u64(fd: int, index: int) -> int:
    """Sum a per-CPU u64 array slot over all possible CPUs."""
    ncpu = libbpf.lib().libbpf_num_possible_cpus()
    vals = (ctypes.c_uint64 * ncpu)()
    if not lookup(fd, ctypes.c_uint32(index), vals):
        return 0
    return sum(vals)


class _MapInfo(ctypes.Structure):
    """The first fields of struct bpf_map_info (the kernel fills what fits)."""

    _fields_ = [("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("key_size", ctypes.c_uint32),
                ("value_size", ctypes.c_uint32), ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
                ("name", ctypes.c_char * 16)]


def info(fd: int) -> tuple[int, int, int]:
    """(map type, key size, max_entries) of a map fd."""
    i = _MapInfo()
    ln = ctypes.c_uint(ctypes.sizeof(i))
    rc = libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(i), ctypes.byref(ln))
    if rc:
        raise BpfError(f"cannot read map info: {libbpf.strerror(rc)}", -rc)
    return i.type, i.key_size, i.max_entries


def count_keys(fd: int, key_size: int, limit: int) -> int:
    """Number of keys, walking the map with get_next_key (one syscall per
    key), stopping at `limit` in case concurrent deletions restart the walk."""
    l = libbpf.lib()
    cur = ctypes.create_string_buffer(max(1, key_size))
    nxt = ctypes.create_string_buffer(max(1, key_size))
    n = 0
    rc = l.bpf_map_get_next_key(fd, None, nxt)
    while rc == 0 and n < limit:
        n += 1
        ctypes.memmove(cur, nxt, key_size)
        rc = l.bpf_map_get_next_key(fd, cur, nxt)
    return n


BPF_MAP_TYPE_HASH = 1


def create(map_type: int, key_size: int, value_size: int, max_entries: int, name: str = "") -> int:
    """A new map outside any object (bpf_map_create); returns its fd, which
    the caller closes (os.close). For maps handed to an object with
    ObjectSpec.reuse_maps, and for tests standing in for another sensor's map."""
    f = libbpf.lib().bpf_map_create
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_uint32, ctypes.c_void_p]
    fd = f(map_type, name.encode()[:15] or None, key_size, value_size, max_entries, None)
    if fd < 0:
        raise BpfError(f"cannot create map {name or '(unnamed)'}: {libbpf.strerror(fd)}", -fd)
    return fd


def value_size(fd: int) -> int:
    """Value size of a map fd (to check a map before reusing it)."""
    i = _MapInfo()
    ln = ctypes.c_uint(ctypes.sizeof(i))
    rc = libbpf.lib().bpf_obj_get_info_by_fd(fd, ctypes.byref(i), ctypes.byref(ln))
    if rc:
        raise BpfError(f"cannot read map info: {libbpf.strerror(rc)}", -rc)
    return i.value_size
