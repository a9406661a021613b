"""The guest's heartbeat and finished results, over the VM side channel.

`ksm-harness vm` sets ENV to the writable 9p share in the guest.  Then the
guest's `ksm-harness run`:
- rewrites HEARTBEAT_FILE (atomically: write, then rename) when a scenario or
  step starts and every TICK seconds besides: which scenario and step it is
  in, the scenario's file, line and timeout, and the whole selection;
- appends each finished result to DONE_FILE, one JSON result document per
  line, as soon as it is known;
- skips the scenarios DONE_FILE already holds: a fresh guest booted after a
  crash runs "the selection minus what is done".
`ksm-harness explore` in a guest beats the same way, each example a
scenario (harness/vmexplore.py).
The host (harness/vm.py) reads both while the guest runs: it sees a silent
guest or one that makes no progress after a report, kills it, appends the
crashed scenario's FAIL to DONE_FILE itself and boots again.

A scenario the guest did not run because its kernel is no longer fit
(watchdog.NOT_RUN) is not written to DONE_FILE: the next boot runs it.
"""
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from .errors import InputError
from .report import json_report
from .results import RunResult, ScenarioResult
from .watchdog import NOT_RUN

ENV = "KSM_HARNESS_HEARTBEAT"  # the side channel directory, in the guest
HEARTBEAT_FILE = "heartbeat.json"
DONE_FILE = "done.jsonl"
TICK = 2.0  # seconds between two heartbeats while nothing else happens


@dataclass(frozen=True)
class Beat:
    """One heartbeat, as the host reads it."""

    seq: int  # counts every write: a changed seq means the guest is alive
    scenario: str  # the scenario running, "" between scenarios
    file: str  # its YAML file
    line: int  # its line there
    timeout: float  # its timeout in seconds
    step: str  # the step running, "" before the first
    selection: Tuple[str, ...]  # every scenario of the run, in order
    kernel: str  # uname -r in the guest
    finished: bool = False  # the guest's run is over: only powering off is left

    @property
    def progress(self) -> Tuple[str, str]:
        """What changes only when the guest moves on."""
        return self.scenario, self.step


def read_beat(directory: Path) -> Optional[Beat]:
    """The last heartbeat in `directory`, None before the first (or if unreadable)."""
    try:
        d = json.loads((Path(directory) / HEARTBEAT_FILE).read_text())
        return Beat(int(d["seq"]), d["scenario"], d["file"], int(d["line"]), float(d["timeout"]), d["step"],
                    tuple(d["selection"]), d["kernel"],
                    bool(d.get("finished")))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def read_done(directory: Path) -> List[ScenarioResult]:
    """The finished results in `directory`, in the order they were written."""
    path = Path(directory) / DONE_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.extend(json_report.from_dict(json.loads(line), str(path)).scenarios)
        except (ValueError, InputError):
            continue  # a line cut short when the guest died while writing it
    return out


def record_done(directory: Path, result: ScenarioResult, kernel: str = "") -> None:
    """Append `result` to DONE_FILE (the guest for its own results, the host for a crashed one)."""
    doc = json_report.to_dict(RunResult(kernel=kernel, started="", duration=result.duration, scenarios=(result,)))
    with open(Path(directory) / DONE_FILE, "a") as f:
        f.write(json.dumps(doc) + "\n")
        f.flush()
        os.fsync(f.fileno())


class Heartbeat:
    """Wraps the runner's progress object; the guest side of the protocol."""

    def __init__(self, directory: Path, progress, scenarios: Sequence):
        self.directory = Path(directory)
        self.progress = progress
        self.scenarios = {sc.name: sc for sc in scenarios}
        self.selection = tuple(sc.name for sc in scenarios)
        self.kernel = os.uname().release
        self._state = {"scenario": "", "file": "", "line": 0, "timeout": 0.0, "step": "", "finished": False}
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="heartbeat", daemon=True)

    @classmethod
    def from_env(cls, progress, scenarios, env=os.environ) -> Optional["Heartbeat"]:
        return cls(Path(env[ENV]), progress, scenarios) if env.get(ENV) else None

    def around(self, progress, scenarios: Sequence) -> "Heartbeat":
        """This heartbeat over another progress and scenarios: explore runs
        one generated document at a time, each its own run_all."""
        self.progress = progress
        self.scenarios = {sc.name: sc for sc in scenarios}
        return self

    def remaining(self, scenarios: Sequence) -> list:
        """The scenarios DONE_FILE does not hold yet."""
        done = {r.name for r in read_done(self.directory)}
        return [sc for sc in scenarios if sc.name not in done]

    def start(self):
        self._write()
        self._ticker.start()
        return self

    def close(self):
        """The run is over (the last heartbeat says so)."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self._write(scenario="", step="", finished=True)

    # -- the runner's progress interface --
    def scenario_started(self, name, index, total):
        sc = self.scenarios.get(name)
        self._write(scenario=name, file=getattr(sc, "file", ""), line=getattr(sc, "line", 0),
                    timeout=getattr(sc, "timeout", 0.0), step="")
        self.progress.scenario_started(name, index, total)

    def step(self, name):
        self._write(step=name)
        self.progress.step(name)

    def counters(self, values):
        self.progress.counters(values)

    def scenario_done(self, result):
        if not result.reason.startswith(NOT_RUN):
            record_done(self.directory, result, self.kernel)
        self._write(scenario="", step="")
        self.progress.scenario_done(result)

    # -- writing --
    def _write(self, **changes):
        with self._lock:
            self._state.update(changes)
            self._seq += 1
            doc = dict(self._state, seq=self._seq, selection=list(self.selection), kernel=self.kernel)
            tmp = self.directory / f".{HEARTBEAT_FILE}.tmp"
            tmp.write_text(json.dumps(doc))
            os.replace(tmp, self.directory / HEARTBEAT_FILE)

    def _tick(self):
        while not self._stop.wait(TICK):
            try:
                self._write()
            except OSError:
                return  # the share is gone: the guest is shutting down
