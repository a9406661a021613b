"""swap.py parsing, journal and skip reasons, on fake /proc, /sys, /dev trees."""
import json
import os

import pytest

from harness import swap
from harness.errors import InputError, Skip

SWAPS = """\
Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority
/dev/loop3                              partition\t1048572\t\t0\t\t32767
/dev/zram1                              partition\t65532\t\t1024\t\t-2
/var/tmp/my\\040swap\\040file                file\t\t4096\t\t0\t\t-3
"""


def test_parse_swaps():
    got = swap.parse_swaps(SWAPS)
    assert got == [
        swap.SwapEntry("/dev/loop3", "partition", 1048572, 0, 32767),
        swap.SwapEntry("/dev/zram1", "partition", 65532, 1024, -2),
        swap.SwapEntry("/var/tmp/my swap file", "file", 4096, 0, -3),
    ]


def test_parse_swaps_header_only():
    assert swap.parse_swaps("Filename\tType\tSize\tUsed\tPriority\n") == []


FILE_DEV = swap.SwapDevice(
    swap.FILE, "/dev/loop3", 1 << 20, 32767,
    backing_file="/tmp/ksm-harness-swap-x/swapfile", mount_dir="/tmp/ksm-harness-swap-x",
)
ZRAM_DEV = swap.SwapDevice(swap.ZRAM, "/dev/zram1", 1 << 20, 100, zram_id=1)


@pytest.mark.parametrize("dev", [FILE_DEV, ZRAM_DEV])
def test_journal_round_trip(dev):
    d = swap.to_journal(dev)
    assert d["resource"] == "swap"
    assert swap.from_journal(json.loads(json.dumps(d))) == dev


@pytest.mark.parametrize(
    "d",
    [
        {"resource": "memcg", "path": "/x"},
        {"resource": "swap", "kind": "file"},
        {"resource": "swap", "kind": "nfs", "device": "/dev/x", "size_bytes": 1, "priority": 1},
    ],
)
def test_from_journal_rejects(d):
    with pytest.raises(InputError):
        swap.from_journal(d)


def test_block_device_name():
    assert swap.SwapManager.block_device_name(FILE_DEV) == "loop3"
    assert swap.SwapManager.block_device_name(ZRAM_DEV) == "zram1"


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A root-looking machine with swap, tmpfs, loop and zram, all tools present."""
    proc, sys, dev = tmp_path / "proc", tmp_path / "sys", tmp_path / "dev"
    for d in (proc, sys / "class/zram-control", dev):
        d.mkdir(parents=True)
    (proc / "swaps").write_text(SWAPS)
    (proc / "filesystems").write_text("nodev\ttmpfs\n")
    (dev / "loop-control").write_text("")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.setattr(swap.shutil, "which", lambda name: f"/usr/sbin/{name}")
    return swap.SwapManager(str(proc), str(sys), str(dev), workdir=str(tmp_path))


def test_available(fake):
    assert fake.available(swap.FILE) is None
    assert fake.available(swap.ZRAM) is None


def test_available_unknown_kind(fake):
    with pytest.raises(InputError, match="unknown swap kind"):
        fake.available("nfs")


def test_not_root(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert fake.available(swap.FILE) == "swap needs root"


def test_no_config_swap(fake):
    os.unlink(os.path.join(fake.proc, "swaps"))
    assert "CONFIG_SWAP" in fake.available(swap.ZRAM)


def test_missing_tools(fake, monkeypatch):
    monkeypatch.setattr(swap.shutil, "which", lambda name: None if name in ("losetup", "mkswap") else name)
    assert fake.available(swap.FILE).startswith("mkswap, losetup not installed")
    assert fake.available(swap.ZRAM).startswith("mkswap not installed")


def test_no_loop(fake, monkeypatch):
    os.unlink(os.path.join(fake.dev, "loop-control"))
    monkeypatch.setattr(swap.shutil, "which", lambda name: None if name == "modprobe" else name)
    assert "CONFIG_BLK_DEV_LOOP" in fake.available(swap.FILE)


def test_zram_too_old(fake):
    os.rmdir(os.path.join(fake.sys, "class/zram-control"))
    os.makedirs(os.path.join(fake.sys, "module/zram"))
    assert "before 4.2" in fake.available(swap.ZRAM)


def test_no_zram(fake, monkeypatch):
    os.rmdir(os.path.join(fake.sys, "class/zram-control"))
    monkeypatch.setattr(swap.shutil, "which", lambda name: None if name == "modprobe" else name)
    assert "CONFIG_ZRAM" in fake.available(swap.ZRAM)


def test_create_skips_with_reason(fake, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(Skip, match="root"):
        fake.create(swap.ZRAM, 1 << 20)


def test_create_checks_size_and_priority(fake):
    with pytest.raises(InputError, match="below 10 pages"):
        fake.create(swap.ZRAM, 4096)
    with pytest.raises(InputError, match="priority"):
        fake.create(swap.ZRAM, 1 << 20, priority=40000)


def test_active_and_is_active(fake):
    assert [e.filename for e in fake.active()][:2] == ["/dev/loop3", "/dev/zram1"]
    assert fake.is_active(FILE_DEV)


def test_remove_stale_of_gone_device_does_nothing(fake):
    # Nothing in the fake /sys says loop3 reads our file, nor that zram1 is
    # ours: both are someone else's now, so nothing is run.
    gone_dir = FILE_DEV.mount_dir.replace("/tmp", str(fake.workdir))
    dev = swap.SwapDevice(swap.FILE, "/dev/loop3", 1 << 20, 1, backing_file=gone_dir + "/f", mount_dir=gone_dir)
    assert fake.remove_stale(dev) == []
    assert fake.remove_stale(ZRAM_DEV) == []


@pytest.fixture
def commands(monkeypatch, fake):
    """Record the commands remove() runs instead of running them; `losetup -d`
    detaches in the fake /sys as the kernel would."""
    ran = []

    def fake_run(argv, **kwargs):
        ran.append(argv)
        if argv[:2] == ["losetup", "-d"]:
            os.unlink(os.path.join(fake.sys, "block", os.path.basename(argv[2]), "loop/backing_file"))

    monkeypatch.setattr(swap, "run", fake_run)
    return ran


def test_remove_file_device(fake, commands, tmp_path):
    mount_dir = tmp_path / "ksm-harness-swap-1"
    mount_dir.mkdir()
    (mount_dir / "swapfile").write_text("")
    dev = swap.SwapDevice(swap.FILE, "/dev/loop3", 1 << 20, 1,
                          backing_file=str(mount_dir / "swapfile"), mount_dir=str(mount_dir))
    loop = tmp_path / "sys/block/loop3/loop"
    loop.mkdir(parents=True)
    (loop / "backing_file").write_text(f"{dev.backing_file} (deleted)\n")  # as loop_attr_backing_file_show() prints it
    (tmp_path / "proc/self").mkdir()
    (tmp_path / "proc/self/mountinfo").write_text("")  # not mounted: remove deletes the file itself
    done = fake.remove(dev)
    assert commands == [["swapoff", "/dev/loop3"], ["losetup", "-d", "/dev/loop3"]]
    assert done == ["swapoff /dev/loop3", "losetup -d /dev/loop3", f"umount and rmdir {mount_dir}"]
    assert not mount_dir.exists()


def test_remove_finds_the_loop_device_of_a_run_killed_inside_losetup(fake, commands, tmp_path):
    """The journal has no device yet (losetup attached, but its answer never
    came): the loop device reading our backing file is found and detached."""
    mount_dir = tmp_path / "ksm-harness-swap-2"
    mount_dir.mkdir()
    dev = swap.SwapDevice(swap.FILE, "", 1 << 20, 1, backing_file=str(mount_dir / "swapfile"),
                          mount_dir=str(mount_dir))
    for name, backing in (("loop1", "/elsewhere"), ("loop7", dev.backing_file)):
        (tmp_path / f"sys/block/{name}/loop").mkdir(parents=True)
        (tmp_path / f"sys/block/{name}/loop/backing_file").write_text(backing + "\n")
    (tmp_path / "proc/self").mkdir()
    (tmp_path / "proc/self/mountinfo").write_text("")
    loop7 = f"{fake.dev}/loop7"
    assert fake.remove(dev)[0] == f"losetup -d {loop7}"
    assert commands == [["losetup", "-d", loop7]]


def test_remove_zram_device(fake, commands, tmp_path):
    block = tmp_path / "sys/block/zram1"
    block.mkdir(parents=True)
    (block / "disksize").write_text(f"{ZRAM_DEV.size_bytes}\n")
    (tmp_path / "sys/class/zram-control/hot_remove").write_text("")
    assert fake.remove(ZRAM_DEV) == ["swapoff /dev/zram1", "zram hot_remove 1"]
    assert commands == [["swapoff", "/dev/zram1"]]
    assert (tmp_path / "sys/class/zram-control/hot_remove").read_text() == "1"
