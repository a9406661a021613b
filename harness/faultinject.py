"""Block I/O errors on demand: the kernel's fail_make_request fault injection.

With CONFIG_FAIL_MAKE_REQUEST (and CONFIG_FAULT_INJECTION_DEBUG_FS for its
knobs), submit_bio_noacct() -> should_fail_bio() ends a bio with an I/O
error when the disk (or partition) has make-it-fail set and the global
fault_attr in /sys/kernel/debug/fail_make_request says to fail now
(lib/fault-inject.c should_fail()).  Arming a loop swap device this way
makes swap-in fail, which is how a scenario gets a swapcache page that is
not uptodate (do_swap_page() then reports SIGBUS, or on an unfixed kernel
ksm_might_need_to_copy() copies garbage).

    fi = FailMakeRequest()
    with fi.arm("loop3", times=-1, journal=lambda a: write(faultinject.to_journal(a))):
        ...   # every bio to loop3 fails with EIO

or, when arming and disarming are separate steps:

    injection = fi.arm("loop3", times=5)
    ...
    injection.disarm()   # idempotent; a `with` block calls it on exit

`journal` gets the Armed (with the values to restore) before anything is
written, so the next start can `remove_stale()` it after a SIGKILL.

Disarming restores every value it changed, make-it-fail first.  debugfs is
mounted if it is not, and unmounted again only if this module mounted it.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional, Tuple

from . import kernel
from .command import run
from .errors import HarnessError, InputError, KernelError, Skip

log = logging.getLogger("ksm-harness")

JOURNAL_RESOURCE = "fail_make_request"  # the "resource" key of a journal entry
# The fault_attr files we set, in the order they are written when arming;
# disarming restores them in reverse, so `probability` drops to its old value first.
ATTRS = ("space", "verbose", "times", "interval", "probability")


@dataclass(frozen=True)
class Armed:
    """Fault injection armed on one block device: what to restore."""

    block: str  # the disk under /sys/block: "loop3"
    debugfs: str  # where debugfs is mounted: "/sys/kernel/debug"
    mounted_debugfs: bool  # True if arm() mounted debugfs (so disarm unmounts it)
    previous: Dict[str, str] = field(default_factory=dict)  # fault_attr file -> its value before arming
    previous_make_it_fail: str = "0"  # /sys/block/<block>/make-it-fail before arming


def to_journal(armed: Armed) -> dict:
    """A plain dict (JSON-ready) describing `armed`, for the crash journal."""
    return {
        "resource": JOURNAL_RESOURCE,
        "block": armed.block,
        "debugfs": armed.debugfs,
        "mounted_debugfs": armed.mounted_debugfs,
        "previous": dict(armed.previous),
        "previous_make_it_fail": armed.previous_make_it_fail,
    }


def from_journal(d: dict) -> Armed:
    """Rebuild the Armed that `to_journal` described."""
    keys = {"block", "debugfs", "mounted_debugfs", "previous", "previous_make_it_fail"}
    if d.get("resource") != JOURNAL_RESOURCE or not keys <= d.keys():
        raise InputError(f"not a fail_make_request journal entry: {d!r}", field="resource")
    return Armed(
        block=d["block"], debugfs=d["debugfs"], mounted_debugfs=bool(d["mounted_debugfs"]),
        previous=dict(d["previous"]), previous_make_it_fail=str(d["previous_make_it_fail"]),
    )


class FailMakeRequest:
    """fail_make_request on this kernel; paths injectable for tests."""

    def __init__(self, sys: str = "/sys", proc: str = "/proc"):
        self.sys = sys
        self.proc = proc
        self.debugfs = os.path.join(sys, "kernel", "debug")

    def _attr_dir(self) -> str:
        return os.path.join(self.debugfs, "fail_make_request")

    def available(self) -> Optional[str]:
        """None if bios can be failed here, else the reason to skip.  May
        mount debugfs for a moment to look, and unmounts it again."""
        if os.geteuid() != 0:
            return "fault injection needs root"
        cfg = kernel.read_config(self.proc)
        if cfg is not None and not cfg.enabled("FAIL_MAKE_REQUEST"):
            return f"kernel built without CONFIG_FAIL_MAKE_REQUEST ({cfg.source})"
        if not kernel.filesystem_known("debugfs", self.proc):
            return "kernel has no debugfs (CONFIG_DEBUG_FS)"
        try:
            mounted = self._mount_debugfs()
        except HarnessError as exc:
            return f"cannot mount debugfs: {exc}"
        try:
            if not os.path.isdir(self._attr_dir()):
                return "no fail_make_request in debugfs (CONFIG_FAIL_MAKE_REQUEST, CONFIG_FAULT_INJECTION_DEBUG_FS)"
        finally:
            if mounted:
                run(["umount", self.debugfs])
        return None

    def arm(
        self, block: str, times: int = -1, verbose: int = 1, journal: Optional[Callable[[Armed], None]] = None,
    ) -> "Injection":
        """Fail every bio to /sys/block/<block> (a disk, e.g. "loop3") from
        now on, `times` times (-1: no limit); raises Skip if this kernel
        cannot.  verbose=1 logs one "FAULT_INJECTION: forcing a failure"
        notice per failure (ratelimited); 2 adds a stack dump, which a crash
        watcher must not take for an oops.  The Injection returned disarms
        on disarm() or at the end of a `with` block."""
        if times == 0 or times < -1:
            raise InputError(f"times={times}: give a positive count or -1 for no limit", field="times")
        if "/" in block or not block:
            raise InputError(f"block device name {block!r}: give the name under /sys/block, like loop3", field="block")
        return Injection(self, self._arm(block, times, verbose, journal or (lambda armed: None)))

    def remove_stale(self, armed: Armed):
        """Disarm what a killed run left armed; tolerates a device or debugfs
        already gone."""
        self._disarm(armed, tolerate_missing=True)

    # ------------------------------------------------------------ internals

    def _mount_debugfs(self) -> bool:
        """Mount debugfs at /sys/kernel/debug unless it is; True if we did."""
        m = kernel.mounted_at(self.debugfs, self.proc)
        if m is not None and m.fstype == "debugfs":
            return False
        run(["mount", "-t", "debugfs", "debugfs", self.debugfs])
        return True

    def _make_it_fail(self, block: str) -> str:
        return os.path.join(self.sys, "block", block, "make-it-fail")

    def _arm(self, block: str, times: int, verbose: int, journal: Callable[[Armed], None]) -> Armed:
        reason = self.available()
        if reason:
            raise Skip(reason)
        if not os.path.exists(self._make_it_fail(block)):
            raise KernelError(f"no /sys/block/{block}/make-it-fail: is {block} a disk (not a partition)?")
        mounted = self._mount_debugfs()
        armed = Armed(block=block, debugfs=self.debugfs, mounted_debugfs=mounted,
                      previous={a: _read(os.path.join(self._attr_dir(), a)) for a in ATTRS},
                      previous_make_it_fail=_read(self._make_it_fail(block)))
        want = {"space": "0", "verbose": str(verbose), "times": str(times), "interval": "1", "probability": "100"}
        try:
            journal(armed)
            for a in ATTRS:
                _write(os.path.join(self._attr_dir(), a), want[a])
            _write(self._make_it_fail(block), "1")
        except BaseException:
            self._disarm(armed, tolerate_missing=True)
            raise
        log.info("fail_make_request armed on %s (times=%d)", block, times)
        return armed

    def _disarm(self, armed: Armed, tolerate_missing: bool):
        """Restore make-it-fail, then the fault_attr values, then unmount
        debugfs if arm() mounted it.  Every step is tried."""
        first: Optional[BaseException] = None
        steps: Tuple[Tuple[str, str], ...] = ((self._make_it_fail(armed.block), armed.previous_make_it_fail),)
        steps += tuple((os.path.join(armed.debugfs, "fail_make_request", a), armed.previous[a])
                       for a in reversed(ATTRS) if a in armed.previous)
        for path, value in steps:
            try:
                _write(path, value)
            except FileNotFoundError:
                if not tolerate_missing:
                    first = first or KernelError(f"{path} vanished while armed")
            except OSError as exc:
                first = first or KernelError(f"restoring {path} to {value}: {exc}")
        if armed.mounted_debugfs:
            m = kernel.mounted_at(armed.debugfs, self.proc)
            if m is not None and m.fstype == "debugfs":
                try:
                    run(["umount", armed.debugfs])
                except HarnessError as exc:
                    first = first or exc
        log.info("fail_make_request disarmed on %s", armed.block)
        if first is not None:
            raise first


class Injection:
    """What arm() returns: fault injection in force until disarm()."""

    def __init__(self, fi: FailMakeRequest, armed: Armed):
        self._fi = fi
        self.armed = armed  # what to restore; to_journal(injection.armed) for the journal
        self.active = True  # False once disarmed

    def disarm(self):
        """Restore every value arm() changed; a second call does nothing."""
        if self.active:
            self.active = False
            self._fi._disarm(self.armed, tolerate_missing=False)

    def __enter__(self) -> Armed:
        return self.armed

    def __exit__(self, *exc):
        self.disarm()
        return False


def _read(path: str) -> str:
    with open(path) as f:
        return f.read().strip()


def _write(path: str, value: str):
    with open(path, "w") as f:
        f.write(value)
