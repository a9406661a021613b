"""Cgroups for a run: made under a "ksm-harness" parent, removed after.
A memory cgroup (MemCgroup) limits the workers; a cpuset (Cpuset) binds them
to NUMA nodes and CPUs, as LTP's ksm02/ksm04 run KSM.

cgroup v1 (the memory controller mounted on its own hierarchy, e.g.
/sys/fs/cgroup/memory) is fully supported.  cgroup v2 is used when the
unified hierarchy has the memory controller; its limit is memory.max.

The two differ where KSM matters: lowering a v1 limit below what cannot be
reclaimed fails with EBUSY (mem_cgroup_resize_max(); measured on 6.18 with
merged KSM pages in the group), while v2's memory_max_write() never fails:
it reclaims and then OOM-kills in the group.  set_limit() reclaims through
v2's memory.reclaim first, so that both answer EBUSY and neither OOM-kills.

A cpuset's nodes decide where every page a task allocates after it joined
comes from (kernel/cgroup/cpuset.c cpuset_attach() -> cpuset_change_task_nodemask()
sets its mems_allowed); a v1 child cpuset starts with no CPUs and no nodes and
takes tasks only once both are set (cpuset_can_attach()), within its parent's.

Like swap.py, every cgroup has a journal form (`to_journal`), handed to a
`journal` callback before the group is made, so that the next start can
`remove_stale()` a group left by a run killed with SIGKILL.
"""
from __future__ import annotations

import enum
import errno
import logging
import os
from dataclasses import dataclass
from typing import Callable, ClassVar, Dict, List, Optional, Set, Type, TypeVar

from . import kernel
from .errors import DeadlineExceeded, InputError, KernelError, Skip
from .wait import wait_until

log = logging.getLogger("ksm-harness")

PARENT = "ksm-harness"  # every group the harness makes lives in a directory of this name
CONFIGS = {"memory": "CONFIG_MEMCG", "cpuset": "CONFIG_CPUSETS"}  # controller -> what the kernel needs
EMPTY_TIMEOUT = 10.0  # seconds to move every task out (a forking worker adds tasks meanwhile)
RECLAIM_TIMEOUT = 60.0  # seconds v2 reclaim may go on while it makes progress (swap to a loop device under TCG is slow)


@dataclass(frozen=True)
class Hierarchy:
    """Where a controller is mounted."""

    version: int  # 1 (the controller on its own v1 hierarchy) or 2 (unified)
    mount: str  # its mount point: "/sys/fs/cgroup/memory", "/sys/fs/cgroup"
    root: str  # the cgroup seen at the mount point ("/" unless a container bind-mounts a subtree)


def find_hierarchy(proc: str = "/proc", controller: str = "memory") -> Optional[Hierarchy]:
    """The controller's hierarchy; v1 first (when a controller is bound to
    v1, the unified hierarchy cannot have it), None if neither is mounted."""
    mounts = kernel.mounts(proc)
    for m in mounts:
        if m.fstype == "cgroup" and controller in m.options:
            return Hierarchy(1, m.mountpoint, m.root)
    for m in mounts:
        if m.fstype == "cgroup2" and controller in _read_words(os.path.join(m.mountpoint, "cgroup.controllers")):
            return Hierarchy(2, m.mountpoint, m.root)
    return None


def available(proc: str = "/proc", controller: str = "memory") -> Optional[str]:
    """None if a cgroup of this controller can be made here, else the reason to skip."""
    if os.geteuid() != 0:
        return f"{controller} cgroups need root"
    h = find_hierarchy(proc, controller)
    if h is None:
        return (f"no {controller} cgroup controller mounted ({CONFIGS[controller]}; cgroup or cgroup2 "
                f"with {controller})")
    if h.version == 2 and controller not in _read_words(os.path.join(h.mount, "cgroup.subtree_control")):
        return (f"cgroup v2 at {h.mount} does not delegate {controller}: write +{controller} to its "
                f"cgroup.subtree_control")
    return None


def parse_stat(text: str) -> Dict[str, int]:
    """Parse memory.stat: `name value` lines (memcg_stat_show(), memory_stat_format())."""
    out = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) == 2:
            out[f[0]] = int(f[1])
    return out


def parse_proc_cgroup(text: str, version: int, controller: str = "memory") -> Optional[str]:
    """This process's path in the controller's hierarchy, from /proc/self/cgroup
    lines `id:controllers:path` (v2's line is `0::path`)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if (version == 1 and controller in parts[1].split(",")) or (version == 2 and parts[0] == "0"):
            return parts[2]
    return None


C = TypeVar("C", bound="Cgroup")


def parse_list(text: str) -> Set[int]:
    """The numbers of a kernel CPU or node list: "0-2,5" -> {0, 1, 2, 5} (lib/bitmap.c bitmap_parselist())."""
    out: Set[int] = set()
    for part in filter(None, text.strip().split(",")):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


class LimitResult(enum.Enum):
    """What writing a limit gave."""

    OK = "ok"
    EBUSY = "ebusy"  # v1: usage could not be reclaimed below the new limit (mem_cgroup_resize_max())
    EINVAL = "einval"  # v1: above memory.memsw.limit_in_bytes (which must stay >= it), or not a number it parses


@dataclass(frozen=True)
class Cgroup:
    """One cgroup the harness made (create()), of the class's controller."""

    controller: ClassVar[str]  # "memory", "cpuset"
    resource: ClassVar[str]  # the "resource" key of its journal entry
    path: str  # the cgroup's directory: <mount>/ksm-harness/<name>
    version: int  # 1 or 2
    home: str  # directory of the cgroup remove() moves tasks back to: where the harness ran

    @classmethod
    def create(
        cls: Type[C], name: str, proc: str = "/proc", hierarchy: Optional[Hierarchy] = None,
        journal: Optional[Callable[[C], None]] = None,
    ) -> C:
        """Make `<hierarchy>/ksm-harness/<name>`; raises Skip if the controller
        is not usable.  `journal`, if given, gets the group before it is made."""
        if not name or "/" in name or name in (".", ".."):
            raise InputError(f"cgroup name {name!r} must be one path component", field="cgroup")
        if hierarchy is None:
            reason = available(proc, cls.controller)
            if reason:
                raise Skip(reason)
            hierarchy = find_hierarchy(proc, cls.controller)
            if hierarchy is None:  # available() found one: mounts changed meanwhile
                raise Skip(f"no {cls.controller} cgroup hierarchy is mounted")
        parent = os.path.join(hierarchy.mount, PARENT)
        try:
            os.mkdir(parent)
        except FileExistsError:
            pass
        if hierarchy.version == 2:
            # Children of ksm-harness get the controller only if it is
            # enabled in the parent's subtree_control (cgroup_subtree_control_write()).
            _write(os.path.join(parent, "cgroup.subtree_control"), f"+{cls.controller}")
        cls.prepare_parent(parent, hierarchy)
        cg = cls(os.path.join(parent, name), hierarchy.version, _home(hierarchy, proc, cls.controller))
        if journal:
            journal(cg)
        try:
            os.mkdir(cg.path)
        except FileExistsError:
            raise KernelError(
                f"cgroup {cg.path} already exists: a killed run left it, or another run uses it; "
                f"rmdir it once it has no tasks"
            ) from None
        return cg

    @classmethod
    def prepare_parent(cls, parent: str, hierarchy: Hierarchy):
        """What the ksm-harness parent needs before a child can take tasks."""

    def add(self, pid: int):
        """Move process `pid` (all its threads) into this cgroup.  Memory it
        already has stays charged where it was: add workers before they fill."""
        try:
            _write(os.path.join(self.path, "cgroup.procs"), str(pid))
        except ProcessLookupError:
            raise KernelError(f"cannot add pid {pid} to {self.path}: no such process") from None

    def pids(self) -> List[int]:
        """The processes in this cgroup; [] if it is gone."""
        try:
            with open(os.path.join(self.path, "cgroup.procs")) as f:
                return [int(p) for p in f.read().split()]
        except FileNotFoundError:
            return []

    def remove(self) -> bool:
        """Move every task back home, rmdir the group, and the ksm-harness
        parent too if nothing else is in it.  Tolerates a group already gone;
        returns True if this call removed it."""
        if os.path.basename(os.path.dirname(self.path)) != PARENT:
            raise InputError(f"refusing to remove {self.path}: not under a {PARENT} directory", field="cgroup")
        removed = False
        if os.path.isdir(self.path):
            home = self.home if os.path.isdir(self.home) else _mount_of(self.path)

            def emptied():
                for pid in self.pids():
                    try:
                        _write(os.path.join(home, "cgroup.procs"), str(pid))
                    except ProcessLookupError:
                        pass  # exited meanwhile
                return not self.pids()

            wait_until(emptied, EMPTY_TIMEOUT, f"moving the tasks of {self.path} to {home}")
            try:
                os.rmdir(self.path)
                removed = True
                log.info("removed cgroup %s", self.path)
            except FileNotFoundError:
                pass
        try:  # the parent goes with its last group; another run's group keeps it
            os.rmdir(os.path.dirname(self.path))
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EBUSY, errno.ENOENT):
                raise
        return removed




@dataclass(frozen=True)
class MemCgroup(Cgroup):
    """A memory cgroup: limits and what is charged to it."""

    controller: ClassVar[str] = "memory"
    resource: ClassVar[str] = "memcg"

    def set_limit(self, limit_bytes: Optional[int]) -> LimitResult:
        """Set the memory limit (v1 memory.limit_in_bytes, v2 memory.max);
        None lifts it.  Both answer EBUSY when the group's usage cannot be
        reclaimed below the limit (v2: see _reclaim_below)."""
        name = "memory.limit_in_bytes" if self.version == 1 else "memory.max"
        if limit_bytes is None:
            value = "-1" if self.version == 1 else "max"
        else:
            value = str(limit_bytes)
            if self.version == 2 and not self._reclaim_below(limit_bytes):
                return LimitResult.EBUSY
        try:
            _write(os.path.join(self.path, name), value)
        except OSError as exc:
            if exc.errno == errno.EBUSY:
                return LimitResult.EBUSY
            if exc.errno == errno.EINVAL:
                return LimitResult.EINVAL
            raise KernelError(f"writing {value} to {self.path}/{name}: {exc}") from exc
        return LimitResult.OK

    def disable_oom_kill(self):
        """v1 memory.oom_control = 1: a task over the limit that reclaim cannot
        help waits in its page fault (mm/memcontrol.c mem_cgroup_oom_synchronize(),
        TASK_KILLABLE: shown as D, SIGKILL still ends it) until the limit is
        raised, instead of being OOM-killed.  v2 has no such switch."""
        if self.version != 1:
            raise KernelError(f"{self.path}: oom_kill: false needs memcg v1 (memory.oom_control)")
        _write(os.path.join(self.path, "memory.oom_control"), "1")

    def _reclaim_below(self, limit_bytes: int) -> bool:
        """v2: reclaim the group down to limit_bytes first; False if the kernel
        cannot.  memory_max_write() never refuses a limit: what its 16 reclaim
        passes do not free it OOM-kills (measured in a 6.12 guest: workers
        killed with their pages still under writeback to a loop device),
        where v1's mem_cgroup_resize_max() reclaims until a pass frees nothing
        and then answers EBUSY.  memory.reclaim (5.19+, memory_reclaim())
        fails with EAGAIN when it could not free that much; it is asked again
        while the group shrinks or has pages under writeback, as v1 keeps
        going while reclaim makes progress.  Without memory.reclaim the limit
        is written as it is."""
        reclaim = os.path.join(self.path, "memory.reclaim")
        if not os.path.exists(reclaim):
            return True
        last = [None]

        def below():
            usage = self.usage()
            if usage <= limit_bytes:
                return True
            try:
                _write(reclaim, str(usage - limit_bytes))
                return True
            except OSError as exc:
                if exc.errno != errno.EAGAIN:
                    raise KernelError(f"writing {usage - limit_bytes} to {reclaim}: {exc}") from exc
            progress = last[0] is None or usage < last[0] or self.stat().get("file_writeback", 0) > 0
            last[0] = usage
            if not progress:
                raise _Unreclaimable()
            return False

        try:
            wait_until(below, RECLAIM_TIMEOUT, f"reclaiming {self.path} below {limit_bytes} bytes", interval=0.1)
        except (_Unreclaimable, DeadlineExceeded):
            return False
        return True

    def usage(self) -> int:
        """Bytes charged now (v1 memory.usage_in_bytes, v2 memory.current)."""
        name = "memory.usage_in_bytes" if self.version == 1 else "memory.current"
        with open(os.path.join(self.path, name)) as f:
            return int(f.read())

    def stat(self) -> Dict[str, int]:
        """memory.stat as a dict: "rss", "swap", "anon", ... (names differ between v1 and v2)."""
        with open(os.path.join(self.path, "memory.stat")) as f:
            return parse_stat(f.read())


@dataclass(frozen=True)
class Cpuset(Cgroup):
    """A cpuset: the CPUs the workers run on and the NUMA nodes their pages come from."""

    controller: ClassVar[str] = "cpuset"
    resource: ClassVar[str] = "cpuset"

    @classmethod
    def prepare_parent(cls, parent: str, hierarchy: Hierarchy):
        """v1: a new cpuset has no CPUs or nodes; the parent takes its own
        parent's, so that a child may have any of them."""
        if hierarchy.version == 1:
            for name in ("cpuset.cpus", "cpuset.mems"):
                if not _read_words(os.path.join(parent, name)):
                    _write(os.path.join(parent, name), " ".join(_read_words(os.path.join(hierarchy.mount, name))))

    def effective_file(self, what: str, directory: str) -> str:
        """Where the CPUs or nodes (`what`: cpus, mems) a cpuset really has are
        read: v1 cpuset.effective_cpus, v2 cpuset.cpus.effective
        (kernel/cgroup/cpuset-v1.c legacy_files, cpuset.c dfl_files)."""
        name = f"cpuset.effective_{what}" if self.version == 1 else f"cpuset.{what}.effective"
        return os.path.join(directory, name)

    def place(self, cpus: Optional[str], mems: str):
        """Bind to CPUs (a list such as "0-1,3"; None: the parent's) and NUMA nodes ("0")."""
        if cpus is None:
            cpus = " ".join(_read_words(self.effective_file("cpus", os.path.dirname(self.path))))
        for name, value in (("cpuset.cpus", cpus), ("cpuset.mems", mems)):
            try:
                _write(os.path.join(self.path, name), value)
            except OSError as exc:
                raise KernelError(f"writing {value} to {self.path}/{name}: {exc.strerror}") from exc

    def effective(self) -> Dict[str, str]:
        """cpuset.effective_cpus and cpuset.effective_mems, as the kernel reads them."""
        return {name: " ".join(_read_words(self.effective_file(name, self.path))) for name in ("cpus", "mems")}


class _Unreclaimable(Exception):
    """memory.reclaim gave up and the group neither shrank nor is writing back."""


KINDS: Dict[str, Type[Cgroup]] = {cls.resource: cls for cls in (MemCgroup, Cpuset)}  # journal resource -> class


def to_journal(cg: Cgroup) -> dict:
    """A plain dict (JSON-ready) describing `cg`, for the crash journal."""
    return {"resource": cg.resource, "path": cg.path, "version": cg.version, "home": cg.home}


def from_journal(d: dict) -> Cgroup:
    """Rebuild the MemCgroup or Cpuset that `to_journal` described."""
    if d.get("resource") not in KINDS or not {"path", "version", "home"} <= d.keys():
        raise InputError(f"not a cgroup journal entry: {d!r}", field="resource")
    return KINDS[d["resource"]](d["path"], int(d["version"]), d["home"])


def remove_stale(cg: Cgroup) -> bool:
    """Remove a group a killed run left (Cgroup.remove() tolerates any state)."""
    return cg.remove()


def _home(h: Hierarchy, proc: str, controller: str) -> str:
    """Directory of the cgroup this process is in, within the controller's hierarchy `h`."""
    with open(os.path.join(proc, "self/cgroup")) as f:
        path = parse_proc_cgroup(f.read(), h.version, controller)
    if path is None:
        return h.mount
    rel = os.path.relpath(path, h.root)
    return h.mount if rel == "." or rel.startswith("..") else os.path.join(h.mount, rel)


def _mount_of(path: str) -> str:
    """The hierarchy root above a ksm-harness group: <mount>/ksm-harness/<name>."""
    return os.path.dirname(os.path.dirname(path))


def _read_words(path: str) -> List[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:
        return []


def _write(path: str, value: str):
    with open(path, "w") as f:
        f.write(value)
