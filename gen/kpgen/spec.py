"""Read and validate patch specs (TOML): every error names the file, the key and the fix.

A spec describes one patch module:

    name = "fix_cmdline"
    description = "Show a marker in /proc/cmdline"
    sources = ["fix.c"]

    [[function]]
    target = "cmdline_proc_show"
    object = "vmlinux"
    replacement = "fix_cmdline_proc_show"
    sympos = 0
"""

from __future__ import annotations

import re
import tomllib
import zlib
from dataclasses import dataclass, replace as _replace
from pathlib import Path

from .errors import UsageError

IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")
OBJECT_RE = re.compile(r"[a-z0-9_][a-z0-9_-]*\Z")
MODULE_NAME_MAX = 55  # MODULE_NAME_LEN - 1 on 64-bit kernels
KSYM_NAME_MAX = 127
MAX_SPEC_BYTES = 1024 * 1024  # a spec of 1000 functions is about 100 KiB
MAX_SOURCE_BYTES = 1024 * 1024

TOP_KEYS = {"name", "description", "sources", "replace", "function", "symbol", "object", "shadow", "backend", "diff"}
# The runtimes a patch module can be built for: kpgen's core (kpatch.ko) or upstream livepatch.
BACKENDS = ("kpatch", "livepatch")
FUNC_KEYS = {"target", "object", "replacement", "sympos", "force"}
SYMBOL_KEYS = {"name", "object", "sympos", "kallsyms"}
# A name in kallsyms that is no C identifier: a function-local static (`last_check.2`), a gcc
# clone (`show_val_kb.isra.0`).
KALLSYMS_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*\Z")
# The callbacks of an object, in the order they run for it, and their C prototypes.
CALLBACKS = ("pre_patch", "post_patch", "pre_unpatch", "post_unpatch")
CALLBACK_PROTOTYPES = {"pre_patch": "int {}(void)", "post_patch": "void {}(void)", "pre_unpatch": "void {}(void)",
                       "post_unpatch": "void {}(void)"}
OBJECT_KEYS = {"name", *CALLBACKS}
SHADOW_KEYS = {"name", "id", "destructor", "free"}
# When the generated module frees every shadow variable of an id.
SHADOW_FREE = ("unload", "disable", "never")
SHADOW_NAME_RE = re.compile(r"[a-z][a-z0-9_]*\Z")

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto
    if inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Bool _Complex _Imaginary asm typeof""".split()
)
# Names the generated code or the core defines: a replacement must not take them.
RESERVED_PREFIXES = ("kpatch_", "__")
# The generated module defines NAME_init, NAME_exit, NAME_funcs, NAME_syms, NAME_objs and
# NAME_patch, and a callback of its own for each object (NAME_<n>_pre_patch, ...); the livepatch
# backend also NAME_lookup, NAME_find_lookup, NAME_callable, NAME_resolve, NAME_unpatched and
# NAME_<n>_funcs.
GENERATED_SUFFIXES = ("init", "exit", "funcs", "syms", "objs", "patch", "lookup", "find_lookup", "callable",
                      "resolve", "unpatched")
GENERATED_RE_TEMPLATE = r"{name}_(?:{suffixes}|\d+_(?:(?:pre|post)_(?:un)?patch|funcs))\Z"


@dataclass(frozen=True)
class FunctionSpec:
    target: str
    object: str
    replacement: str
    sympos: int
    # switched without the activeness check for this function (never on removal of the code)
    force: bool = False


@dataclass(frozen=True)
class ObjectSpec:
    """The callbacks of one object (vmlinux or a module), each a function of the sources or None."""

    name: str
    pre_patch: str | None = None
    post_patch: str | None = None
    pre_unpatch: str | None = None
    post_unpatch: str | None = None

    def callbacks(self) -> dict[str, str]:
        return {kind: fn for kind in CALLBACKS if (fn := getattr(self, kind))}


@dataclass(frozen=True)
class ShadowSpec:
    """A kind of shadow variable (klp_shadow_*): its id, destructor, and when it is freed."""

    name: str
    id: int
    destructor: str | None = None
    free: str = "unload"

    @property
    def macro(self) -> str:
        return f"KPGEN_SHADOW_{self.name.upper()}"


@dataclass(frozen=True)
class SymbolSpec:
    """Where an unexported symbol the sources use lives, and which of several same-named ones."""

    name: str
    sympos: int
    object: str = "vmlinux"
    # the symbol's name in kallsyms, when it is not the C name the sources use
    kallsyms: str = ""

    @property
    def lookup(self) -> str:
        return self.kallsyms or self.name


@dataclass(frozen=True)
class PatchSpec:
    path: Path
    name: str
    description: str
    sources: tuple[Path, ...]
    functions: tuple[FunctionSpec, ...]
    symbols: tuple[SymbolSpec, ...] = ()
    replace: bool = False
    objects: tuple[ObjectSpec, ...] = ()
    shadows: tuple[ShadowSpec, ...] = ()
    backend: str = "kpatch"
    # the source diff the fix implements, a file beside the spec: carried in the module for
    # `kpgen info` and packages, never compiled
    diff: Path | None = None


class SpecError(UsageError):
    """A spec is wrong: the message names the file, the key and the fix."""

    def __init__(self, path: Path, key: str, problem: str, fix: str):
        self.path, self.key = path, key
        where = f"{path}: key '{key}'" if key else f"{path}"
        super().__init__(f"{where}: {problem}; {fix}")


# what TOML calls the types tomllib gives
TOML_TYPES = {"str": "a string", "int": "an integer", "float": "a float", "bool": "a boolean", "list": "an array",
              "dict": "a table", "datetime": "a date-time", "date": "a date", "time": "a time"}


def shown(value: object) -> str:
    """A spec's value as TOML writes it, for messages (strings quoted as everywhere else).

    >>> shown(True), shown(1.5), shown("x"), shown([1]), shown({})
    ('true', '1.5', "'x'", 'an array', 'a table')
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, int | float):
        return str(value)
    return TOML_TYPES.get(type(value).__name__, "a value")


def _strip_c_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return re.sub(r"//[^\n]*", " ", text)


def defines_function(c_text: str, name: str) -> bool:
    """Whether C source text holds a definition (not just a declaration) of `name`."""
    body = _strip_c_comments(c_text)
    pattern = rf"(?<![A-Za-z0-9_]){re.escape(name)}\s*\([^;{{}}]*\)\s*\{{"
    return re.search(pattern, body) is not None


def _check_ident(path: Path, key: str, value: object, what: str) -> str:
    if not isinstance(value, str):
        got = TOML_TYPES.get(type(value).__name__, "a value")
        raise SpecError(path, key, f"must be a string, got {got}", f"write {key} = \"...\"")
    if not IDENT_RE.match(value) or len(value) > KSYM_NAME_MAX:
        raise SpecError(path, key, f"{value!r} is not a C identifier", f"give the {what} as a plain C name")
    if value in C_KEYWORDS:
        raise SpecError(path, key, f"{value!r} is a C keyword", f"choose another {what}")
    return value


def load(path: Path) -> PatchSpec:
    """Parse and validate one spec file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise SpecError(path, "", f"cannot read the spec ({exc.strerror})", "check the path") from None
    if len(raw) > MAX_SPEC_BYTES:
        raise SpecError(path, "", f"the spec is {len(raw)} bytes", f"keep it under {MAX_SPEC_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "", f"not UTF-8 (byte {exc.start})", "save the spec as UTF-8") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(path, "", f"TOML syntax error: {exc}", "fix the TOML syntax") from None
    return validate(path, data)


def check_backend(path: Path, key: str, value: object) -> str:
    """A backend's name, or a SpecError naming the key and the allowed values."""
    if value not in BACKENDS:
        allowed = (f"give {key} " + " or ".join(BACKENDS) if key.startswith("--")
                   else f"write {key} = " + " or ".join(f'"{b}"' for b in BACKENDS))
        raise SpecError(path, key, f"{shown(value)} is not a backend",
                        allowed + " (kpatch: kpgen's core, the default; livepatch: the kernel's own livepatch)")
    assert isinstance(value, str)
    return value


def refuse_for_backend(patch: PatchSpec) -> None:
    """What a spec says that its backend cannot do, refused with the reason."""
    if patch.backend != "livepatch":
        return
    for i, func in enumerate(patch.functions):
        if func.force:
            raise SpecError(patch.path, f"function[{i}].force",
                            "force has no meaning for the livepatch backend: livepatch switches each task on "
                            "its own once it has left the old code, so no activeness check is there to skip",
                            'remove force = true, or use backend = "kpatch"')


def with_backend(patch: PatchSpec, backend: str | None, key: str = "--backend") -> PatchSpec:
    """The spec with its backend overridden (a command-line option), checked again."""
    if backend is None:
        return patch
    result = _replace(patch, backend=check_backend(patch.path, key, backend))
    refuse_for_backend(result)
    return result


def validate(path: Path, data: dict) -> PatchSpec:
    unknown = sorted(set(data) - TOP_KEYS)
    if unknown:
        raise SpecError(path, unknown[0], "unknown key", f"use only {', '.join(sorted(TOP_KEYS))}")
    # a patch that only runs callbacks (its [[object]] tables) replaces no function
    for key in ("name", "sources") if "object" in data else ("name", "sources", "function"):
        if key not in data:
            raise SpecError(path, key, "missing", f"add the required key '{key}'")

    name = data["name"]
    if not isinstance(name, str) or not NAME_RE.match(name) or len(name) > MODULE_NAME_MAX:
        raise SpecError(
            path, "name", f"{shown(name)} is not a valid module name",
            f"use lower-case letters, digits and '_', starting with a letter, at most {MODULE_NAME_MAX} characters",
        )
    if name == "kpatch" or name.startswith("kpatch_") or name in C_KEYWORDS:
        raise SpecError(path, "name", f"{name!r} is reserved", "choose another module name")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(path, "description", "must be a string", 'write description = "..."')
    if len(description) > 200 or any(not ch.isprintable() for ch in description):
        raise SpecError(path, "description", "must be one printable line of at most 200 characters",
                        "shorten it and remove control characters")

    sources = _validate_sources(path, name, data["sources"])
    diff = _validate_diff(path, data["diff"]) if "diff" in data else None
    backend = check_backend(path, "backend", data.get("backend", "kpatch"))
    replace = data.get("replace", False)
    if not isinstance(replace, bool):
        raise SpecError(path, "replace", f"{shown(replace)} is not true or false",
                        "write replace = true for a cumulative patch that takes over every enabled patch")
    functions = _validate_functions(path, data["function"]) if "function" in data or "object" not in data else ()
    generated = re.compile(GENERATED_RE_TEMPLATE.format(name=re.escape(name), suffixes="|".join(GENERATED_SUFFIXES)))
    for i, func in enumerate(functions):
        if generated.match(func.replacement):
            raise SpecError(path, f"function[{i}].replacement",
                            f"{func.replacement!r} is a name the generated module defines",
                            f"do not name replacements {name}_init, _exit, _funcs, _syms, _objs, _patch "
                            f"or {name}_N_pre_patch and the like")
    symbols = _validate_symbols(path, data.get("symbol", []))
    objects = _validate_objects(path, data.get("object", []))
    shadows = _validate_shadows(path, data.get("shadow", []))

    # a module's symbols are only relocated while it is loaded: only replacements of that
    # module's functions, which run only then, may use them
    for i, sym in enumerate(symbols):
        other = next((j for j, f in enumerate(functions) if f.object != sym.object), None)
        if sym.object != "vmlinux" and other is not None:
            raise SpecError(
                path, f"symbol[{i}].object",
                f"{sym.name!r} is in module {sym.object}, but function[{other}] replaces a function of "
                f"{functions[other].object}, which could run while {sym.object} is not loaded",
                f"put the functions of {sym.object} in a spec of their own",
            )

    texts = {src: src.read_text(encoding="utf-8") for src in sources}
    names = ", ".join(s.name for s in sources)
    for i, func in enumerate(functions):
        if not any(defines_function(t, func.replacement) for t in texts.values()):
            raise SpecError(
                path, f"function[{i}].replacement",
                f"{func.replacement!r} is not defined in {names}",
                "define the replacement function in one of the sources, or fix its name",
            )
    defined = [(f"object[{i}].{kind}", fn, CALLBACK_PROTOTYPES[kind].format(fn))
               for i, obj in enumerate(objects) for kind, fn in obj.callbacks().items()]
    defined += [(f"shadow[{i}].destructor", sh.destructor, f"void {sh.destructor}(void *obj, void *shadow_data)")
                for i, sh in enumerate(shadows) if sh.destructor]
    for key, fn, prototype in defined:
        if generated.match(fn):
            raise SpecError(path, key, f"{fn!r} is a name the generated module defines", "rename the function")
        if not any(defines_function(t, fn) for t in texts.values()):
            raise SpecError(path, key, f"{fn!r} is not defined in {names}",
                            f"define it in one of the sources as {prototype}")
    patch = PatchSpec(path=path, name=name, description=description, sources=sources, functions=functions,
                      symbols=symbols, replace=replace, objects=objects, shadows=shadows, backend=backend,
                      diff=diff)
    refuse_for_backend(patch)
    return patch


def _check_sympos(path: Path, key: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 65535:
        raise SpecError(path, key, f"{shown(value)} is not a whole number from 0 to 65535",
                        "write sympos = N, counting same-named symbols from 1 (0: the name is unique)")
    return value


def _validate_symbols(path: Path, value: object) -> tuple[SymbolSpec, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SpecError(path, "symbol", "must be [[symbol]] tables", "write [[symbol]] with name and sympos")
    result: list[SymbolSpec] = []
    for i, table in enumerate(value):
        prefix = f"symbol[{i}]"
        unknown = sorted(set(table) - SYMBOL_KEYS)
        if unknown:
            raise SpecError(path, f"{prefix}.{unknown[0]}", "unknown key", f"use only {', '.join(sorted(SYMBOL_KEYS))}")
        if "name" not in table:
            raise SpecError(path, f"{prefix}.name", "missing", 'add name = "..." to the table')
        name = _check_ident(path, f"{prefix}.name", table["name"], "kernel symbol")
        if any(sym.name == name for sym in result):
            raise SpecError(path, f"{prefix}.name", f"{name!r} is listed twice", "list each symbol once")
        sympos = _check_sympos(path, f"{prefix}.sympos", table.get("sympos", 0))
        obj = _check_object(path, f"{prefix}.object", table.get("object", "vmlinux"))
        ksym = table.get("kallsyms", "")
        if "kallsyms" in table and (not isinstance(ksym, str) or not KALLSYMS_RE.match(ksym)
                                    or len(ksym) > KSYM_NAME_MAX):
            raise SpecError(path, f"{prefix}.kallsyms", f"{shown(ksym)} is not a kallsyms name",
                            "give the name as /proc/kallsyms shows it, e.g. \"last_check.2\"")
        if ksym == name:
            ksym = ""
        result.append(SymbolSpec(name=name, sympos=sympos, object=obj, kallsyms=ksym))
    return tuple(result)


def _validate_objects(path: Path, value: object) -> tuple[ObjectSpec, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SpecError(path, "object", "must be [[object]] tables", "write [[object]] with name and its callbacks")
    result: list[ObjectSpec] = []
    for i, table in enumerate(value):
        prefix = f"object[{i}]"
        unknown = sorted(set(table) - OBJECT_KEYS)
        if unknown:
            raise SpecError(path, f"{prefix}.{unknown[0]}", "unknown key", f"use only {', '.join(sorted(OBJECT_KEYS))}")
        if "name" not in table:
            raise SpecError(path, f"{prefix}.name", "missing", 'add name = "vmlinux" or the module\'s name')
        obj = _check_object(path, f"{prefix}.name", table["name"])
        if any(o.name == obj for o in result):
            raise SpecError(path, f"{prefix}.name", f"object {obj} has two [[object]] tables",
                            "give each object one table with all its callbacks")
        callbacks = {kind: _check_ident(path, f"{prefix}.{kind}", table[kind], f"{kind} callback")
                     for kind in CALLBACKS if kind in table}
        if not callbacks:
            raise SpecError(path, prefix, f"the table of {obj} names no callback",
                            f"add one of {', '.join(CALLBACKS)}, or remove the table")
        result.append(ObjectSpec(name=obj, **callbacks))
    return tuple(result)


def shadow_id(name: str) -> int:
    """The default id of a shadow variable kind: the same for every patch that names it alike, so
    that a cumulative patch takes over its predecessor's shadow variables.

    >>> shadow_id("newpid") == shadow_id("newpid") and 0 < shadow_id("newpid") < 2**31
    True
    """
    return (zlib.crc32(f"kpgen-shadow:{name}".encode()) & 0x7FFFFFFF) or 1


def _validate_shadows(path: Path, value: object) -> tuple[ShadowSpec, ...]:
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise SpecError(path, "shadow", "must be [[shadow]] tables", 'write [[shadow]] with name = "..."')
    result: list[ShadowSpec] = []
    for i, table in enumerate(value):
        prefix = f"shadow[{i}]"
        unknown = sorted(set(table) - SHADOW_KEYS)
        if unknown:
            raise SpecError(path, f"{prefix}.{unknown[0]}", "unknown key", f"use only {', '.join(sorted(SHADOW_KEYS))}")
        if "name" not in table:
            raise SpecError(path, f"{prefix}.name", "missing", 'add name = "..." to the table')
        name = table["name"]
        if not isinstance(name, str) or not SHADOW_NAME_RE.match(name) or len(name) > 64:
            raise SpecError(path, f"{prefix}.name", f"{shown(name)} is not a shadow variable name",
                            "use lower-case letters, digits and '_', starting with a letter: the sources "
                            "use it as KPGEN_SHADOW_<NAME>")
        if any(s.name == name for s in result):
            raise SpecError(path, f"{prefix}.name", f"{name!r} is listed twice", "list each shadow variable once")
        sid = table.get("id", shadow_id(name))
        if not isinstance(sid, int) or isinstance(sid, bool) or not 1 <= sid <= 0xFFFFFFFF:
            raise SpecError(path, f"{prefix}.id", f"{shown(sid)} is not a whole number from 1 to 4294967295",
                            "write id = N, the klp_shadow id every patch sharing these variables uses")
        if any(s.id == sid for s in result):
            raise SpecError(path, f"{prefix}.id", f"id {sid} is also the id of another [[shadow]]",
                            "give each shadow variable kind its own id")
        dtor = table.get("destructor")
        if dtor is not None:
            dtor = _check_ident(path, f"{prefix}.destructor", dtor, "destructor")
        free = table.get("free", "unload")
        if free not in SHADOW_FREE:
            raise SpecError(path, f"{prefix}.free", f"{shown(free)} is not one of {', '.join(SHADOW_FREE)}",
                            'write free = "unload" (the default), "disable" or "never"')
        result.append(ShadowSpec(name=name, id=sid, destructor=dtor, free=free))
    return tuple(result)


def _check_object(path: Path, key: str, value: object) -> str:
    if not isinstance(value, str) or not OBJECT_RE.match(value) or len(value) > MODULE_NAME_MAX:
        raise SpecError(path, key, f"{shown(value)} is not 'vmlinux' or a module name",
                        "write object = \"vmlinux\" or the name of the kernel module")
    obj = value.replace("-", "_")
    if obj == "kpatch":
        raise SpecError(path, key, "the core module cannot be patched or used by patches",
                        "use the kernel or another module")
    return obj


def _validate_sources(path: Path, name: str, value: object) -> tuple[Path, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise SpecError(path, "sources", "must be a non-empty list of file names", 'write sources = ["fix.c"]')
    result: list[Path] = []
    for i, rel in enumerate(value):
        key = f"sources[{i}]"
        if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\.c", rel):
            raise SpecError(path, key, f"{rel!r} is not a plain .c file name beside the spec",
                            "put the C file in the spec's directory and name it like fix.c")
        if rel == f"{name}.c":
            raise SpecError(path, key, f"{rel!r} would clash with the generated {name}.c", "rename the source file")
        src = path.parent / rel
        if src in result:
            raise SpecError(path, key, f"{rel!r} is listed twice", "list each source once")
        if not src.is_file():
            raise SpecError(path, key, f"{src} does not exist", "create it or fix the file name")
        size = src.stat().st_size
        if size > MAX_SOURCE_BYTES:
            raise SpecError(path, key, f"{src} is {size} bytes", f"keep sources under {MAX_SOURCE_BYTES} bytes")
        try:
            src.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise SpecError(path, key, f"{src} is not UTF-8 (byte {exc.start})", "save it as UTF-8") from None
        result.append(src)
    return tuple(result)


def _validate_diff(path: Path, value: object) -> Path:
    """The spec's `diff`: a UTF-8 file beside the spec."""
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", value):
        raise SpecError(path, "diff", f"{value!r} is not a plain file name beside the spec",
                        'put the diff in the spec\'s directory and write diff = "fix.patch"')
    diff = path.parent / value
    if not diff.is_file():
        raise SpecError(path, "diff", f"{diff} does not exist", "create it, fix the file name, or remove the key")
    size = diff.stat().st_size
    if size > MAX_SOURCE_BYTES:
        raise SpecError(path, "diff", f"{diff} is {size} bytes", f"keep the diff under {MAX_SOURCE_BYTES} bytes")
    try:
        diff.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(path, "diff", f"{diff} is not UTF-8 (byte {exc.start})", "save it as UTF-8") from None
    return diff


def _validate_functions(path: Path, value: object) -> tuple[FunctionSpec, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise SpecError(path, "function", "must be one or more [[function]] tables",
                        "add a [[function]] table with target and replacement")
    funcs: list[FunctionSpec] = []
    seen: dict[tuple[str, str, int], int] = {}
    replacements: dict[str, int] = {}
    for i, table in enumerate(value):
        prefix = f"function[{i}]"
        unknown = sorted(set(table) - FUNC_KEYS)
        if unknown:
            raise SpecError(path, f"{prefix}.{unknown[0]}", "unknown key", f"use only {', '.join(sorted(FUNC_KEYS))}")
        for key in ("target", "replacement"):
            if key not in table:
                raise SpecError(path, f"{prefix}.{key}", "missing", f"add {key} = \"...\" to the table")
        target = _check_ident(path, f"{prefix}.target", table["target"], "function to replace")
        replacement = _check_ident(path, f"{prefix}.replacement", table["replacement"], "replacement function")
        if replacement.startswith(RESERVED_PREFIXES):
            raise SpecError(path, f"{prefix}.replacement", f"{replacement!r} uses a reserved prefix",
                            "do not start replacement names with 'kpatch_' or '__'")
        if replacement == target:
            raise SpecError(path, f"{prefix}.replacement", "has the same name as the target",
                            "give the replacement its own name, e.g. fix_" + target)
        obj = _check_object(path, f"{prefix}.object", table.get("object", "vmlinux"))
        sympos = _check_sympos(path, f"{prefix}.sympos", table.get("sympos", 0))
        force = table.get("force", False)
        if not isinstance(force, bool):
            raise SpecError(path, f"{prefix}.force", f"{shown(force)} is not true or false",
                            "write force = true to switch this function without the activeness check")
        key3 = (obj, target, sympos)
        if key3 in seen:
            raise SpecError(path, f"{prefix}.target",
                            f"{target!r} in {obj} is already replaced by function[{seen[key3]}]",
                            "replace each function once per spec")
        if replacement in replacements:
            raise SpecError(path, f"{prefix}.replacement",
                            f"{replacement!r} already replaces function[{replacements[replacement]}]",
                            "give each target its own replacement")
        seen[key3] = i
        replacements[replacement] = i
        funcs.append(FunctionSpec(target=target, object=obj, replacement=replacement, sympos=sympos, force=force))
    return tuple(funcs)


def toml_string(value: str) -> str:
    """A TOML basic string.

    >>> print(toml_string('say "hi"\\\\ now'))
    "say \\"hi\\"\\\\ now"
    """
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def dump(patch: PatchSpec, comment: str = "") -> str:
    """The spec as TOML text that `load` reads back to the same PatchSpec, the sources named
    beside the spec; `comment`, if any, opens the file as TOML comment lines. Keys that hold
    their default value are left out, but a function's object is always written."""
    out = [f"# {line}".rstrip() for line in comment.splitlines()]
    out += [f"name = {toml_string(patch.name)}"]
    if patch.description:
        out.append(f"description = {toml_string(patch.description)}")
    out.append("sources = [" + ", ".join(toml_string(p.name) for p in patch.sources) + "]")
    if patch.diff is not None:
        out.append(f"diff = {toml_string(patch.diff.name)}")
    if patch.backend != "kpatch":
        out.append(f"backend = {toml_string(patch.backend)}")
    if patch.replace:
        out.append("replace = true")
    for f in patch.functions:
        out += ["", "[[function]]", f"target = {toml_string(f.target)}", f"object = {toml_string(f.object)}",
                f"replacement = {toml_string(f.replacement)}"]
        out += [f"sympos = {f.sympos}"] if f.sympos else []
        out += ["force = true"] if f.force else []
    for s in patch.symbols:
        out += ["", "[[symbol]]", f"name = {toml_string(s.name)}"]
        out += [f"kallsyms = {toml_string(s.kallsyms)}"] if s.kallsyms else []
        out += [f"object = {toml_string(s.object)}"] if s.object != "vmlinux" else []
        out += [f"sympos = {s.sympos}"] if s.sympos else []
    for o in patch.objects:
        out += ["", "[[object]]", f"name = {toml_string(o.name)}"]
        out += [f"{kind} = {toml_string(fn)}" for kind, fn in o.callbacks().items()]
    for sh in patch.shadows:
        out += ["", "[[shadow]]", f"name = {toml_string(sh.name)}"]
        out += [f"id = {sh.id}"] if sh.id != shadow_id(sh.name) else []
        out += [f"destructor = {toml_string(sh.destructor)}"] if sh.destructor else []
        out += [f"free = {toml_string(sh.free)}"] if sh.free != "unload" else []
    return "\n".join(out) + "\n"
