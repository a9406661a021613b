"""The engine against the real kernel: merge, unmerge, swap, fork storms."""
import subprocess

import psutil

from harness import pages, workers
from harness.knobs import WriteResult
from harness.sampler import read_vmstat
from harness.wait import wait_until
from harness.workers import WorkerPool

NPAGES = 1024


def mapped(pool, n, pattern, name="w"):
    ws = []
    for i in range(n):
        w = pool.spawn(f"{name}[{i}]")
        w.regions["r"] = w.call("map", region="r", npages=NPAGES, pattern=pattern, worker=i, mergeable=True)
        ws.append(w)
    return ws


def view(w):
    return pages.region_pages(w.pid, w.regions["r"]["addr"], NPAGES)


def merged(ws, count=NPAGES):
    return all(view(w).ksm_count >= count for w in ws)


def test_identical_pages_merge_and_unmerge(ksm, pool):
    ws = mapped(pool, 2, {"kind": "same", "seed": 5})
    assert ksm.write("run", "1").result is WriteResult.OK
    wait_until(lambda: merged(ws), 60, "both workers' pages merged",
               describe=lambda: f"ksm pages {[view(w).ksm_count for w in ws]}")
    # ksm_stat, KPF_KSM and the global counters tell the same story: every
    # mapping of a KSM page is counted once in pages_shared + pages_sharing
    stats = [pages.ksm_stat(w.pid) for w in ws]
    if stats[0] is not None:
        assert [s["ksm_merging_pages"] for s in stats] == [view(w).ksm_count for w in ws]
    shared, sharing = ksm.read_int("pages_shared"), ksm.read_int("pages_sharing")
    assert shared + sharing >= 2 * NPAGES
    assert shared >= 1
    assert ksm.write("run", "2").result is WriteResult.OK
    assert [view(w).ksm_count for w in ws] == [0, 0]
    assert ksm.read_int("pages_shared") == 0
    for w in ws:
        assert w.call("verify", region="r")["bad"] == 0


def test_unique_pages_do_not_merge(ksm, pool):
    ws = mapped(pool, 2, {"kind": "unique", "seed": 6})
    scans = ksm.read_int("full_scans")
    ksm.write("run", "1")
    wait_until(lambda: ksm.read_int("full_scans") >= scans + 2, 60, "two full scans")
    assert [view(w).ksm_count for w in ws] == [0, 0]


def test_ksm_pages_reach_swap_and_come_back(ksm, pool, swapfile):
    # unique pattern + same seed: victim[i] and partner[i] hold the same pages
    victim = mapped(pool, 1, {"kind": "unique", "seed": 7}, "victim")[0]
    partner = mapped(pool, 1, {"kind": "unique", "seed": 7}, "partner")[0]
    ksm.write("run", "1")
    wait_until(lambda: merged([victim, partner]), 60, "pairs merged")
    ksm.write("run", "0")
    # MADV_PAGEOUT skips pages mapped by two processes: break the partner's COW
    partner.call("touch", region="r", write=True, threads=1, pace_us=0)
    assert view(victim).ksm_count == NPAGES
    before = read_vmstat()
    swap_before = psutil.Process(victim.pid).memory_full_info().swap
    victim.call("advise", region="r", advice="pageout")
    after = read_vmstat()
    assert after["pswpout"] - before["pswpout"] >= NPAGES // 2
    assert view(victim).swapped >= NPAGES // 2
    assert psutil.Process(victim.pid).memory_full_info().swap > swap_before
    reply = victim.call("touch", region="r", write=False, threads=1, pace_us=0)
    assert reply["sigbus"] == 0
    assert victim.call("verify", region="r")["bad"] == 0
    assert partner.call("verify", region="r")["bad"] == 0


def test_fork_storm_while_unmerging(ksm, pool):
    ws = mapped(pool, 4, {"kind": "groups", "groups": 64, "seed": 8})
    ksm.write("run", "1")
    wait_until(lambda: merged(ws, NPAGES * 99 // 100), 60, "merged")
    for w in ws:
        w.send("fork", count=1 << 40, duration=30, depth=2, live_cap=16, until_told=True, lifetime_us=0, interval_us=0,
               wait_file=str(ksm.root / "run"), wait_value="2", wait_timeout=30)
    write = ksm.write("run", "2")
    for w in ws:
        w.send("stop")
    replies = [w.receive("fork") for w in ws]
    for w in ws:
        w.receive("stop")
    assert write.result is WriteResult.OK
    assert sum(r["forks"] for r in replies) > 0
    children = [d for w in ws for d in w.descendants()]
    assert len(children) >= 4
    # nothing shared => nothing mapped KSM, in parents and children alike
    assert ksm.read_int("pages_shared") == 0
    for w in ws:
        assert view(w).ksm_count == 0
        for d in w.descendants():
            assert pages.region_pages(d.pid, w.regions["r"]["addr"], NPAGES).ksm_count == 0


def test_close_ends_children_forked_after_the_list_was_made():
    """A process under the zygote that close() did not list (a child forked
    after the list was made; here a `sleep` standing in for one) is killed and
    gone before close() returns: one still exiting would keep its KSM pages
    mapped past the run=2 that follows (workers.py close())."""
    late = subprocess.Popen(["sleep", "60"])
    try:
        with WorkerPool() as pool:
            (w,) = mapped(pool, 1, {"kind": "unique", "seed": 9})
            w.descendants = lambda: []  # the list close() makes misses it
            pool._tree = lambda: [p for p in [psutil.Process(late.pid)] if workers._alive(p)]
        assert late.poll() is not None or not workers._alive(psutil.Process(late.pid))
    finally:
        late.kill()
        late.wait()
