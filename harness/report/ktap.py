"""KTAP version 1 (Documentation/dev-tools/ktap.rst), the way kselftest
prints it, so kernel CI that already reads selftest output reads ours:

    KTAP version 1
    1..3
    # kernel: 6.1.192
    ok 1 merge-basic
    # check failed: pages_shared == 0: pages_shared=12 (want == 0)
    # crash: WARNING in remove_stable_node (log line 120)
    # exercised: pswpout +4096, ksm_swpin_copy +4096
    not ok 2 stale-stable-nodes
    ok 3 swap-in # SKIP no swap device
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0

Diagnostics come before the result line they explain, as kselftest and
KUnit print them (kunit_parser.py attaches them to the test that follows).
An errored scenario is "not ok N name # error reason", as kselftest.h's
ksft_test_result_error() prints it; the totals line is ksft_print_cnts()'s.
"""
from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import diagnostics, findings, one_line, totals


def _name(s):
    # "#" starts a directive on a result line, so it cannot appear in a name.
    return one_line(s.name).replace("#", "_") or "unnamed"


def render(run):
    """`run` as KTAP text."""
    lines = ["KTAP version 1", f"1..{len(run.scenarios)}"]
    if run.kernel:
        lines.append(f"# kernel: {one_line(run.kernel)}")
    lines.extend(f"# {f}" for f in findings(run))
    for number, s in enumerate(run.scenarios, 1):
        reason = one_line(s.reason)
        if s.status == FAIL and reason:  # skip and error reasons go on the result line
            lines.append(f"# {_name(s)}: {reason}")
        lines.extend(f"# {p}" for p in diagnostics(s))
        result = "ok" if s.status in (PASS, SKIP) else "not ok"
        line = f"{result} {number} {_name(s)}"
        if s.status == SKIP:
            line += f" # SKIP {reason}".rstrip()
        elif s.status == ERROR:
            line += f" # error {reason}".rstrip()
        lines.append(line)
    count = totals(run)
    lines.append(
        f"# Totals: pass:{count[PASS]} fail:{count[FAIL]} xfail:0 xpass:0 "
        f"skip:{count[SKIP]} error:{count[ERROR]}"
    )
    return "\n".join(lines) + "\n"


def write(run, path):
    """Write `run` to `path` as KTAP."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(run))
