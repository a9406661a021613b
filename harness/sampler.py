"""KSM counters and /proc/vmstat over time.

pages_shared/pages_sharing/full_scans change only when ksmd scans, and the
vmstat events (ksm_swpin_copy, cow_ksm, pswpin, ...) only when their path in
mm/ runs: a scenario proves it exercised a path by these deltas.
"""
import threading
import time
from pathlib import Path

from .results import Sample

# /proc/vmstat fields that tell what KSM and swap did (missing ones are skipped:
# ksm_swpin_copy appeared in 4.x, cow_ksm in 6.x), and who migrated pages:
# NUMA balancing (numa_pages_migrated, from do_numa_page()) or kcompactd
# (compact_daemon_migrate_scanned), since a page under migration has a
# migration entry and ksmd cannot merge it.
VMSTAT_FIELDS = (
    "ksm_swpin_copy", "cow_ksm", "pswpin", "pswpout", "swap_ra", "swap_ra_hit",
    "thp_split_page", "thp_fault_alloc", "pgmigrate_success", "pgmigrate_fail",
    "numa_pages_migrated", "compact_daemon_migrate_scanned",
    "nr_anon_pages", "nr_swapcached", "workingset_refault_anon", "pgmajfault",
)


def read_vmstat(proc=Path("/proc"), fields=VMSTAT_FIELDS):
    out = {}
    for line in (Path(proc) / "vmstat").read_text().splitlines():
        name, _, value = line.partition(" ")
        if name in fields:
            out[name] = int(value)
    return out


class Counters:
    """One read of every KSM counter plus the vmstat fields."""

    def __init__(self, knobs, proc=Path("/proc")):
        self.knobs = knobs
        self.proc = Path(proc)

    def read(self):
        values = self.knobs.read_counters()
        values.update(read_vmstat(self.proc))
        return values


def deltas(before, after):
    """after - before for every counter both have, leaving out the unchanged."""
    return {k: after[k] - before[k] for k in sorted(after) if k in before and after[k] != before[k]}


class Sampler:
    """Samples Counters every `interval` seconds in a thread, for the timeline."""

    def __init__(self, counters, interval=0.1, t0=None):
        self.counters = counters
        self.interval = interval
        self.t0 = time.monotonic() if t0 is None else t0
        self.samples = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ksm-sampler", daemon=True)

    def sample(self):
        s = Sample(round(time.monotonic() - self.t0, 4), self.counters.read())
        self.samples.append(s)
        return s

    def _loop(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.sample()
