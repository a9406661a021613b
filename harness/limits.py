"""How much a scenario file may ask for: bounded by the machine and by sane
sizes, so that no input, mistaken or hostile, can exhaust the machine that
loads it (a YAML alias bomb, a matrix of a billion points, 1000 workers
mapping 1 TiB each)."""
from dataclasses import dataclass
from pathlib import Path

from . import pages


@dataclass(frozen=True)
class Limits:
    memory_pages: int  # MemTotal + SwapTotal in pages: what all workers together may map
    matrix_points: int = 1000  # scenarios one file's matrix may expand to
    yaml_nodes: int = 100_000  # scalars, mappings and sequences in a file, with aliases expanded
    yaml_depth: int = 64  # nesting of mappings and sequences (repeat: inside repeat: ...)
    threads: int = 64  # touch threads per worker: mem.c ksmh_touch() has room for 64
    fork_depth: int = 16  # generations of a fork tree (each one a process per child)


def meminfo_pages(proc: Path = Path("/proc")) -> int:
    """MemTotal + SwapTotal from /proc/meminfo (fs/proc/meminfo.c prints kB), in pages."""
    kib = {}
    for line in (Path(proc) / "meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("MemTotal", "SwapTotal"):
            kib[name] = int(rest.split()[0])
    return sum(kib.values()) * 1024 // pages.PAGE_SIZE


def machine(proc: Path = Path("/proc")) -> Limits:
    """The limits of the machine this runs on."""
    return Limits(memory_pages=meminfo_pages(proc))
