"""Explore's progress line, its end-of-run summary and its JSON result."""
import json
import platform
import shutil
import sys

from ..report import json_report
from ..report.terminal import Progress, format_duration, one_line
from ..results import ERROR, FAIL, PASS, SKIP

FORMAT = "ksm-harness-explore"  # the JSON result's "format" key
VERSION = 1


class ExploreProgress:
    """On a terminal: one status line redrawn in place (examples and steps
    run, checks made, failures and errors, time left, the step running now),
    and a line per FAIL or ERROR.  Elsewhere: one line per example run.  With
    enabled=False: nothing.  The replay reports like `ksm-harness run`."""

    def __init__(self, stream=None, enabled=True):
        self.stream = stream or sys.stderr  # where progress goes
        self.enabled = enabled
        self.tty = enabled and self.stream.isatty()
        self.replay = Progress(self.stream, enabled)  # run_all's progress for the replay
        self.session = None  # the Session, once an example ran
        self.shown = False  # a status line is on screen

    def status(self, session):
        s = session
        return (f"explore seed {s.seed} | examples {s.examples} | steps {s.steps} | checks {s.checks} | "
                f"FAIL {s.statuses[FAIL]} | ERROR {s.statuses[ERROR]} | "
                f"{format_duration(max(s.left(), 0))} left")

    def draw(self, text):
        width = shutil.get_terminal_size().columns - 1  # a full line would wrap
        self.stream.write("\r\x1b[K" + text[:width])
        self.stream.flush()
        self.shown = True

    def step(self, name):
        if self.tty and self.session:
            self.draw(f"{self.status(self.session)} | {one_line(name)}")

    def example_done(self, session, outcome, repeat=False):
        self.session = session
        if repeat:  # a document this exploration ran already: its outcome is not news
            line = f"example {session.examples} repeats an earlier document ({outcome.status}), answered"
        else:
            line = f"example {session.examples} {outcome.status} {one_line(outcome.reason)[:200]}".rstrip()
        if self.tty:
            if outcome.status in (FAIL, ERROR) and not repeat:
                self.say(line)
            self.draw(self.status(session))
        else:
            self.say(f"{self.status(session)} | {line}")

    def say(self, text):
        if not self.enabled:
            return
        if self.shown:
            self.stream.write("\r\x1b[K")
            self.shown = False
        self.stream.write(text + "\n")
        self.stream.flush()


def to_dict(session, database, repro, replay, stopped):
    s = session
    return {
        "format": FORMAT,
        "version": VERSION,
        "kernel": platform.release(),
        "seed": s.seed,
        "database": str(database),
        "out": str(s.out),
        "budget": s.budget,
        "elapsed": round(s.budget - s.left(), 1),
        "stopped": stopped,
        "examples": s.examples,
        "answered": s.answered,  # of them, answered without a run: the same document ran before (--known, or here)
        "steps": s.steps,
        "checks": s.checks,
        "totals": {k: s.statuses.get(k, 0) for k in (PASS, FAIL, ERROR, SKIP)},
        "failures": [f.__dict__ for f in s.failures],
        "errors": [e.__dict__ for e in s.errors],
        "reproducer": None if repro is None else {**repro.__dict__, "rate": repro.rate},
        "replay": None if replay is None else json_report.to_dict(replay),
    }


def write_json(data, path):
    text = json.dumps(data, indent=2) + "\n"
    if path == "-":
        sys.stdout.write(text)
    else:
        with open(path, "w") as f:
            f.write(text)


def summary(data):
    t = data["totals"]
    lines = [f"explore --seed {data['seed']} on {data['kernel']}: {data['examples']} examples, {data['steps']} "
             f"steps, {data['checks']} checks in {format_duration(data['elapsed'])} ({data['stopped']})"
             + (f"; {data['answered']} answered from an earlier run of the same document"
                if data.get("answered") else ""),
             f"  {t[PASS]} passed, {t[FAIL]} failed, {t[ERROR]} errored (harness trouble, not findings), "
             f"{t[SKIP]} skipped"]
    for e in data["errors"][:5]:
        lines.append(f"  ERROR {e['file']}: {one_line(e['reason'])[:300]}")
    r = data["reproducer"]
    if r:
        rate = "not replayed (the kernel crashed)" if r["crashed"] else \
            f"failed {r['failed']} of {r['runs']} replays" if r["runs"] else "not replayed"
        lines += [f"  FAIL {one_line(r['reason'])[:300]}",
                  f"  first failure after {format_duration(r['first_failure_at'])}; shrunk from "
                  f"{r['steps_first']} steps to {r['steps']}; {rate}",
                  f"  reproducer: {r['file']}  (ksm-harness run {r['file']})",
                  f"  first failing example: {r['first_file']} (if the kernel kept state from it, such as a "
                  f"leaked counter, the later failures and the reproducer may be its echo)"]
    else:
        lines.append("  no failure found")
    lines.append(f"  resume or replay: ksm-harness explore --seed {data['seed']} --out {data['out']} "
                 f"(Hypothesis database {data['database']})")
    return "\n".join(lines) + "\n"
