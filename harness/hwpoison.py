"""Memory failure on demand: poison chosen page frames, and read what the kernel did.

With CONFIG_MEMORY_FAILURE a page can be poisoned two ways:
- madvise(MADV_HWPOISON) over a mapped range, by the process that maps it
  (mm/madvise.c madvise_inject_error() -> memory_failure() for each page);
- echo PFN > DEBUGFS/hwpoison/corrupt-pfn for any frame, mapped or not
  (CONFIG_HWPOISON_INJECT, mm/hwpoison-inject.c hwpoison_inject()).  This is
  the way to poison a page that is no longer mapped, such as a KSM page that
  reclaim unmapped and left in swapcache: the frame keeps its PFN.

memory_failure() (mm/memory-failure.c) sets PG_hwpoison, then handles the page
by its state and logs one line per frame, from action_result():
    "Memory failure: 0x3dd6: recovery action for dirty swapcache page: Delayed"
(me_swapcache_dirty() clears PG_dirty and PG_uptodate and keeps the page in
swapcache; me_swapcache_clean() drops a clean one from swapcache, "Recovered";
a mapped KSM page is "unmapping failed page: Ignored").  Those lines are the
expected result of a poisoning, not a kernel crash report.

A poisoned frame is lost to the machine until it reboots (unpoison-pfn refuses
a page that is mapped or in swapcache), so a hwpoison step is one of
the damaging actions (steps.Action.damaging) behind damage.py's guard: it runs
inside a ksm-harness VM guest, or
where the user said so (--allow-kernel-damage).
"""
from __future__ import annotations

import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from . import kernel, pages
from .errors import KernelError

# kpageflags bits (include/uapi/linux/kernel-page-flags.h) that say what state a
# frame was poisoned in and what memory failure left
KPF_DIRTY = 4
KPF_MMAP = 11
KPF_HWPOISON = 19

# action_result(), mm/memory-failure.c: pr_fmt "Memory failure: " + "%#lx: recovery action for %s: %s"
ACTION_RE = re.compile(r"Memory failure: (0x[0-9a-f]+): recovery action for (.+): "
                       r"(Ignored|Failed|Delayed|Recovered)\s*$")


@dataclass(frozen=True)
class Poisoned:
    """One frame a hwpoison step poisoned."""

    page: int  # index of the page in its region
    pfn: int  # the frame
    how: str  # "madvise" (it was mapped) or "corrupt-pfn" (it was not)
    before: int  # its kpageflags just before
    after: int  # its kpageflags just after
    action: str  # the kernel's "PAGE TYPE: RESULT" for it, else "madvise EBUSY" (refused), else ""

    @property
    def poisoned(self) -> bool:
        """The kernel marked the frame poisoned (KPF_HWPOISON)."""
        return bool(self.after >> KPF_HWPOISON & 1)


def flag(value: int, bit: int) -> bool:
    return bool(value >> bit & 1)


def state(flags: int) -> str:
    """A frame's state as memory failure tells them apart, from kpageflags."""
    words = [w for w, bit in (("ksm", pages.KPF_KSM), ("dirty", KPF_DIRTY), ("swapcache", pages.KPF_SWAPCACHE))
             if flag(flags, bit)]
    words.append("mapped" if flag(flags, KPF_MMAP) else "unmapped")
    return " ".join(words)


# Poisoned.how of a page whose recorded frame is no longer an unmapped
# swapcache page: reclaim wrote the page out and freed the frame, which may
# belong to anything now (the harness's own memory: its SIGBUS killed an
# exploration in a guest), so it is left alone
LEFT_SWAPCACHE = "not poisoned: its frame left swapcache"


def in_swapcache_unmapped(flags: int) -> bool:
    """The frame is a swapcache page no process maps: still the page paged out."""
    return flag(flags, pages.KPF_SWAPCACHE) and not flag(flags, KPF_MMAP)


def lost_in_swapcache(flags: int) -> bool:
    """Poisoned, unmapped, in swapcache and not up to date: the state
    me_swapcache_dirty() leaves a dirty swapcache page in (a clean one would
    have left swapcache), which ksm_might_need_to_copy() meets at swapoff."""
    return flag(flags, KPF_HWPOISON) and in_swapcache_unmapped(flags) and not flag(flags, pages.KPF_UPTODATE)


def parse_actions(lines: Iterable[str]) -> Dict[int, str]:
    """PFN -> "PAGE TYPE: RESULT" from memory failure's log lines (the last one wins)."""
    out = {}
    for line in lines:
        m = ACTION_RE.search(line)
        if m:
            out[int(m.group(1), 16)] = f"{m.group(2)}: {m.group(3)}"
    return out


def summary(poisoned: Tuple[Poisoned, ...]) -> str:
    """One line: how many were poisoned, in what state, and what the kernel did."""
    hit = sum(p.poisoned for p in poisoned)
    how = Counter(p.how for p in poisoned)
    before = Counter(state(p.before) for p in poisoned)
    actions = Counter(p.action or "no action logged" for p in poisoned)

    def words(c):
        return ", ".join(f"{k} x{n}" for k, n in c.most_common())

    return (f"{hit} of {len(poisoned)} pages poisoned ({words(how)}); before: {words(before)}; "
            f"kernel: {words(actions)}")


class HwPoison:
    """Memory failure injection on this kernel; root paths are parameters."""

    def __init__(self, debugfs: str = "/sys/kernel/debug", proc: str = "/proc"):
        self.debugfs = debugfs
        self.proc = proc

    def corrupt_pfn_path(self) -> str:
        return os.path.join(self.debugfs, "hwpoison", "corrupt-pfn")

    def available(self) -> Optional[str]:
        """None if frames can be poisoned here, else the reason to skip."""
        if os.geteuid() != 0:
            return "memory failure injection needs root (CAP_SYS_ADMIN)"
        cfg = kernel.read_config(self.proc)
        if cfg is not None and not cfg.enabled("MEMORY_FAILURE"):
            return f"kernel built without CONFIG_MEMORY_FAILURE ({cfg.source})"
        # /proc/sys/vm/memory_failure_recovery exists only with CONFIG_MEMORY_FAILURE
        if not os.path.exists(os.path.join(self.proc, "sys/vm/memory_failure_recovery")):
            return "kernel without memory failure handling (no /proc/sys/vm/memory_failure_recovery)"
        if not os.path.exists(self.corrupt_pfn_path()):
            return (f"no {self.corrupt_pfn_path()}: kernel without CONFIG_HWPOISON_INJECT, "
                    f"or debugfs not mounted at {self.debugfs}")
        return None

    def corrupt_pfn(self, pfn: int):
        """memory_failure() on one frame, mapped or not (hwpoison_inject())."""
        try:
            with open(self.corrupt_pfn_path(), "w") as f:
                f.write(str(pfn))
        except OSError as exc:
            raise KernelError(f"poisoning pfn {pfn:#x} through {self.corrupt_pfn_path()}: {exc}") from None


def frames_of(recorded: Mapping[int, int], view: pages.RegionPages, start: int, count: int):
    """(mapped, unmapped): page index -> PFN for the pages of [start, start+count)
    that are mapped now (their PFN from pagemap) and that are not but whose
    frame was recorded before they were paged out.  Pages in neither are left
    out: there is no frame to poison."""
    mapped, unmapped = {}, {}
    for i in range(start, start + count):
        if view.pfns[i]:
            mapped[i] = view.pfns[i]
        elif i in recorded:
            unmapped[i] = recorded[i]
    return mapped, unmapped


def runs(indexes: Iterable[int]):
    """(start, count) of each run of consecutive page indexes."""
    out: List[List[int]] = []
    for i in sorted(indexes):
        if out and out[-1][0] + out[-1][1] == i:
            out[-1][1] += 1
        else:
            out.append([i, 1])
    return [tuple(r) for r in out]


def read_back(worker, region: str, lost: Iterable[int], timeout: float) -> List[Tuple[int, int, int]]:
    """(first, count, read without SIGBUS) for each run of the `lost` pages
    of the worker's region that a read gave back, SIGBUS or not for each page."""
    out = []
    for first, n in runs(lost):
        reply = worker.call("touch", timeout=timeout, region=region, start=first, count=n, write=False,
                            threads=1, pace_us=0)
        if reply["sigbus"] < n:
            out.append((first, n, n - reply["sigbus"]))
    return out


def poison(hw: HwPoison, worker, region: str, start: int, count: int, recorded: Mapping[int, int],
           kernel_log, timeout: float) -> Tuple[Poisoned, ...]:
    """The hwpoison step for one worker's region: pages [start, start+count)
    that are mapped are poisoned by the worker (madvise), the others through
    corrupt-pfn by their frame recorded before pageout.  kernel_log() gives
    the texts of the kernel log records so far (the run's KmsgWatcher): the
    lines memory_failure() logs while poisoning say what it did."""
    info = worker.regions[region]
    view = pages.region_pages(worker.pid, info["addr"], info["npages"], hw.proc)
    mapped, unmapped = frames_of(recorded, view, start, count)
    how = {**{i: "madvise" for i in mapped}, **{i: "corrupt-pfn" for i in unmapped}}
    frames = {**mapped, **unmapped}
    order = sorted(frames)
    before = pages.kpageflags([frames[i] for i in order], hw.proc)
    for i, flags in zip(order, before):
        if i in unmapped and not in_swapcache_unmapped(flags):
            how[i] = LEFT_SWAPCACHE
    seen = len(kernel_log())
    refused = {}  # page index -> errno name of a madvise the kernel refused
    for first, n in runs(mapped):
        reply = worker.call("hwpoison", timeout=timeout, region=region, start=first, count=n)
        refused.update({int(i): e for i, e in reply["errors"].items()})
    for i in sorted(unmapped):
        if how[i] != LEFT_SWAPCACHE:
            hw.corrupt_pfn(unmapped[i])
    after = pages.kpageflags([frames[i] for i in order], hw.proc)
    actions = parse_actions(kernel_log()[seen:])
    return tuple(Poisoned(i, frames[i], how[i], b, a,
                          actions.get(frames[i]) or (f"madvise {refused[i]}" if i in refused else ""))
                 for i, b, a in zip(order, before, after))
