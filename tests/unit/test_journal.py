"""journal.py: the one-driver lock and the journal of changes, in tmp_path."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import LockBusy
from harness.journal import Journal

REPO = Path(__file__).resolve().parents[2]

# Takes the lock, says so, then holds it until stdin closes.
HOLDER = """
import sys
from harness.journal import Journal
j = Journal(sys.argv[1])
j.lock(wait=False)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_lock_unlock(tmp_path):
    j = Journal(tmp_path / "state")
    j.lock(wait=False)
    assert (tmp_path / "state" / "lock").read_text() == f"{os.getpid()}\n"
    j.unlock()
    j.unlock()  # idempotent
    again = Journal(tmp_path / "state")
    again.lock(wait=False)
    again.unlock()


def test_lock_busy_names_holder(tmp_path, holder):
    with pytest.raises(LockBusy, match=rf"another ksm-harness run \(pid {holder.pid}\) is driving KSM"):
        Journal(tmp_path).lock(wait=False)


def test_lock_waits_for_holder(tmp_path, holder):
    seen = []

    def on_wait(pid):
        seen.append(pid)
        holder.stdin.close()  # the holder exits: its flock goes with its file

    j = Journal(tmp_path)
    j.lock(wait=True, on_wait=on_wait)
    assert seen == [str(holder.pid)]
    assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"
    j.unlock()


def test_begin_add_remove_finish(tmp_path):
    j = Journal(tmp_path)
    assert j.stale() is None
    j.begin({"run": "0", "merge_across_nodes": "1"})

    def on_disk():
        return json.loads((tmp_path / "journal.json").read_text())

    assert on_disk() == {"pid": os.getpid(), "knobs": {"run": "0", "merge_across_nodes": "1"}, "swap": [],
                         "cgroups": [], "faultinject": []}
    j.add("swap", {"path": "/tmp/x.swap", "kind": "file"})
    j.add("cgroups", "/sys/fs/cgroup/ksm-harness-1")
    assert on_disk()["swap"] == [{"path": "/tmp/x.swap", "kind": "file"}]
    j.remove("swap", {"path": "/tmp/x.swap", "kind": "file"})
    j.remove("swap", {"path": "never-added"})
    assert on_disk()["swap"] == [] and on_disk()["cgroups"] == ["/sys/fs/cgroup/ksm-harness-1"]
    j.finish()
    assert not (tmp_path / "journal.json").exists()
    assert j.stale() is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no .tmp left behind


KILLED = """
import os, sys
from harness.journal import Journal
j = Journal(sys.argv[1])
j.lock()
j.begin({"run": "1"})
j.add("faultinject", {"path": "/sys/kernel/debug/fail_make_request/probability", "old": "0"})
os.kill(os.getpid(), 9)
"""


def test_stale_after_kill(tmp_path):
    proc = subprocess.run([sys.executable, "-c", KILLED, str(tmp_path)], cwd=REPO, timeout=30)
    assert proc.returncode == -signal.SIGKILL
    stale = Journal(tmp_path).stale()
    assert stale == {"pid": stale["pid"], "knobs": {"run": "1"}, "swap": [], "cgroups": [],
                     "faultinject": [{"path": "/sys/kernel/debug/fail_make_request/probability", "old": "0"}]}
    j = Journal(tmp_path)
    j.lock(wait=False)  # the killed run's lock died with it
    j.unlock()


def test_corrupt_journal(tmp_path):
    (tmp_path / "journal.json").write_text('{"knobs": {"run"')
    assert Journal(tmp_path).stale() == {"knobs": {}, "swap": [], "cgroups": [], "faultinject": [],
                                         "corrupt": True}
