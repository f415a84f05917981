"""kpgen's command line: expected errors print one clear message and exit non-zero."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from . import __version__, elfcheck, generate, kbuild, kernel, klpcheck, klprelocs, scaffold, snapshot, spec, vm
from .errors import KpgenError, UsageError


def _kernel(args: argparse.Namespace) -> kernel.Kernel:
    return kernel.probe(Path(args.kdir) if args.kdir else kernel.default_kdir())


def _same_kernel(directory: Path, k: kernel.Kernel, what: str, fix: str) -> None:
    """Refuse a directory generated for another kernel release than k (exit 2, with the fix)."""
    made = generate.generated_for(directory)
    # another point release of the same series is a refresh, not a mismatch
    if made is not None and kernel.series(made[0]) != kernel.series(k.release):
        raise UsageError(f"{directory} holds {what} generated for {made[0]}, not {k.release}: {fix}")


def cmd_generate(args: argparse.Namespace) -> int:
    k = _kernel(args)
    out = Path(args.output)
    _same_kernel(out / "core", k, "a core",
                 f"pass -o DIR for {k.release}, or --kdir of {out}'s kernel (remove {out} to replace it)")
    written = generate.generate_tree(k, Path(args.output), generate.sample_specs())
    print(f"kpgen: generated for {k.release} ({k.features.summary()}) into {args.output}: "
          f"{len(written)} file(s) changed")
    return 0


def cmd_patch(args: argparse.Namespace) -> int:
    patch = spec.with_backend(spec.load(Path(args.spec)), args.backend)
    out = Path(args.output) if args.output else Path("kmod/patches") / patch.name
    k = _kernel(args)
    if patch.backend == "livepatch" and k.config.get("CONFIG_LIVEPATCH") != "y":
        raise UsageError(f"{args.spec}: backend livepatch needs CONFIG_LIVEPATCH, which {k.release} lacks; "
                         "use --backend kpatch")
    core = Path(args.core)
    if patch.backend == "kpatch":
        if not generate.is_core_dir(core):
            raise UsageError(f"--core {core}: no generated core there (kpatch.h, core.c): "
                             f"`kpgen generate --kdir {k.kdir} -o DIR` makes one, then pass --core DIR/core")
        _same_kernel(core, k, "a core",
                     f"pass --core of a core generated with --kdir {k.kdir}, or --kdir of that core's kernel")
    notes: list[str] = []
    written = generate.generate_patch(k, Path(args.spec), out, core, args.backend, notes)
    kind = "livepatch module" if patch.backend == "livepatch" else "patch module"
    print(f"kpgen: {kind} {patch.name} for {k.release} in {out}: {len(written)} file(s) changed")
    if snapshot.load(k.release) is not None:
        print(f"kpgen: targets checked against the symbol snapshot of {k.release}")
    for note in notes:
        print(f"kpgen: {note}")
    return 0


def cmd_new(args: argparse.Namespace) -> int:
    from . import diff, source

    scaffold.check_names(args.name, args.target, args.object)
    out = Path(args.dir) if args.dir else Path(args.name)
    scaffold.refuse_overwrite(args.name, out)
    k = _kernel(args)
    src = None
    if not args.no_source:
        src = (source.find(k, Path(args.source)) if args.source
               else source.cached(k))
        if src is None:
            print(f"kpgen: no source of {k.release} in the cache (`kpgen source` makes it): "
                  "fix.c gets the prototype from the headers only")
    if src is not None:
        plan = diff.plan_function(k, src, args.target, args.name, args.file)
        for d in plan.decisions:
            print(f"kpgen: {d.line()}")
        written = diff.write(plan, out)
    else:
        written = scaffold.scaffold(args.name, args.target, args.object, out,
                                    scaffold.header_prototype(k, args.target))
    for path in written:
        print(f"kpgen: wrote {path}")
    return 0


def cmd_source(args: argparse.Namespace) -> int:
    from . import source

    k = _kernel(args)
    src = source.find(k, Path(args.source) if args.source else None,
                      progress=lambda line: print(line, flush=True))
    print(f"kpgen: the source of {k.release} ({src.version}) is {src.root}")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    import time

    from . import diff, source

    start = time.monotonic()
    patch = Path(args.patch)
    if not patch.is_file():
        raise UsageError(f"{patch}: no such diff file")
    if args.backend is not None:
        spec.check_backend(patch, "--backend", args.backend)
    k = _kernel(args)
    if args.backend == "livepatch" and k.config.get("CONFIG_LIVEPATCH") != "y":
        raise UsageError(f"--backend livepatch needs CONFIG_LIVEPATCH, which {k.release} lacks; "
                         "use --backend kpatch")
    if args.backend == "livepatch" and args.core:
        raise UsageError(f"--core {args.core}: the livepatch backend builds without kpgen's core; drop --core")
    src = source.find(k, Path(args.source) if args.source else None,
                      progress=lambda line: print(line, flush=True))
    name = args.name or diff.module_name(patch)
    if not spec.NAME_RE.match(name) or name.startswith("kpatch") or len(name) > spec.MODULE_NAME_MAX:
        raise UsageError(f"--name {name!r} is not a valid module name: lower-case letters, digits and '_'")
    out = Path(args.output) if args.output else Path(name)
    plan = diff.plan(k, patch, src, name)
    for d in plan.decisions:
        print(f"kpgen: {d.line()}")
    if args.backend is not None:
        diff.set_backend(plan, args.backend)
    written = diff.write(plan, out)
    for path in written:
        print(f"kpgen: wrote {path}")
    if args.build:
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
            raise KpgenError(f"the guest could not read its symbols (exit {result.returncode}):\n"
                             + "\n".join(result.output.splitlines()[-15:]))
        where = snapshot.save(k.release, ks.read_text(), fs.read_text())
    print(f"kpgen: symbol snapshot of {k.release} saved in {where}")
    return 0


def _klp_counts(k: kernel.Kernel) -> klpcheck.Counts | None:
    """The kernel's symbols for the klp symbols of built modules, or None (said once) when
    neither a snapshot nor the image's kallsyms can be read."""
    try:
        return elfcheck.klp_counts(k)[0]
    except KpgenError as exc:
        print(f"kpgen: klp symbols are not checked against {k.release}'s symbols: {exc}")
        return None


def cmd_build(args: argparse.Namespace) -> int:
    k = _kernel(args)
    core = Path(args.core) if args.core else None
    counts: klpcheck.Counts | None = None
    failed = 0
    for d in map(Path, args.dirs):
        is_core = generate.is_core_dir(d)
        if args.dry_run:
            print(" ".join(kbuild.make_argv(k, d, None if is_core else core)))
            continue
        result = kbuild.build(k, d, None if is_core else core)
        if counts is None and (d / klprelocs.MANIFEST).is_file():
            counts = _klp_counts(k)
        for ko in result.modules:
            symvers = None if is_core else (core or d / "../../core") / "Module.symvers"
            verdict = elfcheck.check_module(ko, k, symvers, klp_symbols=counts)
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
    counts = _klp_counts(k)
    failed = 0
    for ko in map(Path, args.modules):
        if not ko.is_file():
            raise UsageError(f"{ko}: no such module file")
        with ko.open("rb") as f:
            if f.read(4) != b"\x7fELF":
                raise UsageError(f"{ko}: not an ELF file: pass a kernel module (.ko)")
        symvers = Path(args.core) / "Module.symvers" if args.core else None
        patch = spec.load(Path(args.spec)) if args.spec else None
        replacements = tuple(f.replacement for f in patch.functions) if patch else ()
        failed += _print_verdict(elfcheck.check_module(ko, k, symvers, replacements,
                                                       patch.backend if patch else None, counts))
    return 1 if failed else 0


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
        tree = boottest.build_tree(k, diffs=Path(args.diffs) if args.diffs else None)
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

    items = doctor.checks()
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


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="kpgen", description="Generate, build and boot-test live patch modules.")
    p.add_argument("--version", action="version", version=f"kpgen {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    def kdir_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--kdir",
                        help="kernel build directory (default: the first installed kernel of the matrix, 6.1)")

    sp = sub.add_parser("generate", help="render the core and the sample patch modules")
    kdir_opt(sp)
    sp.add_argument("-o", "--output", default="kmod", help="output directory (default: kmod)")
    sp.set_defaults(func=cmd_generate)

    sp = sub.add_parser("patch", help="render one patch module from its spec")
    sp.add_argument("spec", help="the spec file (TOML)")
    sp.add_argument("-o", "--output", help="output directory (default: kmod/patches/<name>)")
    sp.add_argument("--core", default="kmod/core", help="the core's directory (default: kmod/core)")
    sp.add_argument("--backend", help="kpatch or livepatch: overrides the spec's backend key")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_patch)

    sp = sub.add_parser("build", help="build module directories with Kbuild, then check them")
    sp.add_argument("dirs", nargs="+", help="directories made by generate or patch (the core first)")
    sp.add_argument("--core", help="the core's built directory, for patch modules")
    sp.add_argument("--dry-run", action="store_true", help="print the make commands only")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_build)

    sp = sub.add_parser("check", help="check built modules (.ko) with pyelftools")
    sp.add_argument("modules", nargs="+")
    sp.add_argument("--core", help="the core's built directory: check as patch modules of it")
    sp.add_argument("--spec", help="the module's spec: check that each replacement is a defined function")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_check)

    sp = sub.add_parser("new", help="scaffold a spec and a C file that replace one function")
    sp.add_argument("name", help="the patch module's name")
    sp.add_argument("--target", required=True, help="the function to replace")
    sp.add_argument("--object", default="vmlinux", help="vmlinux (default) or the module holding it")
    sp.add_argument("-d", "--dir", help="where to write (default: ./NAME)")
    sp.add_argument("--source", help="the kernel's source tree (default: `kpgen source`'s, when cached)")
    sp.add_argument("--file", help="the .c file (in the tree) that defines the target, when several do")
    sp.add_argument("--no-source", action="store_true",
                    help="write only the prototype (from the headers) and an empty body")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_new)

    sp = sub.add_parser("source", help="the exact source of a kernel, downloaded and unpacked once into the cache")
    sp.add_argument("--source", help="check a tree of your own against the kernel instead")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_source)

    sp = sub.add_parser("diff", help="a live patch (spec and C) from a source diff of the kernel")
    sp.add_argument("patch", help="the diff (unified, -p1, against the kernel's source)")
    sp.add_argument("--source", help="the kernel's source tree (default: `kpgen source`'s)")
    sp.add_argument("-o", "--output", help="where to write the spec and fix.c (default: ./NAME)")
    sp.add_argument("--name", help="the patch module's name (default: from the diff's file name)")
    sp.add_argument("--build", action="store_true", help="go on: render, build with Kbuild and check the module")
    sp.add_argument("--core", help="a built core for --build (default: one built in DIR/core)")
    sp.add_argument("--backend", help="kpatch (default) or livepatch: the backend the spec names")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_diff)

    sp = sub.add_parser("snapshot", help="boot a kernel once and cache its symbols for checking specs")
    sp.add_argument("--dry-run", action="store_true", help="print the vng command only")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_snapshot)

    sp = sub.add_parser("boot-test", help="build everything and run the guest scenarios, one boot per kernel")
    sp.add_argument("--kdir", help="one kernel only (default: every kernel of the matrix, kpgen/data/kernels.toml)")
    sp.add_argument("--dry-run", action="store_true", help="build, then print the vng command only")
    sp.add_argument("--stress-cycles", type=int, help="cycles of the stress scenario (default 200)")
    sp.add_argument("--timeout", type=int, default=1500, help="seconds one boot may take (default 1500)")
    sp.add_argument("--diffs", help="a corpus of diff cases to build into the tree (the repository's tests/diffs)")
    sp.add_argument("--only", metavar="NAME[,NAME]", help="run these scenarios only (in one boot per kernel)")
    sp.add_argument("--list", action="store_true", help="build, then list the scenarios the guest would run")
    sp.set_defaults(func=cmd_boot_test)

    sp = sub.add_parser("bench", help="per-call and apply costs against upstream livepatch, five boots per kernel;"
                        " exit 1 only if a target is missed")
    sp.add_argument("--kdir", help="one kernel only (default: every kernel of the matrix, kpgen/data/kernels.toml)")
    sp.add_argument("-o", "--output", default="build/bench",
                    help="where the tree and figures go (default: build/bench)")
    sp.add_argument("--dry-run", action="store_true", help="build, then print the vng commands only")
    sp.set_defaults(func=cmd_bench)

    sp = sub.add_parser("doctor", help="what this machine has and lacks for kpgen, and how to get it")
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("vm", help="boot a kernel and run one shell command in it")
    sp.add_argument("command")
    sp.add_argument("--dry-run", action="store_true", help="print the vng command only")
    sp.add_argument("--timeout", type=int, default=900, metavar="S",
                    help="stop the guest (QEMU included) after S seconds and exit 1 (default 900)")
    sp.add_argument("--rwdir", action="append", default=[], metavar="DIR",
                    help="a host directory the guest may write (repeatable; read-only otherwise)")
    kdir_opt(sp)
    sp.set_defaults(func=cmd_vm)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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
