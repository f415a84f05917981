"""The docs cannot drift: every key, field, file, message and command they show is checked
against the code that defines it."""

from __future__ import annotations

import argparse
import datetime
import re
import shlex
from pathlib import Path

import pytest

from kpgen import cli, spec
from kpgen.resources import TEMPLATES

REPO_ROOT = Path(__file__).resolve().parents[2]

DOCS = REPO_ROOT / "docs"
# the core's C, apart from the test build's faults.c, with the partial relocs.c renders
TEMPLATE = "".join(p.read_text() for p in [*sorted((TEMPLATES / "core").glob("*.c.j2")), TEMPLATES / "_klp_clear.j2"]
                   if p.name != "faults.c.j2")
FAULTS = (TEMPLATES / "core" / "faults.c.j2").read_text()
HEADER = (REPO_ROOT / "kmod" / "core" / "kpatch.h").read_text()


def section(doc: str, heading: str) -> str:
    """The text under a markdown heading, up to the next heading of any level."""
    text = (DOCS / doc).read_text()
    start = text.index(heading + "\n")
    rest = text[start + len(heading) + 1:]
    end = re.search(r"^#", rest, flags=re.M)
    return rest[: end.start()] if end else rest


def first_column(text: str) -> list[str]:
    """The backquoted names in the first column of a markdown table (several per cell allowed)."""
    names = []
    for line in text.splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([^`]+)`", line.split("|")[1])
    return names


def blocks(path: Path, lang: str) -> list[str]:
    """The fenced code blocks of a markdown file whose info string is `lang` ("" for none)."""
    found: list[str] = []
    info: str | None = None  # the open block's info string, None outside blocks
    lines: list[str] = []
    for line in path.read_text().splitlines():
        if not line.startswith("```"):
            lines.append(line)
        elif info is None:
            info, lines = line[3:].strip(), []
        else:
            if info == lang:
                found.append("\n".join(lines) + "\n")
            info = None
    return found


# --- the spec ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("heading", "keys"), [
    ("## Top-level keys", spec.TOP_KEYS),
    ("## `[[function]]`", spec.FUNC_KEYS),
    ("## `[[symbol]]`", spec.SYMBOL_KEYS),
    ("## `[[object]]`", spec.OBJECT_KEYS),
    ("## `[[shadow]]`", spec.SHADOW_KEYS),
])
def test_spec_keys_are_documented(heading, keys):
    assert set(first_column(section("spec.md", heading))) == keys


@pytest.mark.parametrize("path", [DOCS / "spec.md", REPO_ROOT / "README.md"], ids=lambda p: p.name)
def test_spec_examples_load(tmp_path, path):
    full = [b for b in blocks(path, "toml") if "[[function]]" in b and "name =" in b]
    assert full, f"{path.name} shows no complete spec"
    for i, text in enumerate(full):
        d = tmp_path / str(i)
        d.mkdir()
        body = re.sub(r"#.*", "", text)
        sources = re.search(r"sources = \[(.*)\]", body).group(1)  # type: ignore[union-attr]
        for src in re.findall(r'"([^"]+)"', sources):
            funcs = re.findall(r'replacement = "(\w+)"', body)
            (d / src).write_text("".join(f"static int {f}(void)\n{{\n\treturn 0;\n}}\n" for f in funcs))
        (d / "spec.toml").write_text(text)
        spec.load(d / "spec.toml")


def test_spec_error_example_is_what_kpgen_prints(tmp_path, monkeypatch, capsys):
    shown = next(line for b in blocks(DOCS / "spec.md", "") for line in b.splitlines()
                 if line.startswith("kpgen: error:"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fix.c").write_text("static int other(void)\n{\n\treturn 0;\n}\n")
    (tmp_path / "fix.toml").write_text('name = "fix_demo"\nsources = ["fix.c"]\n[[function]]\n'
                                       'target = "cmdline_proc_show"\nreplacement = "fix_show"\n')
    assert cli.main(["patch", "fix.toml", "-o", "out"]) == 2
    assert capsys.readouterr().err.strip() == shown


# --- the C API ---------------------------------------------------------------------------------

def struct_fields(name: str) -> set[str]:
    body = re.search(rf"^struct {name} {{\n(.*?)^}};", HEADER, flags=re.M | re.S).group(1)  # type: ignore[union-attr]
    return set(re.findall(r"(\w+)(?:\[\w*\])?;", body)) | set(re.findall(r"\(\*(\w+)\)\(", body))


@pytest.mark.parametrize("struct", ["kpatch_patch", "kpatch_func", "kpatch_object", "kpatch_callbacks"])
def test_api_fields_are_documented(struct):
    assert set(first_column(section("api.md", f"## `struct {struct}`"))) == struct_fields(struct)


def test_api_prototypes_are_the_headers():
    for line in blocks(DOCS / "api.md", "c")[0].splitlines():
        assert line in HEADER


# --- sysfs and parameters ----------------------------------------------------------------------

def test_sysfs_files_are_documented():
    table = section("sysfs.md", "## `/sys/kernel/kpatch/`").split("| key |")[0]
    files = {name.split("/")[-1] for name in first_column(table)}
    made = set(re.findall(r"__ATTR_R[OW]\((\w+)\)", TEMPLATE)) | set(re.findall(r'attr\.name = "(\w+)"', TEMPLATE))
    assert files == made


def test_last_change_example_matches_the_format():
    body = re.search(r"kpatch_last_change_show\(char \*buf\)\n\{(.*?)\n\}", TEMPLATE, flags=re.S).group(1)  # type: ignore[union-attr]
    fmt = "".join(re.findall(r'"([^"]*)"', body)).removesuffix("\\n")
    pattern = (re.escape(fmt).replace("%u", r"\d+").replace("%llu", r"\d+").replace("%d", r"-?\d+")
               .replace("%s", r"[a-z]+"))
    example = next(b for b in blocks(DOCS / "sysfs.md", "") if b.startswith("functions="))
    assert re.fullmatch(pattern, example.strip())
    keys = [kv.split("=")[0] for kv in fmt.split()]
    assert first_column(section("sysfs.md", "## `/sys/kernel/kpatch/`").split("| key |")[1]) == keys


def test_parameters_are_documented():
    params = set(re.findall(r"module_param(?:_cb)?\((\w+),", TEMPLATE))
    assert set(first_column(section("sysfs.md", "## `/sys/module/kpatch/parameters/`"))) == params
    test_params = set(re.findall(r"module_param(?:_string)?\((\w+),", FAULTS))
    points = set(re.findall(r'kpatch_fail\("(\w+)"\)', TEMPLATE + FAULTS))
    parks = set(re.findall(r'kpatch_park\("(\w+)"\)', TEMPLATE))
    text = section("sysfs.md", "### The test build")
    assert set(first_column(text)) == test_params
    rows = {line.split("|")[1].strip().strip("`"): line.split("|")[2] for line in text.splitlines()
            if line.startswith("| `")}
    assert set(re.findall(r"`(\w+)`", rows["fail_at"])) == points
    assert set(re.findall(r"`(\w+)`", rows["park_at"])) - {"park_ms"} == parks


# --- messages ----------------------------------------------------------------------------------

def test_every_core_message_is_documented_and_no_other():
    def messages(c: str) -> set[str]:
        return {m.replace("\\n", "") for m in re.findall(r'pr_\w+\(\s*"((?:[^"\\]|\\.)*)"', c)}

    rows = [cells.split("|") for cells in section("messages.md", "## Kernel log").splitlines()
            if cells.startswith("| ") and cells.split("|")[1].strip() in ("emerg", "err", "warn", "notice", "info")]
    documented = [cells[2].strip().strip("`") for cells in rows]
    test_build = documented[documented.index("injected failure at '%s'"):]
    assert set(documented[:len(documented) - len(test_build)]) == messages(TEMPLATE)
    assert set(test_build) == messages(FAULTS)


def test_exit_codes_are_documented():
    from kpgen import errors

    codes = {cls.exit_code for cls in vars(errors).values() if isinstance(cls, type) and hasattr(cls, "exit_code")}
    table = section("messages.md", "## kpgen's exit status")
    assert {int(c) for c in re.findall(r"^\| (\d) \|", table, flags=re.M)} == codes | {0}


# --- commands ----------------------------------------------------------------------------------

DOC_FILES = [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_commands_shown_are_accepted(path):
    makefile = (REPO_ROOT / "Makefile").read_text()
    for block in blocks(path, "sh"):
        for line in block.splitlines():
            words = shlex.split(line.split("#")[0]) if line.strip() else []
            if words[:1] == ["kpgen"]:
                try:
                    cli.parser().parse_args(words[1:])
                except SystemExit:
                    pytest.fail(f"{path.name}: kpgen does not accept: {line}")
            elif words[:1] == ["make"]:
                for target in (w for w in words[1:] if "=" not in w and not w.startswith("-")):
                    assert re.search(rf"^{re.escape(target)}:", makefile, flags=re.M), f"no make target {target}"


# --- the pages and their links -----------------------------------------------------------------

def slug(heading: str) -> str:
    """GitHub's anchor for a markdown heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def prose(path: Path) -> str:
    """A markdown file without its fenced code blocks."""
    return re.sub(r"^```.*?^```$", "", path.read_text(), flags=re.M | re.S)


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", prose(path), flags=re.M)}


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_links_reach_a_file_and_heading(path):
    for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
        if re.match(r"[a-z]+:", target):
            continue
        file, _, anchor = target.partition("#")
        where = (path.parent / file).resolve() if file else path
        assert where.exists(), f"{path.name}: link to {target}: no such file"
        if anchor:
            assert anchor in anchors(where), f"{path.name}: link to {target}: no such heading in {where.name}"


def test_every_page_is_linked_from_the_readme():
    linked = {(REPO_ROOT / t.partition("#")[0]).resolve()
              for t in re.findall(r"\]\((docs/[^)\s]+)\)", (REPO_ROOT / "README.md").read_text())}
    assert set(DOCS.glob("*.md")) - linked == set()


# where a backquoted path of the docs is found: in the checkout, in the package, in the guest suite
PATH_ROOTS = ("gen/", "tests/", "ci/", "templates/", "kmod/", "docs/")


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.name)
def test_paths_shown_exist(path):
    for shown in re.findall(r"`([\w./-]+/[\w./-]*)`", path.read_text()):
        if shown.startswith(PATH_ROOTS):
            where = REPO_ROOT / shown
        elif shown.startswith(("samples/", "harness/")):
            where = REPO_ROOT / "gen" / "kpgen" / shown
        elif shown.startswith("topics/"):
            where = REPO_ROOT / "gen" / "kpgen" / "harness" / "guest" / shown
        else:
            continue
        assert where.exists(), f"{path.name}: `{shown}` does not exist"


# --- the commands table ------------------------------------------------------------------------

def subcommands() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in cli.parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def test_commands_table_shows_every_command_and_option():
    rows = {}
    for line in section_of(REPO_ROOT / "README.md", "## Commands").splitlines():
        if line.startswith("| `kpgen "):
            usage = re.match(r"\| `kpgen ([^`]+)`", line).group(1)  # type: ignore[union-attr]
            rows[usage.split()[0]] = usage.replace("\\|", "|")
    commands = subcommands()
    assert set(rows) == set(commands), "the README's commands table and kpgen's commands differ"
    # the options every command takes are said once, below the table
    common = {"-h", "--help", "-q", "--quiet", "-v", "--verbose"}
    below = section_of(REPO_ROOT / "README.md", "## Commands").split("| --- | --- |")[1]
    for option in ("-q", "-v"):
        assert f"`{option}`" in below, f"the README does not say what {option} does"
    for name, usage in rows.items():
        shown = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", usage))
        options = {s for a in commands[name]._actions for s in a.option_strings} - common
        assert shown <= options, f"kpgen {name}: the table shows {shown - options}, which kpgen does not accept"
        for action in commands[name]._actions:
            if action.option_strings and not set(action.option_strings) & (shown | common):
                pytest.fail(f"kpgen {name}: the table does not show {'/'.join(action.option_strings)}")


def section_of(path: Path, heading: str) -> str:
    text = path.read_text()
    rest = text[text.index(heading + "\n") + len(heading) + 1:]
    end = re.search(r"^## ", rest, flags=re.M)
    return rest[: end.start()] if end else rest


# --- the pages moved out of the README ---------------------------------------------------------

def test_bench_page_shows_the_saved_figures():
    import json

    saved = json.loads((DOCS / "bench.json").read_text())
    page = (DOCS / "bench.md").read_text()
    releases = [k["release"] for k in saved["kernels"]]
    table = page[page.index("| target | "):]
    assert table.splitlines()[0] == "| target | " + " | ".join(releases) + " |"
    for target in saved["kernels"][0]["targets"]:
        cells = [next(t for t in k["targets"] if t["name"] == target["name"]) for k in saved["kernels"]]
        row = f"| {target['name']} | " + " | ".join(
            f"{t['verdict']}: {t['value']:.3g} [{t['lo']:.3g}, {t['hi']:.3g}]" for t in cells) + " |"
        assert row in table.splitlines(), f"docs/bench.md does not show {row}"
    day = datetime.date.fromisoformat(saved["when"].split()[0])
    assert f"latest run, on {day.day} {day:%B %Y}" in page, "docs/bench.md dates its figures otherwise than bench.json"


def test_testing_page_names_every_layer_and_marker():
    page = (DOCS / "testing.md").read_text()
    layers = {p.name for p in (REPO_ROOT / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    for layer in layers:
        assert f"`tests/{layer}`" in page, f"docs/testing.md does not describe tests/{layer}"
    import tomllib

    markers = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    for marker in (m.split(":")[0] for m in markers):
        assert f"marker `{marker}`" in page or f"`{marker}`" in page, f"docs/testing.md does not name marker {marker}"


def test_testing_page_counts_the_diff_corpus():
    cases = [p for p in (REPO_ROOT / "tests" / "diffs").iterdir() if (p / "case.toml").is_file()]
    shown = re.search(r"`tests/diffs/` holds (\d+) cases", (DOCS / "testing.md").read_text())
    assert shown and int(shown.group(1)) == len(cases)
