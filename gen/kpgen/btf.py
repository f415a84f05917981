"""The kernel's BTF: the prototype of every function it was built with, read offline.

Debian's kernels are built with CONFIG_DEBUG_INFO_BTF (and _MODULES): pahole turns the compiler's
DWARF into the `.BTF` section of vmlinux (kept in the image, /boot/vmlinuz-<release>) and of each
module's `.ko` (split BTF: its type ids and strings continue those of vmlinux). So the exact
prototypes of the kernel's functions, static ones included, are there without the kernel's
source, its debug package or a boot. pahole leaves out functions gcc inlined everywhere or
compiled with a changed calling convention (`.isra`, `.constprop`): those have no prototype here.

The format is the kernel's Documentation/bpf/btf.rst: a header, then the types (a 12-byte
`struct btf_type` each, followed by a kind-specific tail), then the strings.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .ctype import VOID, CType

MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len
TYPE = struct.Struct("<III")  # name_off, info, size or type

INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
# the bytes that follow a type of each kind: a fixed tail, or one record per vlen
TAIL = {INT: 4, ARRAY: 12, VAR: 4, DECL_TAG: 4}
PER_MEMBER = {STRUCT: 12, UNION: 12, ENUM: 8, FUNC_PROTO: 8, DATASEC: 12, ENUM64: 12}


class BtfError(ValueError):
    """The bytes are not BTF this reader understands."""


@dataclass
class Btf:
    """The types of one BTF blob (with its base, for a module's split BTF)."""

    strings: bytes
    # per type id - first_id: (kind, name_off, vlen, kind_flag, size_or_type, tail offset)
    raw: list[tuple[int, int, int, int, int, int]]
    data: bytes
    base: Btf | None = None
    first_id: int = 1
    base_str_len: int = 0
    _types: dict[int, CType] = field(default_factory=dict)

    # --- names and raw records --------------------------------------------------------------

    def string(self, off: int) -> str:
        if self.base is not None and off < self.base_str_len:
            return self.base.string(off)
        off -= self.base_str_len
        end = self.strings.index(b"\0", off)
        return self.strings[off:end].decode("utf-8", "replace")

    def record(self, tid: int) -> tuple[Btf, tuple[int, int, int, int, int, int]]:
        if tid < self.first_id:
            if self.base is None:
                raise BtfError(f"type id {tid} is below the first id {self.first_id} and there is no base")
            return self.base.record(tid)
        return self, self.raw[tid - self.first_id]

    def _named(self, kind: int) -> dict[str, list[int]]:
        found: dict[str, list[int]] = {}
        for i, (k, name_off, *_rest) in enumerate(self.raw):
            if k == kind:
                found.setdefault(self.string(name_off), []).append(self.first_id + i)
        return found

    def functions(self) -> dict[str, list[int]]:
        """Each function's name -> the ids of its FUNC types (several for same-named statics)."""
        return self._named(FUNC)

    def variables(self) -> dict[str, list[int]]:
        """Each variable BTF records (pahole records the per-CPU ones) -> the ids of its VARs."""
        return self._named(VAR)

    # --- types ---------------------------------------------------------------------------------

    def type(self, tid: int) -> CType:
        """The C type of a type id (a FUNC's is its prototype, a VAR's its variable's type)."""
        if tid == 0:
            return VOID
        owner, _ = self.record(tid)
        if owner is not self:
            return owner.type(tid)
        if tid not in self._types:
            self._types[tid] = self._make(tid)
        return self._types[tid]

    def _make(self, tid: int) -> CType:
        kind, name_off, vlen, kind_flag, ref, tail = self.raw[tid - self.first_id]
        name = self.string(name_off)
        if kind == INT:
            return CType("int", name)
        if kind == FLOAT:
            return CType("float", name)
        if kind == PTR:
            return CType("ptr", ref=self.type(ref))
        if kind in (CONST, VOLATILE, RESTRICT):
            return CType({CONST: "const", VOLATILE: "volatile", RESTRICT: "restrict"}[kind], ref=self.type(ref))
        if kind in (TYPE_TAG, DECL_TAG, VAR, FUNC):
            # a type tag (__user with clang) changes nothing in C; a FUNC is its prototype
            return self.type(ref)
        if kind == TYPEDEF:
            return CType("typedef", name, ref=self.type(ref))
        if kind in (STRUCT, UNION):
            return CType("struct" if kind == STRUCT else "union", name)
        if kind in (ENUM, ENUM64):
            return CType("enum", name)
        if kind == FWD:
            return CType("union" if kind_flag else "struct", name)
        if kind == ARRAY:
            elem, _index, nelems = struct.unpack_from("<III", self.data, tail)
            return CType("array", ref=self.type(elem), nelems=nelems)
        if kind == FUNC_PROTO:
            params = []
            variadic = False
            for i in range(vlen):
                p_name, p_type = struct.unpack_from("<II", self.data, tail + 8 * i)
                if p_type == 0 and i == vlen - 1:
                    variadic = True  # a last parameter of type void: the "..."
                    continue
                params.append((self.string(p_name), self.type(p_type)))
            return CType("func", ref=self.type(ref), params=tuple(params), variadic=variadic)
        raise BtfError(f"type {tid} is of BTF kind {kind}, which has no C type")


def parse(data: bytes, base: Btf | None = None) -> Btf:
    """The BTF of one `.BTF` section; `base` is vmlinux's for a module's split BTF."""
    if len(data) < HEADER.size:
        raise BtfError("too short for a BTF header")
    magic, _version, _flags, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise BtfError(f"magic {magic:#x} is not BTF's {MAGIC:#x}")
    types = data[hdr_len + type_off: hdr_len + type_off + type_len]
    strings = data[hdr_len + str_off: hdr_len + str_off + str_len]
    raw: list[tuple[int, int, int, int, int, int]] = []
    off = 0
    while off < len(types):
        name_off, info, size_or_type = TYPE.unpack_from(types, off)
        kind, vlen, kind_flag = (info >> 24) & 0x1F, info & 0xFFFF, info >> 31
        tail = off + TYPE.size
        if kind in TAIL:
            length = TAIL[kind]
        elif kind in PER_MEMBER:
            length = PER_MEMBER[kind] * vlen
        elif kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
            length = 0
        else:
            raise BtfError(f"unknown BTF kind {kind} at byte {off} of the types")
        raw.append((kind, name_off, vlen, kind_flag, size_or_type, tail))
        off = tail + length
    first_id = base.first_id + len(base.raw) if base is not None else 1
    return Btf(strings=strings, raw=raw, data=types, base=base, first_id=first_id,
               base_str_len=len(base.strings) + base.base_str_len if base is not None else 0)
