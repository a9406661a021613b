"""harness/watchdog.py: the deadline and a report stop the main thread; /proc reads that block are abandoned."""
import gc
import os
import threading
import time

import pytest

from harness import damage, lkdtm, steps
from harness.errors import ScenarioStopped
from harness.results import Crash
from harness.watchdog import InKernel, Watchdog, harness_in_kernel, in_kernel, read_abandonable, stat_state


def crash(title):
    return Crash(kind="WARNING", title=title, line=1, lines=(title,))


def test_deadline_interrupts_a_blocking_call():
    start = time.monotonic()
    with pytest.raises(ScenarioStopped, match=r"scenario timeout of 0.3s reached at line 7"):
        with Watchdog(time.monotonic() + 0.3, 0.3, busy=lambda: [], where=lambda: "line 7"):
            time.sleep(30)
    assert time.monotonic() - start < 5


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the dropped first stop
def test_a_stop_swallowed_in_a_gc_callback_comes_again():
    # The 6.12 guest's lost stop: the signal's handler ran inside a callback
    # of the garbage collector (Hypothesis keeps one in gc.callbacks), where
    # Python prints "Exception ignored in ..." and drops the exception.
    swallowed = []

    def slow_callback(phase, info):
        if phase == "start" and not swallowed:
            swallowed.append(phase)
            time.sleep(0.6)  # the deadline passes in here

    start = time.monotonic()
    gc.callbacks.append(slow_callback)
    try:
        with pytest.raises(ScenarioStopped, match="scenario timeout of 0.2s reached"):
            with Watchdog(time.monotonic() + 0.2, 0.2, busy=lambda: [], resend=0.2):
                gc.collect()  # the first stop is raised in slow_callback and dropped
                time.sleep(30)
    finally:
        gc.callbacks.remove(slow_callback)
    assert swallowed and time.monotonic() - start < 5


def test_a_stop_on_its_way_out_is_not_raised_over():
    cleaned = []
    with pytest.raises(ScenarioStopped):
        with Watchdog(time.monotonic() + 0.1, 0.1, busy=lambda: [], resend=0.05):
            try:
                time.sleep(30)
            finally:
                time.sleep(0.5)  # several signals come while the stop passes through here
                cleaned.append(True)
    assert cleaned == [True]


def test_the_harness_main_thread_is_named_when_asleep_in_the_kernel(tmp_path):
    tid = threading.main_thread().native_id
    task = tmp_path / str(tid)
    task.mkdir()
    (task / "stat").write_text(f"{tid} (python3) S 1 2 3")
    assert harness_in_kernel(tmp_path) == ()
    (task / "stat").write_text(f"{tid} (python3) D 1 2 3")
    (task / "wchan").write_text("unmerge_ksm_pages")
    (task / "stack").write_text("[<0>] unmerge_ksm_pages+0x1/0x2\n[<0>] run_store+0x3/0x4\n")
    (main,) = harness_in_kernel(tmp_path)
    assert main.text() == (f"the harness's main thread (pid {tid}): state D, wchan unmerge_ksm_pages, "
                           "stack: unmerge_ksm_pages, run_store")


def test_report_interrupts_and_names_the_busy_worker():
    dog = Watchdog(time.monotonic() + 60, 60, busy=lambda: [("a[0]", os.getpid(), "touch")])
    with pytest.raises(ScenarioStopped) as info:
        with dog:
            dog.on_report(crash("WARNING in ksm_scan"))
            time.sleep(30)
    assert str(info.value).startswith("the kernel reported WARNING in ksm_scan; worker a[0]")
    assert f"(pid {os.getpid()}) in touch: state" in str(info.value)
    assert dog.report.title == "WARNING in ksm_scan"


def test_expected_report_does_not_stop_and_disarm_is_quiet():
    with Watchdog(time.monotonic() + 60, 60, busy=lambda: [], expected=["WARNING in ksm"]) as dog:
        dog.on_report(crash("WARNING in ksm_scan"))
        time.sleep(0.3)
    assert dog.report is None and dog.reason is None
    os.kill(os.getpid(), 0)  # still here, no stray exception after the with


def test_read_that_blocks_is_abandoned(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # open() for reading blocks in the kernel until a writer comes
    start = time.monotonic()
    assert read_abandonable(fifo, timeout=0.2) is None
    assert time.monotonic() - start < 2
    assert read_abandonable(tmp_path / "missing") is None
    (tmp_path / "f").write_text("x\n")
    assert read_abandonable(tmp_path / "f") == "x\n"


def test_stat_state_and_in_kernel(tmp_path):
    assert stat_state("123 (py thon) D 1 2 3") == "D"
    assert stat_state(None) == stat_state("garbage") == "?"
    pid_dir = tmp_path / "42"
    pid_dir.mkdir()
    (pid_dir / "stat").write_text("42 (python3) D 1 42 42")
    (pid_dir / "wchan").write_text("mem_cgroup_oom_synchronize")
    (pid_dir / "stack").write_text("[<0>] mem_cgroup_oom_synchronize+0x1/0x2\n[<0>] exc_page_fault+0x3/0x4\n")
    where = in_kernel(42, "a[0]", "write", tmp_path)
    assert where == InKernel(42, "a[0]", "write", "D", "mem_cgroup_oom_synchronize",
                             ("[<0>] mem_cgroup_oom_synchronize+0x1/0x2", "[<0>] exc_page_fault+0x3/0x4"))
    assert where.text() == ("worker a[0] (pid 42) in write: state D, wchan mem_cgroup_oom_synchronize, "
                            "stack: mem_cgroup_oom_synchronize, exc_page_fault")


def test_damage_guard(tmp_path):
    (tmp_path / "cmdline").write_text("console=ttyS0 panic=-1\n")
    assert damage.refusal([], False, tmp_path) is None
    assert {a for a, cls in steps.ACTIONS.items() if cls.damaging} == {"provoke", "hwpoison"}
    assert "--allow-kernel-damage" in damage.refusal(["provoke"], False, tmp_path)
    assert damage.refusal(["provoke"], True, tmp_path) is None
    (tmp_path / "cmdline").write_text(f"console=ttyS0 {damage.GUEST_MARK} rdinit=/init\n")
    assert damage.in_guest(tmp_path) and damage.refusal(["provoke"], False, tmp_path) is None


def test_lkdtm_types(tmp_path):
    assert "CONFIG_LKDTM=n" in lkdtm.unavailable("BUG", tmp_path)
    (tmp_path / "provoke-crash").mkdir()
    lkdtm.direct(tmp_path).write_text("Available crash types:\nPANIC\nBUG\nWARNING\n")
    assert lkdtm.types(tmp_path) == ["PANIC", "BUG", "WARNING"]
    assert lkdtm.unavailable("BUG", tmp_path) is None and lkdtm.unavailable(None, tmp_path) is None
    assert "no crash type HUNG_TASK" in lkdtm.unavailable("HUNG_TASK", tmp_path)
