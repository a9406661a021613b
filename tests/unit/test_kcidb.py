"""KCIDB output (harness/report/kcidb.py), validated by KernelCI's own
kcidb-io package: every document is valid schema v5.3, ids and paths are
stable, and what KCIDB needs is there (start time, environment, matrix
parameters outside the name)."""
import json

import pytest

from harness.errors import InputError
from harness.report import json_report, kcidb
from harness.results import RunResult

from test_reports import RUN

kcidb_io = pytest.importorskip("kcidb_io", reason="pip install kcidb-io (a test dependency in pyproject.toml)")
SCHEMA = kcidb_io.schema.V5_3


def test_document_is_valid_kcidb_v5_3():
    doc = kcidb.to_dict(RUN, kcidb.identity({}))
    SCHEMA.validate_exactly(doc)  # raises jsonschema.ValidationError when not
    assert SCHEMA.is_compatible_exactly(doc) and doc["version"] == {"major": 5, "minor": 3}
    empty = RunResult(kernel="6.18.0", started="2025-01-01T00:00:00Z", duration=0.0, scenarios=())
    SCHEMA.validate_exactly(kcidb.to_dict(empty, kcidb.identity({})))


def test_tests_carry_path_status_time_environment_and_matrix_point():
    doc = kcidb.to_dict(RUN, kcidb.identity({}))
    tests = {t["path"]: t for t in doc["tests"]}
    assert list(tests) == ["ksm.scenarios.merge_basic", "ksm.scenarios.stale_stable_nodes.merge_across_nodes_0",
                           "ksm.scenarios.swap_in", "ksm.other.fork_behind_cursor"]
    failed = tests["ksm.scenarios.stale_stable_nodes.merge_across_nodes_0"]
    assert (failed["status"], failed["duration"], failed["start_time"]) == ("FAIL", 30.5, "2025-01-02T03:04:10+00:00")
    assert failed["misc"]["params"] == {"merge_across_nodes": "0"}
    assert failed["misc"]["notes"] == ["race window hit 3 times"]
    assert failed["environment"]["misc"]["numa_nodes"] == "2"
    assert failed["log_excerpt"].splitlines()[:3] == [
        "1 expectation failed, 1 kernel report",
        "check failed: pages_shared == 0: pages_shared=12 (want == 0)",
        "crash: WARNING in remove_stable_node (log line 120, kmsg seq 4711)"]
    assert "\x00" not in failed["log_excerpt"]  # kernel log bytes made visible (the schema forbids NUL)
    assert tests["ksm.scenarios.swap_in"]["status"] == "SKIP"
    assert tests["ksm.scenarios.swap_in"]["start_time"] == RUN.started  # not recorded: the run's
    assert tests["ksm.other.fork_behind_cursor"]["status"] == "ERROR"
    assert doc["builds"][0]["architecture"] == "x86_64"


def test_identity_from_the_environment():
    ident = kcidb.identity({"KSM_HARNESS_KCIDB_ORIGIN": "my_lab", "KSM_HARNESS_KCIDB_CHECKOUT": "linux-next-20250102",
                            "KSM_HARNESS_KCIDB_BUILD": "b42", "KSM_HARNESS_KCIDB_RUN": "night7",
                            "KSM_HARNESS_KCIDB_COMMIT": "cbf86cfe04a66471f23b9e62e5eba4e525f8b02d",
                            "KSM_HARNESS_KCIDB_TREE": "next"})
    doc = kcidb.to_dict(RUN, ident)
    SCHEMA.validate_exactly(doc)
    assert doc["checkouts"] == [{"id": "my_lab:linux-next-20250102", "origin": "my_lab", "tree_name": "next",
                                 "git_commit_hash": "cbf86cfe04a66471f23b9e62e5eba4e525f8b02d"}]
    assert {t["build_id"] for t in doc["tests"]} == {"my_lab:b42"}
    assert doc["tests"][0]["id"] == "my_lab:b42:night7:ksm.scenarios.merge_basic"


def test_default_ids_are_stable_across_renders():
    first, again = (kcidb.to_dict(RUN, kcidb.identity({})) for _ in range(2))
    assert first == again
    assert first["builds"][0]["checkout_id"] == first["checkouts"][0]["id"]
    assert len({t["id"] for t in first["tests"]}) == len(RUN.scenarios)


@pytest.mark.parametrize("env, field", [
    ({"KSM_HARNESS_KCIDB_ORIGIN": "My-CI"}, "KSM_HARNESS_KCIDB_ORIGIN"),
    ({"KSM_HARNESS_KCIDB_COMMIT": "abc"}, "KSM_HARNESS_KCIDB_COMMIT"),
])
def test_bad_identity_is_an_input_error(env, field):
    with pytest.raises(InputError, match=field):
        kcidb.identity(env)


def test_from_a_json_result_round_trip(tmp_path):
    """A result read back from JSON (as `ksm-harness vm` does) gives the same KCIDB."""
    path = tmp_path / "r.json"
    json_report.write(RUN, path)
    assert kcidb.to_dict(json_report.load(path), kcidb.identity({})) == kcidb.to_dict(RUN, kcidb.identity({}))
    assert json.loads(kcidb.render(RUN))["version"]["major"] == 5
