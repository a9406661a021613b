"""Real kernel reports in a guest (LKDTM), one run over three boots (marker `vm`).

tests/data/scenarios/crash/provoke.yaml provokes, in this order, WARNING,
HUNG_TASK, PANIC and BUG from a worker, then quiet.yaml must pass:
- boot 1: WARNING fails with its title and the worker is cleaned up;
  HUNG_TASK fails at its 30 s deadline naming where the worker sleeps, which
  cannot be reaped: the guest's harness reports the rest as not run;
- boot 2: PANIC: the host sees the panic, the scenario fails with its title;
- boot 3: BUG fails with its title within 60 s of the report, quiet passes.
Costs about 2-3 minutes under TCG (measured: 165 s as a test, 114 s through the CLI).
"""
import time
from pathlib import Path

import pytest
from test_vm_boot import kernel  # noqa: F401 (the fixture: qemu, busybox and the fixed kernel, or a skip)

from harness import vm, vmrun
from harness.results import FAIL, PASS

pytestmark = pytest.mark.vm

DATA = Path(__file__).resolve().parents[2] / "tests/data/scenarios/crash"
HUNG_TASK_TIMEOUT = 60  # CONFIG_DEFAULT_HUNG_TASK_TIMEOUT of the shared kernels


def test_crashes_fail_their_scenario_and_the_run_goes_on(kernel, tmp_path):  # noqa: F811
    followers = []
    start = time.monotonic()
    run = vmrun.run_scenarios(vm.VmOptions(kernel=kernel, timeout=300), ["-q", str(DATA / "provoke.yaml"),
                              str(DATA / "quiet.yaml")], tmp_path, followers=followers, log=print)
    wall = time.monotonic() - start
    results = {s.name.split(",")[0]: s for s in run.result.scenarios}
    assert list(results) == ["provoke[crash=WARNING", "provoke[crash=HUNG_TASK", "provoke[crash=PANIC",
                             "provoke[crash=BUG", "quiet"]
    warning, hung, panic, bug, quiet = results.values()
    assert warning.status == FAIL and "WARNING in lkdtm_WARNING" in warning.reason, warning.reason
    assert any("the write returned" in n for n in warning.notes)  # the worker kept running
    assert not any("reaped" in c.what for c in warning.failed_checks)  # and was cleaned up
    assert hung.status == FAIL and ("direct_entry" in hung.reason or "task hung" in hung.reason), hung.reason
    assert hung.duration < HUNG_TASK_TIMEOUT + 30
    assert panic.status == FAIL and "kernel panic: dumptest" in panic.reason, panic.reason
    assert bug.status == FAIL and "kernel BUG in lkdtm_BUG" in bug.reason, bug.reason
    assert quiet.status == PASS, quiet.reason
    assert len(followers) == 3 and (tmp_path / "boot-3" / "console.log").exists()
    last = followers[-1]  # boot 3: the BUG's report on the console, then its verdict
    reported = next(t for t, c in zip(last.report_times, last.crashes()) if "lkdtm_BUG" in c.title)
    assert last.finished[bug.name] - reported < 60
    # bounded by the scenarios' own timeouts plus the boots, not by one guest timeout
    assert wall < sum(s.duration for s in run.result.scenarios) + 3 * 120, wall
    print(f"3 boots, {wall:.0f} s")
