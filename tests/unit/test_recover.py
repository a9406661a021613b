"""recovery.recover: a journal undone newest first across kinds, entries kept
until their resource is gone, every item tried, restore idempotent."""
from types import SimpleNamespace

import pytest

from harness import faultinject, recovery, runner, swap
from harness.errors import CleanupError
from harness.journal import Journal

ARMED = faultinject.Armed(block="loop3", debugfs="/sys/kernel/debug", mounted_debugfs=False,
                          previous={"probability": "0"})
SECOND = faultinject.Armed(block="loop3", debugfs="/sys/kernel/debug", mounted_debugfs=False,
                           previous={"probability": "100"}, previous_make_it_fail="1")
DEV = swap.SwapDevice(kind="file", device="/dev/loop3", size_bytes=1 << 20, priority=32767,
                      backing_file="/tmp/x/swapfile", mount_dir="/tmp/x")


class Recorder:
    """Stands in for the kernel interfaces; records what was undone, in order."""

    def __init__(self, failing=()):
        self.done = []
        self.failing = failing

    def __call__(self, what):
        def undo(obj):
            if what in self.failing:
                raise OSError(f"{what} busy")
            self.done.append((what, obj))
        return undo


def context(rec):
    return SimpleNamespace(swap=SimpleNamespace(remove_stale=rec("swap")),
                           faults=SimpleNamespace(remove_stale=rec("faultinject")),
                           knobs=SimpleNamespace(restore=rec("knobs")))


def journal_with_double_arm(tmp_path):
    j = Journal(tmp_path)
    j.begin({"run": "0"})
    j.add("swap", swap.to_journal(DEV))
    j.add("faultinject", faultinject.to_journal(ARMED))
    j.add("faultinject", faultinject.to_journal(SECOND))  # armed again: its "previous" is the first arm
    return j


def test_newest_first_across_kinds_then_knobs(tmp_path):
    rec = Recorder()
    j = journal_with_double_arm(tmp_path)
    assert recovery.recover(context(rec), j) == []
    assert rec.done == [("faultinject", SECOND), ("faultinject", ARMED), ("swap", DEV), ("knobs", {"run": "0"})]
    assert j.data["entries"] == []


def test_what_fails_stays_journaled_and_the_rest_is_done(tmp_path):
    rec = Recorder(failing=("swap",))
    j = journal_with_double_arm(tmp_path)
    failures = recovery.recover(context(rec), j)
    assert [f.error for f in failures] == ["OSError: swap busy"]
    assert [w for w, _ in rec.done] == ["faultinject", "faultinject", "knobs"]
    assert [e["kind"] for e in Journal(tmp_path).stale()["entries"]] == ["swap"]


def test_restore_twice(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "preflight", lambda roots: None)
    rec = Recorder(failing=("swap",))
    monkeypatch.setattr(runner, "RunContext", lambda *a: context(rec))
    lock = SimpleNamespace(hold=lambda wait: __import__("contextlib").nullcontext())
    journal_with_double_arm(tmp_path)
    said = []
    with pytest.raises(CleanupError, match=r"1 cleanup step\(s\) failed: remove swap /dev/loop3: OSError: swap busy; "
                                           r"the journal keeps what is left"):
        runner.restore(journal=Journal(tmp_path), say=said.append, lock=lock)
    rec.failing = ()
    runner.restore(journal=Journal(tmp_path), say=said.append, lock=lock)
    runner.restore(journal=Journal(tmp_path), say=said.append, lock=lock)
    assert said == [f"restored KSM knobs and removed 1 swap device(s), 0 cgroup(s), 0 fault injection(s) and 0 "
                    f"stuck process(es) left by "
                    f"run pid {__import__('os').getpid()}",
                    f"nothing to restore: {tmp_path}/journal.json does not exist (no run was interrupted)"]
