"""unreaped.py: a worker SIGKILL could not end stays journaled until it is
gone; a pid reused by another process is never taken for it (fake /proc)."""
import os
import signal
import subprocess
import sys

import pytest

from harness import unreaped
from harness.errors import KernelError
from harness.watchdog import InKernel

# a real /proc/PID/stat line's shape: comm with a space and a ")" in it
STAT = "{pid} (python3 a) b) {state} 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 {start} 23 24\n"


def fake_proc(tmp_path, pid, state="D", start=4242):
    d = tmp_path / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(STAT.format(pid=pid, state=state, start=start))
    (d / "wchan").write_text("mem_cgroup_oom_synchronize")
    return d


def test_start_time_is_field_22():
    assert unreaped.start_time(STAT.format(pid=7, state="D", start=987654)) == 987654
    assert unreaped.start_time(None) is None


def test_journal_entry_names_it_and_its_start(tmp_path):
    fake_proc(tmp_path, 77)
    stuck = InKernel(77, "a[0]", "touch", "D", "mem_cgroup_oom_synchronize", ())
    assert unreaped.to_journal(stuck, tmp_path) == {
        "pid": 77, "name": "a[0]", "wchan": "mem_cgroup_oom_synchronize", "start_time": 4242}


def test_gone_or_reused_pid_is_removed_without_a_signal(tmp_path, monkeypatch):
    monkeypatch.setattr(unreaped.os, "kill", lambda *a: pytest.fail("no signal to a process that is not it"))
    entry = {"pid": 77, "name": "a[0]", "wchan": "x", "start_time": 4242}
    unreaped.remove_stale(entry, tmp_path)  # no /proc/77: gone
    fake_proc(tmp_path, 77, state="S", start=9999)  # the pid is another process's now
    unreaped.remove_stale(entry, tmp_path)
    fake_proc(tmp_path, 77, state="Z")  # dead, only not reaped
    unreaped.remove_stale(entry, tmp_path)


def test_still_asleep_after_sigkill_keeps_its_entry(tmp_path, monkeypatch):
    sent = []
    monkeypatch.setattr(unreaped.os, "kill", lambda pid, sig: sent.append((pid, sig)))
    monkeypatch.setattr(unreaped, "GONE_WAIT", 0.1)
    fake_proc(tmp_path, 77)
    with pytest.raises(KernelError, match=r"pid 77 \(a\[0\]\) is still asleep in the kernel \(state D, wchan "
                                          r"mem_cgroup_oom_synchronize\)"):
        unreaped.remove_stale({"pid": 77, "name": "a[0]", "wchan": "x", "start_time": 4242}, tmp_path)
    assert sent == [(77, signal.SIGKILL)]


def test_a_real_process_is_killed_again():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        entry = unreaped.to_journal(InKernel(child.pid, "a[0]", "", "S", "hrtimer_nanosleep", ()))
        assert entry["start_time"] > 0
        waiter = __import__("threading").Thread(target=child.wait)
        waiter.start()  # its parent reaps it, as the zygote's subreaper would
        unreaped.remove_stale(entry)
        waiter.join(5)
        assert child.returncode == -signal.SIGKILL
    finally:
        if child.poll() is None:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
