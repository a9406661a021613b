"""lock.py: the one-driver-per-machine lock, on a tmp_path file."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import LockBusy
from harness.lock import LOCK_PATH, MachineLock

REPO = Path(__file__).resolve().parents[2]

# Takes the lock, says so, then holds it until stdin closes.
HOLDER = """
import sys
from harness.lock import MachineLock
MachineLock(sys.argv[1]).acquire(wait=False)
print("locked", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def holder(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "lock")], cwd=REPO, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        proc.kill()
        proc.wait()


def test_acquire_release(tmp_path):
    lock = MachineLock(tmp_path / "dir" / "lock")
    lock.acquire(wait=False)
    assert (tmp_path / "dir" / "lock").read_text() == f"{os.getpid()}\n"
    lock.release()
    lock.release()  # idempotent
    with MachineLock(tmp_path / "dir" / "lock").hold(wait=False):
        pass


def test_busy_names_holder_and_path(tmp_path, holder):
    with pytest.raises(LockBusy, match=rf"another ksm-harness \(pid {holder.pid}\) holds {tmp_path}/lock"):
        MachineLock(tmp_path / "lock").acquire(wait=False)


def test_waits_for_holder(tmp_path, holder):
    seen = []

    def on_wait(pid):
        seen.append(pid)
        holder.stdin.close()  # the holder exits: its flock goes with its file

    with MachineLock(tmp_path / "lock").hold(wait=True, on_wait=on_wait):
        assert seen == [str(holder.pid)]
        assert (tmp_path / "lock").read_text() == f"{os.getpid()}\n"


def test_killed_holder_frees_it(tmp_path, holder):
    holder.kill()
    holder.wait()
    with MachineLock(tmp_path / "lock").hold(wait=False):
        pass


def test_path_does_not_move_with_the_state_dir(tmp_path):
    out = subprocess.run([sys.executable, "-c", "from harness import lock, journal; print(lock.LOCK_PATH, journal.STATE_DIR)"],
                         cwd=REPO, env={**os.environ, "KSM_HARNESS_STATE": str(tmp_path)}, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == [str(LOCK_PATH), str(tmp_path)]
    assert LOCK_PATH == Path("/run/lock/ksm-harness.lock")


def test_programs_started_by_the_holder_do_not_keep_it(tmp_path):
    lock = MachineLock(tmp_path / "lock")
    lock.acquire(wait=False)
    child = subprocess.Popen(["sleep", "30"])  # O_CLOEXEC: the exec'd program has no copy of the fd
    try:
        lock.release()
        with MachineLock(tmp_path / "lock").hold(wait=False):
            pass
    finally:
        child.kill()
        child.wait()
