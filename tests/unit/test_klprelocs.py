"""klp relocations on small objects compiled by the host's gcc: the conversion, its read-back
check, what it refuses, and the checks `kpgen check` makes of a converted module."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from kpgen import elfrel, klpcheck, klprelocs
from kpgen.errors import BuildError
from kpgen.klprelocs import SHF_RELA_LIVEPATCH, SHN_LIVEPATCH, KlpSymbol

# A patch module in miniature: two unexported kernel symbols (a function, called directly and
# through a table in .data, and a variable), a module's variable, an exported function, and the
# sentinel the generated init tests. The generated C declares them weak, as here.
SOURCE = """\
extern int unexported_var;
extern int unexported_fn(int);
extern int mod_var;
extern const char kpgen_klp_converted[];
#pragma weak unexported_var
#pragma weak unexported_fn
#pragma weak mod_var
#pragma weak kpgen_klp_converted
int exported_fn(int);
int (*table[])(int) __attribute__((used)) = { unexported_fn, exported_fn };
int use(int x)
{
	return unexported_fn(x) + unexported_var + exported_fn(x) + table[x](x) + mod_var;
}
int check(void)
{
	return kpgen_klp_converted != 0;
}
"""
SYMBOLS = [KlpSymbol("unexported_fn"), KlpSymbol("unexported_var", kallsyms="unexported_var.3"),
           KlpSymbol("mod_var", "some_mod", sympos=2)]

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="needs the host's gcc")


def compile_object(tmp_path: Path, source: str = SOURCE, name: str = "t") -> Path:
    src, obj = tmp_path / f"{name}.c", tmp_path / f"{name}.o"
    src.write_text(source)
    # the kernel's code model, one section per function, DWARF (non-allocated relocations)
    subprocess.run(["gcc", "-c", "-O2", "-g", "-mcmodel=kernel", "-fno-pic", "-ffunction-sections", "-o", str(obj),
                    str(src)], check=True)
    return obj


def converted(tmp_path: Path, symbols: list[KlpSymbol] = SYMBOLS) -> tuple[bytes, bytes, klprelocs.Conversion]:
    before = compile_object(tmp_path).read_bytes()
    obj = elfrel.read(before)
    conversion = klprelocs.convert(obj, symbols)
    return before, obj.to_bytes(), conversion


def test_an_untouched_object_is_written_back_byte_for_byte(tmp_path):
    data = compile_object(tmp_path).read_bytes()
    assert elfrel.read(data).to_bytes() == data


def test_relocations_against_unexported_symbols_become_klp_relocations(tmp_path):
    before, after, conversion = converted(tmp_path)
    klprelocs.verify(before, after, conversion)
    relocs = klprelocs.relocations(after)
    klp = [r for r in relocs if r.section.startswith(".klp.rela.")]
    assert {(r.section, r.symbol) for r in klp} == {
        (".klp.rela.vmlinux..text.use", ".klp.sym.vmlinux.unexported_fn,0"),
        (".klp.rela.vmlinux..text.use", ".klp.sym.vmlinux.unexported_var.3,0"),
        (".klp.rela.some_mod..text.use", ".klp.sym.some_mod.mod_var,2"),
        (".klp.rela.vmlinux..data", ".klp.sym.vmlinux.unexported_fn,0"),
    }
    # what the kernel's loader resolves itself stays where it was
    assert any(r.section == ".rela.text.use" and r.symbol == "exported_fn" for r in relocs)
    assert not any(r.symbol.startswith(".klp.sym.") for r in relocs if not r.section.startswith(".klp.rela."))
    unexported = {"unexported_fn", "unexported_var", "mod_var"}
    wanted = [r for r in klprelocs.relocations(before) if r.symbol in unexported and not r.target.startswith(".debug")]
    assert conversion.relocations == len(klp) == len(wanted) >= 4
    elf = ELFFile(io.BytesIO(after))
    for sec in elf.iter_sections():
        if sec.name.startswith(".klp.rela."):
            assert sec["sh_flags"] == 0x2 | 0x40 | SHF_RELA_LIVEPATCH
            assert elf.get_section(sec["sh_link"]).name == ".symtab"
    symtab = elf.get_section_by_name(".symtab")
    assert isinstance(symtab, SymbolTableSection)
    klp_syms = [s for s in symtab.iter_symbols() if s.name.startswith(".klp.sym.")]
    assert len(klp_syms) == 3 and all(s["st_shndx"] == SHN_LIVEPATCH for s in klp_syms)
    assert all(s["st_info"]["bind"] == "STB_GLOBAL" for s in klp_syms)
    sentinel = next(s for s in symtab.iter_symbols() if s.name == klprelocs.SENTINEL)
    assert sentinel["st_shndx"] == "SHN_ABS" and sentinel["st_value"] == 1


def test_the_result_passes_the_checks_kpgen_check_makes(tmp_path):
    _, after, _ = converted(tmp_path)
    problems, uses = klpcheck.check(after)
    assert problems == []
    assert {(u.object, u.name, u.sympos) for u in uses} == {
        ("vmlinux", "unexported_fn", 0), ("vmlinux", "unexported_var.3", 0), ("some_mod", "mod_var", 2)}
    counts = {("vmlinux", "unexported_fn"): 1, ("vmlinux", "unexported_var.3"): 1, ("some_mod", "mod_var"): 2}
    assert klpcheck.check_symbols(uses, lambda o, n: counts.get((o, n), 0)) == ([], [])


@pytest.mark.parametrize(("counts", "problem"), [
    ({("vmlinux", "unexported_var.3"): 1, ("some_mod", "mod_var"): 2}, "unexported_fn is not in vmlinux"),
    ({("vmlinux", "unexported_fn"): 2, ("vmlinux", "unexported_var.3"): 1, ("some_mod", "mod_var"): 2},
     "unexported_fn appears 2 times in vmlinux and has no sympos"),
    ({("vmlinux", "unexported_fn"): 1, ("vmlinux", "unexported_var.3"): 1, ("some_mod", "mod_var"): 1},
     "mod_var has sympos 2 but appears 1 time"),
])
def test_klp_symbols_are_checked_against_the_kernel(tmp_path, counts, problem):
    _, after, _ = converted(tmp_path)
    _, uses = klpcheck.check(after)
    problems, _ = klpcheck.check_symbols(uses, lambda o, n: counts.get((o, n), 0))
    assert len(problems) == 1 and problem in problems[0]


def test_objects_whose_symbols_are_unknown_are_noted_not_refused(tmp_path):
    _, after, _ = converted(tmp_path)
    _, uses = klpcheck.check(after)
    problems, notes = klpcheck.check_symbols(uses, lambda o, n: None if o == "some_mod" else 1)
    assert problems == []
    assert notes == ["klp symbols of some_mod (mod_var) not checked: kpgen cannot read the symbols of some_mod "
                     "(neither in the symbol snapshot nor installed)"]


def test_postlink_replaces_the_module_once(tmp_path):
    ko = compile_object(tmp_path)
    manifest = tmp_path / klprelocs.MANIFEST
    manifest.write_text("/* a module's list */\n" + "\n".join(map(klprelocs.manifest_lines, SYMBOLS)) + "\n")
    assert klprelocs.read_manifest(manifest) == SYMBOLS
    first = klprelocs.postlink(ko, manifest)
    assert first is not None and first.relocations >= 4
    data = ko.read_bytes()
    # Kbuild leaves a converted module as it is: the second run has nothing to do
    assert klprelocs.postlink(ko, manifest) is None
    assert ko.read_bytes() == data
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(("symbols", "source_extra", "problem"), [
    ([KlpSymbol("use")], "", "use is defined in the module itself"),
    ([*SYMBOLS, KlpSymbol("not_used")], "", "does not use not_used"),
    ([KlpSymbol("x.y", "bad.obj")], "", "not a module name"),
    ([KlpSymbol("mod_var", "some_mod")],
     'int *const special[] __attribute__((section("__jump_table"), used)) = { &mod_var };\n',
     "used in section __jump_table"),
])
def test_conversion_refuses(tmp_path, symbols, source_extra, problem):
    obj = elfrel.read(compile_object(tmp_path, SOURCE + source_extra).read_bytes())
    with pytest.raises(BuildError, match=problem):
        klprelocs.convert(obj, symbols)


def test_vmlinux_symbols_may_be_used_from_special_sections(tmp_path):
    """The loader writes .klp.rela.vmlinux.* before it reads jump labels and static calls."""
    extra = 'int *const special[] __attribute__((section("__jump_table"), used)) = { &unexported_var };\n'
    before = compile_object(tmp_path, SOURCE + extra).read_bytes()
    obj = elfrel.read(before)
    conversion = klprelocs.convert(obj, SYMBOLS)
    klprelocs.verify(before, obj.to_bytes(), conversion)
    assert ("vmlinux", "__jump_table") in conversion.sections


def test_a_signed_module_is_refused(tmp_path):
    ko = compile_object(tmp_path)
    ko.write_bytes(ko.read_bytes() + b"\0" * 8 + klprelocs.SIGNATURE_MAGIC)
    manifest = tmp_path / klprelocs.MANIFEST
    manifest.write_text("\n".join(map(klprelocs.manifest_lines, SYMBOLS)) + "\n")
    with pytest.raises(BuildError, match="signed"):
        klprelocs.postlink(ko, manifest)


def test_verify_catches_a_writer_that_loses_or_changes_anything(tmp_path):
    before, after, conversion = converted(tmp_path)
    obj = elfrel.read(after)
    text = obj.index(".text.use")
    obj.sections[text].data = b"\xcc" + obj.sections[text].data[1:]
    with pytest.raises(BuildError, match=r"contents of section \.text\.use changed"):
        klprelocs.verify(before, obj.to_bytes(), conversion)
    obj = elfrel.read(after)
    klp = obj.index(".klp.rela.vmlinux..text.use")
    obj.set_relas(klp, obj.relas(klp)[1:])
    with pytest.raises(BuildError, match="relocations differ"):
        klprelocs.verify(before, obj.to_bytes(), conversion)
    # DWARF's relocations are compared byte for byte (the kernel never writes them)
    obj = elfrel.read(after)
    debug = obj.index(".rela.debug_info")
    relas = obj.relas(debug)
    obj.set_relas(debug, [elfrel.Rela(relas[0].offset + 1, relas[0].type, relas[0].sym, relas[0].addend), *relas[1:]])
    with pytest.raises(BuildError, match=r"contents of section \.rela\.debug_info changed"):
        klprelocs.verify(before, obj.to_bytes(), conversion)


def test_check_finds_what_the_kernel_would_refuse(tmp_path):
    _, after, _ = converted(tmp_path)
    obj = elfrel.read(after)
    klp = obj.index(".klp.rela.vmlinux..text.use")
    obj.sections[klp].flags &= ~klprelocs.SHF_ALLOC
    problems, _ = klpcheck.check(obj.to_bytes())
    assert any("not an SHF_ALLOC RELA section" in p for p in problems)
    # a klp relocation section that relocates against an ordinary symbol
    obj = elfrel.read(after)
    syms = obj.symbols()
    use = next(i for i, s in enumerate(syms) if s.name == "exported_fn")
    relas = obj.relas(klp)
    obj.set_relas(klp, [elfrel.Rela(relas[0].offset, relas[0].type, use, relas[0].addend), *relas[1:]])
    problems, _ = klpcheck.check(obj.to_bytes())
    assert any("not a klp symbol" in p for p in problems)


def test_a_module_without_klp_relocations_has_nothing_to_check(tmp_path):
    data = compile_object(tmp_path, "int f(void)\n{\n\treturn 1;\n}\n", "plain").read_bytes()
    assert klpcheck.check(data) == ([], [])
