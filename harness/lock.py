"""One KSM driver per machine: an flock on a fixed path.

KSM knobs, swap devices, memory cgroups, fault injection and debugfs are
machine-wide, so the lock lives at one path that no setting moves (the
journal's state directory can move with KSM_HARNESS_STATE; the lock cannot):
two runs with different state directories still take turns.  flock(2) locks
belong to the open file description (fs/locks.c flock_lock_inode()): the
kernel drops the lock when the holder dies, even by SIGKILL, so a killed run
never leaves the machine locked.  The file is opened O_CLOEXEC, so the
programs a holder starts (the zygote, swapoff, losetup) do not keep it.

    with MachineLock().hold(wait=True, on_wait=print):
        ...   # only this process writes KSM/swap/cgroup/debugfs state

The holder's pid is written into the file so that a waiter can say whom it
waits for.  A process that holds the lock must not wait for a child that
takes it too (a `ksm-harness run` started from a test holding it would wait
forever): take it only around direct use of the kernel interfaces.
"""
import contextlib
import fcntl
import os
from pathlib import Path

from .errors import LockBusy

# /run/lock is the FHS place for lock files (tmpfs, empty at boot).
LOCK_PATH = Path("/run/lock/ksm-harness.lock")


class MachineLock:
    def __init__(self, path=LOCK_PATH):
        self.path = Path(path)  # the lock file (tests use a tmp_path one)
        self._fd = None

    def acquire(self, wait=True, on_wait=None):
        """Take the lock; with wait=False raise LockBusy at once if it is
        held.  on_wait(pid) is called once before blocking."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: the directory may be world-writable (/run/lock is 1777)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            if not wait:
                os.close(fd)
                raise LockBusy(f"another ksm-harness (pid {holder}) holds {self.path} and is driving KSM; "
                               f"try again once it has finished") from None
            if on_wait:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self):
        """Drop the lock; a second call does nothing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    @contextlib.contextmanager
    def hold(self, wait=True, on_wait=None):
        self.acquire(wait, on_wait)
        try:
            yield self
        finally:
            self.release()
