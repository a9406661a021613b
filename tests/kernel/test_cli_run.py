"""`ksm-harness run` end to end, as a user runs it: real kernel, subprocess,
exit codes, interrupted runs leave nothing behind."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from harness import cgroup, probe
from harness.knobs import Knobs
from harness.lock import MachineLock
from harness.wait import wait_until

DATA = Path(__file__).resolve().parent.parent / "data" / "scenarios"
REPO = Path(__file__).resolve().parents[2]


def default_sigint():
    # as from a terminal: a shell's background job (CI started with `&`)
    # inherits SIGINT ignored, and Python then keeps ignoring it
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def harness(*args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "harness", *map(str, args)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_sigint, **kwargs)


def test_run_passes_and_writes_results(machine, tmp_path):
    proc = harness("run", "-q", "--json", tmp_path / "r.json", "--ktap", tmp_path / "r.ktap",
                   "--junit", tmp_path / "r.xml", "--html", tmp_path / "r.html", REPO / "scenarios/core/merge-unmerge.yaml")
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, out + err
    result = json.loads((tmp_path / "r.json").read_text())
    assert [s["status"] for s in result["scenarios"]] == ["pass"]
    assert "ok 1 merge-unmerge" in (tmp_path / "r.ktap").read_text()


def test_broken_scenario_is_exit_2_and_touches_nothing(machine):
    proc = harness("run", DATA / "broken.yaml")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip().splitlines() == [
        f"ksm-harness: {DATA / 'broken.yaml'}:7: workers[0].regions[0].patern: unknown key 'patern' "
        "(expected one of: memfd, mergeable, name, node, pattern, size, thp)"]


def wait_for_setup(knobs):
    wait_until(lambda: knobs.read("pages_to_scan") == "1234" and knobs.read("run") == "1", 60,
               "the run set its knobs")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_run_puts_everything_back(machine, sig):
    proc = harness("run", "-q", DATA / "long-wait.yaml")
    wait_for_setup(machine)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, out + err


def test_killed_run_is_restored_by_the_next_start(machine):
    proc = harness("run", "-q", DATA / "long-wait.yaml")
    wait_for_setup(machine)
    proc.kill()
    proc.communicate(timeout=30)
    assert machine.read("pages_to_scan") == "1234"  # left behind, as SIGKILL allows
    # workers die with the harness (PR_SET_PDEATHSIG)
    wait_until(lambda: not [p for p in psutil.process_iter(["cmdline"])
                            if "harness.zygote" in " ".join(p.info["cmdline"] or [])], 10, "workers gone")
    restore = harness("restore")
    out, err = restore.communicate(timeout=120)
    assert restore.returncode == 0, out + err
    assert "restored KSM knobs" in out


def test_default_suite_passes_on_this_kernel(machine, tmp_path):
    """The README's first command, minus setup: every scenario passes or
    skips, and a skip names what this machine lacks."""
    proc = harness("run", "-q", "--json", tmp_path / "r.json", REPO / "scenarios")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, out + err
    scenarios = json.loads((tmp_path / "r.json").read_text())["scenarios"]
    assert len(scenarios) >= 22
    for s in scenarios:
        assert s["status"] in ("pass", "skip"), (s["name"], s["reason"])
        if s["status"] == "skip":
            assert any(why in s["reason"] for why in ("NUMA nodes", "CONFIG_FAIL_MAKE_REQUEST", "needs Linux",
                                                      "this kernel has no")), s["reason"]
    # each run shows it exercised its path: at least one KSM or vmstat counter moved
    assert all(s["deltas"] for s in scenarios if s["status"] == "pass")


def process_group(pid):
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_terminal_sigint_reaches_the_harness_alone_and_waits_for_swapoff(machine):
    """Ctrl-C as a terminal sends it: to the whole foreground process group.
    Workers and swapoff run in sessions of their own; a second Ctrl-C while
    swapoff reads pages back is deferred until the cleanup is done."""
    proc = harness("run", "-q", DATA / "long-wait.yaml", process_group=0)
    wait_for_setup(machine)
    group = [p.pid for p in psutil.process_iter() if process_group(p.pid) == proc.pid]
    assert group == [proc.pid]  # the zygote and workers are not in the terminal's group
    held = probe.hold_paged_out(56)  # of the run's 64M swap: swapoff reads it back
    try:
        os.killpg(proc.pid, signal.SIGINT)
        swapoff = wait_until(lambda: [c for c, name in probe.children(proc.pid) if name == "swapoff"], 60,
                             "swapoff runs")[0]
        os.killpg(proc.pid, signal.SIGINT)
        assert os.getpgid(swapoff) != proc.pid
        out, err = proc.communicate(timeout=120)
    finally:
        held.kill()
        held.wait()
    assert proc.returncode == 130, out + err
    assert "SIGINT deferred until cleanup is done" in err


def test_failed_cleanup_is_an_error_with_reports_and_restore_finishes_it(machine, tmp_path):
    """A child cgroup made under the run's group makes its rmdir fail (EBUSY):
    the scenario is an ERROR with the traceback, the reports are written, the
    journal keeps the group; `ksm-harness restore` removes it, and a second
    restore has nothing to do."""
    proc = harness("run", "-q", "--json", tmp_path / "r.json", "--junit", tmp_path / "r.xml",
                   DATA / "quick-scans.yaml")
    group = Path(cgroup.find_hierarchy().mount, cgroup.PARENT, f"run-{proc.pid}")
    wait_until(group.is_dir, 60, f"{group} made")
    (group / "blocker").mkdir()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        (group / "blocker").rmdir()
    assert proc.returncode == 3, out + err  # ERROR and nothing FAILED: the harness's trouble, not the kernel's
    scenarios = json.loads((tmp_path / "r.json").read_text())["scenarios"]
    assert [(s["name"], s["status"]) for s in scenarios] == [("quick-scans", "error"), ("restore-after-run", "error")]
    failed = [c for c in scenarios[0]["checks"] if not c["passed"]]
    assert [c["what"].split("(")[0] for c in failed] == ["cleanup: Tracked.undo of cgroups MemCgroup"]
    assert "Traceback" in failed[0]["detail"] and "OSError" in failed[0]["detail"]
    assert "<error" in (tmp_path / "r.xml").read_text()
    assert "cleanup 1 of" in err and "Traceback" in err
    first = harness("restore")
    out, err = first.communicate(timeout=120)
    assert first.returncode == 0, out + err
    assert "removed 0 swap device(s), 1 cgroup(s)" in out
    again = harness("restore")
    out, err = again.communicate(timeout=60)
    assert again.returncode == 0 and out.startswith("nothing to restore"), out + err


def test_a_second_driver_waits_or_with_no_wait_exits_3(machine, tmp_path):
    """The lock is at its fixed path, whatever KSM_HARNESS_STATE says."""
    elsewhere = {**os.environ, "KSM_HARNESS_STATE": str(tmp_path)}
    with MachineLock().hold():
        busy = harness("run", "-q", "--no-wait", DATA / "quick-scans.yaml", env=elsewhere)
        out, err = busy.communicate(timeout=60)
        assert busy.returncode == 3, out + err
        assert f"another ksm-harness (pid {os.getpid()}) holds /run/lock/ksm-harness.lock" in err
        waiting = harness("run", "-q", DATA / "quick-scans.yaml", env=elsewhere)
        assert waiting.stderr.readline() == (f"waiting for ksm-harness pid {os.getpid()} to finish "
                                             f"(it holds /run/lock/ksm-harness.lock)...\n")
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, out + err
