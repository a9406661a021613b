"""`ksm-harness lava-report` (harness/lava.py): the lava-test-* calls for a
result, and what LAVA's own helper scripts make of them (the signals that
lava-dispatcher reads from the console), where lava-dispatcher is installed."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import lava, perf
from harness.errors import InputError
from harness.report import json_report
from harness.report import perf as perf_report
from harness.results import FAIL, PASS, SKIP, Measurement, RunResult, ScenarioResult

REPO = Path(__file__).resolve().parents[2]
LAVA_SHELL = Path("/usr/lib/python3/dist-packages/lava_dispatcher/lava_test_shell")
SIGNAL = re.compile(r"<LAVA_SIGNAL_(\S+) ([^>]+)>")  # lava_dispatcher/actions/test/shell.py

RUN = RunResult("6.1.192", "2025-01-01T00:00:00+00:00", 20.0, (
    ScenarioResult("merge-unmerge", "scenarios/core/merge-unmerge.yaml", 9, PASS, 3.25),
    ScenarioResult("numa-nodes", "scenarios/core/numa-nodes.yaml", 7, SKIP, 0.0,
                   reason="needs 2 NUMA nodes with memory, this machine has 1 (boot a VM: ksm-harness vm --numa 2)"),
    ScenarioResult("stale-stable-nodes[from=1,far=0]", "scenarios/seed/stale-stable-nodes.yaml", 16, FAIL, 12.5,
                   reason="victim.r.ksm == 0: victim.r.ksm=4096 (want == 0)", params={"from": "1", "far": "0"}),
))


def test_calls():
    assert lava.calls(RUN) == [
        ["lava-test-set", "start", "core"],
        ["lava-test-case", "merge-unmerge", "--result", "pass", "--measurement", "3.250", "--units", "s"],
        ["lava-test-event", "numa-nodes: skip: needs 2 NUMA nodes with memory, this machine has 1 "
                            "(boot a VM: ksm-harness vm --numa 2)"],
        ["lava-test-case", "numa-nodes", "--result", "skip", "--measurement", "0.000", "--units", "s"],
        ["lava-test-set", "stop"],
        ["lava-test-set", "start", "seed"],
        ["lava-test-event", "stale-stable-nodes_from_1_far_0: fail: victim.r.ksm == 0: victim.r.ksm=4096 (want == 0)"],
        ["lava-test-case", "stale-stable-nodes_from_1_far_0", "--result", "fail", "--measurement", "12.500",
         "--units", "s"],
        ["lava-test-set", "stop"],
    ]


def test_event_text_cannot_end_the_signal():
    odd = ScenarioResult("x", "s/x.yaml", 1, FAIL, 1.0, reason="a.r.ksm >= 1: got <0>")
    (event,) = [c for c in lava.calls(RunResult("k", "", 1.0, (odd,))) if c[0] == "lava-test-event"]
    assert event[1] == "x: fail: a.r.ksm &gt;= 1: got &lt;0&gt;"


def harness(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd)


def test_print(tmp_path):
    json_report.write(RUN, tmp_path / "r.json")
    proc = harness("lava-report", "--print", str(tmp_path / "r.json"))
    assert proc.returncode == 0
    assert proc.stdout.splitlines()[1] == "lava-test-case merge-unmerge --result pass --measurement 3.250 --units s"


def test_outside_a_lava_test_shell_is_cannot_run(tmp_path):
    json_report.write(RUN, tmp_path / "r.json")
    proc = harness("lava-report", str(tmp_path / "r.json"), env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 125 and "lava-test-case" in proc.stderr and "not in PATH" in proc.stderr


def test_bad_result_file_is_exit_2(tmp_path):
    (tmp_path / "r.json").write_text("{")
    proc = harness("lava-report", str(tmp_path / "r.json"))
    assert proc.returncode == 2 and "not JSON" in proc.stderr


def test_signals_from_lavas_own_helpers(tmp_path):
    """The calls made through lava-dispatcher's real lava-test-case, -set and
    -event scripts: the signals on stdout are what the dispatcher parses."""
    if not LAVA_SHELL.is_dir():
        pytest.skip("lava-dispatcher not installed (apt-get install lava-dispatcher)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("lava-test-case", "lava-test-set", "lava-test-event", "lava-common-functions"):
        # the dispatcher writes the interpreter line when it deploys them (lava_test_shell README)
        (bin_dir / name).write_text("#!/bin/sh\n" + (LAVA_SHELL / name).read_text())
        (bin_dir / name).chmod(0o755)
    json_report.write(RUN, tmp_path / "r.json")
    results = tmp_path / "results"
    proc = harness("lava-report", str(tmp_path / "r.json"),
                   env={"PATH": f"{bin_dir}:{os.environ['PATH']}", "LAVA_RESULT_DIR": str(results)})
    assert proc.returncode == 0, proc.stderr
    signals = SIGNAL.findall(proc.stdout)
    assert signals[:2] == [("TESTSET", "START core"),
                           ("TESTCASE", "TEST_CASE_ID=merge-unmerge RESULT=pass UNITS=s MEASUREMENT=3.250")]
    cases = {}
    for name, params in signals:
        if name == "TESTCASE":  # handle_testcase(): KEY=VALUE words
            fields = dict(word.split("=") for word in params.split())
            cases[fields["TEST_CASE_ID"]] = fields["RESULT"]
    assert cases == {"merge-unmerge": "pass", "numa-nodes": "skip", "stale-stable-nodes_from_1_far_0": "fail"}
    assert ("TESTEVENT", "stale-stable-nodes_from_1_far_0: fail: victim.r.ksm == 0: victim.r.ksm=4096 (want == 0)") \
        in signals
    assert (results / "results" / "numa-nodes" / "result").read_text() == "skip\n"


def test_a_measured_step_is_a_case_of_its_own_with_its_speed():
    measured = ScenarioResult("throughput", "scenarios/core/throughput.yaml", 1, PASS, 9.0, measurements=(
        Measurement("merge", 0.4, 100 << 20), Measurement("settle", 1.5)))
    assert lava.calls(RunResult("k", "", 9.0, (measured,)))[2:4] == [
        ["lava-test-case", "throughput_merge", "--result", "pass", "--measurement", "250.000", "--units", "MiB/s"],
        ["lava-test-case", "throughput_settle", "--result", "pass", "--measurement", "1.500000", "--units", "s"]]


def test_a_perf_result_reports_as_set_perf(tmp_path):
    run = perf.PerfRun("6.18", "", 3.0, (("run", "2"),), (
        perf.Outcome("merge", "-P", PASS, measures=(Measurement("merge", 0.5, 100 << 20),)),
        perf.Outcome("thp-merge", "-H", SKIP, reason="transparent hugepages are off (enabled: never)"),
        perf.Outcome("cow", "-C", PASS, measures=(Measurement("cow", 0.008, 8192000),
                                                  Measurement("cow-unmerged", 0.0001, 8192000)))))
    perf_report.write("json", run, tmp_path / "perf.json")
    assert lava.load_calls(str(tmp_path / "perf.json")) == [
        ["lava-test-set", "start", "perf"],
        ["lava-test-case", "merge", "--result", "pass", "--measurement", "200.000", "--units", "MiB/s"],
        ["lava-test-event", "thp-merge: skip: transparent hugepages are off (enabled: never)"],
        ["lava-test-case", "thp-merge", "--result", "skip"],
        ["lava-test-case", "cow", "--result", "pass", "--measurement", "976.562", "--units", "MiB/s"],
        ["lava-test-case", "cow-unmerged", "--result", "pass", "--measurement", "78125.000", "--units", "MiB/s"],
        ["lava-test-set", "stop"]]
    (tmp_path / "bad.json").write_text('{"format": "%s", "tests": [{}]}' % perf_report.FORMAT)
    with pytest.raises(InputError, match="malformed perf result"):
        lava.load_calls(str(tmp_path / "bad.json"))
