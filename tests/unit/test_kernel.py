"""kernel.py parsers, on fake /proc, /sys and /boot trees."""
import gzip

import pytest

from harness import kernel


@pytest.mark.parametrize(
    "rel, want",
    [
        ("6.18.44-fc-v669", (6, 18, 44)),
        ("3.9.0-rc8", (3, 9, 0)),
        ("6.1.192", (6, 1, 192)),
        ("4.4", (4, 4, 0)),
        ("5.15.0-91-generic", (5, 15, 0)),
        ("6.9.0-rc1+", (6, 9, 0)),
    ],
)
def test_parse_version(rel, want):
    assert kernel.parse_version(rel) == want


def test_parse_version_rejects_garbage():
    with pytest.raises(ValueError):
        kernel.parse_version("linux")


@pytest.mark.parametrize(
    "rel, minimum, want",
    [
        ("3.9.0-rc8", "3.9", True),
        ("3.8.13", "3.9", False),
        ("6.18.44-fc-v669", "6.1", True),
        ("6.1.192", "6.1.193", False),
        ("10.0", "9.99", True),  # numeric, not string, comparison
    ],
)
def test_version_at_least(rel, minimum, want):
    assert kernel.version_at_least(rel, minimum) is want


CONFIG = """\
#
# Automatically generated file; DO NOT EDIT.
CONFIG_SWAP=y
CONFIG_ZRAM=m
# CONFIG_FAULT_INJECTION is not set
CONFIG_ZRAM_DEF_COMP="lzo-rle"
CONFIG_BLK_DEV_LOOP_MIN_COUNT=8
"""


def fake_proc(tmp_path, release="6.1.192"):
    proc = tmp_path / "proc"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text(release + "\n")
    return proc


def test_config_from_proc_config_gz(tmp_path):
    proc = fake_proc(tmp_path)
    with gzip.open(proc / "config.gz", "wt") as f:
        f.write(CONFIG)
    cfg = kernel.read_config(str(proc), str(tmp_path / "boot"))
    assert cfg.source == str(proc / "config.gz")
    assert cfg.get("SWAP") == "y" and cfg.get("CONFIG_SWAP") == "y"
    assert cfg.enabled("ZRAM") and not cfg.enabled("FAULT_INJECTION")
    assert cfg.get("FAULT_INJECTION") is None
    assert cfg.get("ZRAM_DEF_COMP") == '"lzo-rle"'
    assert cfg.get("BLK_DEV_LOOP_MIN_COUNT") == "8"


def test_config_falls_back_to_boot(tmp_path):
    proc = fake_proc(tmp_path, "3.9.0-rc8")
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "config-3.9.0-rc8").write_text(CONFIG)
    cfg = kernel.read_config(str(proc), str(boot))
    assert cfg.source == str(boot / "config-3.9.0-rc8")
    assert cfg.enabled("SWAP")


def test_config_unknown_is_none(tmp_path):
    proc = fake_proc(tmp_path)
    (proc / "config.gz").write_bytes(b"not gzip")
    assert kernel.read_config(str(proc), str(tmp_path / "boot")) is None


@pytest.mark.parametrize(
    "text, modes, current",
    [
        ("always [madvise] never\n", ("always", "madvise", "never"), "madvise"),
        ("[always] madvise never\n", ("always", "madvise", "never"), "always"),
        ("always never [inherit] madvise\n", ("always", "never", "inherit", "madvise"), "inherit"),
    ],
)
def test_parse_thp(text, modes, current):
    assert kernel.parse_thp(text) == kernel.Thp(modes, mode=current)


def test_thp_absent(tmp_path):
    assert kernel.thp(str(tmp_path)) is None


def test_pagemap_unreadable(tmp_path):
    assert kernel.pagemap_pfns_readable(str(tmp_path)) is False


def test_kpageflags_and_ksm_stat(tmp_path):
    assert not kernel.kpageflags_readable(str(tmp_path))
    assert not kernel.ksm_stat_present(str(tmp_path))
    (tmp_path / "kpageflags").write_bytes(b"\0" * 8)
    (tmp_path / "self").mkdir()
    (tmp_path / "self/ksm_stat").write_text("ksm_rmap_items 0\n")
    assert kernel.kpageflags_readable(str(tmp_path))
    assert kernel.ksm_stat_present(str(tmp_path))


MOUNTINFO = r"""22 1 0:21 / /proc rw,relatime shared:5 - proc proc rw
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw
40 22 0:40 / /tmp/with\040space rw,relatime - tmpfs ksm-harness-swap rw,size=1024k,mode=700
41 22 0:41 /sub /mnt/bind rw - ext4 /dev/vda rw
"""


def test_parse_mountinfo():
    ms = kernel.parse_mountinfo(MOUNTINFO)
    assert [m.mountpoint for m in ms] == [
        "/proc", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/unified", "/tmp/with space", "/mnt/bind",
    ]
    assert ms[1].fstype == "cgroup" and "memory" in ms[1].options
    assert ms[3].source == "ksm-harness-swap" and ms[3].options == ("rw", "relatime", "size=1024k", "mode=700")
    assert ms[4].root == "/sub"


def test_mounted_at_and_filesystems(tmp_path):
    (tmp_path / "self").mkdir()
    mp = tmp_path / "mnt"
    mp.mkdir()
    (tmp_path / "self/mountinfo").write_text(
        f"40 22 0:40 / {mp} rw - tmpfs a rw\n41 40 0:41 / {mp} rw - debugfs debugfs rw\n"
    )
    assert kernel.mounted_at(str(mp), str(tmp_path)).fstype == "debugfs"  # the topmost
    assert kernel.mounted_at(str(tmp_path), str(tmp_path)) is None
    (tmp_path / "filesystems").write_text("nodev\ttmpfs\n\text4\nnodev\tdebugfs\n")
    assert kernel.filesystem_known("ext4", str(tmp_path))
    assert not kernel.filesystem_known("zfs", str(tmp_path))
