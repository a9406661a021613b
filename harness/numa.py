"""NUMA nodes: which have memory, where a process's pages are, moving them.

With merge_across_nodes=0 KSM keeps one stable tree per node and never merges
pages of different nodes (mm/ksm.c: get_kpfn_nid() picks the tree).
"""
from pathlib import Path

from ._mem import ffi, lib
from .errors import DeadlineExceeded, KernelError
from .wait import wait_until

NODE_ROOT = Path("/sys/devices/system/node")
MPOL_MF_MOVE_ALL = 4  # move pages mapped by other processes too (KSM pages are)


def parse_ranges(text):
    """'0-2,4' -> [0, 1, 2, 4] (the kernel's bitmap list format)."""
    out = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def nodes_with_memory(root=NODE_ROOT):
    """Node ids with memory; [0] on a kernel without NUMA (no node directory)."""
    path = Path(root) / "has_memory"
    if not path.exists():
        path = Path(root) / "online"
    return parse_ranges(path.read_text()) if path.exists() else [0]


def _move_pages(pid, addrs, nodes):
    n = len(addrs)
    pages = ffi.new("void *[]", [ffi.cast("void *", a) for a in addrs])
    status = ffi.new("int[]", n)
    node_arr = ffi.NULL if nodes is None else ffi.new("int[]", list(nodes))
    flags = 0 if nodes is None else MPOL_MF_MOVE_ALL
    if lib.ksmh_move_pages(pid, n, pages, node_arr, status, flags) < 0:
        raise KernelError(f"move_pages(pid {pid}, {n} pages): errno {ffi.errno}")
    return list(status)


def page_nodes(pid, addrs):
    """Node of each page (negative errno where not present, e.g. -14 EFAULT)."""
    return _move_pages(pid, addrs, None)


def pages_on(pid, addrs, node):
    """How many of the pages at addrs are on `node`."""
    return sum(1 for n in page_nodes(pid, addrs) if n == node) if addrs else 0


def migrate(pid, addrs, node, timeout=10.0):
    """Move pages to `node`; returns (pages there afterwards, move_pages calls).
    KSM pages migrate like others since 3.9 (ksm_migrate_page()), but a page
    that ksmd holds while it scans it has a raised refcount, so
    migrate_pages() gives up on it with -EAGAIN after its retries, and
    move_pages() then stops: it returns the number of pages not moved and
    writes no status for the rest of the batch
    (mm/migrate.c: move_pages_and_store_status()).  So keep moving the pages
    that are still elsewhere until all are there or the deadline passes."""
    calls = 0

    def moved_all():
        nonlocal calls
        left = [a for a, n in zip(addrs, page_nodes(pid, addrs)) if n >= 0 and n != node]
        if left:
            calls += 1
            _move_pages(pid, left, [node] * len(left))
        return not left
    try:
        wait_until(moved_all, timeout, f"moving {len(addrs)} pages of pid {pid} to node {node}",
                   interval=0.05)
    except DeadlineExceeded:
        pass  # the caller reports how many moved and its checks decide
    return pages_on(pid, addrs, node), calls
