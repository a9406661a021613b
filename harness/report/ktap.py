"""KTAP version 1 (Documentation/dev-tools/ktap.rst), the way kselftest
prints it, so kernel CI that already reads selftest output reads ours:

    KTAP version 1
    1..3
    # kernel: 6.1.192
    ok 1 merge-basic
    # check failed: pages_shared == 0: pages_shared=12 (want == 0)
    # crash: WARNING in remove_stable_node (log line 120)
    # exercised: pswpout +4096, ksm_swpin_copy +4096
    not ok 2 stale-stable-nodes_from_1_far_0
    ok 3 numa-nodes # SKIP needs 2 NUMA nodes with memory, this machine has 1
    # Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:0

A test's name is its stable id (report/testid.py case_id: the scenario name
and its matrix point, in [A-Za-z0-9_-]), so a parser that builds ids from
the name alone (LAVA's, kselftest's) sees the same test whatever the result;
the reason goes only in the directive after "#".

Diagnostics come before the result line they explain, as kselftest and
KUnit print them (kunit_parser.py attaches them to the test that follows).
An errored scenario is "not ok N name # error reason", as kselftest.h's
ksft_test_result_error() prints it; the totals line is ksft_print_cnts()'s.
"""
from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import diagnostics, findings, one_line, totals
from .testid import case_id


def render(run):
    """`run` as KTAP text."""
    lines = ["KTAP version 1", f"1..{len(run.scenarios)}"]
    if run.kernel:
        lines.append(f"# kernel: {one_line(run.kernel)}")
    lines.extend(f"# {f}" for f in findings(run))
    for number, s in enumerate(run.scenarios, 1):
        reason = one_line(s.reason)
        if s.status == FAIL and reason:  # skip and error reasons go on the result line
            lines.append(f"# {case_id(s)}: {reason}")
        lines.extend(f"# {p}" for p in diagnostics(s))
        result = "ok" if s.status in (PASS, SKIP) else "not ok"
        line = f"{result} {number} {case_id(s)}"
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

