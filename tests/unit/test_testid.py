"""Stable test ids (harness/report/testid.py) for the real suite: unique,
free of reasons, unchanged by the parsers of LAVA and kselftest output, and
KTAP that the kernel's own KTAP parser reads back with the same names."""
import importlib
import re
import sys
from pathlib import Path

import pytest

from harness import cli, scenario
from harness.report import ktap, testid
from harness.results import FAIL, PASS, SKIP, RunResult, ScenarioResult

REPO = Path(__file__).resolve().parents[2]
SUITE = scenario.load_all([REPO / "scenarios"])
# What LAVA's test shell accepts as TEST_CASE_ID: no whitespace, and none of
# "=" (handle_testcase() splits KEY=VALUE), ">" (ends the signal), "/" (made "_").
LAVA_FORBIDDEN = re.compile(r"[\s=>/]")
KCIDB_PATH = re.compile(r"^([a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)*)?$")  # kcidb_io v5 test_path_re


def result(sc, status=PASS, reason=""):
    return ScenarioResult(sc.name, sc.file, sc.line, status, 1.0, reason=reason,
                          params={k: str(v) for k, v in sc.params.items()})


def kselftest_slug(name):
    """What a kselftest output parser does to a test name: every character
    outside [A-Za-z0-9_-] becomes "_", none left at the ends."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_")


def test_ids_of_the_real_suite():
    ids = {sc.name: testid.case_id(result(sc)) for sc in SUITE}
    assert ids["stale-stable-nodes[from=1,far=0]"] == "stale-stable-nodes_from_1_far_0"
    assert ids["memcg-limit[merged=1,limit=any,ready=a.r.ksm == 100%]"] == "memcg-limit_merged_1_limit_any_ready_a_r_ksm_100"
    assert ids["numa-nodes"] == "numa-nodes"
    assert len(set(ids.values())) == len(SUITE)  # one id per matrix point
    for case in ids.values():
        assert kselftest_slug(case) == case and not LAVA_FORBIDDEN.search(case) and len(case) <= 100


def test_id_never_holds_the_reason():
    (numa,) = [sc for sc in SUITE if sc.name == "numa-nodes"]
    skipped = result(numa, SKIP, "needs 2 NUMA nodes with memory, this machine has 1")
    assert testid.case_id(skipped) == testid.case_id(result(numa)) == "numa-nodes"


def test_kcidb_paths_and_junit_classnames():
    paths = {testid.kcidb_path(result(sc)) for sc in SUITE}
    assert len(paths) == len(SUITE) and all(KCIDB_PATH.match(p) for p in paths)
    (stale,) = [sc for sc in SUITE if sc.name == "stale-stable-nodes[from=1,far=0]"]
    assert testid.kcidb_path(result(stale)) == "ksm.seed.stale_stable_nodes.from_1.far_0"
    assert testid.classname(result(stale)) == "seed.stale-stable-nodes"


def test_repeat_rounds_get_their_own_id():
    (sc,) = scenario.load_all([REPO / "scenarios/seed/stale-stable-nodes.yaml"], "from=0,far=1")
    rounds = [testid.case_id(result(r)) for r in cli.repeated([sc], 2)]
    assert rounds == ["stale-stable-nodes_from_0_far_1_run_1", "stale-stable-nodes_from_0_far_1_run_2"]
    assert testid.kcidb_path(result(cli.repeated([sc], 2)[1])).endswith(".far_1.run_2")


def kunit_parser():
    """The kernel's KTAP parser (tools/testing/kunit/kunit_parser.py), from Debian's linux-source."""
    trees = sorted(Path("/usr/src").glob("linux-source-*/tools/testing/kunit/kunit_parser.py"), reverse=True)
    if not trees:
        pytest.skip("no /usr/src/linux-source-*/tools/testing/kunit (apt-get install linux-source)")
    sys.path.insert(0, str(trees[0].parent))
    try:
        return importlib.import_module("kunit_parser")
    finally:
        sys.path.pop(0)


def test_kernel_ktap_parser_reads_our_names_and_skips():
    parser = kunit_parser()
    scenarios = [result(sc) for sc in SUITE if sc.name.startswith(("stale-stable-nodes", "numa-nodes"))]
    scenarios[0] = ScenarioResult(**{**scenarios[0].__dict__, "status": FAIL, "reason": "victim.r.ksm == 0"})
    scenarios[-1] = ScenarioResult(**{**scenarios[-1].__dict__, "status": SKIP, "reason": "needs 2 NUMA nodes"})
    text = ktap.render(RunResult("6.1.192", "", 1.0, tuple(scenarios)))
    parsed = parser.parse_run_tests(text.splitlines())
    assert [t.name for t in parsed.subtests] == [testid.case_id(s) for s in scenarios]
    statuses = [t.status.name for t in parsed.subtests]
    assert statuses[0] == "FAILURE" and statuses[-1] == "SKIPPED" and set(statuses[1:-1]) == {"SUCCESS"}
