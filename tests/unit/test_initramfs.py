"""The guest initramfs: cpio newc writer, module closure, cache."""
import io
import re
import lzma
import shutil
import stat
import subprocess

import pytest

from harness import initramfs
from harness.errors import InputError


def read_cpio(data):
    """A minimal newc reader, independent of the writer: {name: (mode, data, rdev)}."""
    members, pos = {}, 0
    while True:
        assert data[pos : pos + 6] == b"070701", f"bad magic at {pos}"
        fields = [int(data[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, size, rmaj, rmin, namesize = fields[1], fields[6], fields[9], fields[10], fields[11]
        name = data[pos + 110 : pos + 110 + namesize - 1].decode()
        pos = (pos + 110 + namesize + 3) & ~3
        body = data[pos : pos + size]
        pos = (pos + size + 3) & ~3
        if name == "TRAILER!!!":
            assert pos == len(data)
            return members
        members[name] = (mode, body, (rmaj, rmin))


def archive(entries):
    buf = io.BytesIO()
    initramfs.write_cpio(entries, buf)
    return buf.getvalue()


def test_cpio_round_trip():
    data = archive(
        [
            initramfs.directory("bin"),
            initramfs.regular("bin/busybox", b"\x7fELF12345", 0o755),
            initramfs.symlink("bin/sh", "busybox"),
            initramfs.chardev("dev/console", 5, 1),
        ]
    )
    members = read_cpio(data)
    assert stat.S_ISDIR(members["bin"][0])
    assert members["bin/busybox"] == (stat.S_IFREG | 0o755, b"\x7fELF12345", (0, 0))
    assert members["bin/sh"] == (stat.S_IFLNK | 0o777, b"busybox", (0, 0))
    assert members["dev/console"] == (stat.S_IFCHR | 0o600, b"", (5, 1))


@pytest.mark.skipif(not shutil.which("busybox"), reason="busybox not installed")
def test_cpio_readable_by_busybox(tmp_path):
    path = tmp_path / "a.cpio"
    path.write_bytes(archive([initramfs.directory("d"), initramfs.regular("d/f", b"hello")]))
    listing = subprocess.run(["busybox", "cpio", "-t"], stdin=path.open("rb"), capture_output=True, text=True)
    assert listing.stdout.split() == ["d", "d/f"]


def test_cpio_is_deterministic():
    entries = [initramfs.regular("init", b"#!/bin/sh\n", 0o755)]
    assert archive(entries) == archive(entries)


def test_init_script_names_the_contract():
    script = initramfs.init_script()
    assert "mount -t 9p -o trans=virtio" in script and f" {initramfs.HOSTROOT_TAG} /hostroot" in script
    assert f" {initramfs.RESULTS_TAG} $RES" in script
    assert f"RES=$R{initramfs.GUEST_RESULTS}" in script
    assert f"{initramfs.GUEST_RESULTS}/{initramfs.COMMAND_FILE}" in script
    assert f"$RES/{initramfs.EXIT_FILE}" in script
    memcg = script.index("mount -t cgroup -o memory memory $R/sys/fs/cgroup/memory")
    # without v1 memory (6.12+, CONFIG_MEMCG_V1=n): cgroup2 with the memory controller delegated
    v2 = script.index("mount -t cgroup2 cgroup2 $R/sys/fs/cgroup")
    assert memcg < v2 < script.index("echo +memory > $R/sys/fs/cgroup/cgroup.subtree_control")
    # kmem accounting's static key is switched on before the command runs, on either hierarchy
    assert "BOOTCG=$R/sys/fs/cgroup/memory/ksm-harness-boot" in script
    assert "BOOTCG=$R/sys/fs/cgroup/ksm-harness-boot" in script
    assert v2 < script.index("mkdir $BOOTCG && rmdir $BOOTCG") < script.index("chroot $R")
    assert "poweroff -f" in script
    assert not re.search(r"\{[a-z_]+\}", script)  # every template field filled


def fake_module(path, depends, compress=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    elf = b"\x7fELF...\0license=GPL\0depends=" + ",".join(depends).encode() + b"\0vermagic=6.1\0"
    path.write_bytes(lzma.compress(elf) if compress else elf)
    return elf


def modules_dir(tmp_path):
    root = tmp_path / "lib/modules/6.1.0-test"
    k = root / "kernel"
    fake_module(k / "fs/9p/9p.ko", ["9pnet", "netfs"])
    fake_module(k / "net/9p/9pnet.ko", [])
    fake_module(k / "net/9p/9pnet_virtio.ko.xz", ["9pnet", "virtio_ring", "virtio"], compress=True)
    fake_module(k / "fs/netfs/netfs.ko", ["fscache"])
    fake_module(k / "fs/fscache/fscache.ko", [])
    fake_module(k / "fs/overlayfs/overlay.ko", [])
    fake_module(k / "drivers/virtio/virtio_pci.ko", ["virtio", "virtio_pci_modern_dev"])
    fake_module(k / "drivers/virtio/virtio_pci_modern_dev.ko", ["virtio"])
    (root / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\nkernel/drivers/virtio/virtio_ring.ko\n")
    return root


def test_module_closure_orders_dependencies_first(tmp_path):
    names = [name for name, _ in initramfs.module_closure(modules_dir(tmp_path))]
    assert names == ["virtio_pci_modern_dev", "virtio_pci", "9pnet", "9pnet_virtio",
                     "fscache", "netfs", "9p", "overlay"]


def test_module_closure_takes_optional_modules_that_exist(tmp_path):
    root = modules_dir(tmp_path)
    fake_module(root / "kernel/drivers/block/loop.ko", [])  # zram absent: skipped, not an error
    names = [name for name, _ in initramfs.module_closure(root)]
    assert names[-1] == "loop" and "zram" not in names


def test_module_closure_decompresses(tmp_path):
    elf = dict(initramfs.module_closure(modules_dir(tmp_path)))["9pnet_virtio"]
    assert elf.startswith(b"\x7fELF") and b"depends=9pnet" in elf


def test_module_closure_missing_module(tmp_path):
    root = modules_dir(tmp_path)
    (root / "kernel/fs/fscache/fscache.ko").unlink()
    with pytest.raises(InputError, match="fscache .needed by 9p -> netfs"):
        initramfs.module_closure(root)


def test_module_closure_not_a_modules_dir(tmp_path):
    with pytest.raises(InputError, match="--modules"):
        initramfs.module_closure(tmp_path)


def test_entries_list_modules_in_order(tmp_path):
    members = read_cpio(archive(initramfs.entries(b"BB", initramfs.module_closure(modules_dir(tmp_path)))))
    listing = members["modules.list"][1].decode().split()
    assert listing[0] == "/modules/virtio_pci_modern_dev.ko" and listing[-1] == "/modules/overlay.ko"
    assert all(name.lstrip("/") in members for name in listing)
    assert members["init"][1] == initramfs.init_script().encode()
    assert members["dev/console"][2] == (5, 1)


def test_build_caches_by_content(tmp_path):
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"BB1")
    first = initramfs.build(busybox, cache=tmp_path / "cache")
    assert first == initramfs.build(busybox, cache=tmp_path / "cache")
    busybox.write_bytes(b"BB2")
    second = initramfs.build(busybox, cache=tmp_path / "cache")
    assert second != first and first.exists() and second.exists()
    assert read_cpio(second.read_bytes())["bin/busybox"][1] == b"BB2"


def test_build_without_busybox(tmp_path):
    with pytest.raises(InputError, match="busybox-static"):
        initramfs.build(tmp_path / "busybox", cache=tmp_path)
