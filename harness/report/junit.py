"""JUnit XML, for CI systems (Jenkins, GitLab, GitHub test reporters).

Valid against Jenkins' xunit-plugin junit-10.xsd (the strict one, which
tests/data/junit has with its source): `testsuites` carries only name, time
and the counts but `skipped`; `testcase` only name, classname and time.

One <testsuite> per scenario file, one <testcase> per scenario:
classname = directory.stem ("seed.stale-stable-nodes", report/testid.py),
name = scenario name with its matrix point.  A failed scenario carries
<failure message=reason> whose text is the reason, the failed checks and
each crash with its log lines; an errored one <error>; a skipped one
<skipped message=reason> with the reason as its text too (readers that show
only the text lose nothing).  The file:line, notes, taint and counter
deltas go to <system-out>.  Kernel log text can hold characters XML 1.0
forbids, so all text goes through terminal.clean().
"""
import xml.etree.ElementTree as ET

from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import check_text, clean, crash_text, one_line, problems
from .testid import classname


def _set_counts(element, scenarios, seconds, skipped=True):
    statuses = [s.status for s in scenarios]
    element.set("tests", str(len(statuses)))
    element.set("failures", str(statuses.count(FAIL)))
    element.set("errors", str(statuses.count(ERROR)))
    if skipped:  # junit-10.xsd: on <testsuite>, not on <testsuites>
        element.set("skipped", str(statuses.count(SKIP)))
    element.set("time", f"{seconds:.3f}")


def _body(s):
    """The reason, the failed checks, then each crash with its lines as logged."""
    parts = [one_line(s.reason)] if s.reason else []
    parts += [f"check failed: {check_text(c)}" for c in s.failed_checks]
    for c in s.crashes:
        parts.append(f"crash: {crash_text(c)}")
        parts.extend(f"  {clean(line)}" for line in c.lines)
    return "\n".join(parts)


def _system_out(s):
    parts = [f"file: {one_line(s.file)}:{s.line}"]
    parts += [f"note: {one_line(n)}" for n in s.notes]
    parts += [f"taint: {one_line(t)}" for t in s.taint]
    parts += [f"delta: {one_line(k)} {v:+d}" for k, v in sorted(s.deltas.items())]
    if s.status == PASS:  # a passing scenario's problems have no other place to go
        parts += problems(s)
    return "\n".join(parts)


def _testcase(parent, s):
    case = ET.SubElement(parent, "testcase", classname=classname(s), name=clean(s.name), time=f"{s.duration:.3f}")
    message = one_line(s.reason) or next(iter(problems(s)), "") or s.status
    if s.status == FAIL:
        ET.SubElement(case, "failure", message=message, type="failure").text = _body(s)
    elif s.status == ERROR:
        ET.SubElement(case, "error", message=message, type="error").text = _body(s)
    elif s.status == SKIP:
        ET.SubElement(case, "skipped", message=one_line(s.reason)).text = one_line(s.reason)
    ET.SubElement(case, "system-out").text = _system_out(s)


def render(run):
    """`run` as a JUnit XML document (str)."""
    root = ET.Element("testsuites", name="ksm-harness")
    _set_counts(root, run.scenarios, run.duration, skipped=False)
    by_file = {}
    for s in run.scenarios:
        by_file.setdefault(s.file, []).append(s)
    for file, scenarios in by_file.items():
        suite = ET.SubElement(root, "testsuite", name=classname(scenarios[0]), timestamp=clean(run.started),
                              file=clean(file))
        if run.environment.get("hostname"):
            suite.set("hostname", clean(run.environment["hostname"]))
        _set_counts(suite, scenarios, sum(s.duration for s in scenarios))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="kernel", value=clean(run.kernel))
        ET.SubElement(props, "property", name="file", value=clean(file))
        for key, value in sorted(run.environment.items()):
            ET.SubElement(props, "property", name=f"environment.{clean(key)}", value=clean(value))
        for finding in run.findings:
            ET.SubElement(props, "property", name="kernel_finding", value=one_line(finding))
        for s in scenarios:
            _testcase(suite, s)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"

