"""The one exception tree of ksm-harness.

Every error says what went wrong and what to do next.  The CLI maps each
class to an exit code (see EXIT_* below), so `git bisect run` works.
"""

EXIT_PASS = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_ERROR = 3
EXIT_CANNOT_RUN = 125


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
        return f"{where}{field}{self.message}"


class CannotRun(HarnessError):
    """Nothing can run on this machine (not root, no KSM): exit 125."""

    exit_code = EXIT_CANNOT_RUN


class LockBusy(HarnessError):
    """Another run drives KSM right now (one driver at a time)."""


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
