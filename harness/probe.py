"""Everything a run may change on the machine, as one comparable snapshot.

A run must leave the machine as it found it: the tests and the
fault-injection matrix (benchmarks/restore_matrix.py) take a probe before,
another after, and diff them.  Fault-injection state is in the probe only
where the kernel has it (CONFIG_FAIL_MAKE_REQUEST, debugfs mounted);
`fault_injection` says which.
"""
import glob
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

import psutil

from . import cgroup, kernel
from .journal import Journal
from .knobs import Knobs
from .swap import parse_swaps

COMMANDS = ("losetup", "mkswap", "swapon", "swapoff")  # the programs the harness runs that could outlive it


@dataclass(frozen=True)
class Probe:
    knobs: Tuple[Tuple[str, str], ...]  # /sys/kernel/mm/ksm settings, sorted (name, value)
    swaps: Tuple[str, ...]  # /proc/swaps areas: "filename type"
    loops: Tuple[str, ...]  # attached loop devices: "loop3 -> /tmp/ksm-harness-swap-x/swapfile"
    mounts: Tuple[str, ...]  # our tmpfs mounts (source "ksm-harness-swap") and debugfs: "fstype at mountpoint"
    cgroups: Tuple[str, ...]  # directories under <memcg mount>/ksm-harness (the parent itself included)
    fault_injection: Optional[Tuple[str, ...]]  # fail_make_request attrs and make-it-fail files; None: not here
    processes: Tuple[str, ...]  # harness runs, zygotes and swap commands, the caller aside: "pid cmdline"
    journal: bool  # a journal is left in the state directory


def take(ksm=Knobs(), sys_root="/sys", proc="/proc", journal=Journal()):
    return Probe(
        knobs=tuple(sorted(ksm.snapshot().items())),
        swaps=tuple(f"{e.filename} {e.type}" for e in parse_swaps(Path(proc, "swaps").read_text())),
        loops=tuple(sorted(_loops(sys_root))),
        mounts=tuple(sorted(f"{m.fstype} at {m.mountpoint}" for m in kernel.mounts(proc)
                            if m.source == "ksm-harness-swap" or m.fstype == "debugfs")),
        cgroups=_cgroups(proc),
        fault_injection=_fault_injection(sys_root),
        processes=_processes(),
        journal=journal.path.exists(),
    )


def differences(before, after):
    """Fields that differ, in words: ["swaps: ('/dev/loop0 partition',) was ()"]."""
    return [f"{name}: {getattr(after, name)} was {getattr(before, name)}"
            for name in Probe.__dataclass_fields__ if getattr(before, name) != getattr(after, name)]


def _loops(sys_root):
    for path in glob.glob(os.path.join(sys_root, "block", "loop*", "loop", "backing_file")):
        yield f"{path.split('/')[-3]} -> {Path(path).read_text().strip()}"


def _cgroups(proc):
    h = cgroup.find_hierarchy(proc)
    if h is None:
        return ()
    parent = Path(h.mount, cgroup.PARENT)
    return tuple(sorted(str(p) for p in [parent, *parent.glob("**/")] if p.is_dir()))


def _fault_injection(sys_root):
    attrs = Path(sys_root, "kernel", "debug", "fail_make_request")
    if not attrs.is_dir():
        return None
    files = [*attrs.iterdir(), *Path(sys_root, "block").glob("*/make-it-fail")]
    return tuple(sorted(f"{f} = {f.read_text().strip()}" for f in files if f.is_file()))


def _processes():
    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        argv = p.info["cmdline"] or []
        if p.info["pid"] != me and (p.info["name"] in COMMANDS or "harness.zygote" in argv or _drives_host(argv)):
            out.append(f"{p.info['pid']} {' '.join(argv)}")
    return tuple(sorted(out))


def _drives_host(argv):
    """`ksm-harness run|restore|env` (`vm` drives a guest's kernel, not this one)."""
    if argv[1:3] == ["-m", "harness"]:
        rest = argv[3:]
    elif any(a.endswith("/ksm-harness") for a in argv[:2]):
        rest = argv[2:] if argv[1].endswith("/ksm-harness") else argv[1:]
    else:
        return False
    rest = [a for a in rest if a not in ("-v", "--verbose")]
    return bool(rest) and rest[0] in ("run", "restore", "env")
