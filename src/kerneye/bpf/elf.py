"""Minimal ELF64 little-endian section reader (enough to fetch .BTF).

Parsing an object file is deterministic and never touches the kernel
(spec before object), so the ABI check needs neither root nor bpftool.
"""
from __future__ import annotations

import struct

from ..errors import KerneyeError


def _headers(data: bytes) -> tuple[list[tuple[str, int, int, int, int]], bytes]:
    (e_shoff,) = struct.unpack_from("<Q", data, 0x28)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    raw = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        name, typ, _flags, _addr, offset, size, link = struct.unpack_from("<IIQQQQI", data, off)
        raw.append((name, typ, offset, size, link))
    _, _, stroff, strsize, _ = raw[e_shstrndx]
    strtab = data[stroff : stroff + strsize]
    out = []
    for name, typ, offset, size, link in raw:
        end = strtab.index(b"\0", name)
        out.append((strtab[name:end].decode(), typ, offset, size, link))
    return out, data


def symbol_offsets(path: str, section: str) -> dict[str, tuple[int, int]]:
    """{symbol: (offset, size)} of the symbols defined in `section`. clang
    leaves BTF DATASEC offsets at 0 in object files (libbpf fills them in
    from the symbol table at open), so tunables are located through this."""
    with open(path, "rb") as f:
        data = f.read()
    hdrs, _ = _headers(data)
    sec_idx = next((i for i, h in enumerate(hdrs) if h[0] == section), None)
    symtab = next((h for h in hdrs if h[1] == 2), None)  # SHT_SYMTAB
    if sec_idx is None or symtab is None:
        return {}
    _, _, off, size, link = symtab
    strtab = data[hdrs[link][2] : hdrs[link][2] + hdrs[link][3]]
    out = {}
    for i in range(off, off + size, 24):
        st_name, _info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", data, i)
        if st_shndx == sec_idx and st_name:
            end = strtab.index(b"\0", st_name)
            out[strtab[st_name:end].decode()] = (st_value, st_size)
    return out


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
