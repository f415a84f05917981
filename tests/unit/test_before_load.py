"""What a careful user is owed before a module loads, through the command line only: the exit
status, the message, and the files left as they were.

The hostile inputs are one table (HOSTILE): a spec and its C, the command, what kpgen must say.
Each runs `python -m kpgen` against Debian's 6.1 (the matrix's first kernel) with a core
generated for it; kpgen compiles each module once, so a case takes a few seconds.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from kpgen import generate, kernel

MATRIX = {m.name: m for m in kernel.matrix()}
KDIR = MATRIX["6.1"].kdir()
KDIR_OTHER = MATRIX["6.12"].kdir()
RELEASE = KDIR.parent.name
SEQ = "struct seq_file;\n\n"
CMDLINE_SHOW = SEQ + "static int fix_show(struct seq_file *m, void *v)\n{\n\treturn 0;\n}\n"


def kpgen(*argv: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kpgen", *argv], capture_output=True, text=True, cwd=cwd,
                          env=env, check=False)


def files(root: Path) -> dict[str, bytes]:
    """Every file under root, with its content."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def spec_text(name: str = "fix_demo", target: str = "cmdline_proc_show", replacement: str = "fix_show",
              extra: str = "") -> str:
    return (f'name = "{name}"\nsources = ["fix.c"]\n\n[[function]]\ntarget = "{target}"\n'
            f'replacement = "{replacement}"\n{extra}')


@pytest.fixture(scope="module")
def cores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A core generated for 6.1, one for 6.12, and a patch module directory generated for 6.12."""
    root = tmp_path_factory.mktemp("cores")
    made = {}
    for name in ("6.1", "6.12"):
        k = kernel.probe(MATRIX[name].kdir())
        generate.generate_tree(k, root / name, [])
        made[name] = root / name / "core"
    (root / "p").mkdir()
    (root / "p" / "fix.c").write_text(CMDLINE_SHOW)
    (root / "p" / "p.toml").write_text(spec_text("other_kernel"))
    k = kernel.probe(KDIR_OTHER)
    generate.generate_patch(k, root / "p" / "p.toml", root / "module-6.12", made["6.12"])
    made["module-6.12"] = root / "module-6.12"
    return made


@dataclass
class Case:
    """A spec (fix.toml + fix.c in the work directory, when given) and the command run on it."""

    id: str
    argv: str  # {core}, {core612}, {module612}, {kdir}, {kdir612} are filled in
    status: int
    words: tuple[str, ...]
    spec: str | None = None
    c: str = CMDLINE_SHOW
    setup: Callable[[Path], None] | None = None
    # paths (relative to the work directory) that must not exist afterwards
    absent: tuple[str, ...] = ("out",)
    stdout_empty: bool = False
    extra: dict[str, str] = field(default_factory=dict)


def _user_kbuild(work: Path) -> None:
    (work / "out").mkdir()
    (work / "out" / "Kbuild").write_text("obj-m := mine.o  # my own\n")


def _user_core_file(work: Path) -> None:
    (work / "out" / "core").mkdir(parents=True)
    (work / "out" / "core" / "core.c").write_text("/* my own core.c */\n")


def _own_fix_c(work: Path) -> None:
    (work / "out").mkdir()
    (work / "out" / "fix.c").write_text("/* my review notes */\n")


def _diff_over_own_fix_c(work: Path) -> None:
    _diff(work)
    _own_fix_c(work)


def _diff(work: Path) -> None:
    (work / "fix.patch").write_text("--- a/fs/proc/cmdline.c\n+++ b/fs/proc/cmdline.c\n@@ -1 +1 @@\n-a\n+b\n")


PATCH = "patch fix.toml -o out --core {core} --kdir {kdir}"
HOSTILE = [
    # 1. prototypes
    Case("replacement-of-another-prototype", PATCH, 2,
         ("fix.c:3: pt_jtm() does not have the prototype of jiffies_to_msecs()",
          f"vmlinux of {RELEASE}: unsigned int jiffies_to_msecs(const unsigned long j)",
          "the replacement:", "void pt_jtm(char *a, int b, long c)"),
         spec=spec_text(target="jiffies_to_msecs", replacement="pt_jtm"),
         c="#include <linux/jiffies.h>\n\nstatic void pt_jtm(char *a, int b, long c)\n{\n}\n"),
    Case("declaration-of-another-prototype", PATCH, 2,
         ("fix.c:3: the sources declare cmdline_proc_show with another prototype than the kernel's",
          "int cmdline_proc_show(struct seq_file *m, void *v)", "void cmdline_proc_show(int)"),
         spec=spec_text(target="version_proc_show"),
         c=SEQ + "extern void cmdline_proc_show(int x);\n\nstatic int fix_show(struct seq_file *m, void *v)\n"
           "{\n\tcmdline_proc_show(1);\n\treturn 0;\n}\n"),
    Case("function-declared-as-a-variable", PATCH, 2,
         ("the sources declare cmdline_proc_show as a variable, but it is a function",),
         spec=spec_text(target="version_proc_show"),
         c=SEQ + "extern int cmdline_proc_show;\n\nstatic int fix_show(struct seq_file *m, void *v)\n"
           "{\n\treturn cmdline_proc_show;\n}\n"),
    # 2. targets and symbols, without a boot
    Case("target-that-does-not-exist", PATCH, 2,
         ("key 'function[0].target'", "'no_such_function_xyz' does not exist in vmlinux of kernel"),
         spec=spec_text(target="no_such_function_xyz")),
    Case("target-that-is-a-variable", PATCH, 2, ("'saved_command_line' is not a function in vmlinux",),
         spec=spec_text(target="saved_command_line")),
    Case("same-named-target-without-sympos", PATCH, 2,
         ("key 'function[0].sympos'", "'x2apic_send_IPI' appears 2 times", "candidates by position: 1 (after"),
         spec=spec_text(target="x2apic_send_IPI", replacement="fix_ipi"),
         c="static void fix_ipi(int cpu, int vector)\n{\n}\n"),
    Case("sympos-out-of-range", PATCH, 2, ("'jiffies_to_msecs' appears only 1 time(s)", "remove it"),
         spec=spec_text(target="jiffies_to_msecs", replacement="fix_j", extra="sympos = 2\n"),
         c="static unsigned int fix_j(const unsigned long j)\n{\n\treturn 0;\n}\n"),
    Case("notrace-target", PATCH, 2, ("ftrace cannot hook 'native_sched_clock'", "no __fentry__ call"),
         spec=spec_text(target="native_sched_clock", replacement="fix_clock"),
         c="static unsigned long long fix_clock(void)\n{\n\treturn 0;\n}\n"),
    Case("init-target", PATCH, 2, ("'start_kernel' is __init code in vmlinux",),
         spec=spec_text(target="start_kernel", replacement="fix_start"),
         c="static void fix_start(void)\n{\n}\n"),
    Case("module-target-that-does-not-exist", PATCH, 2,
         ("'no_such_function_xyz' does not exist in ext4",),
         spec=spec_text(target="no_such_function_xyz", extra='object = "ext4"\n')),
    # 5. the kernel's own module names
    Case("name-of-a-kernel-module", PATCH, 2, ("key 'name'", "'ext4' is the name of a module of", "ext4.ko"),
         spec=spec_text(name="ext4")),
    Case("name-of-a-built-in-module", PATCH, 2, ("'iosf_mbi' is the name of a module of", "built into vmlinux"),
         spec=spec_text(name="iosf_mbi")),
    # 5. nothing overwritten silently
    Case("output-holding-the-users-kbuild", PATCH, 2,
         ("out/Kbuild was not written by kpgen", "--force"), spec=spec_text(), setup=_user_kbuild, absent=()),
    Case("generate-over-the-users-file", "generate -o out --kdir {kdir}", 2,
         ("out/core/core.c was not written by kpgen", "--force"), setup=_user_core_file, absent=()),
    Case("diff-over-the-users-fix-c", "diff fix.patch -o out --kdir {kdir}", 2,
         ("out/fix.c was not written by kpgen",), setup=_diff_over_own_fix_c, absent=(),
         stdout_empty=True),
    # 3. one kernel per tree
    Case("core-of-another-release", PATCH.replace("{core}", "{core612}"), 2,
         ("(the core) was generated for kernel 6.12", f"not for {RELEASE}", "--kdir /lib/modules/6.12"),
         spec=spec_text()),
    Case("output-of-another-release", "patch fix.toml -o {module612} --core {core} --kdir {kdir}", 2,
         ("(a patch module) was generated for kernel 6.12", f"not for {RELEASE}"), spec=spec_text(), absent=()),
    Case("build-of-another-release", "build --kdir {kdir} {module612}", 2,
         ("(a patch module) was generated for kernel 6.12", f"not for {RELEASE}"), absent=()),
    Case("check-of-another-release", f"check --kdir {{kdir612}} /lib/modules/{RELEASE}/kernel/fs/binfmt_misc.ko", 2,
         (f"binfmt_misc.ko was built for kernel {RELEASE}", "not for 6.12"), absent=()),
    # 6. fail fast
    Case("unwritable-output", "patch fix.toml -o /proc/kpgen-x --core {core} --kdir {kdir}", 2,
         ("output directory /proc/kpgen-x is not writable",), spec=spec_text()),
    Case("diff-unwritable-output", "diff fix.patch -o /proc/kpgen-x --kdir {kdir}", 2,
         ("output directory /proc/kpgen-x is not writable",), setup=_diff, stdout_empty=True),
    Case("diff-name-fix", "diff fix.patch --name fix --kdir {kdir}", 2, ("--name 'fix'", "fix.c"), setup=_diff,
         absent=("fix",), stdout_empty=True),
    Case("diff-name-of-a-kernel-module", "diff fix.patch --name ext4 --kdir {kdir}", 2,
         ("--name: 'ext4' is the name of a module of",), setup=_diff, absent=("ext4",), stdout_empty=True),
    Case("diff-that-is-no-diff", "diff fix.toml --kdir {kdir}", 2, ("no file diff in it",), spec=spec_text(),
         absent=("fix",)),
    Case("build-second-directory-missing", "build --kdir {kdir} {core} nowhere", 2,
         ("nowhere: no such directory",), absent=()),
    # 7. compiler errors name the user's file
    Case("compile-error-in-the-users-file", PATCH, 4, ("fix.c:5:16: error:", "undeclared_thing"), spec=spec_text(),
         c=SEQ + "static int fix_show(struct seq_file *m, void *v)\n{\n\treturn undeclared_thing;\n}\n"),
    # 7. no Python in the messages: TOML's words for TOML's values
    Case("shadow-without-a-name", PATCH, 2, ("key 'shadow[0].name': missing",),
         spec=spec_text(extra="\n[[shadow]]\nid = 3\n")),
    Case("shadow-id-a-boolean", PATCH, 2, ("key 'shadow[0].id': true is not a whole number",),
         spec=spec_text(extra='\n[[shadow]]\nname = "a"\nid = true\n')),
    Case("callback-an-integer", PATCH, 2, ("key 'object[0].pre_patch': must be a string, got an integer",),
         spec=spec_text(extra='\n[[object]]\nname = "vmlinux"\npre_patch = 3\n')),
    Case("sympos-a-float", PATCH, 2, ("key 'function[0].sympos': 1.5 is not a whole number",),
         spec=spec_text(extra="sympos = 1.5\n")),
    # new
    Case("new-named-fix", "new fix --target version_proc_show --kdir {kdir}", 2,
         ("module name 'fix'", "fix.c", "fix_version_proc_show"), absent=("fix",)),
    Case("new-with-a-kernel-module-name", "new ext4 --target cmdline_proc_show --kdir {kdir}", 2,
         ("NAME: 'ext4' is the name of a module of",), absent=("ext4",)),
    Case("new-of-a-built-in-module", "new fix_x --target f --object iosf_mbi --kdir {kdir}", 2,
         ("--object iosf_mbi: iosf_mbi is built into vmlinux", "use --object vmlinux"), absent=("fix_x",)),
    Case("new-of-a-notrace-function", "new fix_x --target native_sched_clock --kdir {kdir}", 2,
         ("ftrace cannot hook native_sched_clock()",), absent=("fix_x",)),
    Case("new-of-an-init-function", "new fix_x --target start_kernel --kdir {kdir}", 2,
         ("start_kernel() is __init code",), absent=("fix_x",)),
    Case("new-of-a-function-that-does-not-exist", "new fix_x --target no_such_fn --kdir {kdir}", 2,
         ("no_such_fn() does not exist in vmlinux",), absent=("fix_x",)),
]


@pytest.mark.parametrize("case", HOSTILE, ids=lambda c: c.id)
def test_hostile_input(case: Case, cores: dict[str, Path], tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    if case.spec is not None:
        (work / "fix.toml").write_text(case.spec)
        (work / "fix.c").write_text(case.c)
    if case.setup is not None:
        case.setup(work)
    before = files(work)
    outside = {str(cores[k]): files(cores[k]) for k in ("6.1", "6.12", "module-6.12")}
    argv = case.argv.format(core=cores["6.1"], core612=cores["6.12"], module612=cores["module-6.12"],
                            kdir=KDIR, kdir612=KDIR_OTHER)
    proc = kpgen(*shlex.split(argv), cwd=work)
    assert proc.returncode == case.status, (proc.returncode, proc.stdout, proc.stderr)
    err = proc.stderr
    assert err.startswith("kpgen: error: ") and "Traceback" not in err, err
    for word in case.words:
        assert word in err, (word, err)
    # no Python None, no internal names in what the user reads
    for internal in ("args.", "kpgen.", "Namespace", "/tmp/kpgen-"):
        assert internal not in err, (internal, err)
    assert not re.search(r"\b(?:None|True|False)\b", err), err
    if case.stdout_empty:
        assert proc.stdout == "", proc.stdout
    assert files(work) == before, "kpgen changed files it refused to write"
    for path in case.absent:
        assert not (work / path).exists()
    assert {k: files(Path(k)) for k in outside} == outside


# --- what passes -------------------------------------------------------------------------------

def _patch(work: Path, core: Path, spec: str, c: str, *extra: str) -> subprocess.CompletedProcess[str]:
    (work / "fix.toml").write_text(spec)
    (work / "fix.c").write_text(c)
    return kpgen("patch", "fix.toml", "-o", "out", "--core", str(core), "--kdir", str(KDIR), *extra, cwd=work)


@pytest.mark.parametrize(("target", "extra", "c"), [
    # typedefs resolved, a parameter's own const dropped: the same type to C
    ("jiffies_to_msecs", "", "#include <linux/types.h>\n\nstatic u32 fix_j(unsigned long j)\n{\n\treturn 0;\n}\n"),
    ("x2apic_send_IPI", "sympos = 2\n", "static void fix_j(int cpu, int vector)\n{\n}\n"),
    ("ext4_file_read_iter", 'object = "ext4"\n',
     "#include <linux/types.h>\n\nstruct kiocb;\nstruct iov_iter;\n\n"
     "static ssize_t fix_j(struct kiocb *iocb, struct iov_iter *to)\n{\n\treturn 0;\n}\n"),
], ids=["typedefs", "sympos", "module"])
def test_a_right_prototype_passes(cores: dict[str, Path], tmp_path: Path, target: str, extra: str, c: str) -> None:
    proc = _patch(tmp_path, cores["6.1"], spec_text(target=target, replacement="fix_j", extra=extra), c)
    assert proc.returncode == 0, proc.stderr
    assert f"kpgen: checked against {RELEASE}: targets, symbols and prototypes" in proc.stdout


def test_a_right_declaration_passes_and_an_unknown_type_is_said(cores: dict[str, Path], tmp_path: Path) -> None:
    c = (SEQ + "extern int cmdline_proc_show(struct seq_file *m, void *v);\nextern int sysctl_protected_symlinks;\n\n"
         "static int fix_show(struct seq_file *m, void *v)\n{\n"
         "\treturn cmdline_proc_show(m, v) + sysctl_protected_symlinks;\n}\n")
    proc = _patch(tmp_path, cores["6.1"], spec_text(target="version_proc_show"), c)
    assert proc.returncode == 0, proc.stderr
    # a variable that is not per-CPU has no type in BTF: not guessed, said
    assert "not checked: sysctl_protected_symlinks: its type is not in the BTF of vmlinux" in proc.stdout


def test_force_replaces_the_users_kbuild(cores: dict[str, Path], tmp_path: Path) -> None:
    _user_kbuild(tmp_path)
    proc = _patch(tmp_path, cores["6.1"], spec_text(), CMDLINE_SHOW, "--force")
    assert proc.returncode == 0, proc.stderr
    assert "kpgen-generated-file" in (tmp_path / "out" / "Kbuild").read_text()
    # kpgen's own files, unedited, it replaces without --force
    (tmp_path / "fix.c").write_text(CMDLINE_SHOW + "/* changed */\n")
    again = kpgen("patch", "fix.toml", "-o", "out", "--core", str(cores["6.1"]), "--kdir", str(KDIR), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "out" / "fix.c").read_text().endswith("/* changed */\n")
    listed = subprocess.run(["sha256sum", "-c", ".kpgen.sha256"], cwd=tmp_path / "out", capture_output=True,
                            text=True, check=False)
    assert listed.returncode == 0, listed.stdout + listed.stderr


def test_an_unknown_prototype_is_never_guessed(cores: dict[str, Path], tmp_path: Path) -> None:
    """A function of a module outside the kernel's tree: the scaffold says why, and does not
    compile until the user writes the prototype; the compiler's error names the user's file."""
    made = kpgen("new", "fix_m", "--target", "mymod_func", "--object", "mymod", "--kdir", str(KDIR), cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "the prototype of mymod_func() is unknown" in made.stdout
    c_text = (tmp_path / "fix_m" / "fix.c").read_text()
    assert "mymod is not a module of" in " ".join(c_text.replace(" * ", " ").split())
    assert "#error" in c_text and "(void)" not in c_text
    line = c_text.splitlines().index(next(x for x in c_text.splitlines() if x.startswith("#error"))) + 1
    proc = kpgen("patch", "fix_m/fix_m.toml", "-o", "out", "--core", str(cores["6.1"]), "--kdir", str(KDIR),
                 cwd=tmp_path)
    assert proc.returncode == 4, proc.stderr
    assert f"fix_m/fix.c:{line}:" in proc.stderr and "#error" in proc.stderr
    assert "/tmp/kpgen-" not in proc.stderr and not (tmp_path / "out").exists()


# --- defaults ----------------------------------------------------------------------------------

def test_the_default_kernel_is_the_running_one_else_the_matrixs_first(tmp_path: Path) -> None:
    running = Path("/lib/modules") / os.uname().release / "build"
    expected = running if (running / "Makefile").is_file() else kernel.matrix_kdir()
    generate.generate_tree(kernel.probe(expected), tmp_path, [])
    proc = kpgen("build", "--dry-run", "core", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"make -C {expected} ")


def test_help_and_readme_say_the_same_default() -> None:
    help_text = " ".join(kpgen("patch", "--help", cwd=Path.cwd()).stdout.split())
    assert "the running kernel's, /lib/modules/$(uname -r)/build, when its headers are installed" in help_text
    assert "else the first installed kernel of Debian's 6.1, 6.12, 6.1-rt" in help_text
    readme = " ".join((Path(__file__).parents[2] / "README.md").read_text().split())
    assert ("kpgen takes the running kernel (`uname -r`) when its headers are installed, else the first installed "
            "kernel of its matrix") in readme


def test_default_follows_uname(monkeypatch: pytest.MonkeyPatch) -> None:
    """With another kernel running whose headers are installed, that one is the default."""
    release = KDIR_OTHER.parent.name
    fake = os.uname_result((*os.uname()[:2], release, *os.uname()[3:]))
    monkeypatch.setattr(os, "uname", lambda: fake)
    assert kernel.default_kdir() == KDIR_OTHER


# --- output ------------------------------------------------------------------------------------

def test_verbose_shows_the_commands_and_quiet_hides_progress(cores: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "fix.toml").write_text(spec_text())
    (tmp_path / "fix.c").write_text(CMDLINE_SHOW)
    argv = ["patch", "fix.toml", "-o", "out", "--core", str(cores["6.1"]), "--kdir", str(KDIR)]
    loud = kpgen(*argv, "-v", cwd=tmp_path)
    assert loud.returncode == 0, loud.stderr
    assert f"kpgen: running: make -C {KDIR} M=" in loud.stderr and "  CC [M]" in loud.stderr
    quiet = kpgen("-q", *argv, "--force", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_a_terminal_sees_each_long_step(cores: dict[str, Path], tmp_path: Path) -> None:
    """On a terminal, a step longer than two seconds says what it does (building the core
    takes longer); with -q, nothing does."""
    core = tmp_path / "core"
    generate.generate_tree(kernel.probe(KDIR), tmp_path, [])
    command = shlex.join([sys.executable, "-m", "kpgen", "build", "--kdir", str(KDIR), str(core)])
    shown = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True, text=True, cwd=tmp_path,
                           check=False)
    assert shown.returncode == 0, shown.stdout
    assert f"kpgen: building {core} for {RELEASE} ..." in shown.stdout
    assert f"kpgen: building {core} for {RELEASE}: " in shown.stdout
    quiet = subprocess.run(["script", "-qec", command + " -q", "/dev/null"], capture_output=True, text=True,
                           cwd=tmp_path, check=False)
    assert quiet.returncode == 0 and "kpgen: building" not in quiet.stdout


def test_completion_offers_commands_options_and_files(tmp_path: Path) -> None:
    (tmp_path / "fix.toml").write_text("")
    (tmp_path / "notes.txt").write_text("")

    def complete(line: str) -> list[str]:
        out = tmp_path / "completions"
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line,
               "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
        subprocess.run([sys.executable, "-m", "kpgen"], env=env, cwd=tmp_path, capture_output=True, check=False)
        return [word.strip() for word in out.read_text().split("\n")]

    assert complete("kpgen pat") == ["patch"]
    assert complete("kpgen pa") == ["patch", "package"]
    assert "--backend" in complete("kpgen patch --b") and complete("kpgen patch --backend l") == ["livepatch"]
    assert complete("kpgen patch ") == ["fix.toml"]
    assert str(KDIR) in complete("kpgen build --kdir /lib/modules/")


def test_doctor_speaks_to_a_user_of_the_wheel(tmp_path: Path) -> None:
    proc = kpgen("doctor", cwd=tmp_path)
    default = kernel.default_kdir().parent.name
    assert f"kernel {default} (" in proc.stdout and "the default)" in proc.stdout
    # what only kpgen's own tests need is asked for with --dev
    for tool in ("sparse", "checkpatch.pl", "ruff", "mypy", "hadolint", "shellcheck"):
        assert f" {tool} " not in proc.stdout
    dev = kpgen("doctor", "--dev", cwd=tmp_path)
    assert " sparse " in dev.stdout and " ruff " in dev.stdout
