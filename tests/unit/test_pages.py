"""pages.py on fake /proc/PID/pagemap, /proc/kpageflags and ksm_stat files."""
import os
import struct

import pytest

from harness import pages
from harness.pages import (KPF_ANON, KPF_KSM, KPF_THP, KPF_UPTODATE, KPF_ZERO_PAGE, PAGE_SIZE, PM_PRESENT,
                           PM_SWAP, kpageflags, ksm_stat, region_pages, shared_pfns)

# /proc/self/ksm_stat of a Linux 6.18 host, verbatim
KSM_STAT_6_18 = """\
ksm_rmap_items 0
ksm_zero_pages 0
ksm_merging_pages 0
ksm_process_profit 0
ksm_merge_any: no
ksm_mergeable: no
"""

ADDR = 16 * PAGE_SIZE  # region start: pagemap index 16
PM_SOFT_DIRTY, PM_EXCLUSIVE = 1 << 55, 1 << 56  # above the PFN field: must be masked off
ANON = 1 << KPF_ANON | 1 << KPF_UPTODATE


def put(path, index, values):
    """Write little-endian u64s at entry `index` of a sparse file (like pagemap/kpageflags)."""
    mode = "r+b" if path.exists() else "wb"
    with open(path, mode) as f:
        f.seek(8 * index)
        f.write(struct.pack(f"<{len(values)}Q", *values))


@pytest.fixture
def proc(tmp_path):
    (tmp_path / "100").mkdir()
    (tmp_path / "200").mkdir()
    put(tmp_path / "100" / "pagemap", ADDR // PAGE_SIZE, [
        PM_PRESENT | 1000,                                # 0: KSM page
        PM_PRESENT | PM_EXCLUSIVE | PM_SOFT_DIRTY | 1001,  # 1: plain anon page
        PM_SWAP | (5 << 5) | 1,                            # 2: swapped out (type 1, offset 5)
        0,                                                 # 3: never touched
        PM_PRESENT | 7,                                    # 4: the shared zero page
        PM_PRESENT | 2048,                                 # 5: inside a THP
        PM_PRESENT | 2049,                                 # 6: inside a THP
        PM_PRESENT | 1000,                                 # 7: the same KSM page again
    ])
    put(tmp_path / "200" / "pagemap", ADDR // PAGE_SIZE, [
        PM_PRESENT | 1000, PM_PRESENT | 3000, 0, 0, PM_PRESENT | 7, PM_PRESENT | 2048, 0, PM_PRESENT | 1000,
    ])
    put(tmp_path / "kpageflags", 7, [1 << KPF_ZERO_PAGE])
    put(tmp_path / "kpageflags", 1000, [ANON | 1 << KPF_KSM, ANON])
    put(tmp_path / "kpageflags", 2048, [ANON | 1 << KPF_THP, ANON | 1 << KPF_THP])
    put(tmp_path / "kpageflags", 3000, [ANON])
    return tmp_path


def test_region_pages(proc):
    r = region_pages(100, ADDR, 8, proc)
    assert (r.pid, r.addr, r.npages) == (100, ADDR, 8)
    assert r.present == 6
    assert r.swapped == 1
    assert r.ksm == (0, 7) and r.ksm_count == 2
    assert r.zero == 1
    assert r.thp == 2
    assert r.pfns == (1000, 1001, 0, 0, 7, 2048, 2049, 1000)


def test_region_pages_offset(proc):
    # a sub-range starting at page 5 reads pagemap entries 21.. only
    r = region_pages(100, ADDR + 5 * PAGE_SIZE, 3, proc)
    assert r.pfns == (2048, 2049, 1000)
    assert r.ksm == (2,) and r.thp == 2 and r.present == 3


def test_shared_pfns(proc):
    a, b = region_pages(100, ADDR, 8, proc), region_pages(200, ADDR, 8, proc)
    # page 3 is absent in both (PFN 0 never counts); page 4 is the zero page
    assert shared_pfns(a, b) == (0, 4, 5, 7)
    assert shared_pfns(a, a) == (0, 1, 4, 5, 6, 7)


def test_kpageflags_windows(tmp_path, monkeypatch):
    # PFNs near each other share one read, far ones do not, no read grows past
    # a window, and PFN 0 and PFNs past the end read 0
    monkeypatch.setattr(pages, "KPAGEFLAGS_WINDOW", 2000)
    put(tmp_path / "kpageflags", 10, list(range(1, 5001)))
    near = [10 + i for i in range(0, 5000, 7)]  # 5000 entries apart at most 7: 3 windows of 2000
    far = [20000, 20000 + pages.KPAGEFLAGS_GAP + 1]  # past the file's end, one read each
    reads = []
    monkeypatch.setattr(pages.os, "pread", lambda fd, n, at, real=os.pread: reads.append(n) or real(fd, n, at))
    got = kpageflags(near + [0] + far, tmp_path)
    assert got == [pfn - 9 for pfn in near] + [0, 0, 0]
    assert len(reads) == 3 + 2 and max(reads) <= 8 * 2000


def test_ksm_stat_6_18(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "ksm_stat").write_text(KSM_STAT_6_18.replace("merging_pages 0", "merging_pages 512"))
    stat = ksm_stat(42, tmp_path)
    assert stat["ksm_merging_pages"] == 512
    assert stat["ksm_rmap_items"] == 0 and stat["ksm_zero_pages"] == 0 and stat["ksm_process_profit"] == 0


def test_ksm_stat_colon_lines(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "ksm_stat").write_text(KSM_STAT_6_18)
    stat = ksm_stat(42, tmp_path)
    assert stat["ksm_merge_any"] == "no" and stat["ksm_mergeable"] == "no"


def test_ksm_stat_negative_profit(tmp_path):
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "ksm_stat").write_text("ksm_rmap_items 9\nksm_process_profit -1337\n")
    assert ksm_stat(42, tmp_path) == {"ksm_rmap_items": 9, "ksm_process_profit": -1337}


def test_ksm_stat_fallback_merging_pages(tmp_path):
    # 5.19 / 6.0: only /proc/PID/ksm_merging_pages
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "ksm_merging_pages").write_text("77\n")
    assert ksm_stat(42, tmp_path) == {"ksm_merging_pages": 77}


def test_ksm_stat_none_on_old_kernels(tmp_path):
    (tmp_path / "42").mkdir()
    assert ksm_stat(42, tmp_path) is None


def test_page_size_matches_host():
    assert pages.PAGE_SIZE in (4096, 16384, 65536)


def test_ksm_stat_6_1_takes_merging_pages_from_its_own_file(tmp_path):
    # 6.1: ksm_stat shows only ksm_rmap_items (fs/proc/base.c proc_pid_ksm_stat())
    (tmp_path / "42").mkdir()
    (tmp_path / "42" / "ksm_stat").write_text("ksm_rmap_items 9\n")
    (tmp_path / "42" / "ksm_merging_pages").write_text("4\n")
    assert ksm_stat(42, tmp_path) == {"ksm_rmap_items": 9, "ksm_merging_pages": 4}


def test_ksm_stat_of_a_process_without_mm(tmp_path):
    (tmp_path / "2").mkdir()
    (tmp_path / "2" / "ksm_stat").write_text("")
    assert ksm_stat(2, tmp_path) == {}


# /proc/PID/smaps, shortened: two mappings with VM_MERGEABLE ("mg"), one without
SMAPS = f"""\
{ADDR:x}-{ADDR + 8 * PAGE_SIZE:x} rw-p 00000000 00:00 0
Size:                 32 kB
VmFlags: rd wr mr mw me ac mg
{ADDR + 8 * PAGE_SIZE:x}-{ADDR + 9 * PAGE_SIZE:x} rw-p 00000000 00:00 0                          [heap]
VmFlags: rd wr mr mw me ac
{ADDR + 9 * PAGE_SIZE:x}-{ADDR + 10 * PAGE_SIZE:x} r--p 00001000 08:01 1234                       /usr/lib/x.so
VmFlags: rd mr mw me mg
"""


def test_mergeable_mappings_from_smaps(proc):
    (proc / "100" / "smaps").write_text(SMAPS)
    got = pages.mergeable_mappings(100, proc)
    assert [(m.start, m.end, m.path) for m in got] == [
        (ADDR, ADDR + 8 * PAGE_SIZE, ""), (ADDR + 9 * PAGE_SIZE, ADDR + 10 * PAGE_SIZE, "/usr/lib/x.so")]
    assert "mg" in got[0].flags


def test_process_pages_over_mergeable_mappings(proc):
    (proc / "100" / "smaps").write_text(SMAPS)
    put(proc / "100" / "pagemap", ADDR // PAGE_SIZE + 8, [PM_PRESENT | 1000, PM_PRESENT | 1000])
    got = pages.process_pages(100, [(m.start, m.end) for m in pages.mergeable_mappings(100, proc)], proc)
    # the [heap] page (index 8) maps the KSM page too, but ksmd does not scan it
    assert got.ksm == ((ADDR, 1000), (ADDR + 7 * PAGE_SIZE, 1000), (ADDR + 9 * PAGE_SIZE, 1000))
    assert got.zero == (ADDR + 4 * PAGE_SIZE,) and got.pages == 9
    also = pages.process_pages(100, [(ADDR, ADDR + 10 * PAGE_SIZE), (ADDR + 8 * PAGE_SIZE, ADDR + 9 * PAGE_SIZE)],
                               proc)
    assert len(also.ksm) == 4 and also.pages == 10


def test_merged_spans():
    assert pages.merged_spans([(5, 9), (0, 2), (1, 3), (9, 10)]) == [(0, 3), (5, 10)]


def test_swapcache_pages(proc):
    put(proc / "kpageflags", 1001, [ANON | 1 << pages.KPF_SWAPCACHE])
    # page 1 mapped and in swapcache, page 2 swapped out: in swapcache only if mincore says so
    assert pages.swapcache_pages(100, ADDR, 8, None, proc) == 1
    assert pages.swapcache_pages(100, ADDR, 8, "00100000", proc) == 2
    assert pages.swapcache_pages(100, ADDR, 8, "00000000", proc) == 1


def test_resident_of_own_memory():
    import mmap
    m = mmap.mmap(-1, 4 * PAGE_SIZE)
    m[0:1] = b"x"
    import ctypes
    addr = ctypes.addressof(ctypes.c_char.from_buffer(m))
    got = pages.resident(addr, 4)
    assert got[0] == "1" and got[1:] == "000"
    del addr
