"""Compile each changed unit twice, as the kernel's build did (original and patched), parse
both with the C front end, and compare them function by function: what changed, and the
changes a live patch cannot make (__init code, data the kernel holds, a structure's layout)."""

from __future__ import annotations

import difflib
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import extract, layouts, objdiff, units
from ..errors import BuildError, DiffRefused, KernelError
from ..kernel import Kernel, header_roots

SYMVER_RE = re.compile(r"^#SYMVER (\S+) (0x[0-9a-f]+)$|^__crc_(\S+) = (0x[0-9a-f]+);$", re.M)


@dataclass
class CompiledUnit:
    """One changed .c file, compiled and parsed before and after the diff."""

    unit: units.Unit
    old: objdiff.Object
    new: objdiff.Object
    cmp: objdiff.Comparison
    old_argv: list[str]
    new_argv: list[str]
    old_parsed: extract.Parsed
    new_parsed: extract.Parsed
    # the modversions CRC of each symbol the unit exports, before and after (files that export)
    old_crcs: dict[str, str] = field(default_factory=dict)
    new_crcs: dict[str, str] = field(default_factory=dict)


def renumbered(old: str, new: str, rel: str) -> str:
    """The patched text with `#line` directives that give each line the diff leaves alone its
    line number in the original, so that what records __LINE__ (WARN, BUG, might_sleep) reads
    as it does in the running kernel: compiled, it differs from the original only where the
    diff changes what the code does. No directive goes inside a comment or a continued line.

    >>> print(renumbered("a\\nb\\n", "a\\n\\nb\\n", "f.c"), end="")
    #line 1 "f.c"
    a
    <BLANKLINE>
    #line 2 "f.c"
    b
    """
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    # the line number each new line should carry: its original's, for lines the diff leaves alone
    want: dict[int, int] = {j: j + 1 for j in range(head)}
    want.update({len(b) - 1 - t: len(a) - t for t in range(tail)})
    middle = difflib.SequenceMatcher(None, a[head:len(a) - tail], b[head:len(b) - tail], autojunk=False)
    for i, j, n in middle.get_matching_blocks():
        want.update({head + j + x: head + i + x + 1 for x in range(n)})
    out = [f'#line 1 "{rel}"\n']
    line, in_comment, continued = 1, False, False
    for j, text in enumerate(b):
        if j in want and want[j] != line and not in_comment and not continued:
            out.append(f'#line {want[j]} "{rel}"\n')
            line = want[j]
        out.append(text)
        line += 1
        in_comment = _ends_in_comment(text, in_comment)
        continued = text.rstrip("\n").endswith("\\")
    return "".join(out)


def _ends_in_comment(line: str, inside: bool) -> bool:
    """Whether a block comment is still open at the end of the line (strings and // comments
    are skipped, roughly: enough to keep #line directives out of comments)."""
    i, quote = 0, ""
    while i < len(line):
        two = line[i:i + 2]
        if inside:
            if two == "*/":
                inside, i = False, i + 2
                continue
        elif quote:
            if line[i] == "\\":
                i += 2
                continue
            if line[i] == quote:
                quote = ""
        elif two == "/*":
            inside, i = True, i + 2
            continue
        elif two == "//":
            break
        elif line[i] in "\"'":
            quote = line[i]
        i += 1
    return inside


def genksyms(k: Kernel) -> Path:
    """The kernel's genksyms, which computes the modversions CRC of exported symbols."""
    for root in [k.kdir, *header_roots(k.kdir), *sorted(Path("/usr/src").glob("linux-kbuild-*"))]:
        exe = Path(root) / "scripts" / "genksyms" / "genksyms"
        if exe.is_file():
            return exe
    raise KernelError(f"{k.kdir} has no scripts/genksyms/genksyms: kpgen computes exported symbols' CRCs with "
                      "it; install the kernel's headers package whole")


def exported_crcs(k: Kernel, argv: list[str]) -> dict[str, str]:
    """The modversions CRC of each symbol the unit of the compiler command `argv` exports, as
    Kbuild computes it: the preprocessed unit (__GENKSYMS__ defined) read by genksyms."""
    cut = argv.index("-c")
    pre = subprocess.run([*argv[:cut], "-E", "-D__GENKSYMS__", argv[-1]], cwd=k.kdir, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, check=False)
    if pre.returncode != 0:
        return {}
    proc = subprocess.run([str(genksyms(k)), "-r", "/dev/null"], input=pre.stdout, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, check=False)
    return {m.group(1) or m.group(3): m.group(2) or m.group(4) for m in SYMVER_RE.finditer(proc.stdout.decode())}


def compile_units(k: Kernel, tree: Path, overlay: Path, work: Path, todo: list[units.Unit]) -> list[CompiledUnit]:
    """Returns each unit compiled and parsed, original and patched (compiled with the
    original's line numbers, see renumbered), with the CRCs of what it exports; refuses a
    patched unit that does not compile."""
    procs = []
    for i, u in enumerate(todo):
        old_o, new_o = work / f"old{i}.o", work / f"new{i}.o"
        lines = overlay / Path(u.rel).parent / f".kpgen-lines-{Path(u.rel).name}"
        lines.write_text(renumbered((tree / u.rel).read_text(errors="surrogateescape"),
                                    (overlay / u.rel).read_text(errors="surrogateescape"), u.rel),
                         errors="surrogateescape")
        a = units.compile_argv(k, u, tree, None, tree / u.rel, old_o)
        b = units.compile_argv(k, u, tree, overlay, overlay / u.rel, new_o)
        b_lines = [*b[:-1], str(lines)]
        procs.append((u, a, b, old_o, new_o, units.run_compile(a, k, ""), units.run_compile(b_lines, k, "")))
    # the C front end reads both versions of each unit while gcc compiles them; genksyms too
    with ThreadPoolExecutor(max_workers=2) as pool:
        parses = [(pool.submit(extract.parse, overlay / u.rel, b, [overlay, tree]),
                   pool.submit(extract.parse, tree / u.rel, a, [tree])) for u, a, b, *_ in procs]
        crcs = [(pool.submit(exported_crcs, k, a), pool.submit(exported_crcs, k, b))
                if "EXPORT_SYMBOL" in (tree / u.rel).read_text(errors="replace") else None
                for u, a, b, *_ in procs]
        parsed = [(f1.result(), f2.result()) for f1, f2 in parses]
        exports = [(f[0].result(), f[1].result()) if f is not None else ({}, {}) for f in crcs]
    out = []
    for (u, a, b, old_o, new_o, pa, pb), (new_p, old_p), (old_c, new_c) in zip(procs, parsed, exports, strict=True):
        units.wait_compile(pa, f"{u.rel} (original)")
        try:
            units.wait_compile(pb, f"{u.rel} (patched)")
        except BuildError as exc:
            raise DiffRefused(u.rel, f"the patched file does not compile: {exc}", "fix the diff") from None
        old, new = objdiff.read(old_o), objdiff.read(new_o)
        out.append(CompiledUnit(u, old, new, objdiff.compare(old, new), a, b, old_p, new_p, old_c, new_c))
    return out


def refuse_abi_change(k: Kernel, cu: CompiledUnit) -> None:
    """Refuses a diff that changes the modversions CRC of a symbol the unit exports: the
    interface modules were built and checked against changes."""
    changed = sorted(s for s, crc in cu.new_crcs.items() if cu.old_crcs.get(s, crc) != crc)
    if changed:
        shown = ", ".join(changed[:4]) + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise DiffRefused(cu.unit.rel, f"the diff changes the modversions CRC of {len(changed)} symbol"
                          f"{'s' if len(changed) > 1 else ''} it exports ({shown}), the interface the running "
                          "kernel's modules were built and checked against: a module built from this source would "
                          "disagree with the kernel about their versions and could not load, and a live patch "
                          "cannot change an exported interface",
                          "keep the exported interfaces as they are: wrap an include the fix needs in #ifndef "
                          "__GENKSYMS__, or copy the definitions it needs into the file")


def compile_one(k: Kernel, tree: Path, rel: str, out: Path) -> CompiledUnit:
    """Returns one unit of the tree compiled and parsed as it is (for `kpgen new`, and for
    copies taken from files the diff does not change)."""
    unit = units.locate(k, tree, rel)
    argv = units.compile_argv(k, unit, tree, None, tree / unit.rel, out)
    proc = units.run_compile(argv, k, unit.rel)
    parsed = extract.parse(tree / unit.rel, argv, [tree])
    units.wait_compile(proc, unit.rel)
    obj = objdiff.read(out)
    return CompiledUnit(unit, obj, obj, objdiff.Comparison((), (), (), (), ()), argv, argv, parsed, parsed)


def refuse_unpatchable(cu: CompiledUnit) -> None:
    """Refuses changes to __init and __exit code and to data the kernel already holds."""
    c = cu.cmp
    for fname in c.changed:
        sec = cu.old.symbols[fname].section
        if sec.startswith((".init", ".exit")) or sec in (".text.startup",):
            what = "__init" if sec.startswith(".init") else "__exit"
            raise DiffRefused(f"{cu.unit.rel}: {fname}()", f"it is {what} code, which ran at boot (or runs at "
                              "unload), and a live patch cannot change it", "change the code that runs later")
    for vname in c.changed_data:
        sym = cu.new.variables().get(vname) or next(s for n, s in cu.new.variables().items()
                                                      if objdiff.normalised(n) == vname)
        if sym.section.startswith((".init", ".exit")):
            raise DiffRefused(f"{cu.unit.rel}: {vname}", "it is __init data, and a live patch cannot change what "
                              "the kernel used at boot", "change the code that runs later")
        raise DiffRefused(f"{cu.unit.rel}: {vname}", "the diff changes its initial value or size, and a live "
                          "patch replaces functions, not data the kernel already holds",
                          "use a shadow variable (klp_shadow_*) for new state")
    for fname in c.added:
        if cu.new.symbols[fname].section.startswith(".init"):
            raise DiffRefused(f"{cu.unit.rel}: {fname}()", "the diff adds __init code, which would never run in a "
                              "live patch", "put the new code in a function that runs later")


def refuse_layout_change(cu: CompiledUnit) -> None:
    """Refuses a change to the layout (sizes, offsets, types as the compiler lays them out) of a
    structure the unit or its private headers define."""
    old_l = layouts.record_layouts(cu.old_parsed, set(cu.old_parsed.local_files))
    new_l = layouts.record_layouts(cu.new_parsed, set(cu.new_parsed.local_files))
    for rec, layout in sorted(new_l.items()):
        if rec in old_l and old_l[rec] != layout:
            raise DiffRefused(f"{cu.unit.rel}: {rec}", f"the diff changes its layout "
                              f"({layouts.layout_change(old_l[rec], layout)}), and objects of it already exist "
                              "in the running kernel",
                              "keep the layout and put new fields in a shadow variable (klp_shadow_*)")
