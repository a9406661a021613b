"""harness/hwpoison.py on fakes: the kernel's memory failure lines, frame
states from kpageflags, where poisoning may run and what it needs.  The step
itself runs against real kernels in tests/vm/test_seed_kernels.py
(scenarios/seed/poisoned-swapcache.yaml)."""
import os
import struct
from types import SimpleNamespace

import pytest

from harness import damage, hwpoison, pages
from harness.crash import scan_lines
from harness.metrics import Metrics
from harness.runstate import RunState
from harness.scenario import Condition

# Lines of a 6.1.192 guest (corrupt-pfn on dirty swapcache KSM pages), and the
# other formats of mm/memory-failure.c and mm/madvise.c madvise_inject_error()
LOG = [
    "[   21.402131] Injecting memory failure at pfn 0x3dd6",
    "[   21.402392] Memory failure: 0x3dd6: recovery action for dirty swapcache page: Delayed",
    "[   21.403010] Injecting memory failure at pfn 0x3dd7",
    "[   21.403240] Memory failure: 0x3dd7: recovery action for clean swapcache page: Recovered",
    "[   21.403900] Injecting memory failure for pfn 0x41a2 at process virtual address 0x7f3a2c000000",
    "[   21.404001] Memory failure: 0x41a2: can't handle KSM pages.",
    "[   21.404002] Memory failure: 0x41a2: recovery action for unmapping failed page: Ignored",
    "[   21.404100] Memory failure: 0x41a3: already hardware poisoned",
]


def bits(*names):
    return sum(1 << b for b in names)


def test_actions_by_pfn():
    assert hwpoison.parse_actions(LOG) == {
        0x3dd6: "dirty swapcache page: Delayed",
        0x3dd7: "clean swapcache page: Recovered",
        0x41a2: "unmapping failed page: Ignored",
    }


def test_memory_failure_lines_are_not_crash_reports():
    assert scan_lines(LOG) == []


def test_lost_in_swapcache_is_what_me_swapcache_dirty_leaves():
    left = bits(pages.KPF_KSM, pages.KPF_SWAPCACHE, hwpoison.KPF_HWPOISON)  # dirty and uptodate cleared
    assert hwpoison.lost_in_swapcache(left)
    assert not hwpoison.lost_in_swapcache(left | 1 << pages.KPF_UPTODATE)  # poisoned while not dirty...
    assert not hwpoison.lost_in_swapcache(left | 1 << hwpoison.KPF_MMAP)  # still mapped
    assert not hwpoison.lost_in_swapcache(left & ~(1 << pages.KPF_SWAPCACHE))  # dropped from swapcache
    assert not hwpoison.lost_in_swapcache(left & ~(1 << hwpoison.KPF_HWPOISON))


def test_summary_counts_states_and_actions():
    before = bits(pages.KPF_KSM, hwpoison.KPF_DIRTY, pages.KPF_SWAPCACHE, pages.KPF_UPTODATE)
    after = bits(pages.KPF_KSM, pages.KPF_SWAPCACHE, hwpoison.KPF_HWPOISON)
    done = (hwpoison.Poisoned(0, 0x3dd6, "corrupt-pfn", before, after, "dirty swapcache page: Delayed"),
            hwpoison.Poisoned(1, 0x3dd7, "corrupt-pfn", before, after, "dirty swapcache page: Delayed"),
            hwpoison.Poisoned(2, 0x41a2, "madvise", bits(pages.KPF_KSM, hwpoison.KPF_MMAP), 0, ""))
    assert hwpoison.summary(done) == (
        "2 of 3 pages poisoned (corrupt-pfn x2, madvise x1); before: ksm dirty swapcache unmapped x2, "
        "ksm mapped x1; kernel: dirty swapcache page: Delayed x2, no action logged x1")


def test_frames_mapped_now_or_recorded_at_pageout():
    view = pages.RegionPages(pid=1, addr=0, npages=4, present=2, swapped=2, ksm=(), zero=0, thp=0,
                             pfns=(10, 0, 12, 0))
    assert hwpoison.frames_of({1: 21, 2: 99}, view, 0, 4) == ({0: 10, 2: 12}, {1: 21})
    assert hwpoison.frames_of({1: 21}, view, 1, 2) == ({2: 12}, {1: 21})


def test_runs_of_pages():
    assert hwpoison.runs([5, 0, 1, 2, 7, 6]) == [(0, 3), (5, 3)]
    assert hwpoison.runs([]) == []


def fake_proc(tmp_path, cmdline="console=ttyS0", recovery=True):
    proc = tmp_path / "proc"
    (proc / "sys/vm").mkdir(parents=True)
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("6.1.192\n")
    (proc / "cmdline").write_text(cmdline + "\n")
    if recovery:
        (proc / "sys/vm/memory_failure_recovery").write_text("1\n")
    return proc


def test_poisoning_is_refused_on_the_host_unless_allowed(tmp_path):
    host = fake_proc(tmp_path / "h")
    guest = fake_proc(tmp_path / "g", "console=ttyS0 rdinit=/init ksm_harness.guest=1")
    assert "--allow-kernel-damage" in damage.refusal(["hwpoison"], False, host)
    assert damage.refusal(["hwpoison"], True, host) is None
    assert damage.refusal(["hwpoison"], False, guest) is None


@pytest.mark.skipif(os.geteuid() != 0, reason="available() first asks for root")
def test_available_names_what_is_missing(tmp_path):
    debugfs = tmp_path / "debug"
    without = hwpoison.HwPoison(str(debugfs), str(fake_proc(tmp_path / "a", recovery=False)))
    assert "memory_failure_recovery" in without.available()
    no_injector = hwpoison.HwPoison(str(debugfs), str(fake_proc(tmp_path / "b")))
    assert "CONFIG_HWPOISON_INJECT" in no_injector.available()
    (debugfs / "hwpoison").mkdir(parents=True)
    (debugfs / "hwpoison/corrupt-pfn").write_text("")
    assert no_injector.available() is None


def test_lost_in_swapcache_metric_reads_the_frames_recorded_at_pageout(tmp_path):
    lost = bits(pages.KPF_KSM, pages.KPF_SWAPCACHE, hwpoison.KPF_HWPOISON)
    flags = {3: lost, 4: lost, 5: lost | 1 << pages.KPF_UPTODATE}
    (tmp_path / "kpageflags").write_bytes(b"".join(struct.pack("<Q", flags.get(p, 0)) for p in range(8)))
    worker = SimpleNamespace(name="v[0]", exit=None, regions={"r": {"npages": 4}})
    state = RunState(scenario=None, groups={"v": [worker]}, frames={("v[0]", "r"): {0: 3, 1: 4, 2: 5}})
    cond = Condition("v.r.lost_in_swapcache == 100%", False, "v.r.lost_in_swapcache", "==", 100, True)
    # 2 of the 4 pages: one frame is up to date again, one page was never paged out
    assert Metrics(state, None, tmp_path).holds(cond) == (
        False, "v.r.lost_in_swapcache=2 of 4 pages (want == 100%)")


class TouchingWorker:
    """A worker whose touch replies SIGBUS for the pages in `sigbus`."""

    def __init__(self, sigbus):
        self.name = "v[0]"
        self.sigbus = set(sigbus)
        self.calls = []

    def call(self, op, timeout=60.0, **args):
        self.calls.append((op, args["start"], args["count"], args["write"]))
        return {"sigbus": len(self.sigbus & set(range(args["start"], args["start"] + args["count"])))}


def test_lost_pages_are_read_run_by_run_and_those_read_back_named():
    worker = TouchingWorker(sigbus={0, 1, 2, 8})
    assert hwpoison.read_back(worker, "r", {0, 1, 2, 7, 8, 9}, 5.0) == [(7, 3, 2)]
    assert worker.calls == [("touch", 0, 3, False), ("touch", 7, 3, False)]


def test_dropped_pages_are_no_longer_lost():
    state = RunState(scenario=None, lost={("v[0]", "r"): {1}, ("v[0]", "q"): {2}, ("v[1]", "r"): {3}})
    state.forget_lost(SimpleNamespace(name="v[0]"), "r")
    assert state.lost == {("v[0]", "q"): {2}, ("v[1]", "r"): {3}}
    state.forget_lost(SimpleNamespace(name="v[0]"))  # exec: every region
    assert state.lost == {("v[1]", "r"): {3}}


def test_a_recorded_frame_that_left_swapcache_is_not_poisoned(monkeypatch):
    """Reclaim may write a paged-out page and free its frame, which may then be anybody's."""
    view = pages.RegionPages(pid=1, addr=0, npages=2, present=0, swapped=2, ksm=(), zero=0, thp=0, pfns=(0, 0))
    monkeypatch.setattr(pages, "region_pages", lambda *a: view)
    swapcache = bits(pages.KPF_SWAPCACHE, hwpoison.KPF_DIRTY)
    flags = {21: swapcache, 22: bits(hwpoison.KPF_MMAP)}  # 22: mapped by somebody else now
    monkeypatch.setattr(pages, "kpageflags", lambda pfns, proc: [flags[p] for p in pfns])
    corrupted = []
    hw = SimpleNamespace(proc="/proc", corrupt_pfn=corrupted.append)
    worker = SimpleNamespace(regions={"r": {"npages": 2, "addr": 0}}, pid=1)
    done = hwpoison.poison(hw, worker, "r", 0, 2, {0: 21, 1: 22}, lambda: [], 5.0)
    assert corrupted == [21]
    assert [p.how for p in done] == ["corrupt-pfn", hwpoison.LEFT_SWAPCACHE]
