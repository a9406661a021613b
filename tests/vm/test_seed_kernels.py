"""The seed scenarios on the shared 6.1.192 kernels, with 2 NUMA nodes: each
passes on the fixed kernel and fails, with the broken expectation that shows
its cause, on the kernel with that part of the fix reverted.

Part 4 (copy-not-uptodate) is the exception, pinned as such: on 6.1 a page
that failed to read from swap never reaches the copy in
ksm_might_need_to_copy() (see the scenario's comment and README), so both
kernels give SIGBUS and the scenario passes on both.
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KERNELS = Path(os.environ.get("KSM_HARNESS_KERNELS") or REPO.parent / "shared" / "kernels")

pytestmark = pytest.mark.vm
SEED = REPO / "scenarios" / "seed"

# reverted kernel -> (scenario, a failed check that names the cause)
REVERTED = {
    "stale-stable-nodes": ("stale-stable-nodes.yaml", "victim.r.ksm == 0"),
    "fork-behind-cursor": ("fork-during-unmerge.yaml", "a.r.ksm == 0"),
    "swapin-during-unmerge": ("swapin-during-unmerge.yaml", "victim.r.ksm == 0"),
}


def boot(kernel, scenarios, out):
    image = KERNELS / f"ksm-6.1.192-{kernel}.bzImage"
    if not image.exists() or not shutil.which("qemu-system-x86_64"):
        pytest.skip(f"needs qemu-system-x86_64 and {image}")
    proc = subprocess.run([sys.executable, "-m", "harness", "vm", "--kernel", image, "--numa", "2",
                           "--timeout", "600", "--out", out, "run", "-q", *scenarios],
                          cwd=REPO, capture_output=True, text=True, timeout=700)
    result = json.loads((out / "result.json").read_text()) if (out / "result.json").exists() else None
    return proc, result


def test_fixed_kernel_passes_the_default_suite(tmp_path):
    proc, result = boot("fixed", [REPO / "scenarios"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    status = {s["name"]: s["status"] for s in result["scenarios"]}
    # one boot ran every seed scenario, both merge_across_nodes directions,
    # with pages on one node and on both, and the NUMA scenario the host skips
    seed = {n: st for n, st in status.items() if s_file(result, n).startswith(str(SEED))}
    assert len(seed) == 7 and set(seed.values()) == {"pass"}, seed
    assert status["numa-nodes"] == "pass"
    # only the interfaces 6.1 lacks skip: PR_SET_MEMORY_MERGE 6.4, smart_scan 6.7, advisor 6.9
    assert {n.split("[")[0] for n, st in status.items() if st == "skip"} == {"prctl-merge", "smart-scan", "advisor"}


def s_file(result, name):
    return next(s["file"] for s in result["scenarios"] if s["name"] == name)


def test_swap_read_errors_give_sigbus_with_part_4_reverted_too(tmp_path):
    proc, result = boot("copy-not-uptodate", [SEED / "copy-not-uptodate.yaml"], tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (scenario,) = result["scenarios"]
    sigbus = next(c for c in scenario["checks"] if c["what"].startswith("victim.r.sigbus"))
    assert sigbus["passed"] and scenario["deltas"]["pswpin"] > 0


@pytest.mark.parametrize("kernel", sorted(REVERTED))
def test_reverted_part_fails_its_scenario(kernel, tmp_path):
    scenario, cause = REVERTED[kernel]
    proc, result = boot(kernel, [SEED / scenario], tmp_path)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    failed = [c["what"] for s in result["scenarios"] for c in s["checks"] if not c["passed"]]
    crashes = [c["title"] for s in result["scenarios"] for c in s["crashes"]]
    assert failed or crashes
    assert any(f.startswith(cause) for f in failed), failed
    # the invariant: nothing shared must mean nothing mapped KSM
    assert any(f.startswith("pages_shared == 0 => no KSM page mapped") for f in failed) or crashes, failed
