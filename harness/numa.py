"""NUMA nodes: which have memory, where a process's pages are, moving them.

With merge_across_nodes=0 KSM keeps one stable tree per node and never merges
pages of different nodes (mm/ksm.c: get_kpfn_nid() picks the tree).
"""
from pathlib import Path

from ._mem import ffi, lib
from .errors import KernelError

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


def migrate(pid, addrs, node):
    """Move pages to `node`; returns per-page status (node, or negative errno).
    KSM pages migrate like others since 3.9 (ksm_migrate_page())."""
    return _move_pages(pid, addrs, [node] * len(addrs))
