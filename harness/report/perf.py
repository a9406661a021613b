"""`ksm-harness perf` results (perf.PerfRun) as text, JSON and KTAP.

Each measure is said the way ksm_tests says it (Total size, Total time,
Average speed), on one line:

    merge: 100 MiB in 0.773693 s: 129.250 MiB/s

KTAP puts those lines as diagnostics before the result line of their test,
as kselftest's ksft_print_msg() does, so a parser that reads ksm_tests'
output reads ours; the test names are the measurements' stable ids.
"""
import json

from . import emit
from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import measure_text, one_line

FORMAT = "ksm-harness-perf"  # the "format" key of the JSON file
VERSION = 1  # bumped when a reader could misread a file


def settings_line(run):
    return "knobs before each test: " + " ".join(f"{k}={v}" for k, v in run.settings)


def render_text(run):
    """For a human: one line per measure, then what did not run and why."""
    lines = [f"ksm-harness perf on {run.kernel} ({settings_line(run)})"]
    for o in run.outcomes:
        if o.status == PASS:
            lines.extend(f"  {measure_text(m)}" for m in o.measures)
            lines.extend(f"      {o.name} ({o.option}): {one_line(n)}" for n in o.notes)
        else:
            lines.append(f"  {o.name}: {o.status.upper()}: {one_line(o.reason)}")
    return "\n".join(lines) + "\n"


def _measure(m):
    return {"name": m.name, "bytes": m.nbytes, "seconds": m.seconds, "mib_per_s": round(m.mib_per_s, 3)}


def render_json(run):
    return json.dumps({
        "format": FORMAT,
        "version": VERSION,
        "kernel": run.kernel,
        "started": run.started,
        "duration": run.duration,
        "settings": dict(run.settings),
        "tests": [{"name": o.name, "option": o.option, "status": o.status, "reason": o.reason,
                   "notes": list(o.notes), "measures": [_measure(m) for m in o.measures]} for o in run.outcomes],
    }, indent=2) + "\n"


def render_ktap(run):
    """KTAP version 1, kselftest style (see report/ktap.py)."""
    lines = ["KTAP version 1", f"1..{len(run.outcomes)}", f"# kernel: {one_line(run.kernel)}",
             f"# {settings_line(run)}"]
    counts = {PASS: 0, FAIL: 0, SKIP: 0, ERROR: 0}
    for number, o in enumerate(run.outcomes, 1):
        counts[o.status] += 1
        lines.extend(f"# {measure_text(m)}" for m in o.measures)
        lines.extend(f"# {o.name}: {one_line(n)}" for n in o.notes)
        line = f"{'ok' if o.status in (PASS, SKIP) else 'not ok'} {number} {o.name}"
        if o.status == SKIP:
            line += f" # SKIP {one_line(o.reason)}"
        elif o.status == ERROR:
            line += f" # error {one_line(o.reason)}"
        lines.append(line)
    lines.append(f"# Totals: pass:{counts[PASS]} fail:{counts[FAIL]} xfail:0 xpass:0 "
                 f"skip:{counts[SKIP]} error:{counts[ERROR]}")
    return "\n".join(lines) + "\n"


RENDERERS = {"json": render_json, "ktap": render_ktap}


def write(fmt, run, path):
    emit(RENDERERS[fmt](run), path)
