"""Page data: what a worker's verify reply (zygote.verify_buffer) says is
wrong, and the same check of a descendant's copy read through /proc/PID/mem."""
from pathlib import Path

from . import pages
from ._mem import ffi, lib
from .zygote import PAGE_SIZE, verify_buffer


def problems(who, region, res, mode):
    """The problems in one verify result, in words; SIGBUS is one unless mode is sigbus-or-intact."""
    out = []
    if res["bad"]:
        first = ", ".join(f"page {f['page']} word0={f['found']:#x}" for f in res["first"] if not f["sigbus"])
        out.append(f"{who}.{region}: {res['bad']} of {res['pages']} pages hold wrong data ({first})")
    if res["sigbus"] and mode == "intact":
        out.append(f"{who}.{region}: {res['sigbus']} pages raised SIGBUS")
    if res.get("error"):
        out.append(f"{who}.{region}: {res['error']}")
    return out


def remote(pid, info, proc=Path("/proc")):
    """Verify a descendant's copy through /proc/PID/mem: its keys and region
    sit at the same addresses as in the worker it was forked from.  None
    when it exited meanwhile."""
    try:
        keys = pages.read_memory(pid, info["keys_addr"], 8 * info["npages"], proc)
        data = pages.read_memory(pid, info["addr"], PAGE_SIZE * info["npages"], proc)
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited meanwhile
    except OSError:
        data = None  # the first page cannot be reached
    # fs/proc/base.c mem_rw(): 0 bytes once the mm is gone (the process
    # exited after the open); a short count when access_remote_vm() stops
    # at a page it cannot reach (-EIO only if that is the first page)
    if not keys or data == b"":
        return None
    if len(keys) < 8 * info["npages"]:
        return {"pages": info["npages"], "bad": 0, "sigbus": 0, "first": [],
                "error": f"short read of /proc/{pid}/mem: {len(keys)} of {8 * info['npages']} key bytes"}
    if data is None or len(data) < PAGE_SIZE * info["npages"]:
        return page_by_page(pid, info, keys, proc)
    return verify_buffer(ffi.from_buffer("char[]", data), ffi.from_buffer("uint64_t[]", keys), info["npages"])


def page_by_page(pid, info, keys, proc):
    """The copy read a page at a time, where one read stopped short: a page
    the kernel cannot reach for the read (EIO: its swap-in failed, or memory
    failure took it, and do_swap_page() would give the process SIGBUS)
    counts as SIGBUS.  None when the process exited meanwhile."""
    res = {"pages": info["npages"], "bad": 0, "sigbus": 0, "first": []}
    for i in range(info["npages"]):
        try:
            page = pages.read_memory(pid, info["addr"] + i * PAGE_SIZE, PAGE_SIZE, proc)
        except (FileNotFoundError, ProcessLookupError):
            return None
        except OSError:
            res["sigbus"] += 1
            res["first"].append({"page": i, "found": 0, "sigbus": True})
            continue
        if len(page) < PAGE_SIZE:
            return None  # 0 bytes: the mm is gone
        one = verify_buffer(ffi.from_buffer("char[]", page), ffi.from_buffer("uint64_t[]", keys[8 * i:8 * i + 8]), 1)
        res["bad"] += one["bad"]
        res["first"] += [dict(f, page=i) for f in one["first"]]
    res["first"] = res["first"][:lib.KSMH_MAX_REPORT]  # as many as mem.c names (struct ksmh_verify_result)
    return res
