"""Tests that make swap devices, cgroups and kernel log records on this
machine hold the machine lock (harness/lock.py), so that they never run
beside a `ksm-harness run` (whose kmsg watcher would take their records for
its own).  None of them starts a `ksm-harness run` itself, which would wait
for this lock forever."""
import os

import pytest

from harness.lock import MachineLock


@pytest.fixture(autouse=True)
def machine_lock():
    if os.geteuid() != 0:
        yield  # the tests skip: nothing here touches the kernel without root
        return
    with MachineLock().hold(on_wait=lambda pid: print(f"waiting for ksm-harness pid {pid}")):
        yield
