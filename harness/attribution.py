"""Kernel reports that no scenario's own watcher saw: between scenarios, or late.

Each scenario watches /dev/kmsg while it runs.  A run-level watcher reads the
log from the first scenario to DRAIN seconds after the last; a report it
holds that no scenario holds is given to the scenario whose time it names,
or becomes a run-level failure OUTSIDE.  The time a report names is the
record's time stamp (printk's local_clock(), on x86 the same clock as
CLOCK_MONOTONIC), less what it says it waited: a hung-task report comes
"blocked for more than N seconds" after the task stopped
(kernel/hung_task.c check_hung_task()).
"""
import dataclasses
import re
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .results import FAIL, PASS, Check, Crash, ScenarioResult

OUTSIDE = "kernel report outside any scenario"  # name of the run-level failure
DRAIN = 0.5  # seconds without a new record the run watcher waits for after the last scenario
MARGIN = 1.0  # seconds a window is widened by on each side (clock reads are not atomic with printk)
BLOCKED_RE = re.compile(r"blocked for more than (\d+) seconds")


@dataclass(frozen=True)
class Window:
    """When one scenario ran, on the kernel log's clock."""

    name: str  # the scenario's name
    start: float  # CLOCK_MONOTONIC seconds when it started
    end: float  # ... and when its result was made


def now() -> float:
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def named_time(crash: Crash, usec: Optional[int]) -> Optional[float]:
    """The moment a report is about, in seconds on the log's clock; None without a time stamp."""
    if usec is None:
        return None
    blocked = next((BLOCKED_RE.search(line) for line in crash.lines if BLOCKED_RE.search(line)), None)
    return usec / 1e6 - (int(blocked.group(1)) if blocked else 0)


def _identity(crash: Crash):
    """The same report as a scenario's watcher and the run's saw it: its
    /dev/kmsg sequence number, or (a console log line has none) its title and
    first line."""
    return crash.seq if crash.seq is not None else (crash.title, crash.lines[0] if crash.lines else "")


def attribute(results: Sequence[ScenarioResult], windows: Sequence[Window], crashes: Sequence[Crash],
              usec_of_seq) -> List[ScenarioResult]:
    """`results` with every report of `crashes` no result holds yet given to
    the scenario whose window holds its named time, or to an OUTSIDE result."""
    held = {_identity(c) for r in results for c in r.crashes}
    out = list(results)
    outside = []
    for crash in crashes:
        if _identity(crash) in held:
            continue
        t = named_time(crash, usec_of_seq(crash.seq))
        index = next((i for i, w in enumerate(windows)
                      if t is not None and w.start - MARGIN <= t <= w.end + MARGIN), None)
        if index is None:
            outside.append(crash)
            continue
        r = out[index]
        check = Check("no kernel report about this scenario after it ended", False,
                      f"{crash.title} (logged at {usec_of_seq(crash.seq) / 1e6:.1f} s, about {t:.1f} s)")
        out[index] = dataclasses.replace(
            r, status=FAIL if r.status == PASS else r.status, reason=r.reason or f"{check.what}: {check.detail}",
            checks=r.checks + (check,), crashes=r.crashes + (crash,))
    if outside:
        out.append(ScenarioResult(OUTSIDE, "", 0, FAIL, 0.0, reason="; ".join(c.title for c in outside),
                                  crashes=tuple(outside)))
    return out
