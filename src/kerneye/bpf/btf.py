"""A small BTF parser: structs, unions, enums, ints, typedefs, vars, datasecs.

Used to (a) find `const volatile` tunables in `.rodata` and (b) verify the
Python mirror of kerneye/abi.h against the compiled objects. The format is
documented in the kernel's Documentation/bpf/btf.rst.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import KerneyeError
from .elf import read_sections

BTF_MAGIC = 0xEB9F
KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19


@dataclass
class Member:
    name: str
    type_id: int
    bit_offset: int


@dataclass
class BtfType:
    id: int
    kind: int
    name: str
    size: int = 0  # size for int/struct/union/enum/datasec
    type_id: int = 0  # referenced type for ptr/typedef/const/volatile/var/...
    members: list[Member] = field(default_factory=list)
    enum_values: dict[str, int] = field(default_factory=dict)
    # ARRAY: (elem type, nelems); DATASEC: [(var type id, offset, size)]
    array: tuple[int, int] = (0, 0)
    vars: list[tuple[int, int, int]] = field(default_factory=list)


class Btf:
    """Parsed BTF type graph. Type id 0 is void."""

    def __init__(self, raw: bytes) -> None:
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", raw, 0
        )
        if magic != BTF_MAGIC:
            raise KerneyeError("bad BTF magic; the object was not built with -g")
        types = raw[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strs = raw[hdr_len + str_off : hdr_len + str_off + str_len]
        self.types: list[BtfType] = [BtfType(0, 0, "void")]
        self._parse(types)
        self.by_name: dict[tuple[int, str], BtfType] = {}
        for t in self.types:
            if t.name:
                self.by_name.setdefault((t.kind, t.name), t)

    @classmethod
    def from_object(cls, path: str) -> "Btf":
        secs = read_sections(path)
        if ".BTF" not in secs:
            raise KerneyeError(f"{path}: no .BTF section; rebuild with `make -C bpf` (clang -g)")
        return cls(secs[".BTF"])

    def _str(self, off: int) -> str:
        return self._strs[off : self._strs.index(b"\0", off)].decode()

    def _parse(self, buf: bytes) -> None:
        off = 0
        tid = 1
        while off < len(buf):
            name_off, info, size_or_type = struct.unpack_from("<III", buf, off)
            off += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            kflag = info >> 31
            t = BtfType(tid, kind, self._str(name_off))
            if kind in (KIND_INT,):
                t.size = size_or_type
                off += 4
            elif kind in (KIND_STRUCT, KIND_UNION):
                t.size = size_or_type
                for _ in range(vlen):
                    mname, mtype, moff = struct.unpack_from("<III", buf, off)
                    off += 12
                    bit = moff & 0xFFFFFF if kflag else moff
                    t.members.append(Member(self._str(mname), mtype, bit))
            elif kind == KIND_ENUM:
                t.size = size_or_type
                for _ in range(vlen):
                    ename, val = struct.unpack_from("<Ii", buf, off)
                    off += 8
                    t.enum_values[self._str(ename)] = val
            elif kind == KIND_ENUM64:
                t.size = size_or_type
                for _ in range(vlen):
                    ename, lo, hi = struct.unpack_from("<III", buf, off)
                    off += 12
                    t.enum_values[self._str(ename)] = (hi << 32) | lo
            elif kind == KIND_ARRAY:
                elem, _idx, nelems = struct.unpack_from("<III", buf, off)
                off += 12
                t.array = (elem, nelems)
            elif kind == KIND_FUNC_PROTO:
                off += 8 * vlen
            elif kind == KIND_VAR:
                t.type_id = size_or_type
                off += 4
            elif kind == KIND_DATASEC:
                t.size = size_or_type
                for _ in range(vlen):
                    t.vars.append(struct.unpack_from("<III", buf, off))
                    off += 12
            elif kind == KIND_DECL_TAG:
                t.type_id = size_or_type
                off += 4
            elif kind == KIND_FLOAT:
                t.size = size_or_type
            else:  # PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, TYPE_TAG
                t.type_id = size_or_type
            self.types.append(t)
            tid += 1

    def resolve(self, tid: int) -> BtfType:
        """Follow typedef/const/volatile/restrict/type_tag to the real type."""
        t = self.types[tid]
        while t.kind in (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG):
            t = self.types[t.type_id]
        return t

    def sizeof(self, tid: int) -> int:
        t = self.resolve(tid)
        if t.kind == KIND_PTR:
            return 8
        if t.kind == KIND_ARRAY:
            return self.sizeof(t.array[0]) * t.array[1]
        return t.size

    def struct(self, name: str) -> BtfType:
        t = self.by_name.get((KIND_STRUCT, name))
        if t is None:
            raise KeyError(f"struct {name} not in BTF")
        return t

    def enum(self, name: str) -> BtfType:
        t = self.by_name.get((KIND_ENUM, name)) or self.by_name.get((KIND_ENUM64, name))
        if t is None:
            raise KeyError(f"enum {name} not in BTF")
        return t

    def datasec_vars(self, name: str) -> dict[str, tuple[int, int]]:
        """{variable name: (offset, size)} of a data section like .rodata."""
        sec = self.by_name.get((KIND_DATASEC, name))
        if sec is None:
            return {}
        return {self.types[vid].name: (off, size) for vid, off, size in sec.vars}
