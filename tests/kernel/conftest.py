"""Fixtures for tests that drive KSM on the running kernel (root only).

`ksm` takes the harness's global lock (one KSM driver at a time, also
against a `ksm-harness run` elsewhere on the machine), snapshots the knobs
and checks at teardown that they end exactly as they began.
"""
import os

import pytest

from harness.journal import Journal
from harness.knobs import Knobs
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
    journal = Journal()
    journal.lock()
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
            journal.unlock()


@pytest.fixture
def pool():
    with WorkerPool() as p:
        yield p


@pytest.fixture
def swapfile():
    mgr = SwapManager()
    why = mgr.available("file")
    if why:
        pytest.skip(f"no swapfile swap here: {why}")
    dev = mgr.create("file", 256 << 20)
    try:
        yield dev
    finally:
        mgr.remove(dev)
