"""Result objects: what a run found, shared by the runner and every report writer.

Frozen dataclasses so that a result, once made, is what every writer sees.
"""
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

PASS, FAIL, SKIP, ERROR = "pass", "fail", "skip", "error"


@dataclass(frozen=True)
class Crash:
    """One kernel report found in a log."""

    kind: str  # e.g. "BUG", "WARNING", "KASAN", "GPF", "panic", "lockdep"
    title: str  # syzbot-style: "WARNING in remove_stable_node"
    line: int  # 1-based line in the scanned log (or record index for kmsg)
    lines: Tuple[str, ...]  # the report's own lines, as logged
    seq: Optional[int] = None  # /dev/kmsg sequence number, when read from kmsg
    corrupted: bool = False  # cut short (end of log, next report) before its stack or closing banner


@dataclass(frozen=True)
class Check:
    """One expectation, checked, with the numbers that decided it."""

    what: str  # the expectation in words, as written in the scenario
    passed: bool
    detail: str  # the numbers: "pages_shared=0 (want == 0)"
    kernel: bool = True  # False: the harness's own trouble (a cleanup, a bug): ERROR when it fails, never FAIL


@dataclass(frozen=True)
class Sample:
    """Counters at one moment of a scenario."""

    t: float  # seconds since the scenario started
    values: Mapping[str, int]  # /sys/kernel/mm/ksm counters and /proc/vmstat fields


@dataclass(frozen=True)
class StepMark:
    """When a step started and ended (for the HTML timeline)."""

    t: float  # seconds since the scenario started
    end: float  # seconds since the scenario started
    name: str  # the step as written: "knob run=2", "fork_storm a"


@dataclass(frozen=True)
class Measurement:
    """A step's time, asked for with its `measure:` key."""

    name: str  # the `measure:` value: "merge"
    seconds: float  # the step's wall time, start to end
    nbytes: Optional[int] = None  # the bytes of the pages it covered (None: no page count, no speed)

    @property
    def mib_per_s(self) -> Optional[float]:
        """MiB per second over its pages (None without pages)."""
        return None if self.nbytes is None else throughput(self.nbytes, self.seconds)


def throughput(nbytes, seconds):
    """MiB per second, as ksm_tests prints "Average speed" (0 for no time)."""
    return nbytes / (1 << 20) / seconds if seconds > 0 else 0.0


@dataclass(frozen=True)
class ScenarioResult:
    """The outcome of one scenario (one point of its parameter matrix)."""

    name: str  # scenario name, with matrix values: "stale-stable-nodes[merge_across_nodes=0]"
    file: str  # the YAML file it came from
    line: int  # the line of its `name:` key
    status: str  # PASS, FAIL, SKIP or ERROR
    duration: float  # seconds
    reason: str = ""  # why it skipped/failed/errored, one line
    checks: Tuple[Check, ...] = ()  # every expectation, passed or not
    crashes: Tuple[Crash, ...] = ()  # kernel reports logged while it ran
    taint: Tuple[str, ...] = ()  # new taint flags: "W (kernel issued warning)"
    samples: Tuple[Sample, ...] = ()  # counter timeline
    steps: Tuple[StepMark, ...] = ()  # step timeline
    deltas: Mapping[str, int] = field(default_factory=dict)  # counter/vmstat change over the run
    notes: Tuple[str, ...] = ()  # how often a race window was hit, etc.
    log_context: Tuple[str, ...] = ()  # kernel log lines from before the start (context only)
    started: str = ""  # ISO 8601 UTC wall-clock time the scenario started ("" if not recorded)
    params: Mapping[str, str] = field(default_factory=dict)  # its matrix point, values as text ({} if none)
    measurements: Tuple[Measurement, ...] = ()  # the steps with a `measure:` key, in the order they ran

    @property
    def failed_checks(self):
        return tuple(c for c in self.checks if not c.passed)


@dataclass(frozen=True)
class RunResult:
    """A whole run: many scenarios on one kernel."""

    kernel: str  # uname -r of the kernel the scenarios ran on
    started: str  # ISO 8601 UTC
    duration: float  # seconds
    scenarios: Tuple[ScenarioResult, ...]
    # What the scenarios ran on, for reports that carry it (KCIDB's environment):
    # "machine", "hostname", "cpu", "numa_nodes", "kernel_version", "kernel_config", ...
    environment: Mapping[str, str] = field(default_factory=dict)
    findings: Tuple[str, ...] = ()  # what the self-check found wrong in the kernel's truth sources (truthcheck.py)

    @property
    def status(self):
        statuses = {s.status for s in self.scenarios}
        for worst in (FAIL, ERROR):  # FAIL is the kernel's: it outweighs our ERROR (exit 1, not 3)
            if worst in statuses:
                return worst
        return PASS if PASS in statuses or not statuses else SKIP
