"""Facts about the running kernel: version, config, THP, page size, what /proc shows.

Every reader takes its root path (/proc, /sys, /boot) so unit tests can point
it at a fake tree.  A fact that cannot be known is None, never a guess: the
harness runs on kernels from 3.9 to today, built with any config.

Also here, because swap.py, cgroup.py and faultinject.py all need it: the
mount table (/proc/self/mountinfo).
"""
from __future__ import annotations

import ctypes
import gzip
import os
import re
import struct
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

from . import pages

# ---------------------------------------------------------------- version


def release(proc: str = "/proc") -> str:
    """The running kernel's release string, as `uname -r` prints it."""
    with open(os.path.join(proc, "sys/kernel/osrelease")) as f:
        return f.read().strip()


_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(rel: str) -> Tuple[int, int, int]:
    """(major, minor, patch) of a release: "6.18.44-fc-v669" -> (6, 18, 44),
    "3.9.0-rc8" -> (3, 9, 0), "6.1.192" -> (6, 1, 192), "4.4" -> (4, 4, 0).

    A release candidate counts as its final version: the harness asks "has
    this kernel got feature X", and features land before -rc1.
    """
    m = _VERSION.match(rel.strip())
    if not m:
        raise ValueError(f"not a kernel release: {rel!r}")
    return (int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def version_at_least(rel: str, minimum: str) -> bool:
    """True if release `rel` is `minimum` ("3.9", "5.4.100") or later."""
    return parse_version(rel) >= parse_version(minimum)


# ---------------------------------------------------------------- config


@dataclass(frozen=True)
class KernelConfig:
    """The running kernel's .config, as far as it could be read."""

    source: str  # the file it was read from: /proc/config.gz or /boot/config-<release>
    options: Mapping[str, str]  # "CONFIG_SWAP" -> "y", "m", a number or a quoted string; unset ones absent

    def get(self, name: str) -> Optional[str]:
        """The value of an option ("SWAP" or "CONFIG_SWAP"), None if not set."""
        if not name.startswith("CONFIG_"):
            name = "CONFIG_" + name
        return self.options.get(name)

    def enabled(self, name: str) -> bool:
        """True if the option is built in or a module."""
        return self.get(name) in ("y", "m")


def parse_config(text: str, source: str) -> KernelConfig:
    """Parse .config text: `CONFIG_X=value` lines; `# CONFIG_X is not set` and
    other comments are left out, so an unset option reads as None."""
    options = {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("CONFIG_") and "=" in line:
            name, value = line.split("=", 1)
            options[name] = value
    return KernelConfig(source=source, options=options)


def read_config(proc: str = "/proc", boot: str = "/boot", rel: Optional[str] = None) -> Optional[KernelConfig]:
    """The running kernel's config: /proc/config.gz (CONFIG_IKCONFIG_PROC),
    else /boot/config-<release>; None when neither can be read."""
    gz = os.path.join(proc, "config.gz")
    try:
        with gzip.open(gz, "rt") as f:
            return parse_config(f.read(), gz)
    except (OSError, EOFError):
        pass
    try:
        rel = rel or release(proc)
    except OSError:
        return None
    path = os.path.join(boot, f"config-{rel}")
    try:
        with open(path) as f:
            return parse_config(f.read(), path)
    except OSError:
        return None


# ---------------------------------------------------------------- memory facts


@dataclass(frozen=True)
class Thp:
    """Transparent hugepage setting (/sys/kernel/mm/transparent_hugepage/enabled)."""

    modes: Tuple[str, ...]  # the modes this kernel offers: ("always", "madvise", "never")
    mode: str  # the one in force (shown in [brackets]): "madvise"


def parse_thp(text: str) -> Thp:
    """Parse "always [madvise] never"."""
    words = text.split()
    current = [w[1:-1] for w in words if w.startswith("[") and w.endswith("]")]
    if len(current) != 1:
        raise ValueError(f"no single [current] mode in {text!r}")
    return Thp(modes=tuple(w.strip("[]") for w in words), mode=current[0])


def thp(sys: str = "/sys") -> Optional[Thp]:
    """THP setting, None when the kernel has no CONFIG_TRANSPARENT_HUGEPAGE."""
    try:
        with open(os.path.join(sys, "kernel/mm/transparent_hugepage/enabled")) as f:
            return parse_thp(f.read())
    except FileNotFoundError:
        return None


def page_size() -> int:
    """The running kernel's base page size in bytes."""
    return os.sysconf("SC_PAGE_SIZE")


def kpageflags_readable(proc: str = "/proc") -> bool:
    """True if /proc/kpageflags can be read (CONFIG_PROC_PAGE_MONITOR, and
    CAP_SYS_ADMIN: the file is mode 0400 root)."""
    try:
        with open(os.path.join(proc, "kpageflags"), "rb") as f:
            return len(f.read(8)) == 8
    except OSError:
        return False


def pagemap_pfns_readable(proc: str = "/proc") -> bool:
    """True if /proc/self/pagemap shows real PFNs: read the entry of a page
    this process has just written (so it is present) and check it is not 0.
    Since 4.2 pagemap_read() zeroes the PFN for readers without
    CAP_SYS_ADMIN (4.0-4.1 refused them outright)."""
    size = page_size()
    buf = ctypes.create_string_buffer(2 * size)  # two pages hold one whole aligned page
    vaddr = (ctypes.addressof(buf) + size - 1) // size * size
    ctypes.memset(vaddr, 1, size)  # fault it in
    try:
        with open(os.path.join(proc, "self/pagemap"), "rb") as f:
            raw = os.pread(f.fileno(), 8, vaddr // size * 8)
    except OSError:
        return False
    if len(raw) != 8:
        return False
    (entry,) = struct.unpack("<Q", raw)
    return bool(entry & pages.PM_PRESENT and entry & pages.PM_PFN_MASK)


def ksm_stat_present(proc: str = "/proc") -> bool:
    """True if /proc/<pid>/ksm_stat exists (Linux 6.1+)."""
    return os.path.exists(os.path.join(proc, "self/ksm_stat"))


def memcg_unavailable(proc: str = "/proc") -> Optional[str]:
    """None if a memory cgroup can be made, else why not (see cgroup.py)."""
    from . import cgroup  # cgroup.py imports this module

    return cgroup.available(proc)


@dataclass(frozen=True)
class Facts:
    """What the harness knows about the running kernel, for reports and skips."""

    release: str  # "6.18.44-fc-v669"
    version: Tuple[int, int, int]  # (6, 18, 44)
    config_source: Optional[str]  # where the config was read, None if unknown
    thp: Optional[Thp]  # None without CONFIG_TRANSPARENT_HUGEPAGE
    page_size: int  # bytes
    kpageflags: bool  # /proc/kpageflags readable
    pagemap_pfns: bool  # /proc/self/pagemap shows PFNs
    ksm_stat: bool  # /proc/self/ksm_stat exists
    memcg: Optional[str]  # None if memcg usable, else why not


def facts(proc: str = "/proc", sys: str = "/sys", boot: str = "/boot") -> Facts:
    """Gather every fact above."""
    rel = release(proc)
    cfg = read_config(proc, boot, rel)
    return Facts(
        release=rel,
        version=parse_version(rel),
        config_source=cfg.source if cfg else None,
        thp=thp(sys),
        page_size=page_size(),
        kpageflags=kpageflags_readable(proc),
        pagemap_pfns=pagemap_pfns_readable(proc),
        ksm_stat=ksm_stat_present(proc),
        memcg=memcg_unavailable(proc),
    )


# ---------------------------------------------------------------- mounts


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo."""

    root: str  # the directory of the filesystem mounted here ("/" unless a bind mount)
    mountpoint: str  # where it is mounted
    fstype: str  # "tmpfs", "cgroup", "cgroup2", "debugfs"
    source: str  # "tmpfs", "cgroup", "/dev/vda"
    options: Tuple[str, ...]  # per-mount and superblock options: ("rw", "relatime", "memory")


_OCTAL = re.compile(r"\\([0-7]{3})")


def unescape(field: str) -> str:
    """Undo the kernel's octal escapes in /proc paths (seq_escape: space is \\040)."""
    return _OCTAL.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> Tuple[Mount, ...]:
    """Parse /proc/self/mountinfo (fs/proc_namespace.c show_mountinfo()):
    `id parent maj:min root mountpoint opts [optional...] - fstype source superopts`."""
    out = []
    for line in text.splitlines():
        if " - " not in line:
            continue
        left, right = line.split(" - ", 1)
        lf, rf = left.split(), right.split()
        if len(lf) < 6 or len(rf) < 3:
            continue
        opts = tuple(dict.fromkeys(lf[5].split(",") + rf[2].split(",")))  # in order, no repeats
        out.append(Mount(root=unescape(lf[3]), mountpoint=unescape(lf[4]), fstype=rf[0],
                         source=unescape(rf[1]), options=opts))
    return tuple(out)


def mounts(proc: str = "/proc") -> Tuple[Mount, ...]:
    """The mount table of this process's mount namespace."""
    with open(os.path.join(proc, "self/mountinfo")) as f:
        return parse_mountinfo(f.read())


def mounted_at(path: str, proc: str = "/proc") -> Optional[Mount]:
    """The topmost mount at `path`, None if nothing is mounted there."""
    path = os.path.realpath(path)
    found = [m for m in mounts(proc) if m.mountpoint == path]
    return found[-1] if found else None


def filesystem_known(fstype: str, proc: str = "/proc") -> bool:
    """True if the kernel knows `fstype` (/proc/filesystems), i.e. can mount it."""
    try:
        with open(os.path.join(proc, "filesystems")) as f:
            return any(line.split()[-1] == fstype for line in f if line.strip())
    except FileNotFoundError:
        return False
