"""lava/: what can be checked without booting (tests/vm/test_lava.py boots):
the test definition, job templates and device configuration parse and agree
with each other and with the repository, the shell scripts parse, and
lava-dispatcher's own validation accepts the qemu job where it is installed."""
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAVA = REPO / "lava"


def load(name):
    return yaml.safe_load((LAVA / name).read_text())


def test_test_definition():
    testdef = load("ksm-harness.yaml")
    assert testdef["metadata"]["format"] == "Lava-Test Test Definition 1.0"
    assert set(testdef["params"]) == {"KSM_HARNESS", "SCENARIOS", "RUN_ARGS", "SETUP"}
    steps = testdef["run"]["steps"]
    assert steps == ["export KSM_HARNESS SCENARIOS RUN_ARGS SETUP", "./lava/run-ksm-harness"]
    assert os.access(LAVA / "run-ksm-harness", os.X_OK)


@pytest.mark.parametrize("script", ["run-ksm-harness", "guest/command.sh"])
def test_shell_scripts_parse(script):
    for sh in ("sh", "busybox"):  # the guest runs them with busybox sh
        if shutil.which(sh):
            argv = [sh, "sh", "-n"] if sh == "busybox" else [sh, "-n"]
            proc = subprocess.run(argv + [str(LAVA / script)], capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("job", ["jobs/qemu-ksm.yaml", "jobs/bare-metal.yaml"])
def test_jobs_run_the_test_definition(job):
    actions = load(job)["actions"]
    (test,) = [a["test"] for a in actions if "test" in a]
    (definition,) = test["definitions"]
    assert definition["path"] == "lava/ksm-harness.yaml" and (REPO / definition["path"]).exists()
    assert set(definition["parameters"]) <= set(load("ksm-harness.yaml")["params"])
    for scenario_path in definition["parameters"]["SCENARIOS"].split():
        assert (REPO / scenario_path).exists(), scenario_path


def test_qemu_job_and_device_agree():
    job = load("jobs/qemu-ksm.yaml")
    ramdisk = job["actions"][0]["deploy"]["images"]["ramdisk"]
    assert ramdisk["format"] == "cpio.newc" and ramdisk["overlays"] == {"lava": True}  # LAVA appends its overlay
    prompt = job["actions"][1]["boot"]["prompts"][0]
    assert f"PS1='{prompt}'" in (LAVA / "guest/command.sh").read_text()
    qemu = load("devices/ksm-qemu.yaml")["actions"]["boot"]["methods"]["qemu"]["parameters"]
    extra = " ".join(qemu["extra"])
    for option in ("-numa node,nodeid=1", "sockets=2", "mem-merge=off", "mount_tag=hostroot",
                   "path=/opt/ksm-harness/lava/guest", "mount_tag=results"):
        assert option in extra, option
    assert "-enable-kvm" not in qemu["options"]  # TCG: no_kvm in the dictionary
    assert job["actions"][2]["test"]["definitions"][0]["parameters"]["KSM_HARNESS"] == "/opt/ksm-harness"


def test_lava_run_validates_the_qemu_job(tmp_path):
    """lava-dispatcher's own validation (`lava-run --validate`: no boot)."""
    if not shutil.which("lava-run"):
        pytest.skip("lava-dispatcher not installed (apt-get install lava-dispatcher)")
    if os.geteuid() != 0:
        pytest.skip("lava-run runs as root")
    kernel, initrd = tmp_path / "bzImage", tmp_path / "initrd.cpio"
    kernel.write_bytes(b"k")
    initrd.write_bytes(b"i")
    job = (LAVA / "jobs/qemu-ksm.yaml").read_text().replace(
        "file:///srv/ksm-harness/kernels/ksm-6.1.192-fixed.bzImage", f"file://{kernel}").replace(
        "file:///srv/ksm-harness/initramfs.cpio", f"file://{initrd}")
    (tmp_path / "job.yaml").write_text(job)
    proc = subprocess.run(["lava-run", "--validate", "--job-id", "0", "--output-dir", str(tmp_path / "out"),
                           "--device", str(LAVA / "devices/ksm-qemu.yaml"), str(tmp_path / "job.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert yaml.safe_load((tmp_path / "out/result.yaml").read_text())["result"] == "pass"
