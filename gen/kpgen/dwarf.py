"""What the user's C declares, as the compiler saw it: the DWARF of the patch module's object.

kpgen compiles every patch module once before rendering it (generate.plan_patch); Debian's
kernels are built with CONFIG_DEBUG_INFO, so Kbuild compiles it with -g, and the object's
DWARF holds each function the sources define (the replacements, with their parameters) and each
external function or variable they declare and use, with the file and line of the declaration.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ctype import VOID, CType

DW_ATE_FLOAT = 0x4
QUALIFIER_TAGS = {"DW_TAG_const_type": "const", "DW_TAG_volatile_type": "volatile",
                  "DW_TAG_restrict_type": "restrict"}


@dataclass(frozen=True)
class Declared:
    """A function or variable of the object: its C type and where the source says so."""

    name: str
    kind: str  # "function" or "variable"
    type: CType
    file: str  # the file's name as the compiler saw it
    line: int
    definition: bool


def read(obj: Path) -> dict[str, Declared]:
    """The object's top-level functions and variables (definitions win over declarations)."""
    from elftools.elf.elffile import ELFFile

    found: dict[str, Declared] = {}
    with Path(obj).open("rb") as fh:
        elf = ELFFile(fh)
        if not elf.has_dwarf_info():
            return found
        info = elf.get_dwarf_info()
        for cu in info.iter_CUs():
            files = _file_names(info, cu)
            memo: dict[int, CType] = {}
            for die in cu.get_top_DIE().iter_children():
                if die.tag not in ("DW_TAG_subprogram", "DW_TAG_variable"):
                    continue
                name_attr = die.attributes.get("DW_AT_name")
                if name_attr is None:
                    continue
                name = name_attr.value.decode("utf-8", "replace")
                definition = "DW_AT_declaration" not in die.attributes
                if name in found and found[name].definition and not definition:
                    continue
                if die.tag == "DW_TAG_subprogram":
                    kind, ctype = "function", _function(die, memo)
                else:
                    kind, ctype = "variable", _type_of(die, memo)
                index = die.attributes["DW_AT_decl_file"].value if "DW_AT_decl_file" in die.attributes else -1
                line = die.attributes["DW_AT_decl_line"].value if "DW_AT_decl_line" in die.attributes else 0
                found[name] = Declared(name, kind, ctype, files.get(index, ""), line, definition)
    return found


def _file_names(info: Any, cu: Any) -> dict[int, str]:
    """DW_AT_decl_file numbers -> file names (DWARF 5 counts from 0, earlier versions from 1)."""
    program = info.line_program_for_CU(cu)
    if program is None:
        return {}
    entries = program["file_entry"]
    dirs = program["include_directory"]
    base = 0 if program.header["version"] >= 5 else 1
    names: dict[int, str] = {}
    for i, entry in enumerate(entries):
        name = entry.name.decode("utf-8", "replace")
        d = entry.dir_index if base == 0 else entry.dir_index - 1
        if not name.startswith("/") and 0 <= d < len(dirs) and (base == 0 or entry.dir_index > 0):
            name = f"{dirs[d].decode('utf-8', 'replace')}/{name}"
        names[i + base] = name
    return names


def _type_of(die: Any, memo: dict[int, CType]) -> CType:
    if "DW_AT_type" not in die.attributes:
        return VOID
    return _type(die.get_DIE_from_attribute("DW_AT_type"), memo)


def _type(die: Any, memo: dict[int, CType]) -> CType:
    if die.offset not in memo:
        memo[die.offset] = _make(die, memo)
    return memo[die.offset]


def _name(die: Any) -> str:
    attr = die.attributes.get("DW_AT_name")
    return attr.value.decode("utf-8", "replace") if attr is not None else ""


def _make(die: Any, memo: dict[int, CType]) -> CType:
    tag = die.tag
    if tag == "DW_TAG_base_type":
        encoding = die.attributes["DW_AT_encoding"].value if "DW_AT_encoding" in die.attributes else 0
        return CType("float" if encoding == DW_ATE_FLOAT else "int", _name(die))
    if tag == "DW_TAG_pointer_type":
        return CType("ptr", ref=_type_of(die, memo))
    if tag in QUALIFIER_TAGS:
        return CType(QUALIFIER_TAGS[tag], ref=_type_of(die, memo))
    if tag == "DW_TAG_atomic_type":
        return _type_of(die, memo)
    if tag == "DW_TAG_typedef":
        return CType("typedef", _name(die), ref=_type_of(die, memo))
    if tag in ("DW_TAG_structure_type", "DW_TAG_union_type", "DW_TAG_enumeration_type"):
        return CType({"DW_TAG_structure_type": "struct", "DW_TAG_union_type": "union",
                      "DW_TAG_enumeration_type": "enum"}[tag], _name(die))
    if tag == "DW_TAG_array_type":
        dims: list[int | None] = []
        for child in die.iter_children():
            if child.tag == "DW_TAG_subrange_type":
                if "DW_AT_count" in child.attributes:
                    dims.append(int(child.attributes["DW_AT_count"].value))
                elif "DW_AT_upper_bound" in child.attributes:
                    dims.append(int(child.attributes["DW_AT_upper_bound"].value) + 1)
                else:
                    dims.append(None)
        result = _type_of(die, memo)
        for n in reversed(dims or [None]):
            result = CType("array", ref=result, nelems=n)
        return result
    if tag == "DW_TAG_subroutine_type":
        return _function(die, memo)
    if tag == "DW_TAG_unspecified_type":
        return CType("int", _name(die) or "void")
    raise ValueError(f"DWARF type {tag} has no C type")


def _function(die: Any, memo: dict[int, CType]) -> CType:
    if "DW_AT_abstract_origin" in die.attributes:
        return _function(die.get_DIE_from_attribute("DW_AT_abstract_origin"), memo)
    if "DW_AT_specification" in die.attributes:
        return _function(die.get_DIE_from_attribute("DW_AT_specification"), memo)
    params = []
    variadic = False
    for child in die.iter_children():
        if child.tag == "DW_TAG_formal_parameter":
            params.append((_name(child), _type_of(child, memo)))
        elif child.tag == "DW_TAG_unspecified_parameters":
            variadic = True
    return CType("func", ref=_type_of(die, memo), params=tuple(params), variadic=variadic)
