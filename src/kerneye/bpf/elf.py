"""Minimal ELF64 little-endian section reader (enough to fetch .BTF).

Parsing an object file is deterministic and never touches the kernel
(spec before object), so the ABI check needs neither root nor bpftool.
"""
from __future__ import annotations

import struct

from ..errors import KerneyeError


def read_sections(path: str) -> dict[str, bytes]:
    """Return {section name: contents} of an ELF64 LE file."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise KerneyeError(f"{path}: not an ELF64 little-endian object; rebuild with `make -C bpf`")
    (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    headers = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        name, _typ, _flags, _addr, offset, size = struct.unpack_from("<IIQQQQ", data, off)
        headers.append((name, offset, size))
    _, stroff, strsize = headers[e_shstrndx]
    strtab = data[stroff : stroff + strsize]
    out: dict[str, bytes] = {}
    for name, offset, size in headers:
        end = strtab.index(b"\0", name)
        out[strtab[name:end].decode()] = data[offset : offset + size]
    return out
