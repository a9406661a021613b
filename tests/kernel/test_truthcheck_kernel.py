"""The self-check of the truth sources and the KSM judge on the real kernel.

The 6.12 guest, whose kpageflags lies, is in tests/vm/test_seed_kernels.py."""
import platform

from harness import pages, truthcheck
from harness.wait import wait_until

NPAGES = 256


def test_self_check_on_this_kernel(ksm):
    truth = truthcheck.self_check(ksm)
    if platform.release().startswith("6.12."):
        assert truth.findings[0] == truthcheck.KPF_KSM_ON_ANON and not truth.kpf_ksm
    else:  # 6.1 and 6.18 tell KSM pages apart (fs/proc/page.c tests PageKsm() / both mapping bits)
        assert truth == truthcheck.Truth(), truth.findings
    assert ksm.read("run") == "2"  # as the fixture set it: the self-check put its knobs back


def test_judge_without_kpf_ksm_sees_merged_pages_not_fork_copies(ksm, pool):
    """With KPF_KSM taken as a lie, frames shared by two workers still count
    as KSM pages, and frames a worker shares with its forked child by
    copy-on-write do not."""
    ws = []
    for i in range(2):
        w = pool.spawn(f"w[{i}]")
        w.regions["m"] = w.call("map", region="m", npages=NPAGES, worker=0, mergeable=True,
                                pattern={"kind": "unique", "seed": 3})
        w.regions["p"] = w.call("map", region="p", npages=NPAGES, worker=i, mergeable=False,
                                pattern={"kind": "unique", "seed": 4})
        ws.append(w)
    ksm.write("run", 1)

    def views():
        return [(w.name, pages.region_pages(w.pid, w.regions[r]["addr"], NPAGES)) for w in ws for r in ("m", "p")]

    wait_until(lambda: all(v.ksm_count == NPAGES for name, v in views()[::2]), 60, "the m regions merge")
    ws[0].call("fork", count=1, duration=60, depth=1, live_cap=1, lifetime_us=0, interval_us=0, until_told=False)
    (child,) = ws[0].descendants()
    placed = views() + [("w[0]", pages.region_pages(child.pid, ws[0].regions[r]["addr"], NPAGES)) for r in ("m", "p")]
    lying = truthcheck.Truth(kpf_ksm=False, findings=(truthcheck.KPF_KSM_ON_ANON,))
    judged = truthcheck.KsmJudge(lying).judge(placed)
    counts = [(v.ksm_count, unsure) for v, unsure in judged]
    # w[0].m, w[0].p, w[1].m, w[1].p, child.m, child.p
    assert counts == [(NPAGES, 0), (0, 0), (NPAGES, 0), (0, 0), (NPAGES, 0), (0, 0)]
