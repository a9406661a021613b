"""Read the kernel log as it grows, and notice kernel reports while a scenario runs.

/dev/kmsg (kernel/printk/printk.c, Documentation/ABI/testing/dev-kmsg) gives one record
per read(): "PRI,SEQ,USEC,FLAGS[,...];text\\n" and then " KEY=value\\n" lines.  PRI is
facility << 3 | level.  Text bytes < 0x20 or >= 0x7f are escaped as \\xNN.  Records
that user space writes to /dev/kmsg get facility 1 (user) unless they name another,
never 0 (devkmsg_write()), which tells them from the kernel's own messages.  A reader
that falls behind the ring buffer gets EPIPE once and continues at the oldest record
still there; a nonblocking read with nothing new gets EAGAIN; poll() wakes on a new
record.  lseek(SEEK_END) moves to the end.  With kernel.dmesg_restrict=1 opening it
needs CAP_SYSLOG.

For a VM, `path` may instead be a serial console log file that qemu writes
(`-serial file:console.log`): it is tailed line by line.
"""
import errno
import logging
import os
import select
import stat
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, List, Mapping, Optional

from .crash import LogLine, Scanner, parse_line
from .errors import CannotRun, KernelError
from .results import Crash

log = logging.getLogger("ksm-harness")

LEVELS = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
FACILITIES = ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron",
              "authpriv", "ftp", "res0", "res1", "res2", "res3") + tuple(f"local{i}" for i in range(8))
READ_SIZE = 64 * 1024  # > CONSOLE_EXT_LOG_MAX (8 KiB): a smaller buffer makes read() fail with EINVAL
FILE_POLL_SECONDS = 0.01  # how often a console log file is checked for new lines


@dataclass(frozen=True)
class Record:
    """One kernel log record."""

    seq: Optional[int]  # /dev/kmsg sequence number; None for a console log line
    usec: Optional[int]  # time stamp, microseconds since boot; None when not logged
    level: Optional[int]  # 0 (emerg) .. 7 (debug); None when not logged
    facility: Optional[int]  # 0 = kernel, 1 = user space; None when not known (console line)
    text: str  # the message, unescaped (several lines if the kernel logged a "\n")
    fields: Mapping[str, str] = field(default_factory=dict)  # " KEY=value" lines: SUBSYSTEM, DEVICE
    raw: str = ""  # the console log line as written; "" for /dev/kmsg records

    @property
    def level_name(self):
        return LEVELS[self.level] if self.level is not None else None

    @property
    def facility_name(self):
        if self.facility is None:
            return None
        return FACILITIES[self.facility] if self.facility < len(FACILITIES) else str(self.facility)

    def lines(self) -> List[str]:
        """The record as `dmesg` shows it: "[   12.345678] text", one entry per line of text."""
        if self.raw:
            return [self.raw]
        stamp = f"[{self.usec // 1_000_000:5d}.{self.usec % 1_000_000:06d}] " if self.usec is not None else ""
        return [stamp + part for part in self.text.split("\n")]


def parse_record(data: bytes) -> Record:
    """Parse one record as read() from /dev/kmsg."""
    text = data.decode("utf-8", "replace").rstrip("\n")
    head, sep, rest = text.partition(";")
    parts = head.split(",")
    if not sep or len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
        raise KernelError(f"/dev/kmsg: cannot parse record {data[:80]!r}")
    pri, seq, usec = (int(p) for p in parts[:3])
    body = rest.split("\n")
    fields = dict(line[1:].partition("=")[::2] for line in body[1:] if line.startswith(" ") and "=" in line)
    message = parse_line(f"{pri},{seq},{usec},-;{body[0]}")
    return Record(seq, usec, pri & 7, pri >> 3, "\n".join(m.text for m in message), fields)


def _console_record(raw: str) -> Record:
    """A serial console / log file line as a Record (its kmsg header or time stamp parsed)."""
    parsed = parse_line(raw)
    first = parsed[0] if parsed else LogLine(raw, raw, 0)
    facility = None if first.kernel is None else (0 if first.kernel else 1)
    return Record(first.seq, first.usec, None, facility, "\n".join(p.text for p in parsed), raw=first.raw)


class KmsgWatcher:
    """Collects kernel log records from start() on and finds kernel reports among them.

        with KmsgWatcher() as kmsg:      # start(): what is logged before is context only
            run_scenario()
            crashes = kmsg.crashes()

    A background thread waits in poll() on /dev/kmsg, so a report is noticed within a few
    milliseconds: `first_crash_monotonic` is time.monotonic() at that moment, and
    `on_crash(crash)` is called once per report, from that thread, with the report as
    read so far.  Records user space wrote to /dev/kmsg never count as reports unless
    `user_records` is true: a test seam only (tests inject fake reports that way); the
    runner never sets it, so a program that writes "WARNING:" to /dev/kmsg fails nothing.
    """

    def __init__(self, path="/dev/kmsg", on_crash: Optional[Callable[[Crash], None]] = None,
                 user_records=False):
        self.path = str(path)
        self.on_crash = on_crash
        self.user_records = user_records
        self.first_crash_monotonic: Optional[float] = None  # when the first report was noticed
        self.dropped = 0  # records overwritten in the ring buffer before they could be read
        self.overruns = 0  # EPIPE from read(): the ring buffer overwrote records not yet read
        self._context: List[Record] = []
        self._records: List[Record] = []
        self._scanner = Scanner()
        self._reported = 0  # reports already passed to on_crash
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._device = False  # /dev/kmsg (True) or a console log file (False)
        self._partial = b""  # console log: a line still being written
        self._next_seq: Optional[int] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._wake_r = self._wake_w = None

    # -- public ------------------------------------------------------------------------------

    def start(self):
        """Mark "now": records logged before are context, records after are watched."""
        if self._fd is not None:
            raise KernelError(f"{self.path}: watcher already started")
        self._fd = self._open(self.path)
        self._device = stat.S_ISCHR(os.fstat(self._fd).st_mode)
        if self._device:
            os.lseek(self._fd, 0, os.SEEK_END)
            context = self._read_context()
            self._drain()
            if self._records:  # logged between lseek() and the context read: not context
                first = self._records[0].seq
                context = [r for r in context if r.seq < first]
            self._context = context
        else:
            self._context = [_console_record(line) for line in self._read_file_lines(self._fd, final=False)]
            # Kernel lines on this console carry time stamps: later lines without are user space.
            self._scanner = Scanner(marked=any(r.facility == 0 for r in self._context))
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="kmsg-watcher", daemon=True)
        self._thread.start()
        return self

    @property
    def context(self) -> List[Record]:
        """Records that were in the log before start() (context, never a failure)."""
        return list(self._context)

    def records(self) -> List[Record]:
        """Every record logged since start(), up to now."""
        self._drain_now()
        with self._lock:
            return list(self._records)

    def crashes(self) -> List[Crash]:
        """Kernel reports among the records since start(), in log order.

        Crash.line is the 1-based index of the report's first record among records()
        (for a console log file: its line in the file); Crash.seq its /dev/kmsg seq.
        """
        self._drain_now()
        with self._lock:
            return self._scanner.crashes()

    def lost(self) -> str:
        """"" when no record was lost since start(), else what was (for a result)."""
        if not self.overruns and not self.dropped:
            return ""
        return (f"{self.path}: {self.overruns} ring-buffer overrun(s) (EPIPE from read), {self.dropped} "
                f"records lost that were known: a kernel report may be among them; a larger log_buf_len= "
                f"or a quieter log avoids it")

    def stop(self):
        """Stop the thread, read what is left, close the log.  Safe to call twice."""
        if self._thread is not None:
            self._stop.set()
            os.write(self._wake_w, b"x")
            self._thread.join()
            self._thread = None
        if self._fd is not None:
            self._drain(final=True)
            os.close(self._fd)
            self._fd = None
        for fd in (self._wake_r, self._wake_w):
            if fd is not None:
                os.close(fd)
        self._wake_r = self._wake_w = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    # -- reading -------------------------------------------------------------------------------

    @staticmethod
    def _open(path):
        try:
            return os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except (PermissionError, OSError) as exc:
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise CannotRun(
                    f"cannot read the kernel log {path}: {exc.strerror} ({_restrict_hint()}): "
                    "run ksm-harness as root (CAP_SYSLOG), or allow it with `sysctl kernel.dmesg_restrict=0`"
                ) from exc
            if exc.errno == errno.ENOENT:
                raise CannotRun(
                    f"cannot read the kernel log: {path} does not exist (no /dev/kmsg before Linux 3.5, "
                    "or devtmpfs not mounted); for a VM, give the serial console log file instead"
                ) from exc
            raise CannotRun(f"cannot read the kernel log {path}: {exc.strerror}") from exc

    def _read_context(self) -> List[Record]:
        fd = self._open(self.path)
        try:
            return list(self._read_records(fd))
        finally:
            os.close(fd)

    def _read_records(self, fd):
        """Yield each record readable now from a /dev/kmsg fd."""
        while True:
            try:
                data = os.read(fd, READ_SIZE)
            except BlockingIOError:
                return
            except BrokenPipeError:
                # printk's ring buffer overwrote the record we were at: devkmsg_read()
                # returns -EPIPE once and moves this reader to the oldest record left.
                # A report may have been among the lost ones: counted, and _drain()
                # adds the gap in sequence numbers when it knows where it was.
                if fd == self._fd:
                    self.overruns += 1
                continue
            except InterruptedError:
                continue
            if not data:
                return
            yield parse_record(data)

    def _read_file_lines(self, fd: int, final) -> List[str]:
        data = self._partial
        while True:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                break
            data += chunk
        lines = data.split(b"\n")
        self._partial = b"" if final else lines.pop()
        if final and lines and lines[-1] == b"":
            lines.pop()
        return [line.decode("utf-8", "replace") for line in lines]

    def _drain(self, final=False):
        """Read every new record, feed the scanner; report new crashes.  Returns them."""
        with self._lock:
            if self._fd is None:
                return
            if self._device:
                new = list(self._read_records(self._fd))
                for record in new:
                    if self._next_seq is not None and record.seq > self._next_seq:
                        gap = record.seq - self._next_seq
                        self.dropped += gap
                        log.warning("%s: %d records lost (ring buffer overwritten)", self.path, gap)
                    self._next_seq = record.seq + 1
            else:
                new = [_console_record(line) for line in self._read_file_lines(self._fd, final)]
            first_index = len(self._context) if not self._device else 0
            for record in new:
                self._records.append(record)
                self._feed(record, first_index + len(self._records))
            fresh = []
            if self._scanner.count > self._reported:
                if self.first_crash_monotonic is None:
                    self.first_crash_monotonic = time.monotonic()
                fresh = self._scanner.crashes(self._reported)
                self._reported = self._scanner.count
        if self.on_crash:
            for crash in fresh:
                self.on_crash(crash)

    def _feed(self, record, index):
        if record.facility not in (None, 0) and not self.user_records:
            return  # written by user space, not printed by the kernel
        if record.raw:  # console log line: the scanner judges its prefixes itself
            lines = parse_line(record.raw, index)
        else:
            lines = [LogLine(raw, text, index, True, record.usec, record.seq)
                     for raw, text in zip(record.lines(), record.text.split("\n"))]
        for line in lines:
            if line.kernel is False:  # only with user_records
                line = LogLine(line.raw, line.text, line.lineno, True, line.usec, line.seq)
            self._scanner.feed_line(line)

    def _drain_now(self):
        if self._fd is not None:
            self._drain()

    def _run(self):
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        if self._device:
            poller.register(self._fd, select.POLLIN | select.POLLPRI)
        timeout = None if self._device else FILE_POLL_SECONDS * 1000
        while not self._stop.is_set():
            poller.poll(timeout)
            if self._stop.is_set():
                return
            try:
                self._drain()
            except Exception:  # keep watching: a bad record must not blind the harness
                log.exception("%s: reading the kernel log failed", self.path)


def _restrict_hint(path="/proc/sys/kernel/dmesg_restrict"):
    try:
        with open(path) as f:
            value = f.read().strip()
    except OSError:
        return "is kernel.dmesg_restrict set?"
    return f"kernel.dmesg_restrict={value}"
