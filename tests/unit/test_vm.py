"""The virtme-ng command is data: its argv is checked without booting."""

from __future__ import annotations

from pathlib import Path

import pytest

from kpgen import kernel, vm
from kpgen.harness import boottest


def test_argv_uses_tcg_and_rwdirs():
    run = vm.VmRun(kernel_image=Path("/boot/vmlinuz-x"), command="bash /t/s.sh", rwdirs=(Path("/r"),))
    assert run.argv() == [
        "vng", "--run", "/boot/vmlinuz-x", "--disable-kvm", "--cpus", "2", "--memory", "1G",
        "--qemu-opts=-accel tcg,thread=single", "--verbose", "--rwdir", "/r", "--exec", "bash /t/s.sh",
    ]
    assert run.shell().endswith("</dev/null")


def test_vcpus_run_on_one_thread_but_for_the_percall_benchmark(tmp_path):
    from kpgen.harness import bench

    run = vm.VmRun(Path("/k"), "true")
    assert "--qemu-opts=-accel tcg,thread=single" in run.argv()
    tree = bench.BenchTree(kernel.probe(kernel.matrix()[0].kdir()), tmp_path)
    apply = bench.guest_vm(tree, tmp_path, "apply").argv()
    assert "--qemu-opts=-accel tcg,thread=single" in apply and apply[apply.index("--cpus") + 1] == "2"
    assert apply[-1].endswith(" apply")
    percall = bench.guest_vm(tree, tmp_path, "percall").argv()
    assert not any("thread=single" in a for a in percall) and percall[percall.index("--cpus") + 1] == "2"
    assert percall[-1].endswith(" percall")
    with pytest.raises(ValueError, match="benchmark part 'both'"):
        bench.guest_vm(tree, tmp_path, "both")
    assert not any("thread=single" in a for a in vm.VmRun(Path("/k"), "true", single_thread=True, kvm=True).argv())


def test_kvm_is_opt_in():
    assert "--disable-kvm" not in vm.VmRun(Path("/k"), "true", kvm=True).argv()


def test_timeout_is_reported(tmp_path):
    fake = tmp_path / "slow"
    fake.write_text("#!/bin/sh\nsleep 5\n")
    fake.chmod(0o755)
    image = tmp_path / "vmlinuz"
    image.write_text("")
    result = vm.run(vm.VmRun(image, "true", vng=str(fake), timeout=1))
    assert result.timed_out and result.returncode is None


def test_timeout_kills_the_whole_process_group(tmp_path):
    """A child that keeps the output pipe open (QEMU under virtme-ng) dies with the run."""
    import time

    fake = tmp_path / "vng"
    pidfile = tmp_path / "child.pid"
    fake.write_text(f"#!/bin/sh\nsleep 1000 &\necho $! > {pidfile}\necho booting\nwait\n")
    fake.chmod(0o755)
    image = tmp_path / "vmlinuz"
    image.write_text("")
    start = time.monotonic()
    result = vm.run(vm.VmRun(image, "true", vng=str(fake), timeout=2))
    assert result.timed_out and time.monotonic() - start < 30
    assert "booting" in result.output
    pid = int(pidfile.read_text())
    time.sleep(0.2)
    status = Path(f"/proc/{pid}/status")
    assert not status.exists() or "State:\tZ" in status.read_text(), "the child outlived the run"


def test_the_kernel_console_is_in_the_output_by_default():
    assert "--verbose" in vm.VmRun(Path("/k"), "true").argv()
    assert "--verbose" not in vm.VmRun(Path("/k"), "true", kernel_console=False).argv()


def test_tap_parsing_counts_no_skip_as_a_pass():
    tap = "1..4\nok 1 - a\nnot ok 2 - b\n#   why\nok 3 - c # SKIP no other kernel\nok 4 - d # TODO later\n"
    assert boottest.parse_tap(tap) == {"a": True, "b": False, "c": False, "d": False}
    assert boottest.details(tap, "b") == ["#   why"]
    assert boottest.details(tap, "a") == []


def _report(tmp_path: Path, tap: str, returncode: int = 0, dmesg: str = "log\n") -> boottest.BootReport:
    from kpgen import kernel

    k = kernel.probe(kernel.matrix()[0].kdir())
    return boottest.BootReport(kernel=k, run=vm.VmResult(returncode, "console\n", 1.0),
                               results=boottest.parse_tap(tap), tap=tap, dmesg=dmesg, splats=[], results_dir=tmp_path,
                               expected=boottest.scenario_names())


def test_a_report_with_a_skipped_or_missing_scenario_is_not_ok(tmp_path):
    names = boottest.scenario_names()
    skipped = "".join(f"ok {i} - {n}{' # SKIP no reason' if i == 3 else ''}\n" for i, n in enumerate(names, 1))
    assert not _report(tmp_path, skipped).ok
    missing = "".join(f"ok {i} - {n}\n" for i, n in enumerate(names[:-1], 1))
    report = _report(tmp_path, missing)
    assert not report.ok and report.missing == names[-1:]


def test_reports_keep_tap_always_and_the_log_on_failure(tmp_path):
    names = boottest.scenario_names()
    good = "".join(f"ok {i} - {n}\n" for i, n in enumerate(names, 1))
    report = _report(tmp_path, good)
    assert report.ok
    written = boottest.save_reports(report, tmp_path / "r")
    assert [p.name for p in written] == [f"{report.kernel.release}.tap", f"{report.kernel.release}.summary"]
    assert (tmp_path / "r" / f"{report.kernel.release}.tap").read_text() == good

    bad = good.replace("ok 2 -", "not ok 2 -")
    report = _report(tmp_path, bad, returncode=1)
    assert not report.ok
    boottest.save_reports(report, tmp_path / "r")
    assert (tmp_path / "r" / f"{report.kernel.release}-dmesg.txt").read_text() == "log\n"
    assert (tmp_path / "r" / f"{report.kernel.release}-console.log").read_text() == "console\n"
    # a later good run removes the failure's artifacts
    boottest.save_reports(_report(tmp_path, good), tmp_path / "r")
    assert not (tmp_path / "r" / f"{report.kernel.release}-dmesg.txt").exists()
