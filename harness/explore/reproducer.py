"""The smallest failing document as a reproducer file, and how often it
fails again when run as `ksm-harness run` runs it."""
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..results import FAIL
from .session import dump


@dataclass(frozen=True)
class Reproducer:
    file: str  # the YAML file written
    first_file: str  # the first failing example (OUT/failures/): read it when later ones fail for its leftovers
    reason: str  # how the kernel failed it
    steps_first: int  # steps of the first failing document (before shrinking)
    steps: int  # steps of this one (after shrinking)
    first_failure_at: float  # seconds from the start of the exploration to the first FAIL
    runs: int = 0  # replays made
    failed: int = 0  # replays that FAILed
    crashed: bool = False  # it made the kernel report a crash (no replay on that kernel)

    @property
    def rate(self):
        return self.failed / self.runs if self.runs else None


def header(seed, kernel, reason, first, steps, database, first_file):
    return (f"Found by `ksm-harness explore --seed {seed}` on Linux {kernel}.\n"
            f"It failed: {reason}\n"
            f"Shrunk from {first} steps ({first_file}) to {steps}.  Hypothesis database: {database}\n"
            f"Replay: ksm-harness run THIS_FILE --repeat 5")


def write(session, kernel, database, path):
    """Write the smallest failing document of the session to `path` (with a
    comment header: seed, kernel, how it failed); the Reproducer, or None."""
    best = session.smallest_failure()
    if best is None:
        return None
    first = session.failures[0]
    doc = yaml.safe_load(Path(best.file).read_text())
    doc["description"] = f"Found by ksm-harness explore --seed {session.seed}: {best.reason}"[:500]
    Path(path).write_text(dump(doc, header(session.seed, kernel, best.reason, first.steps, best.steps, database, first.file)))
    return Reproducer(str(path), first.file, best.reason, first.steps, best.steps, first.at, crashed=best.crashed)


def replayed(repro, executor, times, progress):
    """repro with the count of `times` replays that FAILed (none after a crash:
    the kernel is unfit), and the replays' RunResult (or None)."""
    if repro.crashed or times <= 0:
        return repro, None
    result = executor.replay(repro.file, times, progress)
    failed = sum(1 for s in result.scenarios if s.status == FAIL)
    return Reproducer(**{**repro.__dict__, "runs": times, "failed": failed}), result
