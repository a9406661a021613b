"""`ksm-harness run` end to end, as a user runs it: real kernel, subprocess,
exit codes, interrupted runs leave nothing behind."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from harness.cgroup import find_hierarchy
from harness.knobs import Knobs
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


@pytest.fixture
def machine():
    """The KSM knobs, swap devices and cgroups as found; checked again after."""
    if os.geteuid() != 0 or not Knobs().exists():
        pytest.skip("needs root and KSM")
    knobs = Knobs()
    before = (knobs.snapshot(), Path("/proc/swaps").read_text())
    yield knobs
    assert (knobs.snapshot(), Path("/proc/swaps").read_text()) == before
    assert not [p for p in psutil.process_iter(["cmdline"]) if "harness.zygote" in " ".join(p.info["cmdline"] or [])]
    h = find_hierarchy()
    if h:
        assert not list(Path(h.mount).glob("**/ksm-harness/run-*"))


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
        "(expected one of: mergeable, name, node, pattern, size, thp)"]


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
