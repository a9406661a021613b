"""The watchdog on this machine's real kernel (no LKDTM: nothing here damages it).

- A worker held in a page fault (memcg v1 with the OOM killer off, a limit
  below what it writes): the scenario FAILs at its deadline naming the worker,
  its state and wchan; the cleanup lifts the limit, kills and reaps it, and
  the next scenario of the same run passes.
- A kernel report stops a scenario that waits for 120 s within seconds.  The
  runner counts only the kernel's own records, so the fake reports go through
  the test seam: roots.kmsg pointed at a log file the test appends records to
  in /dev/kmsg's own format ("pri,seq,usec,-;text", usec on CLOCK_MONOTONIC
  as printk's local_clock() stamps them).
Each check that nothing is left: knobs, cgroups, processes.
"""
import os
import threading
import time
import uuid
from pathlib import Path

import psutil
import pytest

from harness import attribution, cgroup, runner, scenario
from harness.knobs import Knobs
from harness.lock import MachineLock
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


@pytest.fixture
def log(tmp_path):
    """The kernel-log seam: a file the runner tails like /dev/kmsg."""
    path = tmp_path / "kmsg.log"
    path.write_text("")
    return path


def append(log, line, seq=[1 << 40]):
    """One kernel record at this moment, in /dev/kmsg's format."""
    seq[0] += 1
    with open(log, "a") as f:
        f.write(f"{line[1]},{seq[0]},{int(attribution.now() * 1e6)},-;{line[3:]}\n")


def run(*names, progress=None, kmsg=Path("/dev/kmsg"), tmp=None):
    """run_all over the named scenarios.  tests/host/conftest.py holds the
    machine lock for the whole test, so the run takes a lock file of its own."""
    scenarios = [sc for name in names for sc in scenario.load_file(DATA / f"{name}.yaml")]
    return runner.run_all(scenarios, progress or Progress(enabled=False), roots=runner.Roots(kmsg=kmsg),
                          say=lambda m: None, lock=MachineLock(tmp / "lock"))


def test_worker_stuck_in_page_fault_fails_at_deadline_and_run_goes_on(tmp_path):
    if cgroup.available() or cgroup.find_hierarchy().version != 1:
        pytest.skip("needs the memcg v1 controller (memory.oom_control)")
    knobs = Knobs().snapshot()
    started = time.monotonic()
    stuck, quiet = run("stuck-in-memcg", "quiet", tmp=tmp_path).scenarios
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


def test_kernel_report_stops_scenario_at_once(tmp_path, log):
    title = "ksmh_watchdog_" + uuid.uuid4().hex[:10]

    def report():
        time.sleep(3)
        append(log, f"<4>WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 {title}+0x0/0x1")

    threading.Thread(target=report, daemon=True).start()
    (result,) = run("long-wait-for-report", kmsg=log, tmp=tmp_path).scenarios
    assert result.status == FAIL
    assert f"the kernel reported WARNING in {title}" in result.reason, result.reason
    assert result.duration < 30, result.duration  # not the 120 s wait
    assert [c.title for c in result.crashes] == [f"WARNING in {title}"]
    assert leftovers() == ([], [])


class InjectAfter(Progress):
    """Appends fake kernel records to the log once the first scenario's own watcher has stopped."""

    def __init__(self, log, lines):
        super().__init__(enabled=False)
        self.log, self.lines = log, lines

    def scenario_done(self, result):
        for line in self.lines:
            append(self.log, line)
        self.lines = []


def test_late_reports_are_attributed_or_run_level(tmp_path, log):
    late, old = ("ksmh_late_" + uuid.uuid4().hex[:10]), ("ksmh_old_" + uuid.uuid4().hex[:8])
    progress = InjectAfter(log, [f"<4>WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 {late}+0x0/0x1",
                            f"<3>INFO: task {old}:1 blocked for more than 100000 seconds."])
    results = run("quiet", progress=progress, kmsg=log, tmp=tmp_path).scenarios
    assert [r.name for r in results] == ["quiet", "kernel report outside any scenario"]
    quiet, outside = results
    assert quiet.status == FAIL and f"WARNING in {late}" in quiet.reason, quiet.reason
    assert (outside.status, outside.reason) == (FAIL, "INFO: task hung")
    assert old in outside.crashes[0].lines[0]
