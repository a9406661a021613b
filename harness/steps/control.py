"""Steps made of steps: repeat, and concurrent (a race of worker actions
against harness steps)."""
import time
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

from .. import yamlload
from ..knobs import RUN_UNMERGE
from ..errors import InputError
from .base import Action, Step
from .fields import check_keys, field, parse_fields
from .machine import Knob

# a race (concurrent step with a knob write) that hit less of its window than
# this share of its worker events is an ERROR, not a PASS: the path was not tested
DEFAULT_WINDOW_PERCENT = 50


@dataclass(frozen=True)
class Repeat(Step):
    kind: ClassVar[str] = "repeat"
    summary: ClassVar[str] = "Repeat a list of steps."
    times: int = field("repeat", "int", "How many times.", required=True, minimum=1,
                       message="repeat must be >= 1")
    steps: Tuple[Step, ...] = field("steps", "steps", "The steps to repeat.", required=True)
    name: Optional[str] = field("name", "str", "Step title in results.")

    @property
    def children(self):
        return self.steps

    def run(self, run):
        for _ in range(self.times):
            if not run.run_steps(self.steps):
                return False
        return True


@dataclass(frozen=True)
class Concurrent(Step):
    kind: ClassVar[str] = "concurrent"
    summary: ClassVar[str] = "Race worker actions against harness steps."
    steps: Tuple[Step, ...] = field("concurrent", "steps", "Steps started together: at least one do and one "
                                    "harness step (knob/wait/...); no nesting.", required=True)
    name: Optional[str] = field("name", "str", "Step title in results.")
    repeat: int = field("repeat", "int", "Run the race this many times.", default=1, minimum=1)
    window: int = field("window", "percent", "The least share of the worker events (page faults, forks) that "
                        "must happen while the step's knob writes run; below it the result is ERROR: race "
                        "window missed.", default=DEFAULT_WINDOW_PERCENT)

    @classmethod
    def parse(cls, p, m, where, in_concurrent=False):
        check_keys(p.ctx, m, where, cls.keys(), cls.required())
        seq = m["concurrent"]
        if not isinstance(seq, yamlload.Seq) or len(seq) < 2:
            raise p.err("concurrent: needs a list of at least two steps", m, "concurrent", f"{where}.concurrent")
        children = tuple(p.step(s, f"{where}.concurrent[{i}]", True) for i, s in enumerate(seq))
        for c in children:
            if c.children or isinstance(c, (Concurrent, Repeat)):
                raise InputError("concurrent steps cannot nest", file=p.ctx.file, line=c.line, field=where)
        if not any(isinstance(c, Action) for c in children) or all(isinstance(c, Action) for c in children):
            raise p.err("concurrent: needs worker actions (do) and harness steps (knob/wait/...) to "
                        "race against each other", m, "concurrent", f"{where}.concurrent")
        values = parse_fields(cls, p, m, where, skip=("steps",))
        if "window" in m and not any(isinstance(c, Knob) for c in children):
            raise p.err("window needs a knob write in the concurrent step (the window is its span)", m,
                        "window", f"{where}.window")
        return cls(line=m.line, steps=children, **values)

    @property
    def children(self):
        return self.steps

    def run(self, run):
        for _ in range(self.repeat):
            self.race(run)
        return True

    def race(self, run):
        """Worker actions start first (each may wait for a knob value, to enter
        the race window the moment it opens), then the harness's own steps run,
        then workers told to go on until_done are stopped, then all report."""
        actions = [c for c in self.steps if isinstance(c, Action)]
        others = [c for c in self.steps if not isinstance(c, Action)]
        sent = []
        for c in actions:
            c.begin(run)
            for w in run.state.select(c.workers):
                c.send(run, w)
                sent.append((w, c))
        windows = []
        run.racing = True
        for c in others:
            run.current_line = c.line
            start = time.monotonic()
            if isinstance(c, Knob):
                for w in run.write_knobs(c.writes, c.expect):
                    windows.append((w.started, w.started + w.seconds, f"{w.name}={w.value}"))
            else:
                c.run(run)
            run.mark(c.title, start)
        run.racing = False
        for w, c in sent:
            if c.stops_when_told:
                w.send("stop")
        hits = {}
        for w, c in sent:
            hit = run.receive(c, w, windows)
            if hit:
                done = hits.setdefault(c.action, [0, 0])
                done[0], done[1] = done[0] + hit[0], done[1] + hit[1]
            if c.stops_when_told:
                w.receive("stop", run.left())
        run.acted([w for w, _ in sent], [c for _, c in sent])
        self.window_needed(run, windows, hits)
        # ksmd is quiet only once run reads 0 or 2: after a race that left run=1 it may
        # merge between the read of pages_shared and the walk of the pages
        runs = [str(value) for c in others if isinstance(c, Knob) for name, value in c.writes if name == "run"]
        if runs and runs[-1] in ("0", RUN_UNMERGE):
            run.invariant(f"after the race (line {self.line})")

    def window_needed(self, run, windows, hits):
        """A race that missed its window tested nothing: ERROR, not PASS."""
        if not windows:
            return
        during = ", ".join(label for _, _, label in windows)
        for act, (hit, total) in hits.items():
            what = {"touch": "faults", "fork": "forks"}.get(act, f"{act} events")
            if hit * 100 < self.window * total or not total:
                run.errors.append(f"race window missed (line {self.line}): {hit} of {total} {what} during "
                                  f"{during} (want >= {self.window}%)")
