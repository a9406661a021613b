"""cleanup.py: every deferred call runs, every failure is kept, signals wait."""
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import runner
from harness.cleanup import Cleanup

REPO = Path(__file__).resolve().parents[2]


def test_all_run_last_first_and_every_failure_is_kept(caplog):
    ran = []

    def fails(name):
        ran.append(name)
        raise OSError(f"{name} is busy")

    with caplog.at_level(logging.ERROR, logger="ksm-harness"):
        with Cleanup() as defer:
            defer(ran.append, "first")
            defer(fails, "second")
            defer(ran.append, "third")
            defer(fails, "fourth")
    assert ran == ["fourth", "third", "second", "first"]
    assert [f.error for f in defer.failures] == ["OSError: fourth is busy", "OSError: second is busy"]
    assert [f.what for f in defer.failures] == ["test_all_run_last_first_and_every_failure_is_kept.<locals>.fails"
                                                f"('{n}')" for n in ("fourth", "second")]
    assert all("Traceback" in f.traceback and "in fails" in f.traceback for f in defer.failures)
    assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
        f"cleanup {i} of 4 failed: {f.what}" for i, f in zip((1, 3), defer.failures)]
    assert defer.pending() == []


def test_an_exception_in_the_block_still_cleans_up():
    ran = []
    try:
        with Cleanup() as defer:
            defer(ran.append, "undone")
            raise EOFError("zygote died")
    except EOFError:
        pass
    assert ran == ["undone"] and defer.failures == []


# A cleanup step that is sent SIGINT (twice with "twice") while it runs.  It
# starts with Python's own SIGINT handler, as under an interactive shell: a
# background job of a non-interactive shell (a CI script, `cmd &`) inherits
# SIGINT ignored, Python then leaves it ignored, and so does the redelivery.
SIGNALLED = """
import os, signal, sys, time
from harness.cleanup import Cleanup
signal.signal(signal.SIGINT, signal.SIG_IGN if sys.argv[2:] == ["ignored"] else signal.default_int_handler)
times = int(sys.argv[1])

def step(name):
    for _ in range(times):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
    print("step", name, "done", flush=True)

try:
    with Cleanup() as defer:
        defer(print, "last step done", flush=True)
        defer(step, "swapoff")
except KeyboardInterrupt:
    print("KeyboardInterrupt after cleanup", flush=True)
"""


def signalled(times, *how):
    return subprocess.run([sys.executable, "-c", SIGNALLED, str(times), *how], cwd=REPO, capture_output=True,
                          text=True, timeout=30)


def test_a_signal_during_cleanup_waits_for_it():
    proc = signalled(1)
    assert proc.stdout.splitlines() == ["step swapoff done", "last step done", "KeyboardInterrupt after cleanup"]
    assert "SIGINT deferred until cleanup is done" in proc.stderr
    assert proc.returncode == 0


def test_a_signal_the_caller_ignored_stays_ignored_after_cleanup():
    proc = signalled(1, "ignored")
    assert proc.stdout.splitlines() == ["step swapoff done", "last step done"]
    assert proc.returncode == 0


def test_a_second_signal_abandons_it_and_says_what_is_left():
    proc = signalled(2)
    assert proc.returncode == 128 + signal.SIGINT
    assert proc.stdout == ""
    assert "SIGINT again: cleanup abandoned; left undone: print('last step done')" in proc.stderr


def test_sigterm_unwinds_a_block_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(runner.Interrupted, match="SIGTERM"):
        with runner.unwinding_on_term():
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pause()  # not reached: the handler raises first
    assert signal.getsignal(signal.SIGTERM) is before
