"""Real swap devices on the running kernel (no KSM): made, used, removed.

Each test removes what it made in a `finally`, even when it fails.  Needs
root, util-linux, and loop or zram support; skips with the reason otherwise.
"""
import ctypes
import json
import mmap
import os
import subprocess
import sys

import pytest

from harness import kernel, pages, swap

SIZE = 32 << 20
MADV_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21)  # include/uapi/asm-generic/mman-common.h, Linux 5.4


@pytest.fixture(params=swap.KINDS)
def made(request):
    """A swap device of each kind, removed afterwards whatever happened."""
    m = swap.SwapManager()
    if os.geteuid() != 0:
        pytest.skip("swap needs root")
    reason = m.available(request.param)
    if reason:
        pytest.skip(reason)
    dev = m.create(request.param, SIZE)
    try:
        yield m, dev
    finally:
        m.remove(dev)
        assert not m.is_active(dev)


def entry(m, dev):
    return next(e for e in m.active() if e.filename == dev.device)


def test_made_and_removed(made):
    m, dev = made
    e = entry(m, dev)
    assert e.priority == swap.MAX_PRIORITY and e.type == "partition"
    assert e.size_kib == SIZE // 1024 - 4  # the first page holds mkswap's header
    name = m.block_device_name(dev)
    assert os.path.isdir(f"/sys/block/{name}")
    if dev.kind == swap.FILE:
        with open(f"/sys/block/{name}/loop/backing_file") as f:
            assert f.read().strip() == dev.backing_file
    else:
        assert dev.zram_id is not None and name == f"zram{dev.zram_id}"

    done = m.remove(dev)
    assert done[0] == f"swapoff {dev.device}"
    assert not m.is_active(dev)
    if dev.kind == swap.FILE:
        assert not os.path.exists(f"/sys/block/{name}/loop/backing_file")
        assert not os.path.exists(dev.mount_dir)
    else:
        assert not os.path.exists(f"/sys/block/{name}")
    assert m.remove(dev) == []  # the fixture's second remove finds nothing to do


def test_pages_go_to_our_swap_first(made):
    """Paged-out pages land on our device (the highest priority) and come back intact."""
    m, dev = made
    size = 4 << 20
    buf, pattern = paged_out(size)
    try:
        assert entry(m, dev).used_kib >= size // 1024 // 2
        assert buf[:] == pattern
    finally:
        buf.close()


def paged_out(size):
    """A private anonymous buffer of distinct pages, written out with
    MADV_PAGEOUT (5.4+) to the highest-priority swap: ours."""
    buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    pattern = bytes(range(251)) * (size // 251) + bytes(size % 251)  # no page like another
    buf[:] = pattern
    try:
        buf.madvise(MADV_PAGEOUT)
    except OSError as exc:
        buf.close()
        pytest.skip(f"MADV_PAGEOUT refused: {exc} (kernel before 5.4?)")
    return buf, pattern


def swapcache_pages(buf):
    """How many pages of `buf` are in the swapcache (pagemap -> PFN -> kpageflags)."""
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    region = pages.region_pages(os.getpid(), addr, len(buf) // pages.PAGE_SIZE)
    return sum(f >> pages.KPF_SWAPCACHE & 1 for f in pages.kpageflags(region.pfns))


def test_swapcache_after_swapin(made):
    """Why there are two kinds: a page read back from the loop device stays
    in the swapcache; one read back from zram (SWP_SYNCHRONOUS_IO, 4.15+)
    does not."""
    m, dev = made
    if not (kernel.kpageflags_readable() and kernel.pagemap_pfns_readable()):
        pytest.skip("needs /proc/kpageflags and pagemap PFNs (root, CONFIG_PROC_PAGE_MONITOR)")
    if dev.kind == swap.ZRAM and not kernel.version_at_least(kernel.release(), "4.15"):
        pytest.skip("zram swap-in bypasses the swapcache only since 4.15")
    size = 2 << 20  # a small share of the swap: vm_swap_full() would free swap on swap-in
    buf, pattern = paged_out(size)
    try:
        assert sum(buf[i] for i in range(0, size, kernel.page_size())) >= 0  # read faults bring each page back
        cached = swapcache_pages(buf)
        pages = size // kernel.page_size()
        if dev.kind == swap.FILE:
            assert cached >= pages // 2, f"{cached}/{pages} pages in swapcache"
        else:
            assert cached == 0, f"{cached}/{pages} pages in swapcache"
        assert buf[:] == pattern
    finally:
        buf.close()


def test_journal_steps(made):
    """create() journals the device before each step that makes state."""
    m, dev = made
    seen = []
    again = m.create(dev.kind, SIZE, journal=lambda d: seen.append(d))
    try:
        assert seen[-1] == again
        if dev.kind == swap.FILE:
            assert [d.device for d in seen] == ["", again.device]  # before the mount, after losetup
            assert seen[0].mount_dir == again.mount_dir
    finally:
        m.remove(again)


def test_remove_stale_after_kill(made):
    """A new manager, from the journal only, removes a device whose maker is
    gone, and one that is half removed already."""
    m, dev = made
    d = swap.from_journal(json.loads(json.dumps(swap.to_journal(dev))))
    fresh = swap.SwapManager()
    if dev.kind == swap.FILE:
        # half removed: swapped off by hand before the kill
        swap.run(["swapoff", dev.device])
    done = fresh.remove_stale(d)
    assert done and not fresh.is_active(dev)
    assert fresh.remove_stale(d) == []


KILLED_CHILD = """
import json, sys
from harness import swap
def write(dev):
    with open(sys.argv[2], "w") as f:
        json.dump(swap.to_journal(dev), f)
swap.SwapManager().create(sys.argv[1], 16 << 20, journal=write)
print("made", flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("kind", swap.KINDS)
def test_sigkilled_run_is_cleaned_from_its_journal(kind, tmp_path):
    m = swap.SwapManager()
    if os.geteuid() != 0:
        pytest.skip("swap needs root")
    reason = m.available(kind)
    if reason:
        pytest.skip(reason)
    journal = tmp_path / "journal.json"
    p = subprocess.Popen([sys.executable, "-c", KILLED_CHILD, kind, str(journal)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "made"
    finally:
        p.kill()
        p.wait()
        dev = swap.from_journal(json.loads(journal.read_text())) if journal.exists() else None
        if dev is not None:
            done = m.remove_stale(dev)
    assert dev is not None and m.is_active(dev) is False
    assert done[0] == f"swapoff {dev.device}"
