"""Real boots of the shared test kernels under qemu (marker `vm`).

Each boot takes ~5-10 s under TCG; the whole file stays well under 3 minutes.
The kernels are found at ../shared/kernels from the repo root, or at
$KSM_HARNESS_KERNELS; they are never copied into the repo.
"""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from harness import initramfs, vm, vmcli

pytestmark = pytest.mark.vm

REPO = Path(__file__).resolve().parents[2]
KERNELS = Path(os.environ.get("KSM_HARNESS_KERNELS") or REPO.parent / "shared" / "kernels")
FIXED = KERNELS / "ksm-6.1.192-fixed.bzImage"


@pytest.fixture
def kernel():
    if not shutil.which("qemu-system-x86_64"):
        pytest.skip("qemu-system-x86_64 not installed (Debian: qemu-system-x86)")
    if not Path("/bin/busybox").is_file():
        pytest.skip("no /bin/busybox (Debian: busybox-static)")
    if not FIXED.is_file():
        pytest.skip(f"no test kernel at {FIXED} (set KSM_HARNESS_KERNELS)")
    return FIXED


# The stand-in guest command: looks around, then answers through the side
# channel the way `ksm-harness run` does (result.json via the report writer).
PROBE = """
import json, os, sys
from harness.report import json_report
from harness.results import RunResult, ScenarioResult
res = sys.argv[1]
open("/written-by-guest", "w").write("x")  # the overlay makes / writable
facts = {
    "has_memory": open("/sys/devices/system/node/has_memory").read().strip(),
    "ksm": sorted(os.listdir("/sys/kernel/mm/ksm")),
    "memcg": os.path.exists("/sys/fs/cgroup/memory/memory.limit_in_bytes"),
    "debugfs": os.path.isdir("/sys/kernel/debug/tracing") or bool(os.listdir("/sys/kernel/debug")),
    "cwd": os.getcwd(),
    "python": sys.executable,
    "prefix": sys.prefix,
}
json.dump(facts, open(os.path.join(res, "facts.json"), "w"))
scenario = ScenarioResult(name="probe", file="probe.yaml", line=1, status="fail", duration=0.5, reason="on purpose")
json_report.write(RunResult(kernel=os.uname().release, started="", duration=1.0, scenarios=(scenario,)),
                  os.path.join(res, "result.json"))
print("probe done")
sys.exit(1)
"""


def boot(kernel, command, out, timeout=120.0, **kw):
    return vm.run_in_vm(vm.VmOptions(kernel=kernel, timeout=timeout, **kw), command, out, cwd=str(REPO))


def test_boot_two_nodes_side_channel(kernel, tmp_path):
    run = boot(kernel, [sys.executable, "-c", PROBE, initramfs.GUEST_RESULTS], tmp_path)
    assert run.ready_after is not None and run.accel.name in ("tcg", "kvm")
    assert (run.guest_exit, run.status, run.hung) == (1, 1, False), run.reason
    assert run.crashes == ()
    facts = json.loads((tmp_path / "facts.json").read_text())
    assert facts["has_memory"] == "0-1"  # two NUMA nodes, both with memory
    assert "merge_across_nodes" in facts["ksm"] and "run" in facts["ksm"]
    assert facts["memcg"] and facts["debugfs"]
    assert facts["cwd"] == str(REPO)
    assert (facts["python"], facts["prefix"]) == (sys.executable, sys.prefix)  # the host venv, in the chroot
    assert [(s.name, s.status) for s in run.result.scenarios] == [("probe", "fail")]
    assert (tmp_path / "guest.log").read_text() == "probe done\n"
    assert not Path("/written-by-guest").exists()  # the host's / stayed read-only
    console = (tmp_path / "console.log").read_text()
    assert vm.MARKER in console and "Power down" in console


def test_guest_panic_is_a_failed_run(kernel, tmp_path):
    run = boot(kernel, ["sh", "-c", "echo c > /proc/sysrq-trigger"], tmp_path)
    assert run.status == 1 and run.guest_exit is None and not run.hung
    assert run.crashes, run.reason
    assert "sysrq triggered crash" in run.reason


def test_guest_hang_hits_the_deadline(kernel, tmp_path):
    run = boot(kernel, ["sh", "-c", "echo sleeping; sleep 1000"], tmp_path, timeout=30.0)
    assert run.hung and run.status == 1 and run.guest_exit is None
    assert run.reason.startswith("guest hung while running the command: killed after 30 s")
    assert run.duration < 40
    assert (tmp_path / "guest.log").read_text() == "sleeping\n"


def test_cli_runs_the_real_harness_in_the_guest(kernel, tmp_path, capsys):
    # A scenario path that does not exist: the guest's `ksm-harness run`
    # exits 2 (bad input), and that code comes back through the side channel.
    out = tmp_path / "out"
    code = vmcli.main(["--kernel", str(kernel), "--numa", "2", "--timeout", "120", "--out", str(out),
                       "run", str(tmp_path / "no-such-scenario.yaml")])
    assert code == 2
    assert (out / initramfs.EXIT_FILE).read_text().strip() == "2"
    assert "no-such-scenario.yaml" in (out / "guest.log").read_text()
    assert "guest ready after" in capsys.readouterr().err


def test_cli_explores_in_the_guest(kernel, tmp_path, capsys):
    # A minute of exploring on the fixed kernel: explore's result comes back
    # with host paths, its examples beside it, and no false alarm.
    out = tmp_path / "out"
    code = vmcli.main(["--kernel", str(kernel), "--numa", "2", "--timeout", "300", "--out", str(out),
                       "explore", "--budget", "60", "--seed", "1", "-q"])
    printed = capsys.readouterr().out
    data = json.loads((out / "explore.json").read_text())
    assert code == 0 and data["reproducer"] is None and data["examples"] >= 1, printed
    assert data["out"] == str((out / "explore").resolve()) and (out / "explore" / "example.yaml").is_file()
    assert "explore --seed 1 on 6.1.192" in printed


DISTRO_KERNEL = Path(os.environ.get("KSM_HARNESS_DISTRO_KERNEL") or REPO / ".cache" / "distro-kernel")


@pytest.mark.skipif(not (DISTRO_KERNEL / "boot").is_dir(),
                    reason="no Debian kernel unpacked: run .ci/fetch-distro-kernel (or set KSM_HARNESS_DISTRO_KERNEL "
                           "to a dir where a linux-image .deb was extracted)")
def test_distro_kernel_runs_scenarios(tmp_path):
    """Debian's kernel (modules, no initramfs of its own): the guest loads
    9p/overlay and the loop driver from --modules, sees 2 nodes, and runs a
    merge and a swap scenario through the CLI as a user would."""
    (vmlinuz,) = (DISTRO_KERNEL / "boot").glob("vmlinuz-*")
    (modules,) = (DISTRO_KERNEL / "lib/modules").iterdir()
    run = boot(vmlinuz, ["sh", "-c", "cat /sys/devices/system/node/has_memory"], tmp_path / "nodes", modules=modules)
    assert run.status == 0, run.reason
    assert (tmp_path / "nodes" / "guest.log").read_text() == "0-1\n"
    out = tmp_path / "scenarios"
    code = vmcli.main(["--kernel", str(vmlinuz), "--modules", str(modules), "--numa", "2", "--timeout", "300",
                       "--out", str(out), "run", "-q", str(REPO / "scenarios/core/merge-unmerge.yaml"),
                       str(REPO / "scenarios/seed/swapin-during-unmerge.yaml")])
    result = json.loads((out / "result.json").read_text())
    assert code == 0 and [s["status"] for s in result["scenarios"]] == ["pass", "pass"], result["scenarios"]
    # a single-kernel run brings KernelCI's format back too, valid for kcidb-io
    kcidb_io = pytest.importorskip("kcidb_io", reason="pip install kcidb-io (a test dependency in pyproject.toml)")
    doc = json.loads((out / "kcidb.json").read_text())
    kcidb_io.schema.V5_3.validate_exactly(doc)
    assert [t["status"] for t in doc["tests"]] == ["PASS", "PASS"]
