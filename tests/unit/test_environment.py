"""harness/environment.py against a fake /proc, /sys and /boot tree."""
import gzip

from harness import environment


def test_describe_a_fake_machine(tmp_path):
    proc, sys_, boot = tmp_path / "proc", tmp_path / "sys", tmp_path / "boot"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("6.1.192\n")
    (proc / "version").write_text("Linux version 6.1.192 (builder@host) #1 SMP\n")
    (proc / "cpuinfo").write_text("processor\t: 0\nmodel name\t: QEMU TCG CPU\n\nprocessor\t: 1\nmodel name\t: QEMU TCG CPU\n")
    with gzip.open(proc / "config.gz", "wt") as f:
        f.write("CONFIG_KSM=y\n# CONFIG_X is not set\nCONFIG_NUMA=y\n")
    (sys_ / "devices/system/node").mkdir(parents=True)
    (sys_ / "devices/system/node/has_memory").write_text("0-1\n")
    (sys_ / "class/dmi/id").mkdir(parents=True)
    (sys_ / "class/dmi/id/product_name").write_text("Standard PC (Q35 + ICH9, 2009)\n")
    env = environment.describe(proc, sys_, boot)
    assert env["kernel_release"] == "6.1.192" and env["kernel_version"].startswith("Linux version 6.1.192")
    assert (env["numa_nodes"], env["cpus"], env["cpu"]) == ("2", "2", "QEMU TCG CPU")
    assert env["product"] == "Standard PC (Q35 + ICH9, 2009)"
    assert (env["kernel_config"], env["kernel_config_ksm"]) == (str(proc / "config.gz"), "y")
    assert len(env["kernel_config_sha256"]) == 64


def test_unreadable_facts_are_left_out(tmp_path):
    env = environment.describe(tmp_path / "proc", tmp_path / "sys", tmp_path / "boot")
    assert "kernel_release" not in env and "kernel_config" not in env and "cpu" not in env
    assert env["numa_nodes"] == "1"  # no node directory: a kernel without NUMA has one node
