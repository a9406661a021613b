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
