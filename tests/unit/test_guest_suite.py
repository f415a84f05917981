"""The guest suite's runner and library, run on the host: what needs no kernel is checked here.

run.sh lists its own scenarios and refuses bad registrations; lib.sh's helpers give the right
answer in a condition (where bash ignores `set -e`), find modules in a build tree by searching,
and read a kernel log without the SIGPIPE trap of `producer | grep -q` under pipefail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from kpgen.harness import boottest
from kpgen.resources import GUEST

LIB = GUEST / "lib.sh"


def bash(script: str, tree: Path | None = None, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run a bash snippet with lib.sh sourced (TREE set when given)."""
    prelude = f". {LIB}\n" + (f"TREE={tree}\n" if tree else "")
    proc = subprocess.run(["bash", "-c", prelude + script], capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"bash exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc


def test_runner_lists_unique_scenarios_in_topic_order():
    names = boottest.scenario_names()
    assert len(names) == len(set(names)) >= 30
    assert names[0] == "patch_without_core_refused"
    assert "stress_random_cycles" in names and "fault_injection_unwinds" in names
    topics = sorted((GUEST / "topics").glob("*.sh"))
    assert [p.name for p in topics] == sorted(p.name for p in topics) and len(topics) >= 8


def _copy_suite(tmp_path: Path) -> Path:
    suite = tmp_path / "guest"
    shutil.copytree(GUEST, suite)
    return suite


@pytest.mark.parametrize(("registration", "message"), [
    ("scenario core_loads\n", "scenario core_loads is registered twice"),
    ("scenario Bad-Name\n", "scenario name 'Bad-Name' is not"),
    ("scenario fine_name soon\n", "timeout 'soon' is not a number of seconds"),
])
def test_bad_registrations_are_refused(tmp_path, registration, message):
    suite = _copy_suite(tmp_path)
    (suite / "topics" / "99-bad.sh").write_text(registration)
    proc = subprocess.run(["bash", str(suite / "run.sh"), "--list", str(tmp_path)], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 2 and message in proc.stderr


def test_only_refuses_an_unknown_scenario(tmp_path):
    (tmp_path / "results").mkdir()
    proc = subprocess.run(["bash", str(GUEST / "run.sh"), str(tmp_path), str(tmp_path / "results"), "--only",
                           "core_loads,no_such_scenario"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2 and "no scenario named 'no_such_scenario'" in proc.stderr


def test_the_dash_dash_form_calls_one_function_for_many_scenarios(tmp_path):
    suite = _copy_suite(tmp_path)
    (suite / "topics" / "99-cases.sh").write_text("case_fn() { :; }\nscenario case_one -- case_fn 1\n"
                                                  "scenario case_two 30 -- case_fn 'two words'\n")
    proc = subprocess.run(["bash", str(suite / "run.sh"), "--list", str(tmp_path)], capture_output=True, text=True,
                          check=True)
    assert proc.stdout.split()[-2:] == ["case_one", "case_two"]


# --- lib.sh ------------------------------------------------------------------------------------

def _tree(tmp_path: Path) -> Path:
    tree = tmp_path / "tree"
    for rel in ("core/kpatch.ko", "core-faults/kpatch.ko", "patches/cmdline_a/cmdline_a.ko",
                "modules/kpgen_test_target/kpgen_test_target.ko", "foreign/kpgen_test_target/kpgen_test_target.ko",
                "diffs/case_one/case_one.ko", "patches/twice/dup.ko", "modules/twice/dup.ko"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("")
    return tree


def test_ko_searches_the_tree(tmp_path):
    tree = _tree(tmp_path)
    proc = bash("ko kpatch; ko kpatch core-faults; ko cmdline_a; ko case_one; ko kpgen_test_target;"
                "ko kpgen_test_target foreign", tree, check=True)
    assert proc.stdout.split() == [str(tree / p) for p in (
        "core/kpatch.ko", "core-faults/kpatch.ko", "patches/cmdline_a/cmdline_a.ko", "diffs/case_one/case_one.ko",
        "modules/kpgen_test_target/kpgen_test_target.ko", "foreign/kpgen_test_target/kpgen_test_target.ko")]


@pytest.mark.parametrize("name", ["missing", "dup"])
def test_ko_is_fatal_unless_exactly_one_is_found(tmp_path, name):
    proc = bash(f"if not load {name}; then echo 'read as refused'; fi", _tree(tmp_path))
    assert proc.returncode == 1 and "read as refused" not in proc.stdout
    assert f"ko: {name}.ko found {0 if name == 'missing' else 2} times" in proc.stderr


def test_expect_errno_wants_that_errno_exactly():
    ok = bash("expect_errno EINVAL bash -c 'echo \"echo: write error: Invalid argument\" >&2; exit 1'")
    assert ok.returncode == 0, ok.stderr
    wrong = bash("expect_errno EINVAL bash -c 'echo \"write error: Device or resource busy\" >&2; exit 1'")
    assert wrong.returncode == 1 and "expected 'Invalid argument'" in wrong.stderr
    succeeded = bash("expect_errno EBUSY true")
    assert succeeded.returncode == 1 and "but it succeeded" in succeeded.stderr
    insmod = bash("insmod() { echo \"insmod: ERROR: could not insert module x.ko: Invalid parameters\" >&2;"
                  " return 1; }; expect_errno EINVAL insmod x.ko")
    assert insmod.returncode == 0, insmod.stderr


def test_loop_until_fails_after_its_timeout():
    assert bash("loop_until 1 false").returncode == 1
    assert bash("n=0; bump() { n=$((n + 1)); [ $n -ge 3 ]; }; loop_until 5 bump", check=True).returncode == 0


def test_taint_letters():
    assert bash("taint_letters 45056", check=True).stdout.strip() == "OEK"
    assert bash("taint_letters $(((1 << 9) | (1 << 7) | (1 << 14)))", check=True).stdout.strip() == "DWL"


def _fake_kmsg(tmp_path: Path, lines: int) -> str:
    """A scenario_log reading a file in /dev/kmsg's format, where mark() appends as the kernel
    would: the scenario's begin mark, `lines` kpatch lines, then one that says 'needle'."""
    klog = tmp_path / "kmsg"
    body = "".join(f"6,{i},0,-;kpatch: filler line {i}\n" for i in range(lines))
    klog.write_text("5,0,0,-;before the mark\n13,1,0,-;kpgen-test: begin demo 1\n" + body
                    + " SUBSYSTEM=dictionary line\n3,99999999,0,-;kpatch: needle at the end\n")
    return (f"KLOG={klog}; KLOG_BEGIN='kpgen-test: begin demo 1'; SCENARIO=demo; SCENARIO_PID=$$\n"
            f"mark() {{ echo \"13,0,0,-;kpgen-test: $*\" >> {klog}; }}\n")


def test_the_kernel_log_of_a_scenario_is_read_whole_under_pipefail(tmp_path):
    setup = _fake_kmsg(tmp_path, 200000)
    proc = bash(setup + "set -o pipefail\nmentioned needle && echo mentioned\n"
                "if not mentioned needle; then echo 'not mentioned passed'; fi\n"
                "logged '<3>needle at the end' && echo logged\n"
                "not mentioned 'before the mark' && echo 'only since the mark'\n"
                "kernel_lines 'filler line 1999$'\n", check=True)
    assert proc.stdout.split("\n")[:4] == ["mentioned", "logged", "only since the mark",
                                           "<6>kpatch: filler line 1999"]
    assert "not mentioned passed" not in proc.stdout


def test_a_lost_kernel_log_is_fatal_not_false(tmp_path):
    setup = _fake_kmsg(tmp_path, 10) + "mark() { :; }\nKLOG_SYNC_TIMEOUT=1\ntrap 'exit 1' TERM\n"
    proc = bash(setup + "if not mentioned needle; then echo 'read as absent'; fi\n")
    assert proc.returncode == 1 and "read as absent" not in proc.stdout
    assert "the kernel log follower fell behind or died" in proc.stderr
