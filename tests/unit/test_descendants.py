"""Worker.descendants(): followed down through /proc/PID/task/TID/children
where the kernel has it, the same processes psutil finds by walking all of
/proc (which costs workers x processes when asked for every worker)."""
import socket
import subprocess
import time

import psutil
import pytest

from harness import workers


@pytest.fixture
def family():
    """A shell with two children (sleep, sh), the second with a child of its own."""
    proc = subprocess.Popen(["sh", "-c", "sleep 60 & sh -c 'sleep 60 & wait' & wait"])
    deadline = time.monotonic() + 10
    while len(psutil.Process(proc.pid).children(recursive=True)) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield proc
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True):
            p.kill()
        proc.kill()
        proc.wait()


@pytest.mark.skipif(not workers.PROC_CHILDREN, reason="this kernel has no /proc/PID/task/TID/children")
def test_descendants_are_the_ones_psutil_finds(family, monkeypatch):
    a, b = socket.socketpair()
    w = workers.Worker(None, "w", family.pid, a)
    walked = sorted(p.pid for p in w.descendants())
    monkeypatch.setattr(workers, "PROC_CHILDREN", False)
    assert walked == sorted(p.pid for p in w.descendants()) and len(walked) == 3
    assert sorted(workers.child_pids(family.pid)) == sorted(p.pid for p in psutil.Process(family.pid).children())
    a.close(), b.close()


def test_a_process_that_is_gone_has_no_children():
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert workers.child_pids(proc.pid) == []
