"""A LIFO cleanup queue, after the kernel's selftests/net/lib/py `defer`
(ksft.py ksft_flush_defer()): every deferred call runs, last first, even when
an earlier one raised; each failure is kept with its traceback and logged,
and any failure fails the run.

    with Cleanup() as defer:
        dev = swap.create(...)
        defer(swap.remove, dev)
        ...
    defer.failures                 # [CleanupFailure], [] when all went

While the queue runs, SIGINT, SIGTERM and SIGHUP are deferred: a Ctrl-C
must not cut a swapoff or a knob restore short.  A deferred signal is
raised again once the queue is done (KeyboardInterrupt, or the handler the
caller had); the second signal that arrives during one cleanup ends the
process at once, saying what is left (the journal keeps it for `ksm-harness
restore`).
"""
import logging
import os
import signal
import threading
import traceback
import types
from dataclasses import dataclass

log = logging.getLogger("ksm-harness")

DEFERRED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GIVE_UP_AFTER = 2  # signals received during one cleanup before it is abandoned


@dataclass(frozen=True)
class CleanupFailure:
    """One deferred call that raised."""

    what: str  # the call, in words: "Tracked.undo of swap /dev/loop3"
    error: str  # the exception, one line: "KernelError: `swapoff /dev/loop3` exited 255: ..."
    traceback: str  # the formatted traceback, for the result and stderr


def describe(fn, args):
    """A deferred call in words, for failures and for what is left."""
    name = getattr(fn, "__qualname__", repr(fn))
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):  # a bound method: say of what
        name = f"{name} of {owner!r}"
    return name + (f"({', '.join(repr(a)[:120] for a in args)})" if args else "")


class Cleanup:
    def __init__(self):
        self._stack = []  # (what or None: described when needed, fn, args, kwargs), run last first
        self.failures = []  # CleanupFailure of every call that raised, in the order they ran

    def __call__(self, fn, *args, **kwargs):
        self._stack.append((None, fn, args, kwargs))

    def named(self, what, fn, *args, **kwargs):
        """Defer fn(*args, **kwargs), called `what` in failures and in what is left."""
        self._stack.append((what, fn, args, kwargs))

    def pending(self):
        """What is still to run, next first."""
        return [what or describe(fn, args) for what, fn, args, _ in reversed(self._stack)]

    def run(self):
        """Run every deferred call, last first; return the failures."""
        failures = self.failures
        total = len(self._stack)
        with signals_deferred(self.pending):
            while self._stack:
                what, fn, args, kwargs = self._stack.pop()
                try:
                    fn(*args, **kwargs)
                except Exception as exc:  # keep cleaning; every failure is kept
                    failure = CleanupFailure(what or describe(fn, args), f"{type(exc).__name__}: {exc}",
                                             traceback.format_exc())
                    log.error("cleanup %d of %d failed: %s\n%s", total - len(self._stack), total,
                              failure.what, failure.traceback.rstrip())
                    failures.append(failure)
        return failures

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.run()
        return False


class signals_deferred:
    """SIGINT/SIGTERM/SIGHUP held back while the block runs (main thread
    only: Python runs signal handlers there).  `left()` says what is still to
    do, for the message when a second signal gives up."""

    def __init__(self, left):
        self.left = left
        self.seen = []
        self.previous = {}

    def _defer(self, signum, frame):
        self.seen.append(signum)
        name = signal.Signals(signum).name
        if len(self.seen) >= GIVE_UP_AFTER:
            left = "; ".join(self.left()) or "nothing"
            os.write(2, f"ksm-harness: {name} again: cleanup abandoned; left undone: {left}; the journal "
                        f"keeps it: run `ksm-harness restore`\n".encode())
            os._exit(128 + signum)
        os.write(2, f"ksm-harness: {name} deferred until cleanup is done (another one abandons it)\n".encode())

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._defer) for s in DEFERRED_SIGNALS}
        return self

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
        outer = getattr(self.previous.get(signal.SIGINT), "__self__", None)
        if self.seen and isinstance(outer, signals_deferred):
            outer.seen.extend(self.seen)  # inside a cleanup that defers them too: counted there
        elif self.seen:
            self.redeliver(self.seen[0])
        return False

    def redeliver(self, signum):
        """The signal, handled now as it would have been.  A Python handler
        (KeyboardInterrupt's) is called here: signal.raise_signal() leaves it to
        the interpreter's next check, which a loaded machine once delayed past
        the caller's `except KeyboardInterrupt` (CI: the run ended without it)."""
        handler = self.previous[signum]
        if callable(handler):
            handler(signum, None)
        elif handler != signal.SIG_IGN:  # SIG_DFL, or a handler installed from C
            signal.raise_signal(signum)
