"""Command-line parsing that needs no kernel: usage errors are exit 2 with a
one-line message, and --repeat names each round."""
from pathlib import Path

import pytest

from harness import cli, scenario

REPO = Path(__file__).resolve().parents[2]


def test_repeat_names_each_round():
    (sc,) = scenario.load_all([REPO / "scenarios/core/merge-unmerge.yaml"])
    assert cli.repeated([sc], 1) == [sc]
    names = [s.name for s in cli.repeated([sc], 3)]
    assert names == ["merge-unmerge#1", "merge-unmerge#2", "merge-unmerge#3"]


@pytest.mark.parametrize("argv, message", [
    (["run", "--repeat", "0", str(REPO / "scenarios")], "--repeat: must be at least 1"),
    (["run", "--repeat", "x"], "usage: argument --repeat: invalid int value: 'x' (see ksm-harness run --help)"),
    (["frobnicate"], "usage: argument command: invalid choice: 'frobnicate'"),
])
def test_usage_errors_are_exit_2(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("statuses,code,bisect", [
    ({"pass"}, 0, 0), ({"pass", "skip"}, 0, 0), ({"fail", "error", "pass"}, 1, 1), ({"error", "pass"}, 3, 125),
    ({"skip"}, 125, 125), (set(), 125, 125)])
def test_exit_status_fail_is_the_kernels_error_is_ours(statuses, code, bisect):
    assert cli.exit_status(statuses) == code
    assert cli.for_bisect(code) == bisect


def test_help_lists_the_exit_codes(capsys):
    for argv in (["--help"], ["run", "--help"]):
        with pytest.raises(SystemExit):
            cli.main(argv)
        out = capsys.readouterr().out
        assert "exit codes:" in out and "  3    a scenario ERRORED and none failed" in out
        assert "with --bisect, 3 becomes 125 too" in out


def fake_run(monkeypatch):
    """runner.run_all replaced by one that drives nothing and records its calls."""
    from harness import runner
    from harness.results import SKIP, RunResult, ScenarioResult

    calls = []

    def run_all(scenarios, progress, **kw):
        calls.append(scenarios)
        return RunResult("6.1.192", "2025-01-01T00:00:00+00:00", 1.0, tuple(
            ScenarioResult(s.name, s.file, s.line, SKIP, 0.0, reason="needs 2 NUMA nodes", params=dict(s.params))
            for s in scenarios))

    monkeypatch.setattr(runner, "run_all", run_all)
    return calls


def test_ktap_dash_is_all_that_goes_to_stdout(monkeypatch, capsys):
    fake_run(monkeypatch)
    assert cli.main(["run", "--ktap", "-", str(REPO / "scenarios/core/numa-nodes.yaml")]) == 125
    out, err = capsys.readouterr()
    assert out.splitlines() == ["KTAP version 1", "1..1", "# kernel: 6.1.192",
                                "ok 1 numa-nodes # SKIP needs 2 NUMA nodes",
                                "# Totals: pass:0 fail:0 xfail:0 xpass:0 skip:1 error:0"]
    assert "1 scenarios: 0 passed, 0 failed, 1 skipped" in err  # the summary went to stderr


@pytest.mark.parametrize("argv, env, message", [
    (["--ktap", "-", "--junit", "-"], {}, "--junit and --ktap: only one report can go to standard output"),
    (["--kcidb", "k.json"], {"KSM_HARNESS_KCIDB_ORIGIN": "My CI"}, "KSM_HARNESS_KCIDB_ORIGIN: 'My CI': a KCIDB"),
])
def test_report_usage_errors_come_before_the_run(argv, env, message, monkeypatch, capsys):
    calls = fake_run(monkeypatch)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert cli.main(["run", *argv, str(REPO / "scenarios/core/numa-nodes.yaml")]) == 2
    assert message in capsys.readouterr().err and calls == []
