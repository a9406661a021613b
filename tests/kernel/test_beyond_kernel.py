"""Issue #18's worker features against the running kernel: userfaultfd, exec."""
import pytest

from harness import pages, uffd
from harness.errors import WorkerError
from harness.knobs import WriteResult
from harness.wait import wait_until

NPAGES = 512


def mapped(pool, n, memfd=False):
    ws = []
    for i in range(n):
        w = pool.spawn(f"w[{i}]")
        w.regions["r"] = w.call("map", region="r", npages=NPAGES, pattern={"kind": "groups", "groups": 16, "seed": 61},
                                worker=i, mergeable=True, memfd=memfd)
        ws.append(w)
    return ws


def view(w):
    return pages.region_pages(w.pid, w.regions["r"]["addr"], NPAGES)


def merge(ksm, ws):
    assert ksm.write("run", "1").result is WriteResult.OK
    wait_until(lambda: all(view(w).ksm_count == NPAGES for w in ws), 60, "every page merged")
    assert ksm.write("run", "0").result is WriteResult.OK


def test_unmerge_reaches_uffd_wp_pages(ksm, pool):
    """kselftest test_unmerge_uffd_wp: break_ksm() unshares write-protected
    KSM pages, and the private copies keep the uffd-wp bit."""
    why = uffd.unavailable("wp")
    if why:
        pytest.skip(why)
    ws = mapped(pool, 2)
    merge(ksm, ws)
    for w in ws:
        w.call("userfaultfd", region="r", mode="wp", protect=True)
    assert [view(w).uffd_wp for w in ws] == [NPAGES, NPAGES]
    for w in ws:
        w.call("advise", region="r", advice="unmergeable")
    assert [(view(w).ksm_count, view(w).uffd_wp) for w in ws] == [(0, NPAGES), (0, NPAGES)]
    assert [w.call("verify", region="r")["bad"] for w in ws] == [0, 0]


def test_unmerge_keeps_uffd_minor_registration(ksm, pool):
    """ksm_madvise() clears VM_MERGEABLE alone: VM_UFFD_MINOR (bit 38) stays."""
    why = uffd.unavailable("minor")
    if why:
        pytest.skip(why)
    ws = mapped(pool, 2, memfd=True)
    merge(ksm, ws)
    for w in ws:
        w.call("userfaultfd", region="r", mode="minor")
        w.call("advise", region="r", advice="unmergeable")
    assert [view(w).ksm_count for w in ws] == [0, 0]
    assert [pages.flagged_pages(w.pid, w.regions["r"]["addr"], NPAGES, "ui") for w in ws] == [NPAGES, NPAGES]


def test_exec_keeps_pid_socket_and_merge_any(ksm, pool):
    """kselftest test_prctl_fork_exec, the exec half: the exec'd worker
    answers on its old socket with its old pid, PR_GET_MEMORY_MERGE reads 1,
    and a region it maps afterwards merges with no MADV_MERGEABLE."""
    ws = [pool.spawn(f"w[{i}]") for i in range(2)]
    for w in ws:
        w.call("prctl_merge", value=1)
        w.regions["r"] = w.call("map", region="r", npages=NPAGES, pattern={"kind": "same"}, worker=0,
                                mergeable=False)
        reply = w.call("exec", timeout=60)
        assert (reply["pid"], reply["merge"]) == (w.pid, 1)
        with pytest.raises(WorkerError, match="no region 'r'"):
            w.call("verify", region="r")
        w.regions["r"] = w.call("map", region="r", npages=NPAGES, pattern={"kind": "groups", "groups": 8},
                                worker=0, mergeable=False)
    assert ksm.write("run", "1").result is WriteResult.OK
    wait_until(lambda: all(view(w).ksm_count == NPAGES for w in ws), 60, "the exec'd workers' pages merged")
    assert [w.call("verify", region="r")["bad"] for w in ws] == [0, 0]
