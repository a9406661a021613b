"""JUnit XML, for CI systems (Jenkins, GitLab, GitHub test reporters).

One <testsuite> per scenario file (name = the file's stem), one <testcase>
per scenario: classname = file stem, name = scenario name.  A failed
scenario carries <failure message=reason> whose body lists the failed
checks and each crash with its log lines; an errored one <error>; a skipped
one <skipped message=reason>.  Notes, taint and counter deltas go to
<system-out>.  Kernel log text can hold characters XML 1.0 forbids, so all
text goes through terminal.clean().
"""
import os
import xml.etree.ElementTree as ET

from ..results import ERROR, FAIL, PASS, SKIP
from .terminal import check_text, clean, crash_text, one_line, problems


def _set_counts(element, scenarios, seconds):
    statuses = [s.status for s in scenarios]
    element.set("tests", str(len(statuses)))
    element.set("failures", str(statuses.count(FAIL)))
    element.set("errors", str(statuses.count(ERROR)))
    element.set("skipped", str(statuses.count(SKIP)))
    element.set("time", f"{seconds:.3f}")


def _body(s):
    """Failed checks, then each crash with its lines as logged."""
    parts = [f"check failed: {check_text(c)}" for c in s.failed_checks]
    for c in s.crashes:
        parts.append(f"crash: {crash_text(c)}")
        parts.extend(f"  {clean(line)}" for line in c.lines)
    return "\n".join(parts)


def _system_out(s):
    parts = [f"note: {one_line(n)}" for n in s.notes]
    parts += [f"taint: {one_line(t)}" for t in s.taint]
    parts += [f"delta: {one_line(k)} {v:+d}" for k, v in sorted(s.deltas.items())]
    if s.status == PASS:  # a passing scenario's problems have no other place to go
        parts += problems(s)
    return "\n".join(parts)


def _testcase(parent, s, classname):
    case = ET.SubElement(
        parent,
        "testcase",
        classname=classname,
        name=clean(s.name),
        time=f"{s.duration:.3f}",
        file=clean(s.file),
        line=str(s.line),
    )
    message = one_line(s.reason) or next(iter(problems(s)), "") or s.status
    if s.status == FAIL:
        ET.SubElement(case, "failure", message=message, type="failure").text = _body(s)
    elif s.status == ERROR:
        ET.SubElement(case, "error", message=message, type="error").text = _body(s)
    elif s.status == SKIP:
        ET.SubElement(case, "skipped", message=one_line(s.reason))
    out = _system_out(s)
    if out:
        ET.SubElement(case, "system-out").text = out


def render(run):
    """`run` as a JUnit XML document (str)."""
    root = ET.Element("testsuites", name="ksm-harness", timestamp=clean(run.started))
    _set_counts(root, run.scenarios, run.duration)
    by_file = {}
    for s in run.scenarios:
        by_file.setdefault(s.file, []).append(s)
    for file, scenarios in by_file.items():
        stem = clean(os.path.splitext(os.path.basename(file))[0])
        suite = ET.SubElement(root, "testsuite", name=stem, timestamp=clean(run.started))
        _set_counts(suite, scenarios, sum(s.duration for s in scenarios))
        props = ET.SubElement(suite, "properties")
        ET.SubElement(props, "property", name="kernel", value=clean(run.kernel))
        ET.SubElement(props, "property", name="file", value=clean(file))
        for finding in run.findings:
            ET.SubElement(props, "property", name="kernel_finding", value=one_line(finding))
        for s in scenarios:
            _testcase(suite, s, stem)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def write(run, path):
    """Write `run` to `path` as JUnit XML."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(render(run))
