"""Scenarios in guests: follow each boot live, replace a crashed guest, merge the results.

A kernel bug in a scenario can kill the guest (a panic), wedge it (nothing
runs any more) or leave the guest's harness unable to go on.  The host sees
the console line by line and the guest's heartbeat (harness/heartbeat.py)
and kills qemu within seconds when:
- the console shows "Kernel panic - not syncing" (kernel/panic.c panic());
- a kernel report is followed by no progress for REPORT_GRACE seconds;
- the heartbeat stops for SILENT seconds (it ticks every heartbeat.TICK s);
- a scenario runs OVERRUN seconds past its own timeout (its own watchdog
  should have stopped it by then);
- the guest's run finished but it did not power off within POWER_OFF seconds
  (a worker left in D state keeps the output pipe of /init open);
- no heartbeat came at all within VmOptions.timeout (a command that is not
  `ksm-harness run`, or a guest that never got that far).
The scenario that was running is recorded as FAIL with the report's title
and a fresh guest runs the rest of the selection; `stop_on_crash` ends the run
there instead, the rest reported as not run.  No global timeout bounds the
whole: each scenario its own, each boot VmOptions.timeout.
"""
import dataclasses
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple

from . import heartbeat, tcg, vm
from .crash import Scanner
from .errors import EXIT_ERROR, EXIT_FAIL, HarnessError
from . import report
from .results import ERROR, FAIL, Crash, RunResult, ScenarioResult
from .watchdog import NOT_RUN

PANIC = "Kernel panic - not syncing"  # kernel/panic.c panic(): the kernel stops here
PANIC_GRACE = 3.0  # seconds after a panic line before qemu is killed (the report finishes printing)
REPORT_GRACE = 45.0  # seconds a guest may make no progress after a kernel report
SILENT = 60.0  # seconds without a heartbeat before a guest counts as silent
OVERRUN = 120.0  # seconds past a scenario's own timeout (its cleanup under TCG is slow)
POWER_OFF = 15.0  # seconds from the guest's last heartbeat ("finished") to qemu's exit
POLL = 0.2  # seconds between two looks at the guest


class Follower:
    """One boot: reads its console live (from the _Tee thread) and its heartbeat."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.scanner = Scanner()  # kernel reports on the console after the ready marker
        self.report_times: List[float] = []  # clock() when each report's first line was read
        self.finished: Dict[str, float] = {}  # scenario name -> clock() when the heartbeat showed it done
        self.beat: Optional[heartbeat.Beat] = None  # the last heartbeat read
        self.killed_at: Optional[float] = None  # clock() when qemu was killed
        self.scenario_at: Optional[float] = None  # clock() when the current scenario started
        self._lock = threading.Lock()
        self._ready = False
        self._panic_at: Optional[float] = None
        self._scenario_reports = 0  # scanner.count when the current scenario started

    def on_line(self, marker: str):
        """The _Tee callback for the console: line text, 1-based number."""
        def feed(line: str, lineno: int) -> None:
            if not self._ready:
                self._ready = marker in line  # before it: the boot, context only
                return
            with self._lock:
                self.scanner.feed(line, lineno)
                while len(self.report_times) < self.scanner.count:
                    self.report_times.append(self.clock())
            if PANIC in line and self._panic_at is None:
                self._panic_at = self.clock()
        return feed

    def crashes(self, start: int = 0) -> Tuple[Crash, ...]:
        with self._lock:
            return tuple(self.scanner.crashes(start))

    def scenario_crashes(self) -> Tuple[Crash, ...]:
        """The reports since the current scenario started."""
        return self.crashes(self._scenario_reports)

    def follow(self, proc: subprocess.Popen, share: Path, timeout: float) -> str:
        """Wait for qemu to exit; "" if it did, else why it was killed."""
        start = alive_at = progress_at = self.scenario_at = self.clock()
        seen_reports = 0
        while True:
            try:
                proc.wait(timeout=POLL)
                return ""
            except subprocess.TimeoutExpired:
                pass
            now = self.clock()
            beat = heartbeat.read_beat(share)
            if beat is not None and (self.beat is None or beat.seq != self.beat.seq):
                alive_at = now
                if self.beat is None or beat.progress != self.beat.progress:
                    progress_at = now
                    seen_reports = len(self.report_times)
                    if self.beat is not None and self.beat.scenario and beat.scenario != self.beat.scenario:
                        self.finished[self.beat.scenario] = now
                    if self.beat is None or beat.scenario != self.beat.scenario:
                        self.scenario_at, self._scenario_reports = now, len(self.report_times)
                self.beat = beat
            why = self._why(now, start, alive_at, progress_at, seen_reports, timeout)
            if why and proc.poll() is None:
                proc.kill()
                self.killed_at = now
                return why

    def _why(self, now, start, alive_at, progress_at, seen_reports, timeout) -> str:
        beat = self.beat
        if self._panic_at is not None and now - self._panic_at >= PANIC_GRACE:
            return "after a kernel panic"
        if beat is None:
            return f"after {timeout:g} s without a heartbeat" if now - start > timeout else ""
        if beat.finished:
            return f"{POWER_OFF:g} s after its run finished, still not powered off" \
                if now - alive_at > POWER_OFF else ""
        if now - alive_at > SILENT:
            return f"after {SILENT:g} s without a heartbeat (in {beat.scenario or 'no scenario'})"
        last_report = self.report_times[-1] if self.report_times else None
        if len(self.report_times) > seen_reports and now - max(progress_at, last_report) > REPORT_GRACE:
            return f"after a kernel report and {REPORT_GRACE:g} s without progress"
        if beat.scenario and now - self.scenario_at > beat.timeout + OVERRUN:
            return f"{OVERRUN:g} s past the timeout of {beat.scenario} ({beat.timeout:g} s)"
        return ""


def title_of(crashes: Sequence[Crash]) -> str:
    return crashes[0].title if crashes else "no kernel report on the console"


def crashed(beat: heartbeat.Beat, why: str, crashes: Sequence[Crash], duration: float,
            accel: str = "kvm") -> ScenarioResult:
    """The FAIL of the scenario a guest was running when it ended (killed
    `why`); ERROR when under TCG (`accel`) its report is one the emulator
    causes (tcg.py), which says nothing about the kernel."""
    step = f" in step {beat.step}" if beat.step else ""
    status, reason = FAIL, f"{title_of(crashes)}: the guest ended {why}{step}"
    emulator = tcg.emulator_fault(crashes, accel)
    if emulator:
        status, reason = ERROR, f"{reason}; no verdict on the kernel: {emulator}; run it again, or under KVM"
    return ScenarioResult(name=beat.scenario, file=beat.file, line=beat.line, status=status,
                          duration=round(duration, 3), reason=reason, crashes=tuple(crashes))


def merged(selection: Sequence[str], done: Sequence[ScenarioResult], why_not: str, kernel: str,
           started: str, duration: float) -> RunResult:
    """One RunResult over every boot: the selection's results in its order, what never ran as ERROR."""
    by_name = {r.name: r for r in done}
    results = [by_name.get(name) or ScenarioResult(name, "", 0, ERROR, 0.0, reason=why_not) for name in selection]
    return RunResult(kernel=kernel, started=started, duration=round(duration, 3), scenarios=tuple(results))


def run_scenarios(options: vm.VmOptions, run_args: Sequence[str], out: Path, *, stop_on_crash: bool = False,
                  echo: Optional[IO[str]] = None, verbose: bool = False,
                  log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
                  followers: Optional[list] = None) -> vm.VmRun:
    """`ksm-harness vm ... run RUN_ARGS`: as many boots as crashes need, one result."""
    out = Path(out)
    share = Path(tempfile.mkdtemp(prefix="ksm-harness-vm-"))
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    begin = time.monotonic()
    boots: List[vm.VmRun] = []
    selection: Tuple[str, ...] = ()
    why_not, recorded = "", False
    try:
        while True:
            follower = Follower()
            if followers is not None:
                followers.append(follower)
            boot_out = vm.boot_out(out, len(boots))
            before = len(heartbeat.read_done(share))
            try:
                run = vm.run_in_vm(options, vm.harness_command(run_args, verbose), boot_out, echo=echo,
                                   verbose=verbose, log=log, share=share, follower=follower)
            except HarnessError as exc:
                if not boots:
                    raise
                why_not = f"not run: the guest did not boot again ({exc})"
                break
            boots.append(run)
            beat = follower.beat
            selection = beat.selection if beat else selection
            done = {r.name for r in heartbeat.read_done(share)}
            if beat is not None and beat.scenario and beat.scenario not in done:
                # killed, or it stopped by itself (a panic reboots it: panic=-1, and qemu -no-reboot exits)
                reports = follower.scenario_crashes()
                ended = follower.killed_at or follower.clock()
                heartbeat.record_done(share, crashed(beat, run.killed or "by itself (reboot or power off)",
                                                     reports, ended - (follower.scenario_at or ended),
                                                     run.accel.name), beat.kernel)
                done.add(beat.scenario)
                recorded = True
                why_not = f"{NOT_RUN} {beat.scenario} ({title_of(reports)})"
            elif run.result is not None:  # the guest's harness found its kernel unfit and said so
                why_not = next((r.reason for r in run.result.scenarios if r.reason.startswith(NOT_RUN)), why_not)
            left = [name for name in selection if name not in done]
            progressed = len(done) > before
            if not left or not progressed:
                why_not = why_not or "not run: the guest stopped without running it"
                break
            if stop_on_crash:
                break
            log(f"{len(left)} scenario(s) left: booting a fresh guest ({why_not or 'the kernel is no longer fit'})")
    finally:
        done_results = heartbeat.read_done(share)
        shutil.rmtree(share, ignore_errors=True)
    last = boots[-1]
    if len(boots) == 1 and not recorded:
        return last  # one clean boot: the guest's own result files stand
    kernel = next((b.result.kernel for b in boots if b.result), "") or (beat.kernel if beat else "")
    result = merged(selection, done_results, why_not, kernel, started, time.monotonic() - begin)
    for name, fmt in vm.RESULT_FILES.items():  # the merged result, as the guest writes them
        report.write(fmt, result, out / name)
    status = {FAIL: EXIT_FAIL, ERROR: EXIT_ERROR}.get(result.status, last.status)
    reasons = "; ".join(f"{s.name}: {s.reason}" for s in result.scenarios if s.status in (FAIL, ERROR))
    return dataclasses.replace(last, status=status, reason=reasons, result=result,
                               duration=round(sum(b.duration for b in boots), 3),
                               crashes=tuple(c for b in boots for c in b.crashes), out=out)
