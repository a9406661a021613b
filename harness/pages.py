"""Per-process truth: /proc/PID/pagemap, /proc/kpageflags, /proc/PID/ksm_stat.

Global counters can move under other users of KSM (a qemu guest merges by
default); what a process maps is what decides a verdict.  pagemap gives each
virtual page's PFN (bits 0-54, root only since 4.0) or its swap state;
kpageflags gives that PFN's flags (Documentation/admin-guide/mm/pagemap.rst).
"""
import os
import struct
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# pagemap entry bits
PM_PFN_MASK = (1 << 55) - 1
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

# kpageflags bits, include/uapi/linux/kernel-page-flags.h
KPF_UPTODATE = 3
KPF_ANON = 12
KPF_SWAPCACHE = 13
KPF_THP = 22
KPF_KSM = 21
KPF_ZERO_PAGE = 24


@dataclass(frozen=True)
class RegionPages:
    """What one process maps over one region, page by page."""

    pid: int  # the process looked at
    addr: int  # region start (virtual address)
    npages: int  # region length in pages
    present: int  # pages with a PTE to a page in memory
    swapped: int  # pages whose PTE holds a swap entry
    ksm: tuple  # indexes of pages that are KSM pages (KPF_KSM)
    zero: int  # pages mapping the shared zero page (use_zero_pages=1 merges here)
    thp: int  # pages inside a transparent huge page
    pfns: tuple  # PFN of each page, 0 where not present

    @property
    def ksm_count(self):
        return len(self.ksm)


def _read_entries(path, first_index, count):
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), 8 * count, 8 * first_index)
    return struct.unpack(f"<{len(data) // 8}Q", data)


def kpageflags(pfns, proc=Path("/proc")):
    """Flags of each PFN (0 for PFN 0), reading runs of adjacent PFNs at once."""
    flags = {}
    wanted = sorted({p for p in pfns if p})
    with open(Path(proc) / "kpageflags", "rb") as f:
        i = 0
        while i < len(wanted):
            j = i
            while j + 1 < len(wanted) and wanted[j + 1] == wanted[j] + 1 and j - i < 4095:
                j += 1
            data = os.pread(f.fileno(), 8 * (j - i + 1), 8 * wanted[i])
            for k, value in enumerate(struct.unpack(f"<{len(data) // 8}Q", data)):
                flags[wanted[i] + k] = value
            i = j + 1
    return [flags.get(p, 0) for p in pfns]


def region_pages(pid, addr, npages, proc=Path("/proc")):
    """Read what `pid` maps over [addr, addr + npages pages)."""
    entries = _read_entries(Path(proc) / str(pid) / "pagemap", addr // PAGE_SIZE, npages)
    pfns = tuple(e & PM_PFN_MASK if e & PM_PRESENT else 0 for e in entries)
    flags = kpageflags(pfns, proc)
    return RegionPages(
        pid=pid,
        addr=addr,
        npages=npages,
        present=sum(1 for e in entries if e & PM_PRESENT),
        swapped=sum(1 for e in entries if e & PM_SWAP),
        ksm=tuple(i for i, f in enumerate(flags) if f >> KPF_KSM & 1),
        zero=sum(1 for f in flags if f >> KPF_ZERO_PAGE & 1),
        thp=sum(1 for f in flags if f >> KPF_THP & 1),
        pfns=pfns,
    )


def shared_pfns(a, b):
    """Page indexes where two views map the same page frame."""
    return tuple(i for i, (x, y) in enumerate(zip(a.pfns, b.pfns)) if x and x == y)


def ksm_stat(pid, proc=Path("/proc")):
    """/proc/PID/ksm_stat (6.1+) as a dict, else /proc/PID/ksm_merging_pages
    (5.19+) as {"ksm_merging_pages": N}, else None (older kernels)."""
    base = Path(proc) / str(pid)
    try:
        out = {}
        for line in (base / "ksm_stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            key, value = key.rstrip(":"), value.strip()
            out[key] = int(value) if value.lstrip("-").isdigit() else value
        return out
    except FileNotFoundError:
        pass
    try:
        return {"ksm_merging_pages": int((base / "ksm_merging_pages").read_text())}
    except FileNotFoundError:
        return None


def read_memory(pid, addr, length, proc=Path("/proc")):
    """Read another process's memory (root: ptrace access mode via CAP_SYS_PTRACE).
    A swapped-out page is faulted back in for the read (access_remote_vm())."""
    with open(Path(proc) / str(pid) / "mem", "rb", buffering=0) as f:
        return os.pread(f.fileno(), length, addr)
