"""`kpgen new`: scaffold a spec and a C file for replacing one function."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import spec
from .errors import UsageError

# Words that may precede a declaration but are not part of the type a definition needs.
DROP_WORDS = {"extern", "asmlinkage", "__must_check", "__weak", "__cold", "notrace", "__init", "__sched",
              "inline", "__always_inline", "noinline", "static"}


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


TYPE_WORDS = {"int", "long", "short", "char", "unsigned", "signed", "bool", "void", "const", "volatile",
              "u8", "u16", "u32", "u64", "s8", "s16", "s32", "s64", "size_t", "ssize_t", "loff_t", "umode_t",
              "gfp_t", "pid_t", "__user", "__iomem"}


def name_params(params: str) -> str:
    """Give every unnamed parameter a name, so the prototype can head a definition.

    >>> name_params("struct file *, char __user *, size_t, loff_t *")
    'struct file *arg1, char __user *arg2, size_t arg3, loff_t *arg4'
    >>> name_params("struct sysinfo * val")
    'struct sysinfo *val'
    >>> name_params("void")
    'void'
    """
    if params.strip() == "void":
        return "void"
    out = []
    for i, param in enumerate(params.split(","), 1):
        param = re.sub(r"\s*\*\s*", " *", param.strip()).replace(" * *", " **")
        words = re.findall(r"[A-Za-z_]\w*", param)
        unnamed = (param.endswith("*") or len(words) < 2 or words[-1] in TYPE_WORDS
                   or words[-2] in ("struct", "union", "enum"))
        if unnamed and param != "...":
            param = f"{param}arg{i}" if param.endswith("*") else f"{param} arg{i}"
        out.append(param)
    return ", ".join(out)


def _clean(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"__attribute__\s*\(\(.*?\)\)", " ", text)
    return re.sub(r"\s+", " ", text).strip()


def find_prototype(func: str, roots: list[Path]) -> Prototype | None:
    """The declaration of `func` in the kernel headers, if exactly one shape is found."""
    decl = re.compile(
        rf"(?:^|[;{{}}/])\s*([A-Za-z_][\w\s\*]*?[\s\*])\b{re.escape(func)}"  # the type, the name
        rf"\s*\(([^;{{}})]*(?:\([^)]*\)[^;{{}})]*)*)\)\s*;"  # the parameters, parentheses one deep
    )
    found: set[Prototype] = set()
    for root in roots:
        for sub in ("include", "arch/x86/include"):
            base = root / sub
            if not base.is_dir():
                continue
            for header in base.rglob("*.h"):
                try:
                    text = header.read_text(errors="replace")
                except OSError:
                    continue
                if func not in text:
                    continue
                for m in decl.finditer(_clean(text)):
                    words = [w for w in m.group(1).replace("*", " * ").split() if w not in DROP_WORDS]
                    ret = " ".join(words).replace(" *", "*").replace("*", " *").replace("  ", " ").strip()
                    ret = re.sub(r"\s*\*\s*", " *", ret).replace(" *", " *").strip()
                    params = name_params(m.group(2).strip() or "void")
                    if ret:
                        found.add(Prototype(ret.replace(" *", " *"), params))
    return found.pop() if len(found) == 1 else None


def scaffold(name: str, target: str, obj: str, out_dir: Path, roots: list[Path]) -> list[Path]:
    """Write NAME.toml and fix.c into out_dir; refuse to overwrite anything."""
    if not spec.NAME_RE.match(name) or len(name) > spec.MODULE_NAME_MAX or name.startswith("kpatch"):
        raise UsageError(f"module name {name!r} is not valid: use lower-case letters, digits and '_', "
                         "starting with a letter, not starting with 'kpatch'")
    if not spec.IDENT_RE.match(target) or target in spec.C_KEYWORDS:
        raise UsageError(f"--target {target!r} is not a C function name")
    if not spec.OBJECT_RE.match(obj):
        raise UsageError(f"--object {obj!r} is not 'vmlinux' or a module name")
    spec_path, c_path = out_dir / f"{name}.toml", out_dir / "fix.c"
    for p in (spec_path, c_path):
        if p.exists():
            raise UsageError(f"{p} already exists: choose another name or directory (-d DIR)")
    replacement = f"{name}_{target}"
    proto = find_prototype(target, roots) if roots else None
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
