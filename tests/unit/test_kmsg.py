"""harness.kmsg: /dev/kmsg records, and the watcher over a console log file (a fake kernel log).

The real /dev/kmsg is exercised in tests/host/test_kmsg_host.py.
"""
import errno
import os
import re
import threading
from pathlib import Path

import pytest

from harness import kmsg
from harness.errors import CannotRun, KernelError
from harness.kmsg import KmsgWatcher, parse_record

LOGS = Path(__file__).resolve().parent.parent / "data" / "logs"


def test_parse_record():
    r = parse_record(b"4,812,66123456,-;WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 f+0x0/0x1\n")
    assert (r.seq, r.usec, r.level, r.facility, r.level_name, r.facility_name) == (
        812, 66123456, 4, 0, "warning", "kern")
    assert r.lines() == ["[   66.123456] WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 f+0x0/0x1"]


def test_parse_record_escapes_fields_and_user_facility():
    r = parse_record(b"14,9,10,-,caller=T1;a\\x09b\\x0ac \\xc3\\xa9\n SUBSYSTEM=acpi\n DEVICE=+acpi:PNP0A08:00\n")
    assert (r.level_name, r.facility_name, r.text) == ("info", "user", "a\tb\nc \u00e9")
    assert r.fields == {"SUBSYSTEM": "acpi", "DEVICE": "+acpi:PNP0A08:00"}
    assert r.lines() == ["[    0.000010] a\tb", "[    0.000010] c \u00e9"]


def test_parse_record_garbage():
    with pytest.raises(KernelError, match="cannot parse record"):
        parse_record(b"not a record")


def test_every_record_of_a_real_dump_parses():
    for line in (LOGS / "host-6.18-kmsg-dump.log").read_bytes().split(b"\n"):
        if line and not line.startswith(b" "):
            assert parse_record(line + b"\n").text


class FakeReads:
    """os.read of a /dev/kmsg fd: one record per call, then the errors devkmsg_read() gives."""

    def __init__(self, *events):
        self.events = list(events)

    def __call__(self, fd, size):
        if not self.events:
            raise BlockingIOError(errno.EAGAIN, "again")
        event = self.events.pop(0)
        if isinstance(event, Exception):
            raise event
        return event


def test_overwritten_records_are_counted_and_reading_goes_on(monkeypatch, tmp_path):
    watcher = KmsgWatcher(tmp_path / "x")
    watcher._fd, watcher._device, watcher._next_seq = 99, True, 10
    monkeypatch.setattr(kmsg.os, "read", FakeReads(
        b"6,10,1,-;ten\n", BrokenPipeError(errno.EPIPE, "overwritten"), b"6,15,2,-;fifteen\n",
        b"4,16,3,-;WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 f+0x0/0x1\n"))
    watcher._drain()
    assert [r.seq for r in watcher._records] == [10, 15, 16]
    assert watcher.dropped == 4 and watcher.overruns == 1
    assert watcher.lost().startswith(f"{tmp_path / 'x'}: 1 ring-buffer overrun(s) (EPIPE from read), 4 records lost")
    assert [c.title for c in watcher._scanner.crashes()] == ["WARNING in f"]
    assert watcher.first_crash_monotonic is not None


def test_overrun_before_any_record_is_still_reported(monkeypatch, tmp_path):
    watcher = KmsgWatcher(tmp_path / "x")
    watcher._fd, watcher._device = 99, True
    monkeypatch.setattr(kmsg.os, "read", FakeReads(BrokenPipeError(errno.EPIPE, "overwritten"), b"6,15,2,-;x\n"))
    watcher._drain()
    assert (watcher.overruns, watcher.dropped) == (1, 0) and "1 ring-buffer overrun" in watcher.lost()


def test_user_records_are_not_reports_by_default(monkeypatch, tmp_path):
    warning = b"12,16,3,-;WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 not_the_kernel+0x0/0x1\n"  # facility 1: user
    for seam, titles in ((False, []), (True, ["WARNING in not_the_kernel"])):
        watcher = KmsgWatcher(tmp_path / "x", user_records=seam)
        watcher._fd, watcher._device = 99, True
        monkeypatch.setattr(kmsg.os, "read", FakeReads(warning))
        watcher._drain()
        assert [c.title for c in watcher._scanner.crashes()] == titles
        assert watcher.lost() == ""


def test_live_records_keep_interleaved_reports_apart_by_caller(monkeypatch, tmp_path):
    """The caller-id fixture as /dev/kmsg gives it (",caller=T100" in each
    record's header): the live watcher splits the two reports as scan-log does."""
    records = []
    for seq, line in enumerate((LOGS / "caller-id-interleaved.log").read_text().splitlines()):
        secs, micros, caller, text = re.match(r"\[\s*(\d+)\.(\d{6})\]\[\s*(\w+)\] (.*)", line).groups()
        usec = int(secs) * 1_000_000 + int(micros)
        records.append(f"4,{seq},{usec},-,caller={caller};{text}\n".encode())
    watcher = KmsgWatcher(tmp_path / "x")
    watcher._fd, watcher._device = 99, True
    monkeypatch.setattr(kmsg.os, "read", FakeReads(*records))
    watcher._drain()
    warning, oops = watcher._scanner.crashes()
    assert (warning.title, oops.title) == ("WARNING in remove_stable_node", "BUG: unable to handle kernel NULL pointer dereference in get_ksm_page")
    assert all(record.caller in ("T100", "T200", "T1") for record in watcher._records)
    assert not warning.corrupted and not oops.corrupted


def test_permission_error_says_what_to_do(monkeypatch, tmp_path):
    def refuse(path, flags):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(kmsg.os, "open", refuse)
    with pytest.raises(CannotRun, match=r"dmesg_restrict.*run ksm-harness as root"):
        KmsgWatcher(tmp_path / "kmsg").start()


def test_missing_log_says_what_to_do(tmp_path):
    with pytest.raises(CannotRun, match="serial console log"):
        KmsgWatcher(tmp_path / "kmsg").start()


def append(path, text):
    with open(path, "a", newline="") as f:
        f.write(text)


def test_console_log_boot_records_are_context(tmp_path):
    """The 6.1 guests' boot-time topology WARNING is logged before start(): context only."""
    console = tmp_path / "console.log"
    boot = (LOGS / "qemu-6.1-boot-topology-warning.log").read_bytes()
    console.write_bytes(boot)
    noticed = threading.Event()
    with KmsgWatcher(console, on_crash=lambda c: noticed.set()) as watcher:
        assert any("WARNING: CPU: 1 PID: 0" in r.raw for r in watcher.context)
        assert watcher.crashes() == [] and watcher.first_crash_monotonic is None
        append(console, (LOGS / "ksm-warning.log").read_text())
        assert noticed.wait(5)
        (crash,) = watcher.crashes()
    assert crash.title == "WARNING in remove_stable_node"
    assert crash.line == boot.count(b"\n") + 1  # its line in the console file
    assert watcher.first_crash_monotonic is not None
    assert len(watcher.records()) == len((LOGS / "ksm-warning.log").read_text().splitlines())


def test_console_log_partial_line_waits_for_its_end(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("")
    watcher = KmsgWatcher(console).start()
    try:
        append(console, "[    1.000000] kernel BUG at mm/ks")
        assert watcher.records() == [] and watcher.crashes() == []
        append(console, "m.c:1!\r\n")
        assert [c.title for c in watcher.crashes()] == ["kernel BUG at mm/ksm.c:1"]
    finally:
        watcher.stop()
    watcher.stop()  # twice is fine


def test_console_log_user_space_output_is_not_a_report(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("[    0.100000] Run /init as init process\r\n")
    with KmsgWatcher(console) as watcher:
        append(console, "kernel BUG at mm/ksm.c:1!\r\n")
        assert watcher.crashes() == []
        assert watcher.records()[0].facility is None


def test_start_twice_is_an_error(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("")
    with KmsgWatcher(console) as watcher:
        with pytest.raises(KernelError, match="already started"):
            watcher.start()


def test_fd_and_thread_are_released(tmp_path):
    console = tmp_path / "console.log"
    console.write_text("")
    before = len(os.listdir("/proc/self/fd"))
    with KmsgWatcher(console):
        pass
    assert len(os.listdir("/proc/self/fd")) == before
    assert not [t for t in threading.enumerate() if t.name == "kmsg-watcher"]
