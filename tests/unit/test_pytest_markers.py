"""conftest.py marks every scenario item `kernel` (and `numa` where it needs
2+ nodes), so `pytest -m "not kernel"` never drives KSM: checked by
collecting the real suite in a child pytest (collection only, no root)."""
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def collected(*args):
    """Node ids a child `pytest --collect-only ARGS scenarios` collects, and its exit code."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
                           "--strict-markers", *args, "scenarios"], cwd=REPO, capture_output=True, text=True)
    return [line for line in proc.stdout.splitlines() if "::" in line], proc.returncode


def test_not_kernel_collects_no_scenario():
    ids, code = collected("-m", "not kernel")
    assert ids == [] and code == 5  # pytest's "no tests collected"


def test_every_scenario_is_a_kernel_item():
    everything, _ = collected()
    marked, _ = collected("-m", "kernel")
    assert len(everything) >= 22 and marked == everything


def test_numa_marks_the_scenarios_that_need_two_nodes():
    ids, _ = collected("-m", "numa")
    assert ids == [
        "scenarios/core/migrate-fork-tree.yaml::migrate-fork-tree",  # requires: numa_nodes: 2
        "scenarios/core/numa-nodes.yaml::numa-nodes",
        "scenarios/seed/stale-stable-nodes.yaml::stale-stable-nodes[from=1,far=1]",  # a region on node 1
        "scenarios/seed/stale-stable-nodes.yaml::stale-stable-nodes[from=0,far=1]",
    ]
