"""A watchdog for one scenario: its deadline, or a kernel report, stops it at once.

While a scenario runs the runner's main thread blocks in many places: a
worker's reply (select() on its socket), a knob write (run=2 unmerges for
seconds), a read of /proc or /sys.  A check between steps never fires while
one of those hangs.  The watchdog is a thread that waits for the scenario's
deadline or for the kmsg watcher's on_crash; then it looks at what the busy
workers (and the main thread, if asleep in the kernel) are doing there and
sends SIGNAL to the main thread, again every RESEND seconds until taken.  Its
handler raises ScenarioStopped there: a blocking system call returns EINTR
and Python runs the handler (PEP 475), so the scenario unwinds into its
cleanup within milliseconds.  The one thing a signal cannot cut short is a
system call the main thread sleeps in uninterruptibly (TASK_UNINTERRUPTIBLE,
e.g. mmap_read_lock() in a /proc/PID/pagemap read of a process that holds
mmap_lock); the watchdog's own reads of /proc run in threads it can abandon
(read_abandonable()), so a diagnosis never hangs.
"""
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence, Tuple

from .errors import ScenarioStopped
from .results import Crash

SIGNAL = signal.SIGUSR1  # sent to the main thread to stop the scenario
READ_SECONDS = 2.0  # how long one /proc read of a diagnosis may block before it is abandoned
SETTLE_QUIET = 0.5  # a report is complete once the log stayed this many seconds without a new record
SETTLE_LIMIT = 5.0  # ... or after this many seconds at most
RESEND = 1.0  # seconds between two signals while the main thread has not taken the stop
NOT_RUN = "not run: the kernel crashed in"  # reason of the scenarios after a kernel that is no longer fit


def read_abandonable(path: Path, timeout: float = READ_SECONDS) -> Optional[str]:
    """The text of `path`, or None when it cannot be read within `timeout`.

    The read runs in a daemon thread: if the kernel blocks it for good (a
    process stuck with its mmap_lock held blocks readers of its /proc files in
    mmap_read_lock(), fs/proc/base.c), the thread is left behind, not the caller.
    """
    box = []

    def read():
        try:
            box.append(Path(path).read_text(errors="replace"))
        except OSError as exc:
            box.append(exc)

    reader = threading.Thread(target=read, name=f"read {path}", daemon=True)
    reader.start()
    reader.join(timeout)
    if not box or isinstance(box[0], OSError):
        return None
    return box[0]


@dataclass(frozen=True)
class InKernel:
    """Where one process is in the kernel, as /proc shows it."""

    pid: int
    name: str  # the worker's name: "a[0]"
    doing: str  # the command it was sent and has not answered ("touch"); "" when idle
    state: str  # /proc/PID/stat field 3: R, S, D (uninterruptible sleep), Z, ...; "?" if unreadable
    wchan: str  # /proc/PID/wchan: the kernel function it sleeps in ("0" when running)
    stack: Tuple[str, ...]  # /proc/PID/stack frames (root, CONFIG_STACKTRACE); () when unreadable
    worker: bool = True  # False: the harness's own main thread (its knob writes, its /proc reads)

    def text(self) -> str:
        doing = f" in {self.doing}" if self.doing else ""
        frames = ", ".join(f.split()[-1].split("+")[0] for f in self.stack[:6])
        stack = f", stack: {frames}" if frames else ""
        who = f"worker {self.name}" if self.worker else "the harness's main thread"
        return f"{who} (pid {self.pid}){doing}: state {self.state}, wchan {self.wchan}{stack}"


def stat_state(text: Optional[str]) -> str:
    """Field 3 of /proc/PID/stat (after the ")" that ends comm, which may hold spaces)."""
    if not text or ")" not in text:
        return "?"
    return text.rsplit(")", 1)[1].split()[0]


def in_kernel(pid: int, name: str, doing: str = "", proc: Path = Path("/proc"), worker: bool = True) -> InKernel:
    """What process (or thread) `pid` is doing in the kernel; each read bounded by READ_SECONDS."""
    base = Path(proc) / str(pid)
    stack = read_abandonable(base / "stack") or ""
    return InKernel(pid, name, doing, stat_state(read_abandonable(base / "stat")),
                    (read_abandonable(base / "wchan") or "?").strip() or "?",
                    tuple(line for line in stack.splitlines() if line.strip()), worker)


def workers_in_kernel(busy: Iterable[Tuple[str, int, str]], proc: Path = Path("/proc")) -> Tuple[InKernel, ...]:
    """in_kernel() of each busy worker: (name, pid, command) as WorkerPool.busy() gives them."""
    return tuple(in_kernel(pid, name, doing, proc) for name, pid, doing in busy)


def harness_in_kernel(proc: Path = Path("/proc")) -> Tuple[InKernel, ...]:
    """The harness's main thread when it sleeps uninterruptibly in the kernel
    (state D): a knob write that does not return (run=2 unmerges in the
    writer's context, run_store() -> unmerge_and_remove_all_rmap_items() in
    mm/ksm.c, taking each mm's mmap_lock) or a /proc read blocked on a
    worker's mmap_lock.  No signal reaches it there, so the kernel holds the
    scenario; () when it is anywhere else.  /proc/TID works for any thread."""
    main = in_kernel(threading.main_thread().native_id or 0, "", proc=proc, worker=False)
    return (main,) if main.state == "D" else ()


def settle(records: Callable[[], Sequence], quiet: float = SETTLE_QUIET, limit: float = SETTLE_LIMIT) -> None:
    """Wait until the kernel log stops growing (a report prints over many
    records), for at most `limit` seconds; `records` returns what was read so far."""
    end = time.monotonic() + limit
    seen, since = len(records()), time.monotonic()
    while time.monotonic() < end and time.monotonic() - since < quiet:
        time.sleep(0.05)
        now = len(records())
        if now != seen:
            seen, since = now, time.monotonic()


class Watchdog:
    """Stops the main thread's scenario at its deadline or at a kernel report.

        with Watchdog(deadline, timeout, busy=pool.busy) as dog:
            watcher.on_crash = dog.on_report
            run steps...            # raises ScenarioStopped at the deadline or a report

    busy() -> [(name, pid, command)] of the workers that owe a reply.
    Reports whose title matches one of `expected` (regexes) do not stop it.
    """

    def __init__(self, deadline: float, timeout: float, busy: Callable[[], Iterable[Tuple[str, int, str]]],
                 proc: Path = Path("/proc"), expected: Sequence[str] = (),
                 where: Callable[[], str] = lambda: "", resend: float = RESEND):
        self.deadline = deadline  # time.monotonic() at which the scenario's time is up
        self.timeout = timeout  # the scenario's timeout in seconds, for the message
        self.busy = busy
        self.proc = Path(proc)
        self.expected = tuple(expected)
        self.where = where  # the step being run, for the message: "line 12"
        self.resend = resend  # seconds between signals until the stop is taken (RESEND)
        self.report: Optional[Crash] = None  # the report that stopped the scenario
        self.stuck: Tuple[InKernel, ...] = ()  # the busy workers, and the main thread if in D, when it fired
        self.reason: Optional[str] = None  # set when it fired: what ScenarioStopped says
        self._armed = False
        self._wake = threading.Event()
        self._done = threading.Event()
        self._main = threading.main_thread().ident
        self._previous = None  # SIGNAL's handler before ours
        self._installed = False  # ours is installed
        self._thread: Optional[threading.Thread] = None

    def on_report(self, crash: Crash) -> None:
        """kmsg watcher callback (its thread): a report stops the scenario now."""
        if any(re.search(p, crash.title) for p in self.expected) or self.report is not None:
            return
        self.report = crash
        self._wake.set()

    def __enter__(self):
        # only the main thread can take a signal handler; elsewhere the
        # replies' own deadlines and the diagnosis remain (self.reason)
        if threading.current_thread() is threading.main_thread():
            self._previous, self._installed = signal.signal(SIGNAL, self._handler), True
        self._armed = True
        self._thread = threading.Thread(target=self._run, name="scenario-watchdog", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.disarm()
        return False

    def disarm(self) -> None:
        """From here on nothing is interrupted (cleanup runs).  Safe to call twice."""
        self._armed = False
        self._done.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._installed:
            signal.signal(SIGNAL, self._previous)
            self._installed = False

    def _run(self) -> None:
        while not self._done.is_set():
            self._wake.wait(max(self.deadline - time.monotonic(), 0))
            if self._done.is_set():
                return
            if self.report is None and time.monotonic() < self.deadline:
                self._wake.clear()
                continue
            self.stuck = workers_in_kernel(self.busy(), self.proc) + harness_in_kernel(self.proc)
            self.reason = self._message()
            # Again every `resend` seconds until disarm(): a handler that runs
            # inside a callback the interpreter calls (gc.callbacks, which
            # Hypothesis uses) has its exception printed as "Exception ignored"
            # and dropped, and that stop would be lost.
            while self._armed and self._installed and self._main is not None:
                signal.pthread_kill(self._main, SIGNAL)
                if self._done.wait(self.resend):
                    return
            return

    def _message(self) -> str:
        where = self.where()
        at = f" at {where}" if where else ""
        if self.report is not None:
            what = f"the kernel reported {self.report.title}{at}"
        else:
            what = f"scenario timeout of {self.timeout:g}s reached{at}"
        stuck = stuck_text(self.stuck)
        return what + (f"; {stuck}" if stuck else "")

    def _handler(self, signum, frame) -> None:
        # runs in the main thread between two bytecodes: no lock here (the
        # main thread may hold one); _armed is only ever cleared before
        # cleanup.  A stop already on its way out (a `finally` or `except` it
        # passes through sees it in sys.exc_info()) is not raised over.
        if self._armed and self.reason and not isinstance(sys.exc_info()[1], ScenarioStopped):
            raise ScenarioStopped(self.reason)


def stuck_text(stuck: Iterable[InKernel]) -> str:
    """Several processes' InKernel.text(), one after another."""
    return "; ".join(s.text() for s in stuck)
