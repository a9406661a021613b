"""The one exception tree of ksm-harness.

Every error says what went wrong and what to do next.  The CLI maps each
class to an exit code (see EXIT_* below), so `git bisect run` works.
A FAIL is the kernel's (a check it did not pass); an ERROR is ours: the
harness or the machine could not do the test (a worker died, an mmap got
ENOMEM, a deadline passed on a slow machine, a race window was missed).
"""

import re

EXIT_PASS = 0  # every scenario that ran passed
EXIT_FAIL = 1  # a scenario failed: the kernel broke a promise
EXIT_USAGE = 2  # bad input or usage; nothing touched the kernel
EXIT_ERROR = 3  # a scenario errored (and none failed), or the harness could not work
EXIT_CANNOT_RUN = 125  # nothing could run here; `git bisect run` skips the commit

# `ksm-harness --help` and README list these; one text for both
EXIT_CODES_HELP = f"""exit codes:
  {EXIT_PASS}    every scenario that ran passed
  {EXIT_FAIL}    a scenario FAILED: the kernel broke a promise (a check, a crash report, new taint)
  {EXIT_USAGE}    bad input or usage (one line file:line: field: message); nothing touched the kernel
  {EXIT_ERROR}    a scenario ERRORED and none failed (harness or machine trouble: a worker died,
       ENOMEM, a deadline, a missed race window), or the harness could not work (lock busy)
  {EXIT_CANNOT_RUN}  nothing could run here: not root, no KSM, or every scenario skipped
  with --bisect, {EXIT_ERROR} becomes {EXIT_CANNOT_RUN} too, so that `git bisect run` skips the commit
"""


class HarnessError(Exception):
    """Base class: the harness itself could not do what was asked."""

    exit_code = EXIT_ERROR


class InputError(HarnessError):
    """Bad input (scenario file, command line): nothing touched the kernel.

    str() gives the one-line form `file:line: field: message`.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message, file=None, line=None, field=None):
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self):
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        # one line whatever a file holds: a control character in a key shows as its escape
        return _CONTROL.sub(lambda m: repr(m.group())[1:-1], f"{where}{field}{self.message}")


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class CannotRun(HarnessError):
    """Nothing can run on this machine (not root, no KSM): exit 125."""

    exit_code = EXIT_CANNOT_RUN


class EmulatorFault(CannotRun):
    """The guest died before its command ran, of qemu's TCG and not of its
    kernel (tcg.py): booting again may pass."""


class LockBusy(HarnessError):
    """Another run drives KSM right now (one driver at a time)."""


class CleanupError(HarnessError):
    """Putting the machine back failed; the journal keeps what is left."""

    def __init__(self, failures):
        self.failures = failures  # [cleanup.CleanupFailure], every one, not only the first
        super().__init__(
            f"{len(failures)} cleanup step(s) failed: " + "; ".join(f"{f.what}: {f.error}" for f in failures)
            + "; the journal keeps what is left: fix the cause and run `ksm-harness restore`")


class KernelError(HarnessError):
    """A kernel interface answered in a way the harness cannot handle."""


class WorkerError(HarnessError):
    """A worker process died, hung or reported an error."""


class DeadlineExceeded(HarnessError):
    """A condition did not hold before its deadline."""


class ScenarioStopped(HarnessError):
    """The watchdog stopped a scenario: its deadline passed or the kernel
    reported (harness/watchdog.py).  The scenario FAILs with this message."""


class Skip(Exception):
    """Raised to skip a scenario or test, with the reason (not an error)."""

    def __init__(self, reason):
        self.reason = reason
        super().__init__(reason)
