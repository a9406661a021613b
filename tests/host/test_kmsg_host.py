"""The watcher on this machine's real /dev/kmsg.

Injects fake reports by writing to /dev/kmsg (root only).  Each line names a function
made of a unique marker, so nothing else in the log can match.  Written records get
facility "user" (devkmsg_write()), which the watcher ignores unless user_records=True:
that is checked too.
"""
import os
import threading
import time
import uuid

import pytest

from harness.kmsg import KmsgWatcher

KMSG = "/dev/kmsg"
DEADLINE = 5.0  # seconds: correctness only here; the latency goal is benchmarks/kmsg_latency.py


@pytest.fixture(autouse=True)
def need_kmsg():
    if os.geteuid() != 0 or not os.access(KMSG, os.R_OK | os.W_OK):
        pytest.skip("needs root and a readable, writable /dev/kmsg")


def marker():
    return "ksmh_test_" + uuid.uuid4().hex[:12]


def inject(function, level=4):
    with open(KMSG, "w") as f:
        f.write(f"<{level}>WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 {function}+0x0/0x1\n")


def wait_for(condition):
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def ours(crashes, function):
    return [c for c in crashes if function in c.title]


def test_injected_report_is_seen_with_its_title():
    fn = marker()
    noticed = threading.Event()
    with KmsgWatcher(user_records=True, on_crash=lambda c: fn in c.title and noticed.set()) as watcher:
        inject(fn)
        assert noticed.wait(DEADLINE)
        (crash,) = ours(watcher.crashes(), fn)
        assert watcher.first_crash_monotonic is not None
    assert (crash.kind, crash.title) == ("WARNING", f"WARNING in {fn}")
    assert crash.seq is not None and fn in crash.lines[0]
    assert any(r.seq == crash.seq and r.facility_name == "user" for r in watcher.records())


def test_records_before_start_are_context_only():
    before, after = marker(), marker()
    inject(before)
    with KmsgWatcher(user_records=True) as watcher:
        assert any(before in r.text for r in watcher.context)
        inject(after)
        assert wait_for(lambda: ours(watcher.crashes(), after))
        assert ours(watcher.crashes(), before) == []
        assert not any(before in r.text for r in watcher.records())
        assert not any(after in r.text for r in watcher.context)


def test_user_space_records_are_not_reports_by_default():
    fn = marker()
    with KmsgWatcher() as watcher:
        inject(fn)
        assert wait_for(lambda: any(fn in r.text for r in watcher.records()))
        assert ours(watcher.crashes(), fn) == []


def test_reports_arrive_in_order():
    fns = [marker() for _ in range(5)]
    with KmsgWatcher(user_records=True) as watcher:
        for fn in fns:
            inject(fn)
        assert wait_for(lambda: len([c for c in watcher.crashes() if "ksmh_test_" in c.title]) >= 5)
        titles = [c.title for c in watcher.crashes() if "ksmh_test_" in c.title]
    assert titles == [f"WARNING in {fn}" for fn in fns]
