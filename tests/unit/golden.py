"""Read the golden ring-buffer captures in tests/data/*.bin.

A capture (written by tools/capture.py) is a sequence of records, each a u32
little-endian length followed by that many bytes of one ring-buffer message,
in the order the kernel produced them.
"""
from __future__ import annotations

import os
import struct

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
_LEN = struct.Struct("<I")


def path(name: str) -> str:
    return os.path.join(DATA_DIR, name)


def parse(data: bytes) -> list[bytes]:
    """Split a capture into its records; raises ValueError if truncated."""
    out: list[bytes] = []
    off = 0
    while off < len(data):
        if off + _LEN.size > len(data):
            raise ValueError(f"truncated length prefix at offset {off}")
        (n,) = _LEN.unpack_from(data, off)
        off += _LEN.size
        if off + n > len(data):
            raise ValueError(f"record at offset {off - _LEN.size} claims {n} bytes, {len(data) - off} left")
        out.append(data[off : off + n])
        off += n
    return out


def load(name: str) -> list[bytes]:
    """The records of tests/data/<name>, in capture order."""
    with open(path(name), "rb") as f:
        return parse(f.read())
