"""/sys/kernel/mm/ksm: discover, read, write (with typed results), snapshot and restore.

A 3.9 kernel has 8 files here, 6.18 has 24: nothing is assumed to exist.
Settings are told apart from counters by their mode (0644 vs 0444), as
mm/ksm.c declares them with __ATTR_RW / __ATTR_RO.
"""
import enum
import errno
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import DeadlineExceeded, KernelError
from .wait import wait_until

KSM_ROOT = Path("/sys/kernel/mm/ksm")

# run values, mm/ksm.c KSM_RUN_*
RUN_STOP, RUN_MERGE, RUN_UNMERGE = "0", "1", "2"

# Knobs that mm/ksm.c only lets change while nothing is shared: their
# *_store() handlers return -EBUSY when ksm_pages_shared (or, since 3.9,
# remove_all_stable_nodes()) says stable nodes remain.
NEED_UNSHARED = ("merge_across_nodes", "max_page_sharing")

# Every file mm/ksm.c has declared in /sys/kernel/mm/ksm from 3.9 to 6.18:
# KSM_ATTR() (mode 0644, a setting) and KSM_ATTR_RO() (0444, a counter).
# A scenario may write only a setting; a name outside both lists is checked
# against the live directory, so a newer kernel's knob still works there.
SETTINGS = ("run", "sleep_millisecs", "pages_to_scan", "merge_across_nodes", "use_zero_pages",
            "max_page_sharing", "stable_node_chains_prune_millisecs", "smart_scan", "advisor_mode",
            "advisor_max_cpu", "advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
            "advisor_target_scan_time")
COUNTERS = ("pages_shared", "pages_sharing", "pages_unshared", "pages_volatile", "full_scans",
            "stable_node_dups", "stable_node_chains", "pages_scanned", "pages_skipped", "ksm_zero_pages",
            "general_profit")
# a file name in that directory: never a path
NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class WriteResult(enum.Enum):
    OK = "ok"
    BUSY = "EBUSY"
    INVALID = "EINVAL"


@dataclass(frozen=True)
class Write:
    """One knob write and what the kernel said."""

    name: str  # knob file name, e.g. "merge_across_nodes"
    value: str  # what was written
    result: WriteResult  # OK, BUSY (EBUSY) or INVALID (EINVAL)
    seconds: float  # how long the write took (run=2 blocks for the whole unmerge)
    started: float  # time.monotonic() when the write began


def normalize(value):
    """The value of a knob as written back: "[none] scan-time" -> "none"."""
    value = value.strip()
    if "[" in value:
        return value[value.index("[") + 1 : value.index("]")]
    return value


def changed_since(snapshot, knobs):
    """Settings (run aside) that no longer read as in `snapshot`."""
    return [n for n, v in snapshot.items() if n != "run" and knobs.has(n) and knobs.read(n) != v]


class Knobs:
    def __init__(self, root=KSM_ROOT):
        self.root = Path(root)

    def exists(self):
        return (self.root / "run").exists()

    def names(self):
        return sorted(p.name for p in self.root.iterdir() if p.is_file()) if self.exists() else []

    def settings(self):
        """Knobs that are written (mode has the owner write bit)."""
        return [n for n in self.names() if (self.root / n).stat().st_mode & stat.S_IWUSR]

    def counters(self):
        return [n for n in self.names() if not (self.root / n).stat().st_mode & stat.S_IWUSR]

    def has(self, name):
        return (self.root / name).is_file()

    def why_not_writable(self, name):
        """None when a scenario may write `name`, else why not: only plain
        names of settings (mm/ksm.c KSM_ATTR), never a counter or a path."""
        if not NAME_RE.match(name):
            return "is not a knob name (a file name in /sys/kernel/mm/ksm, e.g. pages_to_scan)"
        if name in COUNTERS or (name not in SETTINGS and self.has(name) and name in self.counters()):
            return "is a counter the kernel keeps (read-only), not a knob to write"
        if name not in SETTINGS and name not in self.settings():
            return f"is not a KSM knob (known: {', '.join(SETTINGS)})"
        return None

    def why_not_readable(self, name):
        """None when `name` can be read as a KSM knob or counter, else why not."""
        if not NAME_RE.match(name):
            return "is not a knob name (a file name in /sys/kernel/mm/ksm, e.g. run)"
        if name not in SETTINGS + COUNTERS and not self.has(name):
            return f"is not a KSM knob or counter (known: {', '.join(SETTINGS + COUNTERS)})"
        return None

    def read(self, name):
        try:
            return normalize((self.root / name).read_text())
        except FileNotFoundError:
            raise KernelError(
                f"{self.root / name} does not exist on this kernel: check `ksm-harness env`"
            ) from None

    def read_int(self, name):
        return int(self.read(name))

    def read_all(self):
        return {n: self.read(n) for n in self.names()}

    def read_counters(self):
        """Every numeric counter, as ints (for the sampler)."""
        out = {}
        for n in self.counters():
            value = self.read(n)
            if value.lstrip("-").isdigit():
                out[n] = int(value)
        return out

    def write(self, name, value):
        """Write one knob; EBUSY and EINVAL come back as results, not exceptions."""
        value = str(value)
        if not self.has(name):
            raise KernelError(
                f"{self.root / name} does not exist on this kernel: the scenario should "
                f"list it under requires.knobs so that it skips here"
            )
        started = time.monotonic()
        try:
            # one write(2) of the whole value: sysfs stores parse a single buffer
            with open(self.root / name, "w") as f:
                f.write(value)
            result = WriteResult.OK
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                result = WriteResult.BUSY
            elif exc.errno == errno.EINVAL:
                result = WriteResult.INVALID
            else:
                raise KernelError(f"writing {value!r} to {self.root / name}: {exc}") from exc
        return Write(name, value, result, time.monotonic() - started, started)

    def snapshot(self):
        """The settings as found: what restore() puts back."""
        return {n: self.read(n) for n in self.settings()}

    def wait_unshared(self, timeout):
        """After run=2: wait until pages_shared reads 0 (the condition the
        NEED_UNSHARED knobs need).  Returns the last value read."""
        try:
            wait_until(lambda: self.read_int("pages_shared") == 0, timeout, "pages_shared == 0")
        except DeadlineExceeded:
            pass
        return self.read_int("pages_shared")

    def restore(self, snapshot, timeout=30.0):
        """Put a snapshot back in a safe order.

        run=2 first (unmerge everything), then wait for pages_shared == 0 so that
        merge_across_nodes/max_page_sharing may change, then every other setting,
        and run last.  Returns the list of Writes; raises KernelError naming each
        knob that could not be restored.
        """
        writes = []
        if self.has("run"):
            writes.append(self.write("run", RUN_UNMERGE))
        changed = changed_since(snapshot, self)
        if any(n in NEED_UNSHARED for n in changed) and self.has("pages_shared"):
            self.wait_unshared(timeout)
        # NEED_UNSHARED first: other writes cannot make them busy, but a
        # stray merge could if run were restored before them.  advisor_mode
        # next: switching it resets pages_to_scan (mm/ksm.c
        # set_advisor_defaults(), 6.9+), so pages_to_scan must come after.
        changed.sort(key=lambda n: (n not in NEED_UNSHARED, n != "advisor_mode"))
        for name in changed:
            writes.append(self.write(name, snapshot[name]))
        # a setting that happened to read right before advisor_mode reset it
        writes.extend(self.write(n, snapshot[n]) for n in changed_since(snapshot, self) if n != "advisor_mode")
        if "run" in snapshot and self.has("run"):
            writes.append(self.write("run", snapshot["run"]))
        failed = [w for w in writes if w.result is not WriteResult.OK]
        if failed:
            detail = ", ".join(f"{w.name}={w.value}: {w.result.value}" for w in failed)
            shared = self.read("pages_shared") if self.has("pages_shared") else "?"
            raise KernelError(
                f"could not restore KSM knobs ({detail}; pages_shared={shared}): a process may "
                f"still map KSM pages; retry with `ksm-harness restore`"
            )
        return writes

