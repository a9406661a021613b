"""How well and how fast harness.crash finds kernel reports, over the fixtures in tests/data/logs.

Quality, against the expected reports in tests/data/logs/expected.yaml (a found report matches
an expected one when both start on the same line):
  recall          expected reports found                       goal >= 0.97
  false alarms    look-alike fixtures (no report expected) in which a report is found
                                                               goal <= 0.06
  first 3 words   expected reports whose found title starts with the same three words
                                                               goal >= 0.90
  whole title     expected reports found with exactly the expected title
                                                               goal >= 0.60
Speed: every fixture concatenated, over and over, into a 100 000-line console log, scanned
with scan_text() (what `ksm-harness scan-log` does);       bound: under 2 s of CPU time
(process time, so that other work on a shared machine does not count; wall time is printed too).

    .venv/bin/python benchmarks/scan_log.py

Prints each number with its goal; exits 1 if one misses it.
"""
import collections
import os
import sys
import time
from pathlib import Path

import yaml

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from harness.crash import scan_text  # noqa: E402

LOGS = Path(__file__).resolve().parent.parent / "tests" / "data" / "logs"
CONSOLE_LINES = 100_000
GOALS = (("recall", ">=", 0.97), ("false alarms", "<=", 0.06), ("first 3 words", ">=", 0.90),
         ("whole title", ">=", 0.60), ("CPU s for 100k lines", "<=", 2.0))


def read(name):
    return (LOGS / name).read_bytes().decode("utf-8", "replace")


def quality(expected):
    """{measure: value} over the corpus, and the misses to show."""
    reports = found = three = whole = lookalikes = alarms = 0
    misses = []
    for name, entry in sorted(expected.items()):
        crashes = {c.line: c for c in scan_text(read(name))}
        if not entry["reports"]:
            lookalikes += 1
            if crashes:
                alarms += 1
                misses.append(f"{name}: false alarm: {next(iter(crashes.values())).title}")
        for kind, title, line in entry["reports"]:
            reports += 1
            crash = crashes.get(line)
            if crash is None:
                misses.append(f"{name}:{line}: missed: {title}")
                continue
            found += 1
            three += crash.title.split()[:3] == title.split()[:3]
            whole += crash.title == title
            if crash.title != title:
                misses.append(f"{name}:{line}: titled {crash.title!r}, expected {title!r}")
    return {"recall": found / reports, "false alarms": alarms / lookalikes, "first 3 words": three / reports,
            "whole title": whole / reports}, (reports, lookalikes), misses


def speed(expected):
    """CPU and wall seconds scan_text() takes over a CONSOLE_LINES-line log made of the fixtures."""
    corpus = [line for name in sorted(expected) for line in read(name).split("\n")]
    log = (corpus * (CONSOLE_LINES // len(corpus) + 1))[:CONSOLE_LINES]
    text = "\n".join(log)
    cpu, wall = time.process_time(), time.perf_counter()
    scan_text(text)
    return time.process_time() - cpu, time.perf_counter() - wall


def main():
    expected = yaml.safe_load((LOGS / "expected.yaml").read_text())
    values, (reports, lookalikes), misses = quality(expected)
    values["CPU s for 100k lines"], wall = speed(expected)
    sources = collections.Counter(entry["source"] for entry in expected.values())
    print(f"fixtures: {len(expected)} ({', '.join(f'{n} {s}' for s, n in sorted(sources.items()))}); "
          f"{reports} expected reports, {lookalikes} look-alike fixtures")
    for miss in misses:
        print(f"  {miss}")
    failed = False
    for measure, sense, goal in GOALS:
        ok = values[measure] >= goal if sense == ">=" else values[measure] <= goal
        failed |= not ok
        print(f"{measure:24s} {values[measure]:7.3f}   goal {sense} {goal}   {'ok' if ok else 'MISSED'}")
    print(f"lines per CPU second     {CONSOLE_LINES / values['CPU s for 100k lines']:9,.0f}   "
          f"(wall time {wall:.3f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
