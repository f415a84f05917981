"""`kpgen new`: scaffold a spec and a C file for replacing one function."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import spec
from .errors import UsageError
from .kernel import Kernel, header_roots

STORAGE_RE = re.compile(r"\b(?:extern|static|inline|__always_inline|noinline|asmlinkage|__init|__weak|notrace|"
                        r"__cold|__sched|__must_check)\s+")


@dataclass(frozen=True)
class Prototype:
    return_type: str
    params: str

    def definition(self, name: str) -> str:
        return f"static {self.return_type}{'' if self.return_type.endswith('*') else ' '}{name}({self.params})"

    def default_return(self) -> str:
        if self.return_type == "void":
            return ""
        return "\treturn NULL;\n" if self.return_type.endswith("*") else "\treturn 0;\n"


def clean_type(text: str) -> str:
    """A declaration's return type without storage words, attributes or extra blanks.

    >>> clean_type("extern  unsigned int __must_check")
    'unsigned int'
    >>> clean_type("struct page * ")
    'struct page *'
    """
    text = re.sub(r"__attribute__\s*\(\(.*?\)\)", " ", text + " ")
    text = STORAGE_RE.sub(" ", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"\s*\*\s*", " *", text).replace("* *", "**").strip()


def header_candidates(roots: list[Path], func: str) -> list[Path]:
    """Headers that name `func` as a word (where a declaration may be), most specific first."""
    found: list[Path] = []
    word = re.compile(rf"\b{re.escape(func)}\s*\(")
    for root in roots:
        for sub in ("include/linux", "include", "arch/x86/include"):
            base = root / sub
            if not base.is_dir():
                continue
            for header in sorted(base.rglob("*.h")):
                if header in found or "uapi" in header.parts:
                    continue
                try:
                    text = header.read_text(errors="replace")
                except OSError:
                    continue
                if func in text and word.search(text):
                    found.append(header)
    return found


def header_prototype(k: Kernel, func: str) -> Prototype | None:
    """The declaration of `func` in the kernel headers, read by the C front end (libclang)
    on the kernel's own flags: the parameters as declared, unnamed ones named argN."""
    import clang.cindex as ci

    from . import extract, tu

    args = extract.clang_args(tu.kbuild_command(k))
    index = ci.Index.create()
    for header in header_candidates(header_roots(k.kdir), func)[:20]:
        rel = next((header.relative_to(r / d).as_posix() for r in header_roots(k.kdir)
                    for d in ("include", "arch/x86/include") if header.is_relative_to(r / d)), None)
        if rel is None:
            continue
        unit = index.parse("kpgen-proto.c", args=args, unsaved_files=[
            ("kpgen-proto.c", f"#include <linux/kernel.h>\n#include <{rel}>\n")])
        for c in unit.cursor.get_children():
            if c.kind != ci.CursorKind.FUNCTION_DECL or c.spelling != func or c.location.file is None:
                continue
            return _prototype(c)
    return None


def _prototype(c: Any) -> Prototype:
    import clang.cindex as ci

    cur: ci.Cursor = c
    tokens = list(cur.get_tokens())
    name_at = next(i for i, t in enumerate(tokens) if t.spelling == cur.spelling)
    ret = clean_type(" ".join(t.spelling for t in tokens[:name_at]))
    params = []
    for i, arg in enumerate(cur.get_arguments(), 1):
        text = " ".join(t.spelling for t in arg.get_tokens()) or arg.type.spelling
        text = re.sub(r"\s*\*\s*", " *", text).replace("* *", "**").strip()
        if not arg.spelling:
            text = f"{text}arg{i}" if text.endswith("*") else f"{text} arg{i}"
        params.append(text)
    if cur.type.kind == ci.TypeKind.FUNCTIONPROTO and cur.type.is_function_variadic():
        params.append("...")
    return Prototype(ret, ", ".join(params) or "void")


def check_names(name: str, target: str, obj: str) -> None:
    """Write NAME.toml and fix.c into out_dir; refuse to overwrite anything."""
    if not spec.NAME_RE.match(name) or len(name) > spec.MODULE_NAME_MAX or name.startswith("kpatch"):
        raise UsageError(f"module name {name!r} is not valid: use lower-case letters, digits and '_', "
                         "starting with a letter, not starting with 'kpatch'")
    if not spec.IDENT_RE.match(target) or target in spec.C_KEYWORDS:
        raise UsageError(f"--target {target!r} is not a C function name")
    if not spec.OBJECT_RE.match(obj):
        raise UsageError(f"--object {obj!r} is not 'vmlinux' or a module name")


def refuse_overwrite(name: str, out_dir: Path) -> None:
    for p in (out_dir / f"{name}.toml", out_dir / "fix.c"):
        if p.exists():
            raise UsageError(f"{p} already exists: choose another name or directory (-d DIR)")


def scaffold(name: str, target: str, obj: str, out_dir: Path, proto: Prototype | None) -> list[Path]:
    """Write NAME.toml and fix.c into out_dir (no source: the prototype from the headers);
    refuse to overwrite anything."""
    check_names(name, target, obj)
    refuse_overwrite(name, out_dir)
    spec_path, c_path = out_dir / f"{name}.toml", out_dir / "fix.c"
    replacement = f"{name}_{target}"
    if proto:
        head = f"/* Replacement for {target}() in {obj}: same prototype as the original. */\n"
        signature = proto.definition(replacement)
        body = f"\t/* TODO: the new body of {target}() */\n{proto.default_return()}"
    else:
        head = (f"/*\n * Replacement for {target}() in {obj}.\n *\n"
                f" * TODO: {target}() is not declared in the kernel headers (is it static?):\n"
                f" * copy its prototype from the kernel source and use it for {replacement}().\n */\n")
        signature = f"static int {replacement}(void)"
        body = f"\t/* TODO: the new body of {target}() */\n\treturn 0;\n"
    c_text = ("// SPDX-License-Identifier: GPL-2.0-only\n" + head + "#include <linux/kernel.h>\n\n"
              f"{signature}\n{{\n{body}}}\n")
    spec_text = (f"# Patch module {name}: replaces {target}() in {obj}.\n"
                 f"# Build it: kpgen patch {spec_path.name} -o DIR --core CORE && kpgen build --core CORE DIR\n"
                 f'name = "{name}"\n'
                 f'description = "Replace {target}"\n'
                 'sources = ["fix.c"]\n\n'
                 "[[function]]\n"
                 f'target = "{target}"\n'
                 f'object = "{obj}"\n'
                 f'replacement = "{replacement}"\n'
                 "# sympos = 2    # when several functions share the name\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    spec_path.write_text(spec_text)
    c_path.write_text(c_text)
    return [spec_path, c_path]
