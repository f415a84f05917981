"""kpgen doctor reports what is there, and says how to get what is not."""

from __future__ import annotations

from kpgen import cli, doctor


def test_every_tool_the_tests_need_is_checked():
    names = {c.what for c in doctor.checks(contributor=True)}
    for tool in ("qemu-system-x86_64", "vng", "KVM", "sparse", "checkpatch.pl", "shellcheck", "ruff", "mypy",
                 "hadolint", "kernel 6.1 headers", "kernel 6.12 image"):
        assert tool in names


def test_missing_tool_is_reported_with_a_fix():
    items = [doctor._tool("kpgen-no-such-tool", "apt-get install it"), doctor.Check("python", True, "3.11")]
    text = doctor.report(items)
    assert "MISS kpgen-no-such-tool  not found" in text and "-> apt-get install it" in text
    assert not doctor.healthy(items) and text.endswith("1 missing: the -> lines say how to get each (in a "
                                                       "checkout of kpgen, `make provision` installs all of it)")


def test_kvm_absent_is_a_note_not_a_failure(tmp_path):
    check = doctor.kvm_check(str(tmp_path / "kvm"))
    assert not check.ok and not check.required and "TCG" in check.detail
    assert doctor.healthy([check])


def test_cli_exit_status_follows_the_report(capsys):
    rc = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert rc == (0 if out.rstrip().endswith("everything kpgen needs is here") else 1)
