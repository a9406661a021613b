"""`ksm-harness explore --budget 60` on this machine's kernel, as a user
runs it: no false alarm (no FAIL, nothing but passes and skips, or the
harness trouble it reports apart), a well-formed JSON result, and the
machine left as found.  The run takes the KSM lock itself."""
import json

from harness.explore.report import FORMAT
from harness.results import ERROR, FAIL, PASS

from test_cli_run import harness  # the machine fixture (as found, checked after) is conftest.py's


def test_explore_a_minute_raises_no_false_alarm(machine, tmp_path):  # noqa: F811
    proc = harness("explore", "-q", "--seed", 17, "--budget", 60, "--out", tmp_path / "out",
                   "--json", tmp_path / "r.json")
    out, err = proc.communicate(timeout=600)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["format"] == FORMAT and result["seed"] == 17
    assert result["database"] == str(tmp_path / "out/hypothesis")
    assert result["examples"] >= 3 and result["steps"] > result["examples"] and result["checks"] > 0
    assert result["totals"][FAIL] == 0 and result["reproducer"] is None, result["failures"]
    assert result["totals"][PASS] > result["totals"][ERROR], result["errors"]
    assert proc.returncode == 0, out + err
    assert "no failure found" in out
