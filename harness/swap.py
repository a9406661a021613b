"""Swap for a run: made at its start, removed at its end (or by the next start).

Two kinds, because KSM sees them differently:

- FILE: a file in a tmpfs of our own, attached to a loop device.  The loop
  driver completes I/O from a workqueue, so swap is asynchronous: a page read
  back from it goes through the swapcache (swap_read_folio() ->
  submit_bio), and a written-back page stays in swapcache until reclaim
  drops it.  This is what keeps KSM stable nodes alive across `run=2`.
  (The tmpfs pages holding the file are themselves swappable; under global
  memory pressure they could be written to this very device.)
- ZRAM: a zram device, which is SWP_SYNCHRONOUS_IO (BLK_FEAT_SYNCHRONOUS).
  Since 4.15 do_swap_page() reads a page with a single user straight into a
  new page, bypassing the swapcache; before 4.15 zram behaves like FILE.
  Measured on 6.18 (tests/host/test_swap_host.py): after MADV_PAGEOUT and a
  read fault, every page from the loop device is in swapcache
  (KPF_SWAPCACHE), none from zram.

Both are swapped on at a high priority so the kernel uses them before any
swap the machine already has (get_swap_pages() walks by priority).

Every device is described by a SwapDevice that `to_journal()` turns into a
plain dict.  create() hands the SwapDevice, as far as it is known, to a
`journal` callback before each step that makes kernel state; the runner
writes it to disk there, so that the next start can call
`SwapManager.remove_stale()` on devices left by a run killed with SIGKILL.
"""
from __future__ import annotations

import errno
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from typing import Callable, List, Optional

from . import kernel
from .command import run
from .errors import HarnessError, InputError, KernelError, Skip
from .wait import wait_until

log = logging.getLogger("ksm-harness")

FILE = "file"
ZRAM = "zram"
KINDS = (FILE, ZRAM)

JOURNAL_RESOURCE = "swap"  # the "resource" key of a journal entry
MAX_PRIORITY = 32767  # swapon(2): SWAP_FLAG_PRIO_MASK
MIN_PAGES = 10  # mkswap refuses an area of fewer pages
SETTLE_TIMEOUT = 10.0  # seconds for a loop/zram device to be let go by openers (udev's blkid)
SWAPOFF_TIMEOUT = 600  # seconds: swapoff reads every swapped page back in


@dataclass(frozen=True)
class SwapDevice:
    """One swap area the harness made."""

    kind: str  # FILE (loop over a tmpfs file: asynchronous) or ZRAM (synchronous)
    device: str  # the block device swapped on: "/dev/loop3", "/dev/zram1"
    size_bytes: int  # size of the swap area (the backing file or the zram disksize)
    priority: int  # swap priority given to swapon -p
    backing_file: Optional[str] = None  # FILE: the file the loop device reads; else None
    mount_dir: Optional[str] = None  # FILE: our private tmpfs holding that file; else None
    zram_id: Optional[int] = None  # ZRAM: N of /dev/zramN; else None


@dataclass(frozen=True)
class SwapEntry:
    """One line of /proc/swaps."""

    filename: str  # the device or file, unescaped: "/dev/loop3"
    type: str  # "partition" (a block device) or "file"
    size_kib: int  # size in KiB
    used_kib: int  # in use, KiB
    priority: int  # higher is used first; negative when the kernel chose it


def parse_swaps(text: str) -> List[SwapEntry]:
    """Parse /proc/swaps (mm/swapfile.c swap_show()): a header line, then
    `filename type size used priority`; the filename is escaped with
    seq_file_path(" \\t\\n\\\\") so it never contains a blank."""
    out = []
    for line in text.splitlines()[1:]:
        f = line.split()
        if len(f) < 5:
            continue
        out.append(SwapEntry(kernel.unescape(f[0]), f[1], int(f[2]), int(f[3]), int(f[4])))
    return out


def to_journal(dev: SwapDevice) -> dict:
    """A plain dict (JSON-ready) describing `dev`, for the crash journal."""
    return {"resource": JOURNAL_RESOURCE, **asdict(dev)}


def from_journal(d: dict) -> SwapDevice:
    """Rebuild the SwapDevice that `to_journal` described."""
    if d.get("resource") != JOURNAL_RESOURCE:
        raise InputError(f"not a swap journal entry: {d!r}", field="resource")
    fields = {k: d[k] for k in SwapDevice.__dataclass_fields__ if k in d}
    missing = {"kind", "device", "size_bytes", "priority"} - fields.keys()
    if missing or d["kind"] not in KINDS:
        raise InputError(f"bad swap journal entry {d!r}: missing {sorted(missing)} or unknown kind", field="kind")
    return SwapDevice(**fields)


class SwapManager:
    """Makes and removes swap devices; paths are injectable for tests.

    `workdir` is where the private tmpfs mount points are made.
    """

    def __init__(self, proc: str = "/proc", sys: str = "/sys", dev: str = "/dev", workdir: Optional[str] = None):
        self.proc = proc
        self.sys = sys
        self.dev = dev
        self.workdir = workdir or tempfile.gettempdir()

    # ------------------------------------------------------------ facts

    def available(self, kind: str) -> Optional[str]:
        """None if swap of `kind` can be made here, else the reason to skip."""
        if kind not in KINDS:
            raise InputError(f"unknown swap kind {kind!r}; use one of {', '.join(KINDS)}", field="swap")
        if os.geteuid() != 0:
            return "swap needs root"
        if not os.path.exists(os.path.join(self.proc, "swaps")):
            return "kernel built without CONFIG_SWAP (no /proc/swaps)"
        tools = ["swapon", "swapoff", "mkswap"] + (["losetup", "mount", "umount"] if kind == FILE else [])
        missing = [t for t in tools if shutil.which(t) is None]
        if missing:
            return f"{', '.join(missing)} not installed (util-linux)"
        if kind == FILE:
            if not kernel.filesystem_known("tmpfs", self.proc):
                return "kernel has no tmpfs (CONFIG_SHMEM/CONFIG_TMPFS)"
            if not (os.path.exists(os.path.join(self.dev, "loop-control")) or self._module_loadable("loop")):
                return "no loop device support (CONFIG_BLK_DEV_LOOP, no /dev/loop-control)"
            return None
        if os.path.isdir(self._zram_control()):
            return None
        if os.path.isdir(os.path.join(self.sys, "module/zram")):
            return "zram has no /sys/class/zram-control (kernel before 4.2): cannot add a device"
        if not self._module_loadable("zram"):
            return "no zram (CONFIG_ZRAM)"
        return None

    def active(self) -> List[SwapEntry]:
        """The swap areas in use now (/proc/swaps)."""
        with open(os.path.join(self.proc, "swaps")) as f:
            return parse_swaps(f.read())

    def is_active(self, dev: SwapDevice) -> bool:
        """True if `dev` is swapped on."""
        return any(e.filename == dev.device for e in self.active())

    @staticmethod
    def block_device_name(dev: SwapDevice) -> str:
        """The name under /sys/block: "loop3", "zram1" (for make-it-fail)."""
        return os.path.basename(dev.device)

    # ------------------------------------------------------------ create

    def create(
        self, kind: str, size_bytes: int, priority: int = MAX_PRIORITY,
        journal: Optional[Callable[[SwapDevice], None]] = None,
    ) -> SwapDevice:
        """Make a swap device of `kind` and swap it on; raises Skip if this
        machine cannot (see available()).  On failure nothing is left.

        `journal`, if given, is called with the device as known so far
        (device "" before the loop device exists) whenever that grows, before
        the next step changes kernel state: write `to_journal(dev)` there."""
        reason = self.available(kind)
        if reason:
            raise Skip(reason)
        page = kernel.page_size()
        if size_bytes < MIN_PAGES * page:
            raise InputError(
                f"swap size {size_bytes} is below {MIN_PAGES} pages ({MIN_PAGES * page} bytes)", field="swap"
            )
        if not 0 <= priority <= MAX_PRIORITY:
            raise InputError(f"swap priority {priority} not in 0..{MAX_PRIORITY}", field="swap")
        size_bytes = -(-size_bytes // page) * page
        make = self._create_file if kind == FILE else self._create_zram
        return make(size_bytes, priority, journal or (lambda dev: None))

    def _create_file(self, size_bytes: int, priority: int, journal: Callable[[SwapDevice], None]) -> SwapDevice:
        mount_dir = tempfile.mkdtemp(prefix="ksm-harness-swap-", dir=self.workdir)
        backing = os.path.join(mount_dir, "swapfile")
        partial = SwapDevice(FILE, "", size_bytes, priority, backing_file=backing, mount_dir=mount_dir)
        try:
            journal(partial)
            # size= caps the tmpfs at the file plus room for its own metadata.
            options = f"size={size_bytes + (1 << 20)},mode=0700"
            run(["mount", "-t", "tmpfs", "-o", options, "ksm-harness-swap", mount_dir])
            with open(backing, "wb") as f:
                f.truncate(size_bytes)
            # losetup does not use direct I/O unless asked: the loop worker
            # writes through the tmpfs page cache (loop_queue_work()).
            loop = run(["losetup", "--find", "--show", backing]).stdout.strip()
            partial = SwapDevice(
                FILE, os.path.join(self.dev, os.path.basename(loop)), size_bytes, priority,
                backing_file=backing, mount_dir=mount_dir,
            )
            journal(partial)
            self._swapon(partial)
        except BaseException:
            self._remove_quietly(partial)
            raise
        return partial

    def _create_zram(self, size_bytes: int, priority: int, journal: Callable[[SwapDevice], None]) -> SwapDevice:
        if not os.path.isdir(self._zram_control()):
            run(["modprobe", "zram", "num_devices=0"])  # the module then adds no zram0 of its own
            if not os.path.isdir(self._zram_control()):
                raise Skip("zram loaded but has no /sys/class/zram-control (kernel before 4.2)")
        # Reading hot_add allocates a device and returns its id (zram_drv.c hot_add_show()).
        with open(os.path.join(self._zram_control(), "hot_add")) as f:
            zram_id = int(f.read())
        dev = SwapDevice(ZRAM, os.path.join(self.dev, f"zram{zram_id}"), size_bytes, priority, zram_id=zram_id)
        try:
            journal(dev)  # a kill before this leaves an empty zram device, the one window left
            self._write(os.path.join(self.sys, "block", f"zram{zram_id}", "disksize"), str(size_bytes))
            wait_until(lambda: os.path.exists(dev.device), SETTLE_TIMEOUT, f"{dev.device} to appear")
            self._swapon(dev)
        except BaseException:
            self._remove_quietly(dev)
            raise
        return dev

    def _swapon(self, dev: SwapDevice):
        run(["mkswap", dev.device])
        run(["swapon", "-p", str(dev.priority), dev.device])

    # ------------------------------------------------------------ remove

    def remove(self, dev: SwapDevice) -> List[str]:
        """Swap `dev` off and undo everything create() did.

        Tolerates parts already gone (a half-made device, a run killed
        mid-removal) and never touches a loop or zram device that is no
        longer ours.  Every step is tried, the first failure raised after
        the rest, except after a failed swapoff: nothing more can go while
        the device is swapped on (loop_clr_fd() would only set autoclear).
        Returns what was done, in words, for the log.
        """
        done: List[str] = []
        first: Optional[BaseException] = None
        if dev.kind == FILE and not dev.device:
            # killed between `losetup --find --show` attaching and its answer
            dev = replace(dev, device=self._loop_reading(dev))
        steps = [self._step_swapoff]
        steps += [self._step_detach_loop, self._step_unmount] if dev.kind == FILE else [self._step_remove_zram]
        for step in steps:
            try:
                what = step(dev)
            except (HarnessError, OSError) as exc:
                log.warning("removing %s: %s", dev.device or dev.backing_file, exc)
                first = first or exc
                if step == self._step_swapoff:
                    break  # a device still swapped on cannot be detached nor its file unmounted
                continue
            if what:
                log.info("%s", what)
                done.append(what)
        if first is not None:
            raise first if isinstance(first, HarnessError) else KernelError(
                f"could not remove swap {dev.device}: {first}; see `swapon --show`, `losetup -a`, `zramctl`"
            )
        return done

    # The journal replay: remove() already tolerates a half-removed device.
    remove_stale = remove

    def _remove_quietly(self, dev: SwapDevice):
        try:
            self.remove(dev)
        except (HarnessError, OSError) as exc:
            log.error("could not undo a half-made swap device %s: %s", dev, exc)

    def _step_swapoff(self, dev: SwapDevice) -> Optional[str]:
        if not dev.device or not self.is_active(dev) or not self._still_ours(dev):
            return None
        run(["swapoff", dev.device], timeout=SWAPOFF_TIMEOUT)
        return f"swapoff {dev.device}"

    def _step_detach_loop(self, dev: SwapDevice) -> Optional[str]:
        if not dev.device or not self._still_ours(dev):
            return None
        run(["losetup", "-d", dev.device])
        # With another opener (udev's blkid probe) loop_clr_fd() only sets
        # autoclear and the detach happens at the last close: wait for it,
        # or the tmpfs under the file is still busy.
        wait_until(lambda: not self._still_ours(dev), SETTLE_TIMEOUT, f"{dev.device} to detach")
        return f"losetup -d {dev.device}"

    def _step_unmount(self, dev: SwapDevice) -> Optional[str]:
        if not dev.mount_dir or not os.path.isdir(dev.mount_dir):
            return None
        # Unmounting frees the file with the tmpfs; only a mount we made (fstype
        # tmpfs, our source name) is unmounted, whatever the journal says.
        m = kernel.mounted_at(dev.mount_dir, self.proc)
        if m is not None and m.fstype == "tmpfs" and m.source == "ksm-harness-swap":
            run(["umount", dev.mount_dir])
        if dev.backing_file and os.path.exists(dev.backing_file):
            os.unlink(dev.backing_file)  # still there only if the mount was not ours
        os.rmdir(dev.mount_dir)
        return f"umount and rmdir {dev.mount_dir}"

    def _step_remove_zram(self, dev: SwapDevice) -> Optional[str]:
        if dev.zram_id is None or not self._still_ours(dev):
            return None
        # zram_remove() refuses (EBUSY) while the device is open, e.g. by a
        # udev probe right after swapoff: retry until the deadline.
        hot_remove = os.path.join(self._zram_control(), "hot_remove")

        def removed():
            try:
                self._write(hot_remove, str(dev.zram_id))
            except OSError as exc:
                if exc.errno == errno.EBUSY:
                    return False
                if exc.errno == errno.ENODEV:  # gone meanwhile
                    return True
                raise
            return True

        wait_until(removed, SETTLE_TIMEOUT, f"zram{dev.zram_id} hot_remove")
        return f"zram hot_remove {dev.zram_id}"

    def _loop_reading(self, dev: SwapDevice) -> str:
        """The loop device attached to dev's backing file, or ""."""
        block = os.path.join(self.sys, "block")
        for name in sorted(os.listdir(block)) if os.path.isdir(block) else []:
            found = replace(dev, device=os.path.join(self.dev, name))
            if name.startswith("loop") and self._still_ours(found):
                return found.device
        return ""

    def _still_ours(self, dev: SwapDevice) -> bool:
        """True if the block device still is the one create() made: a loop
        device still reading our backing file; a zram device of our size
        (or of none yet, when create() failed before setting it)."""
        block = os.path.join(self.sys, "block", self.block_device_name(dev))
        if dev.kind == FILE:
            # loop_attr_backing_file_show() prints d_path(), with " (deleted)" once unlinked.
            try:
                with open(os.path.join(block, "loop", "backing_file")) as f:
                    backing = f.read().strip()
            except OSError:  # not attached (no loop/ directory) or no such device
                return False
            return backing == dev.backing_file or backing == f"{dev.backing_file} (deleted)"
        try:
            with open(os.path.join(block, "disksize")) as f:
                return int(f.read()) in (dev.size_bytes, 0)
        except (OSError, ValueError):
            return False

    # ------------------------------------------------------------ helpers

    def _zram_control(self) -> str:
        return os.path.join(self.sys, "class", "zram-control")

    def _module_loadable(self, name: str) -> bool:
        """True if `modprobe -n` finds module `name` (a dry run: loads nothing)."""
        if os.path.isdir(os.path.join(self.sys, "module", name)):
            return True
        if shutil.which("modprobe") is None:
            return False
        return run(["modprobe", "-n", "-q", name], check=False).returncode == 0

    @staticmethod
    def _write(path: str, value: str):
        with open(path, "w") as f:
            f.write(value)
