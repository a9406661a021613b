"""Per-process truth: /proc/PID/pagemap, /proc/kpageflags, /proc/PID/ksm_stat.

Global counters can move under other users of KSM (a qemu guest merges by
default); what a process maps is what decides a verdict.  pagemap gives each
virtual page's PFN (bits 0-54, root only since 4.0) or its swap state;
kpageflags gives that PFN's flags (Documentation/admin-guide/mm/pagemap.rst).
"""
import ctypes
import os
import struct
from dataclasses import dataclass
from pathlib import Path

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# pagemap entry bits
PM_PFN_MASK = (1 << 55) - 1
PM_UFFD_WP = 1 << 57  # the PTE (or swap entry) is uffd write-protected (5.13+)
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
    uffd_wp: int = 0  # pages whose entry carries the uffd-wp bit (PM_UFFD_WP)

    @property
    def ksm_count(self):
        return len(self.ksm)


def _read_entries(path, first_index, count):
    with open(path, "rb") as f:
        data = os.pread(f.fileno(), 8 * count, 8 * first_index)
    return struct.unpack(f"<{len(data) // 8}Q", data)


# kpageflags is read in windows: a PFN this close to the last one wanted is
# read with the flags between rather than by one more pread (in a TCG guest a
# syscall costs about as much as reading a few hundred entries); a window holds
# at most KPAGEFLAGS_WINDOW entries.  fs/proc/page.c kpageflags_read() gives
# any PFN below max_pfn (KPF_NOPAGE where no page is online) and stops short
# at max_pfn, so a window over holes is harmless.
KPAGEFLAGS_GAP = 512
KPAGEFLAGS_WINDOW = 1 << 16


def kpageflags(pfns, proc=Path("/proc")):
    """Flags of each PFN (0 for PFN 0)."""
    flags = {}
    wanted = sorted({p for p in pfns if p})
    with open(Path(proc) / "kpageflags", "rb", buffering=0) as f:
        i = 0
        while i < len(wanted):
            first, j = wanted[i], i + 1
            while j < len(wanted) and wanted[j] - wanted[j - 1] <= KPAGEFLAGS_GAP \
                    and wanted[j] - first < KPAGEFLAGS_WINDOW:
                j += 1
            window = memoryview(os.pread(f.fileno(), 8 * (wanted[j - 1] - first + 1), 8 * first)).cast("Q")
            for pfn in wanted[i:j]:
                if pfn - first < len(window):
                    flags[pfn] = window[pfn - first]
            i = j
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
        uffd_wp=sum(1 for e in entries if e & PM_UFFD_WP),
    )


def shared_pfns(a, b):
    """Page indexes where two views map the same page frame."""
    return tuple(i for i, (x, y) in enumerate(zip(a.pfns, b.pfns)) if x and x == y)


def ksm_stat(pid, proc=Path("/proc")):
    """/proc/PID/ksm_stat (6.1+) as a dict, with ksm_merging_pages from
    /proc/PID/ksm_merging_pages (5.19+) where ksm_stat lacks it (6.1 shows
    only ksm_rmap_items there, fs/proc/base.c proc_pid_ksm_stat()), else None
    (older kernels).  {} for a process without an mm (a kernel thread)."""
    base = Path(proc) / str(pid)
    out = {}
    try:
        for line in (base / "ksm_stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            key, value = key.rstrip(":"), value.strip()
            out[key] = int(value) if value.lstrip("-").isdigit() else value
    except FileNotFoundError:
        out = None
    if out is not None and (not out or "ksm_merging_pages" in out):
        return out
    try:
        text = (base / "ksm_merging_pages").read_text().strip()
    except FileNotFoundError:
        return out
    return {**(out or {}), "ksm_merging_pages": int(text)} if text else out


def read_memory(pid, addr, length, proc=Path("/proc")):
    """Read another process's memory (root: ptrace access mode via CAP_SYS_PTRACE).
    A swapped-out page is faulted back in for the read (access_remote_vm())."""
    with open(Path(proc) / str(pid) / "mem", "rb", buffering=0) as f:
        return os.pread(f.fileno(), length, addr)


@dataclass(frozen=True)
class Mapping:
    """One mapping of /proc/PID/smaps."""

    start: int  # first address
    end: int  # address after the last
    path: str  # backing file, [heap]/[stack]..., or "" for anonymous memory
    flags: tuple  # VmFlags: "mg" is VM_MERGEABLE (madvise, or PR_SET_MEMORY_MERGE on every VMA)


def mergeable_mappings(pid, proc=Path("/proc")):
    """The mappings ksmd scans: VmFlags "mg" (VM_MERGEABLE) in
    /proc/PID/smaps (fs/proc/task_mmu.c show_smap_vma_flags()).  Under
    PR_SET_MEMORY_MERGE that is every mapping KSM can merge, not only the
    declared regions (mm/ksm.c ksm_add_vmas()).  Elsewhere a process may map
    KSM pages it never merged: an anonymous page shared copy-on-write with its
    parent becomes a KSM page in place when a mergeable relative's copy is
    merged (try_to_merge_one_page() keeps the page), and run=2 unmerges only
    the mms on ksmd's list."""
    return flagged_mappings(pid, "mg", proc)


def mappings(pid, proc=Path("/proc")):
    """Every mapping (VMA) of /proc/PID/smaps with its VmFlags
    (fs/proc/task_mmu.c show_smap_vma_flags(): "mg" VM_MERGEABLE, "ui" VM_UFFD_MINOR)."""
    out, current = [], None
    for line in (Path(proc) / str(pid) / "smaps").read_text().splitlines():
        head = line.split(maxsplit=5)
        if head[0] == "VmFlags:":
            if current:
                out.append(Mapping(*current, tuple(line.split()[1:])))
        elif "-" in head[0] and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            current = (start, end, head[5] if len(head) > 5 else "")
    return out


def flagged_mappings(pid, flag, proc=Path("/proc")):
    """The mappings whose VmFlags has `flag`."""
    return [m for m in mappings(pid, proc) if flag in m.flags]


def vmas_over(pid, addr, npages, proc=Path("/proc")):
    """How many VMAs [addr, +npages) spans: one where the kernel merged
    neighbours with equal flags (mm/vma.c), more where it did not."""
    end = addr + npages * PAGE_SIZE
    return sum(1 for m in mappings(pid, proc) if m.start < end and m.end > addr)


def flagged_pages(pid, addr, npages, flag, proc=Path("/proc")):
    """Pages of [addr, +npages) inside a mapping whose smaps VmFlags has `flag`."""
    end = addr + npages * PAGE_SIZE
    return sum(max(0, min(m.end, end) - max(m.start, addr)) // PAGE_SIZE
               for m in flagged_mappings(pid, flag, proc))


@dataclass(frozen=True)
class ProcessPages:
    """KSM and zero-page mappings over a process's mergeable mappings."""

    pid: int  # the process looked at
    ksm: tuple  # (address, PFN) of every page table entry mapping a KSM page (KPF_KSM)
    zero: tuple  # address of every entry mapping the shared zero page (KPF_ZERO_PAGE)
    pages: int  # pages looked at


PAGEMAP_CHUNK = 1 << 16  # entries read at once (512 KiB)


def merged_spans(spans):
    """Sorted, non-overlapping (start, end) covering the given ones."""
    out = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def process_pages(pid, spans, proc=Path("/proc"), known=None):
    """Read the pagemap over (start, end) spans of a process (its regions,
    its mergeable_mappings()), and the flags of what is present there.
    `known` ({PFN: flags}, filled here) is shared by the calls of one look at
    many processes: a forked child maps its parent's frames until one of them
    writes, so a fork tree's frames are read once, not once per process."""
    known = {} if known is None else known
    ksm, zero, total = [], [], 0
    spans = merged_spans(spans)
    with open(Path(proc) / str(pid) / "pagemap", "rb") as f:
        for start, end in spans:
            total += (end - start) // PAGE_SIZE
            for first in range(start // PAGE_SIZE, end // PAGE_SIZE, PAGEMAP_CHUNK):
                count = min(PAGEMAP_CHUNK, end // PAGE_SIZE - first)
                data = os.pread(f.fileno(), 8 * count, 8 * first)
                entries = struct.unpack(f"<{len(data) // 8}Q", data)
                present = [(first + i, e & PM_PFN_MASK) for i, e in enumerate(entries) if e & PM_PRESENT]
                unknown = [pfn for _, pfn in present if pfn not in known]
                known.update(zip(unknown, kpageflags(unknown, proc)))
                for page, pfn in present:
                    if known[pfn] >> KPF_KSM & 1:
                        ksm.append((page * PAGE_SIZE, pfn))
                    elif known[pfn] >> KPF_ZERO_PAGE & 1:
                        zero.append(page * PAGE_SIZE)
    return ProcessPages(pid, tuple(ksm), tuple(zero), total)


def resident(addr, npages):
    """mincore(2) over [addr, +npages pages) of the calling process, as a
    string of "0"/"1": a page in memory, or swapped out but still in swap
    cache (mm/mincore.c mincore_pte_range(): a swap entry is looked up in the
    swap address space).  Only a process can ask this of itself."""
    libc = ctypes.CDLL(None, use_errno=True)
    vec = (ctypes.c_ubyte * npages)()
    if libc.mincore(ctypes.c_void_p(addr), ctypes.c_size_t(npages * PAGE_SIZE), vec):
        raise OSError(ctypes.get_errno(), f"mincore: {os.strerror(ctypes.get_errno())}")
    return "".join("1" if b & 1 else "0" for b in vec)


def swapcache_pages(pid, addr, npages, resident_map=None, proc=Path("/proc")):
    """Pages of [addr, +npages) whose page is in swap cache: mapped ones with
    KPF_SWAPCACHE, and swapped-out ones that `resident_map` (the process's own
    mincore, from resident()) shows still in memory.  Without it only mapped
    pages are seen (another process cannot ask mincore for us)."""
    entries = _read_entries(Path(proc) / str(pid) / "pagemap", addr // PAGE_SIZE, npages)
    pfns = [e & PM_PFN_MASK if e & PM_PRESENT else 0 for e in entries]
    flags = kpageflags(pfns, proc)
    count = 0
    for i, (entry, flag) in enumerate(zip(entries, flags)):
        if entry & PM_PRESENT:
            count += flag >> KPF_SWAPCACHE & 1
        elif entry & PM_SWAP and resident_map is not None:
            count += resident_map[i] == "1"
    return count
