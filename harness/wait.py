"""Waiting on conditions with deadlines: the harness never sleeps a fixed time
hoping the kernel got there (ksmd's counters move only when it scans)."""
import time

from .errors import DeadlineExceeded


def wait_until(cond, timeout, what, interval=0.005, describe=None):
    """Poll cond() until it returns a true value (returned) or timeout seconds
    pass (DeadlineExceeded naming `what` and, if given, describe()'s state)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() >= deadline:
            state = f" ({describe()})" if describe else ""
            raise DeadlineExceeded(f"{what} did not hold within {timeout:g}s{state}")
        time.sleep(interval)
