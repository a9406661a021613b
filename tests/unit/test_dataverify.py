"""dataverify: a descendant's pages checked through /proc/PID/mem, here a
fake proc tree whose mem file holds the keys and pages at their addresses
(filled by mem.c as a worker fills them), and the problems put in words."""
import errno
import os

from harness import dataverify, pages
from harness._mem import ffi, lib
from harness.pages import PAGE_SIZE

NPAGES = 8
INFO = {"addr": 64 * PAGE_SIZE, "keys_addr": 16 * PAGE_SIZE, "npages": NPAGES}


def fake_mem(tmp_path, corrupt=None, truncate=None):
    keys = ffi.new("uint64_t[]", NPAGES)
    lib.ksmh_pattern_keys(lib.KSMH_PAT_UNIQUE, 7, 1, 0, 0, 0, NPAGES, keys)
    pages = ffi.new("char[]", NPAGES * PAGE_SIZE)
    lib.ksmh_fill(pages, NPAGES, keys)
    data = bytearray(ffi.buffer(pages))
    if corrupt is not None:
        data[corrupt * PAGE_SIZE] ^= 0xFF
    mem = tmp_path / "42" / "mem"
    mem.parent.mkdir()
    with open(mem, "wb") as f:
        os.pwrite(f.fileno(), bytes(ffi.buffer(keys)), INFO["keys_addr"])
        os.pwrite(f.fileno(), bytes(data), INFO["addr"])
    if truncate is not None:
        os.truncate(mem, INFO["addr"] + truncate)
    return tmp_path


def test_intact_copy(tmp_path):
    res = dataverify.remote(42, INFO, fake_mem(tmp_path))
    assert (res["pages"], res["bad"], res["sigbus"]) == (NPAGES, 0, 0)
    assert dataverify.problems("a[0] child 42", "r", res, "intact") == []


def test_corrupt_page_is_named(tmp_path):
    res = dataverify.remote(42, INFO, fake_mem(tmp_path, corrupt=3))
    assert res["bad"] == 1 and res["first"][0]["page"] == 3
    (problem,) = dataverify.problems("a[0] child 42", "r", res, "intact")
    assert problem.startswith("a[0] child 42.r: 1 of 8 pages hold wrong data (page 3 word0=0x")


def test_exited_process(tmp_path):
    # mem_rw() gives 0 bytes once the mm is gone: the read stops short, and the page after is empty
    assert dataverify.remote(42, INFO, fake_mem(tmp_path, truncate=PAGE_SIZE)) is None
    assert dataverify.remote(43, INFO, tmp_path) is None  # no /proc/43: it exited


def test_a_page_the_kernel_cannot_reach_counts_as_sigbus(tmp_path, monkeypatch):
    """access_remote_vm() stops at a page whose swap-in fails or that memory
    failure took: the read stops short there, and a read of that page is EIO."""
    proc = fake_mem(tmp_path, corrupt=5)
    read = pages.read_memory

    def eio_at_page_3(pid, addr, length, proc):
        if addr <= INFO["addr"] + 3 * PAGE_SIZE < addr + length:
            if addr == INFO["addr"] + 3 * PAGE_SIZE:
                raise OSError(errno.EIO, "Input/output error")
            length = INFO["addr"] + 3 * PAGE_SIZE - addr
        return read(pid, addr, length, proc)

    monkeypatch.setattr(pages, "read_memory", eio_at_page_3)
    res = dataverify.remote(42, INFO, proc)
    assert (res["pages"], res["bad"], res["sigbus"]) == (NPAGES, 1, 1)
    assert [(f["page"], f["sigbus"]) for f in res["first"]] == [(3, True), (5, False)]
    assert dataverify.problems("c", "r", res, "sigbus-or-intact")[0].startswith("c.r: 1 of 8 pages hold wrong data")
    assert dataverify.problems("c", "r", res, "intact")[1] == "c.r: 1 pages raised SIGBUS"


def test_sigbus_is_a_problem_only_when_intact_is_wanted():
    res = {"pages": 4, "bad": 0, "sigbus": 2, "first": [{"page": 1, "found": 0, "sigbus": True}]}
    assert dataverify.problems("a[0]", "r", res, "intact") == ["a[0].r: 2 pages raised SIGBUS"]
    assert dataverify.problems("a[0]", "r", res, "sigbus-or-intact") == []
