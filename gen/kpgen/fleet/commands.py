"""The commands that take a built module to the machines that run it (docs/delivery.md):
load, unload, list, info, install, uninstall, package. Each `cmd_<command>` turns its
arguments into calls of this package's modules, and their results into lines."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .. import progress
from ..cliargs import arg, complete_dirs, complete_files
from ..errors import UsageError


def need_root(what: str) -> None:
    import os

    if os.geteuid() != 0:
        raise UsageError(f"kpgen {what} changes the running kernel: run it as root")


def _timeout(args: argparse.Namespace) -> float:
    if args.timeout <= 0:
        raise UsageError(f"--timeout {args.timeout}: give the seconds to wait for busy tasks, more than 0")
    return float(args.timeout)


def _progress(line: str) -> None:
    """What a load or an unload waits for (tasks, in the kernel's words): said unless -q."""
    if not progress.SETTINGS.quiet:
        print(f"kpgen: {line}", file=sys.stderr, flush=True)


def cmd_load(args: argparse.Namespace) -> int:
    from . import live

    timeout = _timeout(args)
    need_root("load")
    for done in live.load([Path(p) for p in args.modules], Path(args.core) if args.core else None, timeout, _progress):
        if done.already:
            print(f"kpgen: {done.name}: already loaded")
            continue
        kind = {"core": "kpgen's core", "kpatch": "kpgen's core", "livepatch": "livepatch"}[done.backend]
        print(f"kpgen: loaded {done.name} ({kind}{', transition complete' if done.backend == 'livepatch' else ''}) "
              f"in {done.seconds:.1f} s")
        for line in done.lines:
            print(f"  kernel: {line}")
    return 0


def cmd_unload(args: argparse.Namespace) -> int:
    from . import live

    timeout = _timeout(args)
    need_root("unload")
    for given in args.modules:
        name = live.module_name(given)
        for line in live.unload(name, timeout, _progress):
            print(f"  kernel: {line}")
        print(f"kpgen: unloaded {name}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from . import show

    inv = show.inventory()
    print(show.dumps(inv) if args.json else "\n".join(show.list_lines(inv)))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import os

    from . import layout, show
    from .modfile import ModuleFile

    path = Path(args.module)
    if not path.exists() and "/" not in args.module:
        installed = layout.Layout(Path("/"), os.uname().release, vendor=False).module(args.module.replace("-", "_"))
        if not installed.is_file():
            raise UsageError(f"{args.module}: no such module file, nor a patch installed for {os.uname().release}")
        path = installed
    mod = ModuleFile.read(path)
    if args.json:
        print(show.dumps(show.info_document(mod)))
    elif args.diff:
        text = show.source_text(mod)
        if text is None:
            raise UsageError(f"{path}: no kpgen metadata: the module was not built by `kpgen build`")
        print(text, end="")
    else:
        print("\n".join(show.info_lines(mod)))
    return 0


def cmd_install(args: argparse.Namespace) -> int:
    from . import install

    root = Path(args.root)
    if str(root.resolve()) == "/":
        need_root("install")
    for line in install.install([Path(p) for p in args.modules], Path(args.core) if args.core else None, root):
        print(f"kpgen: {line}")
    return 0


def cmd_uninstall(args: argparse.Namespace) -> int:
    import os

    from . import install

    if not args.names and not args.all:
        raise UsageError("name the patches to uninstall, or give --all")
    if args.names and args.all:
        raise UsageError("--all uninstalls every patch of the release: name none with it")
    root = Path(args.root)
    if str(root.resolve()) == "/":
        need_root("uninstall")
    for line in install.uninstall(args.names, args.release or os.uname().release, args.all, root):
        print(f"kpgen: {line}")
    return 0


def cmd_package(args: argparse.Namespace) -> int:
    from . import deb

    pkg = deb.build([Path(p) for p in args.modules], args.version, Path(args.output),
                    Path(args.core) if args.core else None, args.maintainer)
    print(f"kpgen: {pkg.path}: {pkg.name} {pkg.version} ({', '.join(pkg.modules)}), depends on {pkg.depends}")
    return 0


def add_parsers(command: Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]
                      ) -> None:
    """The commands that take a built module to the machines that run it (docs/delivery.md)."""
    def timeout_opt(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--timeout", type=int, default=60, metavar="S",
                        help="seconds to wait for tasks to leave the patched functions (default 60)")

    modules = complete_files(".ko")
    sp = command("load", "load live patch modules into the running kernel, waiting for their switch", cmd_load)
    arg(sp, "modules", nargs="+", metavar="KO", help="patch modules (.ko), loaded in order", complete=modules)
    arg(sp, "--core", metavar="KO", complete=modules,
         help="kpgen's core (kpatch.ko) to load first when a patch needs it (default: the one installed for the "
              "running kernel)")
    timeout_opt(sp)

    sp = command("unload", "disable and remove live patches from the running kernel", cmd_unload)
    sp.add_argument("modules", nargs="+", metavar="NAME", help="module names (or their .ko files)")
    timeout_opt(sp)

    sp = command("list", "the live patches of the running kernel (kpgen's and any livepatch), and those installed "
                 "for boot", cmd_list)
    sp.add_argument("--json", action="store_true", help="one JSON document")

    sp = command("info", "what a patch module file holds: spec, kernel, backend, functions, source diff, signer",
                 cmd_info)
    arg(sp, "module", metavar="KO", help="a module file, or the name of a patch installed for this kernel",
         complete=modules)
    view = sp.add_mutually_exclusive_group()
    view.add_argument("--diff", action="store_true", help="print the fix's source diff only (else its sources)")
    view.add_argument("--json", action="store_true", help="one JSON document")

    sp = command("install", "install patch modules for boot: /lib/modules/RELEASE/extra/kpgen, a kpgen@RELEASE "
                 "unit, depmod", cmd_install)
    arg(sp, "modules", nargs="+", metavar="KO", help="patch modules (.ko), loaded at boot in this order",
         complete=modules)
    arg(sp, "--core", metavar="KO", help="kpgen's core (kpatch.ko) for patches of the kpatch backend",
         complete=modules)
    arg(sp, "--root", default="/", metavar="DIR", complete=complete_dirs,
         help="install into the system image under this directory (default /)")

    sp = command("uninstall", "remove installed patches (the last one takes the unit and the core along)",
                 cmd_uninstall)
    sp.add_argument("names", nargs="*", metavar="NAME", help="installed patch names")
    sp.add_argument("--all", action="store_true", help="every patch installed for the release")
    sp.add_argument("--release", help="the kernel release (default: the running kernel's)")
    arg(sp, "--root", default="/", metavar="DIR", help="the system image's directory (default /)",
         complete=complete_dirs)

    sp = command("package", "a .deb of patch modules for one kernel release, with the boot unit and metadata",
                 cmd_package)
    arg(sp, "modules", nargs="+", metavar="KO", help="patch modules (.ko) of one release, in load order",
         complete=modules)
    sp.add_argument("--version", required=True, metavar="V",
                    help="the package's version (a Debian version; each upgrade needs a higher one)")
    arg(sp, "--core", metavar="KO", help="kpgen's core (kpatch.ko), needed by patches of the kpatch backend",
         complete=modules)
    arg(sp, "-o", "--output", default=".", metavar="DIR", help="where to write the .deb (default: .)",
         complete=complete_dirs)
    sp.add_argument("--maintainer", default="kpgen <root@localhost>", metavar="'NAME <MAIL>'",
                    help="the package's Maintainer field")
