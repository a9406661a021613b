"""`ksm-harness lava-report RESULT.json`: report a run to LAVA, from inside
a LAVA test shell (lava/ksm-harness.yaml calls it after the run).

Every scenario becomes one `lava-test-case` with a stable id (the scenario
name and its matrix point, report/testid.py case_id, never the reason), its
result (pass, fail, skip; an ERROR is a fail) and its duration as a
measurement in seconds; scenarios are grouped by their directory with
`lava-test-set start core|seed ... stop`.  The reason of a scenario that did
not pass goes in a separate record, `lava-test-event "ID: reason"`, which
LAVA keeps in the job log next to the case, so the id stays the same whether
a scenario passed, failed or skipped.

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

from .errors import EXIT_ERROR, EXIT_USAGE, CannotRun, HarnessError
from .report import json_report
from .report.terminal import one_line
from .report.testid import case_id, suite
from .results import ERROR, FAIL, PASS, SKIP

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
    if current is not None:
        out.append(["lava-test-set", "stop"])
    return out


def report(run) -> None:
    """Make every call of `calls(run)`; CannotRun outside a LAVA test shell."""
    missing = [h for h in HELPERS if shutil.which(h) is None]
    if missing:
        raise CannotRun(f"{', '.join(missing)} not in PATH: run lava-report inside a LAVA test shell, "
                        "or use --print")
    for argv in calls(run):
        sys.stdout.flush()
        subprocess.run(argv, check=True)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="ksm-harness lava-report",
                                description="Report a ksm-harness JSON result to LAVA with lava-test-case.")
    p.add_argument("result", help="a result file from `ksm-harness run --json`")
    p.add_argument("--print", dest="print_only", action="store_true",
                   help="print the lava-test-* calls instead of making them")
    try:
        args = p.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        run = json_report.load(args.result)
        if args.print_only:
            for call in calls(run):
                print(shlex.join(call))
        else:
            report(run)
    except HarnessError as exc:
        print(f"ksm-harness lava-report: {exc}", file=sys.stderr)
        return exc.exit_code
    except subprocess.CalledProcessError as exc:
        print(f"ksm-harness lava-report: {shlex.join(exc.cmd)} exited {exc.returncode}", file=sys.stderr)
        return EXIT_ERROR
    return 0
