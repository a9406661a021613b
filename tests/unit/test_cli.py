"""Command-line parsing that needs no kernel: usage errors are exit 2 with a
one-line message, and --repeat names each round."""
from pathlib import Path

import pytest

from harness import cli, scenario
from harness.errors import InputError

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
