"""A real LAVA engine runs ksm-harness: lava-dispatcher's own `lava-run`
executes lava/jobs/qemu-ksm.yaml on the lava/devices/ksm-qemu.yaml device
(qemu, TCG, 2 NUMA nodes), which boots a shared test kernel with the
harness's initramfs, runs lava/ksm-harness.yaml (one matrix point of the
stale-stable-nodes scenario, through the definition's RUN_ARGS: the engine's
path is the same for one case as for the suite, and each point costs about
a minute of guest time under TCG), and the results LAVA itself records
must say pass on the fixed kernel and fail on the kernel with part 1 of the
fix reverted.  lava-run logs every record as one YAML line on stderr (its
YAMLLogger); the `lvl: results` records are what a LAVA server stores as the
job's results (lava-run itself keeps only the job's verdict in
OUT/result.yaml).  The log is kept as OUT/lava.log.

Two boots, one per kernel; each prints its seconds.  Skips with the reason
where lava-dispatcher (Debian's lava-dispatcher package), qemu, busybox, the
kernels or root are missing.  Run it under the VM lock like every qemu test.
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from harness import initramfs

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
KERNELS = Path(os.environ.get("KSM_HARNESS_KERNELS") or REPO.parent / "shared" / "kernels")
LAVA = REPO / "lava"
SCENARIO = "scenarios/seed/stale-stable-nodes.yaml"
POINT = "from=0,far=0"  # `ksm-harness run -k`: the quickest point, which part 1 reverted fails like the others
CASE = "stale-stable-nodes_from_0_far_0"  # its LAVA case id
JOB_MINUTES = 15  # lava-run's own job timeout is in the job file; this bounds the subprocess


def needs():
    """Why this machine cannot run a LAVA job, or ""."""
    for tool, package in (("lava-run", "lava-dispatcher"), ("qemu-system-x86_64", "qemu-system-x86"),
                          ("git", "git"), ("cpio", "cpio")):
        if not shutil.which(tool):
            return f"{tool} not installed (Debian: apt-get install {package})"
    if not Path("/bin/busybox").is_file():
        return "no /bin/busybox (Debian: busybox-static)"
    if os.geteuid() != 0:
        return "lava-run unpacks the initramfs with its device nodes: run as root"
    if not (REPO / ".git").exists():
        return f"{REPO} is not a git checkout: LAVA clones the test definition from it"
    return ""


def job_files(tmp_path, kernel):
    """The repository's device and job files, pointed at this checkout, the kernel
    and the harness initramfs (the substitutions the job template's header lists)."""
    device = (LAVA / "devices/ksm-qemu.yaml").read_text().replace("/opt/ksm-harness", str(REPO))
    job = yaml.safe_load((LAVA / "jobs/qemu-ksm.yaml").read_text().replace("/opt/ksm-harness", str(REPO)))
    images = job["actions"][0]["deploy"]["images"]
    images["kernel"]["url"] = f"file://{kernel}"
    images["ramdisk"]["url"] = f"file://{initramfs.build()}"
    parameters = job["actions"][2]["test"]["definitions"][0]["parameters"]
    parameters["SCENARIOS"] = SCENARIO
    parameters["RUN_ARGS"] = f"-k {POINT}"
    job["job_name"] = f"ksm-harness {SCENARIO} on {kernel.name}"
    (tmp_path / "device.yaml").write_text(device)
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job, sort_keys=False))
    return tmp_path / "device.yaml", tmp_path / "job.yaml"


def lava_results(log):
    """LAVA's recorded results, {(definition, case): record}: the `lvl: results` lines of its log."""
    records = [yaml.safe_load(line) for line in log.splitlines() if '"lvl": "results"' in line]
    return {(r["msg"]["definition"], r["msg"]["case"]): r["msg"] for r in records}


@pytest.mark.parametrize("kernel, expected", [("fixed", "pass"), ("stale-stable-nodes", "fail")])
def test_lava_run_records_stale_stable_nodes(kernel, expected, tmp_path):
    why = needs()
    image = KERNELS / f"ksm-6.1.192-{kernel}.bzImage"
    if why or not image.is_file():
        pytest.skip(why or f"no test kernel at {image} (set KSM_HARNESS_KERNELS)")
    device, job = job_files(tmp_path, image)
    out = tmp_path / "out"
    start = time.monotonic()
    proc = subprocess.run(["lava-run", "--job-id", "1", "--output-dir", str(out), "--device", str(device), str(job)],
                          capture_output=True, text=True, timeout=JOB_MINUTES * 60)
    print(f"lava-run on {image.name}: {time.monotonic() - start:.0f} s")
    (out / "lava.log").write_text(proc.stderr)
    tail = proc.stdout[-2000:] + proc.stderr[-6000:]
    results = lava_results(proc.stderr)
    assert results.get(("lava", "job"), {}).get("result") == "pass", tail  # the engine ran the job through
    suite = next(d for d, c in results if d.endswith("_ksm-harness"))  # "0_ksm-harness": LAVA numbers them
    assert {c for d, c in results if d == suite} == {CASE}, tail
    record = results[(suite, CASE)]
    assert record["result"] == expected, (record, tail)
    assert record["set"] == "seed" and record["units"] == "s" and record["measurement"] > 0, record
