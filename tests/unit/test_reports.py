"""The result writers, fed hand-built results: structure, escaping, round trip."""
import io
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.errors import InputError
from harness import report
from harness.report import RENDERERS, html, json_report, junit, ktap, terminal
from harness.results import (ERROR, FAIL, PASS, SKIP, Check, Crash, Measurement, RunResult, Sample, ScenarioResult,
                             StepMark)

# Kernel log text as it can really arrive: markup, a NUL, an escape
# sequence, a C1 CSI, a byte that was not UTF-8 (surrogateescape).
ODD = "Modules linked in: <script>alert(1)</script> & ]]> \x00\x1b[31m\x9b\udcff"

CRASH = Crash(
    kind="WARNING",
    title="WARNING in remove_stable_node",
    line=120,
    lines=("------------[ cut here ]------------", ODD, "---[ end trace 0000000000000000 ]---"),
    seq=4711,
)

PASSED = ScenarioResult(
    name="merge-basic",
    file="scenarios/basic.yaml",
    line=1,
    status=PASS,
    duration=4.25,
    checks=(Check("pages_sharing >= 1000", True, "pages_sharing=1023 (want >= 1000)"),),
    samples=tuple(
        Sample(t=i * 0.5, values={"pages_shared": i, "pages_sharing": 10 * i, "full_scans": i // 2, "pswpin": 7})
        for i in range(5)
    ),
    steps=(StepMark(0.0, 2.0, "merge a"), StepMark(2.0, 2.0, "knob run=2")),
    deltas={"pages_sharing": 40},
    measurements=(Measurement("merge", 0.4, 100 << 20), Measurement("settle", 1.5)),
)
FAILED = ScenarioResult(
    name="stale-stable-nodes[merge_across_nodes=0]",
    file="scenarios/stale.yaml",
    line=3,
    status=FAIL,
    duration=30.5,
    reason="1 expectation failed, 1 kernel report",
    checks=(
        Check("pages_shared == 0", False, "pages_shared=12 (want == 0)"),
        Check("data intact", True, "65536 pages verified"),
    ),
    crashes=(CRASH,),
    taint=("W (kernel issued warning)",),
    samples=(),  # empty timeline: nothing to chart
    steps=(StepMark(0.0, 1.5, "fork_storm a <b>"),),
    deltas={"ksm_swpin_copy": 3, "pages_shared": -4},
    notes=("race window hit 3 times",),
    log_context=("[    1.000000] earlier line",),
    started="2025-01-02T03:04:10+00:00",
    params={"merge_across_nodes": "0"},
)
SKIPPED = ScenarioResult(
    name="swap-in", file="scenarios/swap.yaml", line=9, status=SKIP, duration=0.0, reason="no swap device"
)
ERRORED = ScenarioResult(
    name="fork-behind-cursor", file="other/fork.yaml", line=2, status=ERROR, duration=61.0, reason="worker a died"
)
RUN = RunResult(
    kernel="6.1.192-ksm", started="2025-01-02T03:04:05Z", duration=96.0, scenarios=(PASSED, FAILED, SKIPPED, ERRORED),
    environment={"kernel_release": "6.1.192-ksm", "machine": "x86_64", "hostname": "runner1", "numa_nodes": "2"},
)


def test_clean_makes_control_characters_visible():
    assert terminal.clean("a\tb\nc") == "a\tb\nc"
    assert terminal.clean("\x00\x1b[1m\x7f\x9b\udcff\ufffe") == "\\x00\\x1b[1m\\x7f\\x9b\\xff\\ufffe"
    assert terminal.clean("é ü —") == "é ü —"
    assert terminal.one_line(" two\n lines\r ") == "two lines\\x0d"


def test_problems_lists_failed_checks_then_crashes():
    assert terminal.problems(FAILED) == [
        "check failed: pages_shared == 0: pages_shared=12 (want == 0)",
        "crash: WARNING in remove_stable_node (log line 120, kmsg seq 4711)",
    ]
    assert terminal.problems(PASSED) == []


@pytest.mark.parametrize(
    "seconds, text", [(0.0, "0.00s"), (4.256, "4.26s"), (30.5, "30.5s"), (61.0, "1m01s"), (3725, "1h02m")]
)
def test_format_duration(seconds, text):
    assert terminal.format_duration(seconds) == text


# JSON


def test_json_round_trip(tmp_path):
    path = tmp_path / "run.json"
    json_report.write(RUN, path)
    assert json_report.load(path) == RUN


def test_json_document(tmp_path):
    doc = json.loads(json_report.dumps(RUN))
    assert doc["format"] == "ksm-harness-result" and doc["version"] == 1
    assert doc["status"] == FAIL  # a FAIL (the kernel's) outweighs an ERROR (ours)
    assert doc["totals"] == {PASS: 1, FAIL: 1, SKIP: 1, ERROR: 1}
    failed = doc["scenarios"][1]
    assert failed["failed"] == ["pages_shared == 0: pages_shared=12 (want == 0)"]
    assert failed["crashes"][0]["lines"][1] == ODD  # kept as logged
    assert failed["crashes"][0]["seq"] == 4711
    assert doc["scenarios"][0]["samples"][1] == {
        "t": 0.5,
        "values": {"pages_shared": 1, "pages_sharing": 10, "full_scans": 0, "pswpin": 7},
    }


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not JSON"),
        ('{"format": "junit"}', "not a ksm-harness result file"),
        ('{"format": "ksm-harness-result", "version": 99}', "version 99"),
        ('{"format": "ksm-harness-result", "version": 1, "kernel": "k", "started": "s", "duration": 1,'
         ' "scenarios": [{"name": "x"}]}', "scenarios[0]: missing key 'file'"),
    ],
)
def test_json_load_rejects(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=re.escape(message)) as e:
        json_report.load(path)
    assert str(e.value).startswith(str(path))


def test_json_load_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot read result file"):
        json_report.load(tmp_path / "nope.json")


# JUnit


def test_junit_structure(tmp_path):
    path = tmp_path / "run.xml"
    report.write("junit", RUN, path)
    root = ET.parse(path).getroot()  # control characters from the log did not break the XML
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("4", "1", "1")
    assert root.get("skipped") is None and root.get("timestamp") is None  # junit-10.xsd forbids them here
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert list(suites) == ["scenarios.basic", "scenarios.stale", "scenarios.swap", "other.fork"]
    assert suites["scenarios.swap"].get("skipped") == "1"
    assert suites["scenarios.stale"].find("properties/property[@name='kernel']").get("value") == "6.1.192-ksm"
    assert suites["scenarios.stale"].find("properties/property[@name='environment.numa_nodes']").get("value") == "2"
    assert suites["scenarios.stale"].get("hostname") == "runner1"

    cases = {c.get("name"): c for c in root.iter("testcase")}
    passed = cases["merge-basic"]
    assert (passed.get("classname"), passed.get("time")) == ("scenarios.basic", "4.250")
    assert passed.find("failure") is None and passed.find("skipped") is None
    assert passed.find("system-out").text.splitlines()[0] == "file: scenarios/basic.yaml:1"

    failure = cases["stale-stable-nodes[merge_across_nodes=0]"].find("failure")
    assert failure.get("message") == "1 expectation failed, 1 kernel report"
    body = failure.text.splitlines()
    assert body[0] == "1 expectation failed, 1 kernel report"  # the reason in the text too
    assert body[1] == "check failed: pages_shared == 0: pages_shared=12 (want == 0)"
    assert body[2] == "crash: WARNING in remove_stable_node (log line 120, kmsg seq 4711)"
    assert body[4] == "  " + terminal.clean(ODD)
    out = cases["stale-stable-nodes[merge_across_nodes=0]"].find("system-out").text
    assert "note: race window hit 3 times" in out and "delta: pages_shared -4" in out

    skipped = cases["swap-in"].find("skipped")
    assert skipped.get("message") == skipped.text == "no swap device"
    error = cases["fork-behind-cursor"].find("error")
    assert error.get("message") == "worker a died" and error.text == "worker a died"
    assert cases["fork-behind-cursor"].get("classname") == "other.fork"


JUNIT_SCHEMAS = sorted((Path(__file__).parents[1] / "data" / "junit").glob("junit-10-*.xsd"))


@pytest.mark.parametrize("xsd", JUNIT_SCHEMAS, ids=lambda p: p.stem)
def test_junit_validates_against_jenkins_junit_10_xsd(xsd):
    etree = pytest.importorskip("lxml.etree")
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    empty = RunResult(kernel="6.18.0", started="2025-01-01T00:00:00Z", duration=0.0, scenarios=())
    for run in (RUN, empty):
        document = etree.fromstring(junit.render(run).encode())
        assert schema.validate(document), schema.error_log


def test_junit_schemas_shipped():
    assert [p.name for p in JUNIT_SCHEMAS] == [
        "junit-10-14c6e39c38408b9ed6280361484a13c6f5becca7.xsd", "junit-10-ae25da5089d4f94ac6c4669bf736e4d416cc4665.xsd"]


# KTAP


def test_ktap_lines():
    assert ktap.render(RUN).splitlines() == [
        "KTAP version 1",
        "1..4",
        "# kernel: 6.1.192-ksm",
        "# measured merge: 100 MiB in 0.400000 s: 250.000 MiB/s",
        "# measured settle: 1.500000 s",
        "ok 1 merge-basic",
        "# stale-stable-nodes_merge_across_nodes_0: 1 expectation failed, 1 kernel report",
        "# check failed: pages_shared == 0: pages_shared=12 (want == 0)",
        "# crash: WARNING in remove_stable_node (log line 120, kmsg seq 4711)",
        "# exercised: ksm_swpin_copy +3",
        "not ok 2 stale-stable-nodes_merge_across_nodes_0",
        "ok 3 swap-in # SKIP no swap device",
        "not ok 4 fork-behind-cursor # error worker a died",
        "# Totals: pass:1 fail:1 xfail:0 xpass:0 skip:1 error:1",
    ]


def test_ktap_names_cannot_start_a_directive():
    odd = ScenarioResult(name="a # b\nc", file="f.yaml", line=1, status=SKIP, duration=0, reason="why\nnot")
    lines = ktap.render(RunResult("", "", 0, (odd,))).splitlines()
    assert lines[2] == "ok 1 a # SKIP why not"


# HTML


def test_html_page(tmp_path):
    path = tmp_path / "run.html"
    report.write("html", RUN, path)
    page = path.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert "<script" not in page  # the crash line's markup is shown, not run
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; ]]&gt; \\x00\\x1b[31m\\x9b\\xff" in page
    assert "fork_storm a &lt;b&gt;" in page
    assert "default-src 'none'" in page
    assert ' src=' not in page and "<link" not in page  # self-contained
    # The summary table lists every scenario, linked to its section.
    for number, s in enumerate(RUN.scenarios, 1):
        assert f'<a href="#s{number}">{html._e(s.name)}</a>' in page
        assert f'<section id="s{number}"' in page


def test_html_timeline_charts_main_counters_and_changing_fields():
    chart = html.timeline(PASSED)
    assert chart.startswith("<svg")
    assert chart.count("<polyline") == 3  # pages_shared, pages_sharing, full_scans
    assert chart.index(">pages_shared<") < chart.index(">pages_sharing<") < chart.index(">full_scans<")
    assert "Unchanged: pswpin=7" in chart  # flat vmstat field: listed, not drawn
    assert chart.count("<rect") == 1 + 3  # one band (the instant step is a line) + row frames
    assert "knob run=2" in chart


def test_html_timeline_without_samples():
    chart = html.timeline(FAILED)  # steps but no samples: bands, no lines
    assert "<polyline" not in chart and "no counter samples" in chart
    assert html.timeline(SKIPPED) == ""


def test_html_one_sample_is_a_dot():
    one = ScenarioResult(name="x", file="x.yaml", line=1, status=ERROR, duration=0.0,
                         samples=(Sample(0.0, {"pages_shared": 3}),))
    assert "<circle" in html.timeline(one)


def test_nice_step():
    assert html._nice_step(30) == 5
    assert html._nice_step(4) == 0.5
    assert html._nice_step(0.07) == pytest.approx(0.01)


# terminal


def test_summary():
    lines = terminal.summary(RUN).splitlines()
    assert lines[0].split() == ["PASS", "merge-basic", "4.25s"]
    assert lines[1].strip() == "measured merge: 100 MiB in 0.400000 s: 250.000 MiB/s"
    assert lines[2].strip() == "measured settle: 1.500000 s"
    lines = lines[2:]
    assert lines[1].split()[:3] == ["FAIL", "stale-stable-nodes[merge_across_nodes=0]", "30.5s"]
    assert lines[1].endswith("1 expectation failed, 1 kernel report")
    assert lines[2].strip() == "check failed: pages_shared == 0: pages_shared=12 (want == 0)"
    assert lines[3].strip() == "crash: WARNING in remove_stable_node (log line 120, kmsg seq 4711)"
    # which paths it exercised (EXERCISED counters only: pages_shared is not one) and its notes
    assert lines[4].strip() == "exercised: ksm_swpin_copy +3"
    assert lines[5].strip() == "note: race window hit 3 times"
    assert lines[6].split() == ["SKIP", "swap-in", "0.00s", "no", "swap", "device"]
    assert lines[7].split()[:3] == ["ERROR", "fork-behind-cursor", "1m01s"]
    assert lines[8] == "4 scenarios: 1 passed, 1 failed, 1 skipped, 1 errored in 1m36s on 6.1.192-ksm"
    assert "\x1b" not in terminal.summary(RUN) and "\x1b[31m" in terminal.summary(RUN, colour=True)


class FakeTTY(io.StringIO):
    def isatty(self):
        return True


def _drive(progress):
    progress.scenario_started("merge-basic", 1, 2)
    progress.step("merge a")
    progress.counters({"pages_shared": 5, "pages_sharing": 50, "full_scans": 1, "pswpin": 9})
    progress.scenario_done(PASSED)


def test_progress_not_a_tty_prints_start_and_end_lines_only():
    stream = io.StringIO()
    _drive(terminal.Progress(stream))
    assert stream.getvalue() == "[1/2] merge-basic ...\n[1/2] merge-basic PASS  4.25s\n"


def test_progress_tty_redraws_one_status_line(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    stream = FakeTTY()
    _drive(terminal.Progress(stream, clock=lambda: 100.0))
    *redraws, done = stream.getvalue().split("\r\x1b[K")
    full = "[1/2] merge-basic | 0.00s | merge a | pages_shared=5 pages_sharing=50 full_scans=1"
    assert redraws[-1] == full[:79]  # no terminal size: 80 columns, one short so it never wraps
    assert done == "[1/2] merge-basic PASS  4.25s\n"  # status line erased first


def test_progress_disabled_prints_nothing():
    stream = FakeTTY()
    _drive(terminal.Progress(stream, enabled=False))
    assert stream.getvalue() == ""


# all writers


def test_writers_write_every_format(tmp_path):
    assert set(RENDERERS) == {"json", "junit", "ktap", "html", "kcidb"}
    for name in RENDERERS:
        report.write(name, RUN, tmp_path / "made" / name)  # parent directories made
        assert (tmp_path / "made" / name).read_text(encoding="utf-8") == RENDERERS[name](RUN)


def test_write_dash_is_stdout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    report.write("ktap", RUN, "-", stdout=out)
    assert out.getvalue() == ktap.render(RUN) and not (tmp_path / "-").exists()


def test_empty_run(tmp_path):
    empty = RunResult(kernel="6.18.0", started="2025-01-01T00:00:00Z", duration=0.0, scenarios=())
    assert ktap.render(empty).splitlines()[1] == "1..0"
    assert ET.fromstring(junit.render(empty).split("\n", 1)[1]).get("tests") == "0"
    assert json_report.from_dict(json_report.to_dict(empty)) == empty
    assert "0 scenarios" in terminal.summary(empty)
    assert "<table>" in html.render(empty)
