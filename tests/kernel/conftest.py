"""Fixtures for tests that drive KSM on the running kernel (root only).

`ksm` takes the machine lock (harness/lock.py: one KSM driver at a time,
also against a `ksm-harness run` elsewhere on the machine), snapshots the
knobs and checks at teardown that they end exactly as they began.  Tests
that start `ksm-harness run` as a subprocess must not use it (the run would
wait for the lock forever): test_cli_run.py's `machine` takes the lock only
while it looks at the machine, before and after.
"""
import os

import pytest

from harness import probe
from harness.knobs import Knobs
from harness.lock import MachineLock
from harness.swap import SwapManager
from harness.workers import WorkerPool

pytestmark = pytest.mark.kernel


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/kernel" in str(item.fspath):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture
def ksm():
    knobs = Knobs()
    if os.geteuid() != 0:
        pytest.skip("needs root: these tests drive /sys/kernel/mm/ksm")
    if not knobs.exists():
        pytest.skip("this kernel has no KSM (/sys/kernel/mm/ksm)")
    lock = MachineLock()
    lock.acquire()
    before = knobs.snapshot()
    try:
        knobs.write("run", "2")
        knobs.write("pages_to_scan", "5000")
        knobs.write("sleep_millisecs", "10")
        yield knobs
    finally:
        try:
            knobs.restore(before)
            assert knobs.snapshot() == before, "knobs did not end as they began"
        finally:
            lock.release()


@pytest.fixture
def pool():
    with WorkerPool() as p:
        yield p


@pytest.fixture
def swapfile(ksm):  # under the machine lock that `ksm` holds
    mgr = SwapManager()
    why = mgr.available("file")
    if why:
        pytest.skip(f"no swapfile swap here: {why}")
    dev = mgr.create("file", 256 << 20)
    try:
        yield dev
    finally:
        mgr.remove(dev)


@pytest.fixture
def machine():
    """The machine as found (harness/probe.py: knobs, swap, loop devices,
    mounts, cgroups, fault injection, processes, journal); checked again
    after.  The lock is held only while looking: the run under test takes it."""
    if os.geteuid() != 0 or not Knobs().exists():
        pytest.skip("needs root and KSM")
    with MachineLock().hold():
        before = probe.take()
    yield Knobs()
    with MachineLock().hold():
        assert probe.differences(before, probe.take()) == []
