"""`ksm-harness lava-report RESULT.json`: report a run to LAVA, from inside
a LAVA test shell (lava/ksm-harness.yaml calls it after the run).

Every scenario becomes one `lava-test-case` with a stable id (the scenario
name and its matrix point, report/testid.py case_id, never the reason), its
result (pass, fail, skip; an ERROR is a fail) and its duration as a
measurement in seconds; scenarios are grouped by their directory with
`lava-test-set start core|seed ... stop`.  The reason of a scenario that did
not pass goes in a separate record, `lava-test-event "ID: reason"`, which
LAVA keeps in the job log next to the case, so the id stays the same whether
a scenario passed, failed or skipped.  A step's `measure:` is one more
case, ID_NAME, with the scenario's result and the step's MiB/s (or
seconds) as its measurement.  A `ksm-harness perf --json` file reports as
set "perf", one case per number in MiB/s.

The lava-test-* helpers are the shell scripts the LAVA test shell puts in
$PATH (lava_dispatcher/lava_test_shell/); each call prints a
<LAVA_SIGNAL_...> line that the dispatcher reads from the console
(lava_dispatcher/actions/test/shell.py check_patterns()).

    ksm-harness lava-report result.json            # in a LAVA test shell
    ksm-harness lava-report --print result.json    # the calls, one shell line each
"""
import argparse
import shlex
import shutil
import subprocess
import sys
from typing import List, Optional

from .errors import EXIT_ERROR, EXIT_USAGE, CannotRun, HarnessError, InputError
from .report import json_report
from .report import perf as perf_report
from .report.terminal import one_line
from .report.testid import case_id, suite
from .results import ERROR, FAIL, PASS, SKIP, Measurement

RESULT = {PASS: "pass", FAIL: "fail", SKIP: "skip", ERROR: "fail"}  # lava_dispatcher connection.py SignalMatch
HELPERS = ("lava-test-set", "lava-test-case", "lava-test-event")


def _event_text(text: str) -> str:
    """`text` as a signal parameter: the dispatcher's signal pattern
    <LAVA_SIGNAL_(\\S+) ([^>]+)> ends at the first ">", so angle brackets are escaped."""
    return one_line(text).replace("<", "&lt;").replace(">", "&gt;")


def calls(run) -> List[List[str]]:
    """The lava-test-* argv lists that report `run`, in order."""
    out: List[List[str]] = []
    current = None
    for s in run.scenarios:
        if suite(s) != current:
            if current is not None:
                out.append(["lava-test-set", "stop"])
            current = suite(s)
            out.append(["lava-test-set", "start", current])
        if s.status != PASS and s.reason:
            out.append(["lava-test-event", _event_text(f"{case_id(s)}: {s.status}: {s.reason}")])
        out.append(["lava-test-case", case_id(s), "--result", RESULT.get(s.status, "fail"),
                    "--measurement", f"{s.duration:.3f}", "--units", "s"])
        # a step's `measure:` is a case of its own, with the scenario's result
        out.extend(measured(f"{case_id(s)}_{m.name}", s.status, m) for m in s.measurements)
    if current is not None:
        out.append(["lava-test-set", "stop"])
    return out


def measured(case: str, status: str, m) -> List[str]:
    """The lava-test-case call of a results.Measurement: MiB/s where it has pages, else seconds."""
    value, units = (f"{m.mib_per_s:.3f}", "MiB/s") if m.mib_per_s is not None else (f"{m.seconds:.6f}", "s")
    return ["lava-test-case", case, "--result", RESULT.get(status, "fail"), "--measurement", value, "--units", units]


def perf_calls(doc: dict, source: str) -> List[List[str]]:
    """The lava-test-* argv lists that report a `ksm-harness perf --json`
    file: set "perf", one case per number (merge, thp-merge, unmerge, cow,
    cow-unmerged) in MiB/s, one without a measurement for a test that took none."""
    out = [["lava-test-set", "start", "perf"]]
    try:
        for test in doc["tests"]:
            if test["status"] != PASS and test["reason"]:
                out.append(["lava-test-event", _event_text(f"{test['name']}: {test['status']}: {test['reason']}")])
            if not test["measures"]:
                out.append(["lava-test-case", test["name"], "--result", RESULT.get(test["status"], "fail")])
            out.extend(measured(m["name"], test["status"], Measurement(m["name"], m["seconds"], m["bytes"]))
                       for m in test["measures"])
    except (KeyError, TypeError) as e:
        raise InputError(f"malformed perf result ({e!r}): write it again with `ksm-harness perf --json`",
                         file=source)
    return out + [["lava-test-set", "stop"]]


def load_calls(path: str) -> List[List[str]]:
    """The calls for a result file of `run` (or `vm`) or of `perf`."""
    doc = json_report.read_doc(path)
    if isinstance(doc, dict) and doc.get("format") == perf_report.FORMAT:
        return perf_calls(doc, path)
    return calls(json_report.from_dict(doc, source=path))


def report(argvs) -> None:
    """Make every call; CannotRun outside a LAVA test shell."""
    missing = [h for h in HELPERS if shutil.which(h) is None]
    if missing:
        raise CannotRun(f"{', '.join(missing)} not in PATH: run lava-report inside a LAVA test shell, "
                        "or use --print")
    for argv in argvs:
        sys.stdout.flush()
        subprocess.run(argv, check=True)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ksm-harness lava-report",
                                description="Report a ksm-harness JSON result to LAVA with lava-test-case.")
    p.add_argument("result", help="a result file from `ksm-harness run --json` (or `vm`, or `perf --json`)")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the lava-test-* calls instead of making them")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        argvs = load_calls(args.result)
        if args.print_only:
            for call in argvs:
                print(shlex.join(call))
        else:
            report(argvs)
    except HarnessError as exc:
        print(f"ksm-harness lava-report: {exc}", file=sys.stderr)
        return exc.exit_code
    except subprocess.CalledProcessError as exc:
        print(f"ksm-harness lava-report: {shlex.join(exc.cmd)} exited {exc.returncode}", file=sys.stderr)
        return EXIT_ERROR
    return 0
