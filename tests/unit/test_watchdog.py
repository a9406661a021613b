"""harness/watchdog.py: the deadline and a report stop the main thread; /proc reads that block are abandoned."""
import os
import time

import pytest

from harness import damage, lkdtm, steps
from harness.errors import ScenarioStopped
from harness.results import Crash
from harness.watchdog import InKernel, Watchdog, in_kernel, read_abandonable, stat_state


def crash(title):
    return Crash(kind="WARNING", title=title, line=1, lines=(title,))


def test_deadline_interrupts_a_blocking_call():
    start = time.monotonic()
    with pytest.raises(ScenarioStopped, match=r"scenario timeout of 0.3s reached at line 7"):
        with Watchdog(time.monotonic() + 0.3, 0.3, busy=lambda: [], where=lambda: "line 7"):
            time.sleep(30)
    assert time.monotonic() - start < 5


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
