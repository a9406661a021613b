"""Everything a run may change on the machine, as one comparable snapshot.

A run must leave the machine as it found it: the tests and the
fault-injection matrix (benchmarks/restore_matrix.py) take a probe before,
another after, and diff them.  Fault-injection state is in the probe only
where the kernel has it (CONFIG_FAIL_MAKE_REQUEST, debugfs mounted);
`fault_injection` says which.  Beside it, what the tests and the matrix use to
see a run from outside: the programs it is running, and a process that holds
memory paged out (so that a swapoff has something to read back).
"""
import glob
import os
import subprocess
import sys
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
    found = set()
    for controller in cgroup.CONFIGS:
        h = cgroup.find_hierarchy(proc, controller)
        if h is not None:
            found |= {str(p) for p in Path(h.mount, cgroup.PARENT).glob("**/")}  # "**/" matches the parent too
    return tuple(sorted(found))


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


def children(pid):
    """The children of process `pid` (its main thread's, where the harness
    starts programs) by name: [(pid, comm)]."""
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return []
    out = []
    for kid in kids:
        try:
            out.append((int(kid), Path(f"/proc/{kid}/comm").read_text().strip()))
        except FileNotFoundError:
            pass  # exited meanwhile
    return out


# Fills MiB of private memory with non-zero bytes (a zero-filled page is not
# written to swap since 6.12: mm/page_io.c swap_zeromap), pages it out with
# MADV_PAGEOUT (21), says so, and holds it until stdin closes.
PAGED_OUT = """
import ctypes, mmap, sys
size = int(sys.argv[1]) << 20
m = mmap.mmap(-1, size)
m.write(bytes(range(1, 256)) * (size // 255) + bytes(size % 255))
ctypes.CDLL(None).madvise(ctypes.c_void_p(ctypes.addressof(ctypes.c_char.from_buffer(m))), ctypes.c_size_t(size), 21)
print("out", flush=True)
sys.stdin.read()
"""


def hold_paged_out(mib):
    """A process holding `mib` MiB paged out to the highest-priority swap
    (a run's own: swap.MAX_PRIORITY); kill() it when done."""
    proc = subprocess.Popen([sys.executable, "-c", PAGED_OUT, str(mib)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    if proc.stdout.readline() != "out\n":
        proc.kill()
        raise RuntimeError(f"the process to hold {mib} MiB paged out failed (exit {proc.wait()})")
    return proc
