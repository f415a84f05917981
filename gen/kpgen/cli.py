# PYTHON_ARGCOMPLETE_OK
"""kpgen's command line: expected errors print one clear message and exit non-zero.

The whole parser is `parser()`; each `cmd_<command>` turns its arguments into calls of the
modules that hold the rules, and their results into lines. Every input, output directory and
name is checked before any step that takes long (a compile, a download, a boot).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import __version__, elfcheck, generate, kbuild, kernel, ownership, progress, releases, render, snapshot, spec, vm
from .cliargs import (
    arg as _arg,
    complete_backends as _complete_backends,
    complete_dirs as _complete_dirs,
    complete_files as _complete_files,
    complete_kdirs as _complete_kdirs,
)
from .errors import KpgenError, UsageError
from .fleet import commands


def _kernel(args: argparse.Namespace) -> kernel.Kernel:
    return kernel.probe(Path(args.kdir) if args.kdir else kernel.default_kdir())


def _same_series(directory: Path, k: kernel.Kernel, what: str, fix: str) -> None:
    """Refuse a directory generated for another kernel series than k (exit 2, with the fix):
    another point release of the same series is a refresh of it, not another kernel."""
    made = generate.generated_for(directory)
    if made is not None and kernel.series(made[0]) != kernel.series(k.release):
        raise UsageError(f"{directory} holds {what} generated for {made[0]}, not {k.release}: {fix}")


def _patch_name(name: str, k: kernel.Kernel, where: str) -> None:
    """Refuse a patch module named like one of the kernel's own modules."""
    from . import objects

    owner = objects.kernel_modules(k).get(name)
    if owner is not None:
        raise UsageError(f"{where}: {name!r} is the name of a module of {k.release} ({owner}): the kernel would "
                         "refuse to load the patch module beside it; choose another name")


def _say(report_lines: list[str]) -> None:
    for line in report_lines:
        print(f"kpgen: {line}")


def cmd_generate(args: argparse.Namespace) -> int:
    k = _kernel(args)
    out = Path(args.output)
    _same_series(out / "core", k, "a core",
                 f"pass -o DIR for {k.release}, or --kdir of {out}'s kernel (remove {out} to replace it)")
    render.require_writable([out / "core", out / "patches"])
    ownership.refuse_existing(generate.tree_paths(out, generate.sample_specs()), args.force)
    from .checks import Report

    report = Report()
    with progress.step(f"generating the core and the samples for {k.release}"):
        written = generate.generate_tree(k, out, generate.sample_specs(), report=report, force=args.force)
    print(f"kpgen: generated for {k.release} ({k.features.summary()}) into {args.output}: "
          f"{len(written)} file(s) changed")
    _say(report.lines(k.release))
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    from .checks import Report

    patch = spec.with_backend(spec.load(Path(args.spec)), args.backend)
    out = Path(args.output) if args.output else Path("kmod/patches") / patch.name
    k = _kernel(args)
    _patch_name(patch.name, k, f"{args.spec}: key 'name'")
    if patch.backend == "livepatch" and k.config.get("CONFIG_LIVEPATCH") != "y":
        raise UsageError(f"{args.spec}: backend livepatch needs CONFIG_LIVEPATCH, which {k.release} lacks; "
                         "use --backend kpatch")
    core = Path(args.core)
    if patch.backend == "kpatch":
        if not generate.is_core_dir(core):
            raise UsageError(f"--core {core}: no generated core there (kpatch.h, core.c): "
                             f"`kpgen generate --kdir {k.kdir} -o DIR` makes one, then pass --core DIR/core")
        releases.require_directory(core, k, "the core")
    releases.require_directory(out, k, "a patch module")
    render.require_writable([out])
    ownership.refuse_existing(generate.patch_paths(out, patch), args.force)
    report = Report()
    with progress.step(f"compiling {patch.name} and checking it against {k.release}"):
        written = generate.generate_patch(k, Path(args.spec), out, core, args.backend, report=report,
                                          force=args.force)
    kind = "livepatch module" if patch.backend == "livepatch" else "patch module"
    print(f"kpgen: {kind} {patch.name} for {k.release} in {out}: {len(written)} file(s) changed")
    _say(report.lines(k.release))
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from . import scaffold

    scaffold.check_names(args.name, args.target, args.object)
    out = Path(args.dir) if args.dir else Path(args.name)
    k = _kernel(args)
    _patch_name(args.name, k, "NAME")
    render.require_writable([out], "-d DIR")
    made = scaffold.make(k, args.name, args.target, args.object, out,
                         source=Path(args.source) if args.source else None, use_source=not args.no_source,
                         rel=args.file, force=args.force)
    _say(made.lines)
    for path in made.written:
        print(f"kpgen: wrote {path}")
    return 0


def cmd_source(args: argparse.Namespace) -> int:
    from . import source

    k = _kernel(args)
    src = source.find(k, Path(args.source) if args.source else None,
                      progress=lambda line: print(line, flush=True))
    print(f"kpgen: the source of {k.release} ({src.version}) is {src.root}")
    return 0


def _diff_name(args: argparse.Namespace, patch: Path) -> str:
    """The patch module's name: --name, else one made from the diff's file name. kpgen diff
    writes the C into fix.c, so the module cannot be named fix (its own fix.c would clash)."""
    from . import diff

    if args.name is not None:
        given: str = args.name
        if not spec.NAME_RE.match(given) or len(given) > spec.MODULE_NAME_MAX:
            raise UsageError(f"--name {given!r} is not a valid module name: lower-case letters, digits and '_', "
                             f"starting with a letter, at most {spec.MODULE_NAME_MAX} characters")
        if given == "kpatch" or given.startswith("kpatch_") or given in spec.C_KEYWORDS:
            raise UsageError(f"--name {given!r} is reserved: choose another module name")
        if given == "fix":
            raise UsageError("--name 'fix': kpgen diff writes the patch's C into fix.c, which would clash with "
                             "the module's own fix.c: choose another name")
        return given
    name = str(diff.module_name(patch))
    if name == "fix" or name.startswith("kpatch") or name in spec.C_KEYWORDS:
        name = f"lp_{name}"[: spec.MODULE_NAME_MAX]
    return name


def cmd_diff(args: argparse.Namespace) -> int:
    import time

    from . import diff, source

    start = time.monotonic()
    patch = Path(args.patch)
    if not patch.is_file():
        raise UsageError(f"{patch}: no such diff file")
    try:
        text = patch.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise UsageError(f"{patch}: cannot read it ({exc.strerror})") from None
    if not diff.looks_like_a_diff(text):
        raise UsageError(f"{patch}: no file diff in it (no '--- FILE' and '+++ FILE' lines, nor a context diff's): "
                         "give a diff of the kernel's source, as `git diff`, `git format-patch` or `diff -u` make")
    if not 0 <= args.strip <= 64:
        raise UsageError(f"-p {args.strip}: give the number of leading path components to strip, 0 to 64")
    if not 0 <= args.fuzz <= 10:
        raise UsageError(f"--fuzz {args.fuzz}: give the context lines a hunk may ignore, 0 to 10")
    if args.backend is not None:
        spec.check_backend(patch, "--backend", args.backend)
    k = _kernel(args)
    if args.backend == "livepatch" and k.config.get("CONFIG_LIVEPATCH") != "y":
        raise UsageError(f"--backend livepatch needs CONFIG_LIVEPATCH, which {k.release} lacks; "
                         "use --backend kpatch")
    if args.backend == "livepatch" and args.core:
        raise UsageError(f"--core {args.core}: the livepatch backend builds without kpgen's core; drop --core")
    if args.core:
        core = Path(args.core)
        if not generate.is_core_dir(core) or not (core / "Module.symvers").is_file():
            raise UsageError(f"--core {core}: no built core there (kpatch.h, core.c, Module.symvers): "
                             f"`kpgen generate --kdir {k.kdir} -o DIR` and `kpgen build DIR/core` make one")
        releases.require_directory(core, k, "the core")
    name = _diff_name(args, patch)
    _patch_name(name, k, "--name" if args.name else f"the name made from {patch.name} (--name)")
    out = Path(args.output) if args.output else Path(name)
    render.require_writable([out, out / "module", out / "core"] if args.build else [out])
    ownership.refuse_existing([out / f"{name}.toml", out / "fix.c", out / diff.DIFF_FILE], args.force)
    src = source.find(k, Path(args.source) if args.source else None,
                      progress=lambda line: print(line, flush=True))
    with progress.step(f"comparing the code {patch.name} changes in {k.release}"):
        plan = diff.plan(k, patch, src, name, strip=args.strip, fuzz=args.fuzz)
    if args.backend is not None:
        diff.set_backend(plan, args.backend)
    for f in plan.applied:
        print(f"kpgen: applied {f.line()}")
    for d in plan.decisions:
        print(f"kpgen: {d.line()}")
    files = [render.OutputFile(Path(f"{name}.toml"), diff.spec_text(plan).encode()),
             render.OutputFile(Path("fix.c"), plan.fix_c.encode())]
    if plan.spec is not None and plan.spec.diff is not None:
        # the module carries the diff it implements (kpgen info, packages)
        files.append(render.OutputFile(plan.spec.diff, patch.read_bytes()))
    written = render.write(out, files, args.force)
    for path in written:
        print(f"kpgen: wrote {path}")
    if args.build:
        with progress.step(f"building {name} for {k.release}"):
            ko = diff.build(k, out, plan, Path(args.core) if args.core else None)
        print(f"kpgen: built {ko}: ok")
    print(f"kpgen: {patch.name} -> {len(plan.targets)} function(s) in {time.monotonic() - start:.1f} s")
    return 0


def cmd_snapshot(args: argparse.Namespace) -> int:
    k = _kernel(args)

    def vm_run(tmp: str) -> vm.VmRun:
        script = (f"cut -d' ' -f2- /proc/kallsyms > {tmp}/{snapshot.KALLSYMS} && "
                  f"cat /sys/kernel/tracing/available_filter_functions > {tmp}/{snapshot.FILTERS}")
        return vm.VmRun(kernel_image=k.vmlinuz, command=script, rwdirs=(Path(tmp),))

    if args.dry_run:
        print("# DIR: a temporary directory, made before the boot and removed after it")
        print(vm_run("DIR").shell())
        return 0
    with tempfile.TemporaryDirectory(prefix="kpgen-snapshot-") as tmp:
        run = vm_run(tmp)
        print(f"kpgen: booting {k.release} to read its symbols (TCG: about a minute)", flush=True)
        result = vm.run(run)
        ks, fs = Path(tmp) / snapshot.KALLSYMS, Path(tmp) / snapshot.FILTERS
        if result.returncode != 0 or not ks.is_file() or not fs.is_file():
            status = "it did not finish" if result.returncode is None else f"exit {result.returncode}"
            raise KpgenError(f"the guest could not read its symbols ({status}):\n"
                             + "\n".join(result.output.splitlines()[-15:]))
        where = snapshot.save(k.release, ks.read_text(), fs.read_text())
    print(f"kpgen: symbol snapshot of {k.release} saved in {where}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    from . import pipeline
    from .fleet import signature

    key = signature.SigningKey.from_options(args.sign_key, args.sign_cert)
    k = _kernel(args)
    if key is not None:
        signature.hash_algo(k)  # a kernel that checks no signature is refused before any build
        signature.sign_file(k)
    core = Path(args.core) if args.core else None
    dirs = [Path(d) for d in args.dirs]
    # everything is checked before the first build starts
    for d in dirs:
        if not d.is_dir():
            raise UsageError(f"{d}: no such directory: pass directories made by `kpgen generate` or `kpgen patch`")
        if not (d / "Kbuild").is_file() and not (d / "Makefile").is_file():
            raise UsageError(f"{d} has no Kbuild file: pass a directory made by `kpgen generate` or `kpgen patch`")
        releases.require_directory(d, k, "the core" if generate.is_core_dir(d) else "a patch module")
    if core is not None:
        if not generate.is_core_dir(core):
            raise UsageError(f"--core {core}: no generated core there (kpatch.h, core.c)")
        releases.require_directory(core, k, "the core")
    failed = 0
    for d in dirs:
        is_core = generate.is_core_dir(d)
        if args.dry_run:
            print(" ".join(kbuild.make_argv(k, d, None if is_core else core)))
            continue
        with progress.step(f"building {d} for {k.release}"):
            built = pipeline.build(k, d, None if is_core else core, key=key)
        result = built.result
        for note in built.notes:
            print(note)
        for ko in result.modules:
            symvers = None if is_core else (core or d / "../../core") / "Module.symvers"
            verdict = elfcheck.check_module(ko, k, symvers, klp_symbols=elfcheck.klp_counts(k))
            failed += _print_verdict(verdict)
        for w in result.warnings:
            print(f"  {w}")
    return 1 if failed else 0


def _print_verdict(verdict: elfcheck.Verdict) -> int:
    for note in verdict.notes:
        print(f"{verdict.path}: note: {note}")
    if verdict.ok:
        print(f"{verdict.path}: ok")
        return 0
    for problem in verdict.problems:
        print(f"{verdict.path}: {problem}")
    return 1


def cmd_check(args: argparse.Namespace) -> int:
    k = _kernel(args)
    modules = [Path(m) for m in args.modules]
    for ko in modules:
        if not ko.is_file():
            raise UsageError(f"{ko}: no such module file")
        with ko.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                raise UsageError(f"{ko}: not an ELF file: pass a kernel module (.ko)")
        releases.require_module(ko, k)
    if args.core:
        releases.require_directory(Path(args.core), k, "the core")
    patch = spec.load(Path(args.spec)) if args.spec else None
    symvers = Path(args.core) / "Module.symvers" if args.core else None
    replacements = tuple(f.replacement for f in patch.functions) if patch else ()
    failed = 0
    for ko in modules:
        failed += _print_verdict(elfcheck.check_module(ko, k, symvers, replacements,
                                                       patch.backend if patch else None, elfcheck.klp_counts(k)))
        print(f"{ko}: {_signature_line(ko)}")
    return 1 if failed else 0


def _signature_line(ko: Path) -> str:
    from .fleet import signature

    sig = signature.read(ko)
    return sig.describe() if sig is not None else "not signed"


def _boot_kernels(args: argparse.Namespace) -> list[kernel.Kernel]:
    if args.kdir:
        return [kernel.probe(Path(args.kdir))]
    return [kernel.probe(m.kdir()) for m in kernel.matrix()]


def cmd_boot_test(args: argparse.Namespace) -> int:
    from .harness import boottest

    if args.stress_cycles is not None and args.stress_cycles < 1:
        raise UsageError(f"--stress-cycles {args.stress_cycles}: give a count of 1 or more "
                         "(with none, the stress scenario would load no patch)")
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give the seconds one boot may take, more than 0")
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    if args.only is not None and not only:
        raise UsageError("--only: name one scenario or more, comma-separated (`--list` shows them)")
    failed = 0
    for k in _boot_kernels(args):
        print(f"kpgen: building for {k.release}", flush=True)
        suite = (Path(args.kpatch_suite), Path(args.kpatch_notes)) if args.kpatch_suite else None
        tree = boottest.build_tree(k, diffs=Path(args.diffs) if args.diffs else None, suite=suite)
        names = boottest.scenario_names(tree.root)
        if args.list:
            print("\n".join(names))
            continue
        unknown = [name for name in only or [] if name not in names]
        if unknown:
            raise UsageError(f"--only: no scenario {', '.join(unknown)} on {k.release} (`--list` shows them)")
        if args.dry_run:
            print(boottest.guest_vm(tree, tree.root / "results", stress_cycles=args.stress_cycles, only=only).shell())
            continue
        print(f"kpgen: booting {k.release} under QEMU (TCG: a few minutes)", flush=True)
        report = boottest.boot(tree, timeout=args.timeout, stress_cycles=args.stress_cycles,
                               progress=lambda line: print(line, flush=True), only=only)
        for line in report.splats:
            print(f"splat: {line}")
        print(report.summary())
        if not report.ok:
            print(f"kpgen: the guest's kernel log and console are in {boottest.REPORTS}/")
        failed += not report.ok
    return 1 if failed else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .harness import bench

    kernels = _boot_kernels(args)
    out = Path(args.output)
    if args.dry_run:
        for k in kernels:
            tree = bench.build_tree(k, out / k.release)
            rdir = tree.root / "results"
            for b in range(1, bench.PERCALL_BOOTS + 1):
                print(bench.guest_vm(tree, bench.percall_dir(rdir, b), "percall", boot=b).shell())
            print(bench.guest_vm(tree, rdir, "apply").shell())
        return 0
    results = bench.run(kernels, out)
    for res in results:
        print(bench.table(res))
    bench.save_json(results, out / "bench.json")
    bench.plot(results, out / "bench.png")
    (out / "bench.md").write_text(bench.markdown(results))
    print(f"kpgen: figures saved in {out / 'bench.json'}, {out / 'bench.md'} and {out / 'bench.png'}")
    # a target within noise (level) is no failure: only a miss is
    misses = [f"{r.release}: {t.name}" for r in results for t in bench.missed(r)]
    for m in misses:
        print(f"kpgen: target missed: {m}", file=sys.stderr)
    return 1 if misses else 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from . import doctor

    items = doctor.checks(contributor=args.dev)
    print(doctor.report(items))
    return 0 if doctor.healthy(items) else 1


def cmd_vm(args: argparse.Namespace) -> int:
    k = _kernel(args)
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give the seconds the boot may take, more than 0")
    rwdirs = tuple(Path(d) for d in args.rwdir)
    for d in rwdirs:
        if not d.is_dir():
            raise UsageError(f"--rwdir {d}: no such directory (the guest writes into a host directory that exists)")
    run = vm.VmRun(kernel_image=k.vmlinuz, command=args.command, timeout=args.timeout, rwdirs=rwdirs)
    if args.dry_run:
        print(run.shell())
        return 0
    result = vm.run(run, on_line=lambda line: print(line, flush=True))
    if result.timed_out:
        print(f"kpgen: the guest did not finish within --timeout {args.timeout} s: stopped", file=sys.stderr)
        return 1
    return 1 if result.returncode is None else result.returncode


# --- the parser --------------------------------------------------------------------------------

def parser() -> argparse.ArgumentParser:
    # -q and -v are taken before or after the command; a subcommand's copy must not reset them
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                        help="say nothing while working, only results and errors")
    common.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="show each command kpgen runs (make, the compiler) and its output")

    p = argparse.ArgumentParser(prog="kpgen", description="Generate, build and check live patch modules for Linux.",
                                epilog="Shell completion: eval \"$(register-python-argcomplete kpgen)\" in ~/.bashrc "
                                       "or ~/.zshrc (zsh: after `autoload -U bashcompinit && bashcompinit`).")
    p.add_argument("--version", action="version", version=f"kpgen {__version__}")
    p.add_argument("-q", "--quiet", action="store_true", help="say nothing while working, only results and errors")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="show each command kpgen runs (make, the compiler) and its output")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, func: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common])
        sp.set_defaults(func=func)
        return sp

    def kdir_opt(sp: argparse.ArgumentParser) -> None:
        _arg(sp, "--kdir", metavar="DIR", help=kernel.DEFAULT_KDIR_HELP, complete=_complete_kdirs)

    def force_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--force", action="store_true",
                        help="replace files kpgen did not write, or that were edited since it wrote them")

    sp = command("new", "scaffold a spec and a C file that replace one function", cmd_new)
    sp.add_argument("name", help="the patch module's name")
    sp.add_argument("--target", required=True, help="the function to replace")
    sp.add_argument("--object", default="vmlinux", help="vmlinux (default) or the module holding it")
    _arg(sp, "-d", "--dir", help="where to write (default: ./NAME)", complete=_complete_dirs)
    _arg(sp, "--source", help="the kernel's source tree (default: `kpgen source`'s, when cached)",
         complete=_complete_dirs)
    sp.add_argument("--file", help="the .c file (in the tree) that defines the target, when several do")
    sp.add_argument("--no-source", action="store_true",
                    help="write only the prototype (from the kernel's BTF or headers) and an empty body")
    force_opt(sp)
    kdir_opt(sp)

    sp = command("source", "the exact source of a kernel, downloaded and unpacked once into the cache", cmd_source)
    _arg(sp, "--source", help="check a tree of your own against the kernel instead", complete=_complete_dirs)
    kdir_opt(sp)

    sp = command("diff", "a live patch (spec and C) from a source diff of the kernel", cmd_diff)
    _arg(sp, "patch", help="the diff against the kernel's source, as `patch -p1` takes it",
         complete=_complete_files(".patch", ".diff"))
    sp.add_argument("-p", "--strip", type=int, default=1, metavar="N",
                    help="strip N leading components from the diff's file names, as patch -pN (default 1)")
    sp.add_argument("--fuzz", type=int, default=0, metavar="N",
                    help="accept hunks whose first and last N context lines differ from the source (default 0: "
                         "refused)")
    _arg(sp, "--source", help="the kernel's source tree (default: `kpgen source`'s)", complete=_complete_dirs)
    _arg(sp, "-o", "--output", help="where to write the spec and fix.c (default: ./NAME)", complete=_complete_dirs)
    sp.add_argument("--name", help="the patch module's name (default: from the diff's file name)")
    sp.add_argument("--build", action="store_true", help="go on: render, build with Kbuild and check the module")
    _arg(sp, "--core", help="a built core for --build (default: one built in DIR/core)", complete=_complete_dirs)
    _arg(sp, "--backend", help="kpatch (default) or livepatch: the backend the spec names",
         complete=_complete_backends)
    force_opt(sp)
    kdir_opt(sp)

    sp = command("generate", "render the core and the sample patch modules", cmd_generate)
    kdir_opt(sp)
    _arg(sp, "-o", "--output", default="kmod", help="output directory (default: kmod)", complete=_complete_dirs)
    force_opt(sp)

    sp = command("patch", "render one patch module from its spec", cmd_patch)
    _arg(sp, "spec", help="the spec file (TOML)", complete=_complete_files(".toml"))
    _arg(sp, "-o", "--output", help="output directory (default: kmod/patches/<name>)", complete=_complete_dirs)
    _arg(sp, "--core", default="kmod/core", help="the core's directory (default: kmod/core)", complete=_complete_dirs)
    _arg(sp, "--backend", help="kpatch or livepatch: overrides the spec's backend key", complete=_complete_backends)
    force_opt(sp)
    kdir_opt(sp)

    sp = command("build", "build module directories with Kbuild, then check them", cmd_build)
    _arg(sp, "dirs", nargs="+", metavar="DIR", help="directories made by generate or patch (the core first)",
         complete=_complete_dirs)
    _arg(sp, "--core", help="the core's built directory, for patch modules", complete=_complete_dirs)
    sp.add_argument("--dry-run", action="store_true", help="print the make commands only")
    _arg(sp, "--sign-key", metavar="KEY", complete=_complete_files(".pem", ".key"),
         help="sign each module last, with the kernel's scripts/sign-file and the hash of its config: the private "
              "key (PEM file or pkcs11: URI; default $KPGEN_SIGN_KEY)")
    _arg(sp, "--sign-cert", metavar="CERT", complete=_complete_files(".x509", ".pem", ".der", ".crt"),
         help="the key's X.509 certificate, PEM or DER (default $KPGEN_SIGN_CERT)")
    kdir_opt(sp)

    sp = command("check", "check built modules (.ko) with pyelftools", cmd_check)
    _arg(sp, "modules", nargs="+", metavar="KO", complete=_complete_files(".ko"))
    _arg(sp, "--core", help="the core's built directory: check as patch modules of it", complete=_complete_dirs)
    _arg(sp, "--spec", help="the module's spec: check that each replacement is a defined function",
         complete=_complete_files(".toml"))
    kdir_opt(sp)

    sp = command("snapshot", "boot a kernel once and cache its symbols for checking specs", cmd_snapshot)
    sp.add_argument("--dry-run", action="store_true", help="print the vng command only")
    kdir_opt(sp)

    sp = command("vm", "boot a kernel and run one shell command in it", cmd_vm)
    sp.add_argument("command")
    sp.add_argument("--dry-run", action="store_true", help="print the vng command only")
    sp.add_argument("--timeout", type=int, default=900, metavar="S",
                    help="stop the guest (QEMU included) after S seconds and exit 1 (default 900)")
    _arg(sp, "--rwdir", action="append", default=[], metavar="DIR",
         help="a host directory the guest may write (repeatable; read-only otherwise)", complete=_complete_dirs)
    kdir_opt(sp)

    sp = command("doctor", "what this machine has and lacks for kpgen, and how to get it", cmd_doctor)
    sp.add_argument("--dev", action="store_true",
                    help="also what kpgen's own tests need (checkers, linters, every kernel of the matrix)")

    sp = command("boot-test", "build everything and run the guest scenarios, one boot per kernel", cmd_boot_test)
    sp.add_argument("--kdir", metavar="DIR",
                    help="one kernel only (default: every kernel of the matrix, kpgen/data/kernels.toml)")
    sp.add_argument("--dry-run", action="store_true", help="build, then print the vng command only")
    sp.add_argument("--stress-cycles", type=int, help="cycles of the stress scenario (default 200)")
    sp.add_argument("--timeout", type=int, default=1500, help="seconds one boot may take (default 1500)")
    sp.add_argument("--diffs", help="a corpus of diff cases to build into the tree (the repository's tests/diffs)")
    sp.add_argument("--kpatch-suite", metavar="DIR",
                    help="kpatch's integration suite (DIR/6.1, DIR/6.12) to build into the tree, both backends")
    sp.add_argument("--kpatch-notes", metavar="DIR", default="tests/kpatch_suite",
                    help="the repository's notes on that suite (default: tests/kpatch_suite)")
    sp.add_argument("--only", metavar="NAME[,NAME]", help="run these scenarios only (in one boot per kernel)")
    sp.add_argument("--list", action="store_true", help="build, then list the scenarios the guest would run")

    sp = command("bench", "per-call and apply costs against upstream livepatch, five boots per kernel;"
                 " exit 1 only if a target is missed", cmd_bench)
    sp.add_argument("--kdir", metavar="DIR",
                    help="one kernel only (default: every kernel of the matrix, kpgen/data/kernels.toml)")
    sp.add_argument("-o", "--output", default="build/bench",
                    help="where the tree and figures go (default: build/bench)")
    sp.add_argument("--dry-run", action="store_true", help="build, then print the vng commands only")

    commands.add_parsers(command)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    try:
        import argcomplete

        # options when the word begins with "-"; else what the argument takes (files, kernels)
        argcomplete.autocomplete(p, always_complete_options=False)
    except ImportError:
        pass
    args = p.parse_args(argv)
    progress.configure(quiet=args.quiet, verbose=args.verbose and not args.quiet)
    try:
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)
    except KpgenError as exc:
        print(f"kpgen: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (`kpgen ... | head`): stop quietly
        sys.stderr.close()
        return 0
    except OSError as exc:
        # a path kpgen was given or writes to (an output directory under /proc, a full disk)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"kpgen: error: {where}{exc.strerror or exc}: check the path and its permissions", file=sys.stderr)
        return UsageError.exit_code


if __name__ == "__main__":
    sys.exit(main())
