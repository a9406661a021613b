"""The watchdog on this machine's real kernel (no LKDTM: nothing here damages it).

- A worker held in a page fault (memcg v1 with the OOM killer off, a limit
  below what it writes): the scenario FAILs at its deadline naming the worker,
  its state and wchan; the cleanup lifts the limit, kills and reaps it, and
  the next scenario of the same run passes.
- A kernel report (written into /dev/kmsg: the runner counts user records)
  stops a scenario that waits for 120 s within seconds.
Each check that nothing is left: knobs, cgroups, processes.
"""
import os
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from harness import cgroup, runner, scenario
from harness.knobs import Knobs
from harness.report.terminal import Progress
from harness.results import FAIL, PASS

DATA = Path(__file__).resolve().parents[1] / "data/scenarios/crash"


@pytest.fixture(autouse=True)
def need_root():
    if os.geteuid() != 0 or not Knobs().exists():
        pytest.skip("needs root and KSM")


def leftovers():
    """Cgroups a run made (run-*) and processes this test started that are still there."""
    hierarchy = cgroup.find_hierarchy()
    groups = sorted(str(p) for p in Path(hierarchy.mount).rglob("run-*")) if hierarchy else []
    return groups, [p.pid for p in psutil.Process().children(recursive=True)]


def run(*names):
    scenarios = [sc for name in names for sc in scenario.load_file(DATA / f"{name}.yaml")]
    return runner.run_all(scenarios, Progress(enabled=False), say=lambda m: None)


def test_worker_stuck_in_page_fault_fails_at_deadline_and_run_goes_on():
    if cgroup.available() or cgroup.find_hierarchy().version != 1:
        pytest.skip("needs the memcg v1 controller (memory.oom_control)")
    knobs = Knobs().snapshot()
    started = time.monotonic()
    stuck, quiet = run("stuck-in-memcg", "quiet").scenarios
    assert stuck.status == FAIL, stuck.reason
    # the watchdog's "scenario timeout of 20s reached" or the reply's own deadline, the same moment
    assert "timeout of 20s reached" in stuck.reason or "no answer in time after" in stuck.reason, stuck.reason
    assert "worker a[0]" in stuck.reason and "in write" in stuck.reason
    assert "state D" in stuck.reason, stuck.reason  # TASK_KILLABLE shows as D
    assert "mem_cgroup" in stuck.reason or "oom" in stuck.reason, stuck.reason  # wchan / stack
    assert stuck.duration < 20 + 15, stuck.duration  # the deadline, plus the cleanup
    assert quiet.status == PASS, quiet.reason
    assert time.monotonic() - started < 60
    assert leftovers() == ([], [])
    assert Knobs().snapshot() == knobs


def test_kernel_report_stops_scenario_at_once():
    title = "ksmh_watchdog_" + uuid.uuid4().hex[:10]

    def report():
        time.sleep(3)
        with open("/dev/kmsg", "w") as kmsg:
            kmsg.write(f"<4>WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 {title}+0x0/0x1\n")

    threading.Thread(target=report, daemon=True).start()
    (result,) = run("long-wait-for-report").scenarios
    assert result.status == FAIL
    assert f"the kernel reported WARNING in {title}" in result.reason, result.reason
    assert result.duration < 30, result.duration  # not the 120 s wait
    assert [c.title for c in result.crashes] == [f"WARNING in {title}"]
    assert leftovers() == ([], [])


class InjectAfter(Progress):
    """Writes fake reports into /dev/kmsg once the first scenario's own watcher has stopped."""

    def __init__(self, lines):
        super().__init__(enabled=False)
        self.lines = lines

    def scenario_done(self, result):
        for line in self.lines:  # one write() is one record (devkmsg_write())
            with open("/dev/kmsg", "w") as kmsg:
                kmsg.write(line + "\n")
        self.lines = []


def test_late_reports_are_attributed_or_run_level():
    late, old = ("ksmh_late_" + uuid.uuid4().hex[:10]), ("ksmh_old_" + uuid.uuid4().hex[:8])
    progress = InjectAfter([f"<4>WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 {late}+0x0/0x1",
                            f"<3>INFO: task {old}:1 blocked for more than 100000 seconds."])
    scenarios = scenario.load_file(DATA / "quiet.yaml")
    results = runner.run_all(scenarios, progress, say=lambda m: None).scenarios
    assert [r.name for r in results] == ["quiet", "kernel report outside any scenario"]
    quiet, outside = results
    assert quiet.status == FAIL and f"WARNING in {late}" in quiet.reason, quiet.reason
    assert (outside.status, outside.reason) == (FAIL, "INFO: task hung")
    assert old in outside.crashes[0].lines[0]
