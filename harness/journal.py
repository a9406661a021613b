"""One driver at a time, and a journal of what a run changed.

KSM is global kernel state: a lock file (flock) keeps two runs from driving
it at once.  Before a run changes anything it writes the knob values it found
and, as it makes them, every swap device, cgroup and fault-injection setting,
to a journal on disk.  A run that ends normally removes the journal.  A run
killed with SIGKILL leaves it; the next start (or `ksm-harness restore`) puts
everything back from it.
"""
import fcntl
import json
import os
from pathlib import Path

from .errors import LockBusy

STATE_DIR = Path(os.environ.get("KSM_HARNESS_STATE", "/run/ksm-harness"))


class Journal:
    def __init__(self, state_dir=STATE_DIR):
        self.dir = Path(state_dir)
        self.path = self.dir / "journal.json"
        self.lock_path = self.dir / "lock"
        self._lock_fd = None
        self.data = None

    def lock(self, wait=True, on_wait=None):
        """Take the global lock; with wait=False raise LockBusy at once."""
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode().strip() or "?"
            if not wait:
                os.close(fd)
                raise LockBusy(f"another ksm-harness run (pid {holder}) is driving KSM; "
                               f"wait for it or drop --no-wait") from None
            if on_wait:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = fd

    def unlock(self):
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def stale(self):
        """The journal a killed run left behind, or None."""
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except ValueError:
            return {"knobs": {}, "swap": [], "cgroups": [], "faultinject": [], "corrupt": True}

    def begin(self, knobs):
        self.data = {"pid": os.getpid(), "knobs": knobs, "swap": [], "cgroups": [], "faultinject": []}
        self._save()

    def add(self, kind, entry):
        self.data[kind].append(entry)
        self._save()

    def remove(self, kind, entry):
        if entry in self.data[kind]:
            self.data[kind].remove(entry)
            self._save()

    def finish(self):
        self.path.unlink(missing_ok=True)
        self.data = None

    def _save(self):
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
