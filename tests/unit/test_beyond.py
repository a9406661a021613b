"""Issue #18's worker features on fakes: userfaultfd registration (do:
userfaultfd, memfd regions, the uffd_wp and uffd_minor metrics), exec,
remap and mremap (the vmas metric), cpusets, and what the scenario needs of
the kernel."""
import pytest

from harness import requirements, scenario, steps, uffd
from harness.errors import InputError
from harness.knobs import Knobs
from harness.pages import PAGE_SIZE, PM_PRESENT, PM_UFFD_WP, flagged_pages, region_pages, vmas_over
from harness.runner import Roots

from test_pages import put
from test_scenario import BASE, load

MEMFD = BASE.replace("      - {name: r, size: 4M}", "      - {name: r, size: 4M}\n"
                                                    "      - {name: m, size: 4M, memfd: true}")


def test_userfaultfd_loads_and_dumps(tmp_path):
    _, (sc,) = load(tmp_path, MEMFD + "  - do: userfaultfd\n    region: r\n    mode: wp\n    protect: false\n"
                                      "  - do: userfaultfd\n    region: m\n    mode: minor\n")
    wp, minor = sc.steps[1:]
    assert isinstance(wp, steps.ACTIONS["userfaultfd"]) and (wp.mode, wp.protect) == ("wp", False)
    assert minor.mode == "minor" and minor.protect is True
    assert sc.workers[0].regions[1].memfd and not sc.workers[0].regions[0].memfd
    again = tmp_path / "again.yaml"
    again.write_text(scenario.dump_text(sc))
    assert scenario.load_file(again) == [sc]


@pytest.mark.parametrize("text, line, message", [
    (MEMFD + "  - do: userfaultfd\n    region: r\n    mode: minor\n", 10,
     "steps: userfaultfd minor mode needs a memfd region: r of a is anonymous (set memfd: true)"),
    (MEMFD + "  - do: userfaultfd\n    region: m\n    mode: minor\n    protect: true\n", 13,
     "steps[1].protect: protect is for mode wp"),
    (MEMFD + "  - do: userfaultfd\n    region: m\n    mode: missing\n", 12,
     "steps[1].mode: unknown userfaultfd mode 'missing' (minor, wp)"),
    (BASE + "  - do: fork\n    workers: 'a[1]'\n    count: 1\n  - do: mremap\n    region: r\n", 12,
     "steps: mremap of workers an earlier fork step acted on (a[1]): their children keep the region at the "
     "old address"),
    (BASE + "  - check: 'a.r.vmas == 50%'\n", 9,
     "steps[1].check.until: vmas counts VMAs, not a share of the region: drop the %"),
    (BASE + "  - do: mremap\n    region: all\n", 10,
     "steps[1].region: region: name one region ('all' is for verify and conditions)"),
])
def test_refused_at_load(tmp_path, text, line, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert str(info.value) == f"{path}:{line}: {message}"


class FakeLib:
    """ksmh_uffd_open() of a kernel offering `features` (None: no userfaultfd)."""

    KSMH_UFFD_FEATURE_PAGEFAULT_FLAG_WP = 1
    KSMH_UFFD_FEATURE_MINOR_SHMEM = 1024

    def __init__(self, features):
        self.features = features

    def ksmh_uffd_open(self, asked, supported):
        if self.features is None:
            return -1
        supported[0] = self.features
        return 0


@pytest.mark.parametrize("features, mode, reason", [
    (1 | 1024, "wp", None),
    (1 | 1024, "minor", None),
    (1024, "wp", "userfaultfd wp mode needs UFFD_FEATURE_PAGEFAULT_FLAG_WP (CONFIG_HAVE_ARCH_USERFAULTFD_WP), "
                 "which this kernel does not offer"),
    (1, "minor", "userfaultfd minor mode needs UFFD_FEATURE_MINOR_SHMEM (CONFIG_HAVE_ARCH_USERFAULTFD_MINOR, "
                 "5.14+), which this kernel does not offer"),
    (None, "wp", "no userfaultfd here (CONFIG_USERFAULTFD)"),
])
def test_uffd_modes_the_kernel_offers(monkeypatch, features, mode, reason):
    monkeypatch.setattr(uffd, "lib", FakeLib(features))
    monkeypatch.setattr(uffd.os, "close", lambda fd: None)
    got = uffd.unavailable(mode)
    assert got == reason if features is not None else got.startswith(reason)


def test_a_missing_mode_is_a_skip_reason(tmp_path, monkeypatch):
    _, (sc,) = load(tmp_path, MEMFD + "  - do: userfaultfd\n    region: m\n    mode: minor\n")
    monkeypatch.setattr(uffd, "unavailable", lambda mode: f"no {mode} here")
    assert [a.mode for a in requirements.actions(sc) if a.action == "userfaultfd"] == ["minor"]
    assert "no minor here" in requirements.reasons(sc, FakeCtx(tmp_path))


class FakeCtx:
    """Just enough of a RunContext for requirements.reasons() on a fake tree."""

    def __init__(self, root):
        (root / "proc/sys/kernel").mkdir(parents=True, exist_ok=True)
        (root / "proc/sys/kernel/osrelease").write_text("6.18.0\n")
        (root / "proc/vmstat").write_text("pswpout 0\n")
        (root / "ksm").mkdir(exist_ok=True)
        (root / "ksm/run").write_text("0\n")
        self.roots = Roots(ksm=root / "ksm", proc=root / "proc", sys=root / "sys", kmsg=root / "kmsg")
        self.knobs = Knobs(root / "ksm")
        self.allow_kernel_damage = False


def test_uffd_wp_pages_are_counted_from_pagemap(tmp_path):
    (tmp_path / "100").mkdir()
    put(tmp_path / "100" / "pagemap", 16, [PM_PRESENT | PM_UFFD_WP | 1000, PM_PRESENT | 1001, PM_UFFD_WP])
    put(tmp_path / "kpageflags", 1000, [0, 0])
    assert region_pages(100, 16 * PAGE_SIZE, 3, tmp_path).uffd_wp == 2


def test_minor_registered_pages_come_from_smaps_vmflags(tmp_path):
    (tmp_path / "100").mkdir()
    a = 0x7f0000000000
    (tmp_path / "100" / "smaps").write_text(
        f"{a:x}-{a + 4 * PAGE_SIZE:x} rw-p 00000000 00:01 42   /memfd:ksm-harness (deleted)\n"
        "Size:                 16 kB\nVmFlags: rd wr mr mw me ac sd ui\n"
        f"{a + 4 * PAGE_SIZE:x}-{a + 8 * PAGE_SIZE:x} rw-p 00004000 00:01 42   /memfd:ksm-harness (deleted)\n"
        "Size:                 16 kB\nVmFlags: rd wr mr mw me ac sd mg\n")
    assert flagged_pages(100, a, 8, "ui", tmp_path) == 4
    assert flagged_pages(100, a + 2 * PAGE_SIZE, 2, "ui", tmp_path) == 2
    assert flagged_pages(100, a + 4 * PAGE_SIZE, 4, "ui", tmp_path) == 0


def test_exec_loads_and_dumps(tmp_path):
    _, (sc,) = load(tmp_path, BASE + "  - do: exec\n    workers: 'a[0]'\n    merge: 1\n")
    ex = sc.steps[1]
    assert isinstance(ex, steps.ACTIONS["exec"]) and ex.merge == 1 and ex.drops_pages and ex.ends_processes
    again = tmp_path / "again.yaml"
    again.write_text(scenario.dump_text(sc))
    assert scenario.load_file(again) == [sc]


def test_exec_after_a_fork_of_the_same_worker_is_refused(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - do: fork\n    workers: 'a[0]'\n    count: 1\n  - do: exec\n    workers: 'a[1]'\n"
                           "  - do: exec\n    workers: a\n")
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert str(info.value) == (f"{path}:14: steps: exec of workers an earlier fork step acted on (a[0]): "
                               "their children keep the old regions, which the harness no longer knows")


def test_remap_and_mremap_load_and_dump(tmp_path):
    _, (sc,) = load(tmp_path, BASE + "  - do: remap\n    region: r\n    pages: last 50%\n"
                                     "  - do: mremap\n    workers: 'a[1]'\n    region: r\n"
                                     "  - check: 'a.r.vmas == 2'\n")
    remap, mremap = sc.steps[1:3]
    assert isinstance(remap, steps.ACTIONS["remap"]) and remap.drops_pages
    assert isinstance(mremap, steps.ACTIONS["mremap"]) and mremap.region == "r"
    again = tmp_path / "again.yaml"
    again.write_text(scenario.dump_text(sc))
    assert scenario.load_file(again) == [sc]


def test_vmas_over_a_region_come_from_smaps(tmp_path):
    (tmp_path / "100").mkdir()
    a = 0x7f0000000000
    (tmp_path / "100" / "smaps").write_text(
        f"{a:x}-{a + 4 * PAGE_SIZE:x} rw-p 00000000 00:00 0\nVmFlags: rd wr mr mw me ac sd mg\n"
        f"{a + 4 * PAGE_SIZE:x}-{a + 8 * PAGE_SIZE:x} rw-p 00000000 00:00 0\nVmFlags: rd wr mr mw me ac sd\n"
        f"{a + 9 * PAGE_SIZE:x}-{a + 10 * PAGE_SIZE:x} rw-p 00000000 00:00 0\nVmFlags: rd wr mr mw me ac sd\n")
    assert vmas_over(100, a, 8, tmp_path) == 2
    assert vmas_over(100, a + PAGE_SIZE, 2, tmp_path) == 1
    assert vmas_over(100, a, 10, tmp_path) == 3
    assert vmas_over(100, a + 8 * PAGE_SIZE, 1, tmp_path) == 0


CPUSET = BASE.replace("workers:", "setup:\n  cpuset: {mems: MEMS}\nworkers:")


def test_cpuset_loads_dumps_and_wants_its_nodes(tmp_path):
    _, (sc,) = load(tmp_path, CPUSET.replace("MEMS", "'0-1'"))
    assert sc.cpuset == {"mems": "0-1", "cpus": None}
    assert requirements.numa_nodes_wanted(sc) == 2
    again = tmp_path / "again.yaml"
    again.write_text(scenario.dump_text(sc))
    assert scenario.load_file(again) == [sc]
    _, (sc,) = load(tmp_path, CPUSET.replace("MEMS", "0, cpus: 1"))
    assert sc.cpuset == {"mems": "0", "cpus": "1"} and requirements.numa_nodes_wanted(sc) == 1


@pytest.mark.parametrize("mems, field, message", [
    ("'0;1'", "mems", "mems must be a node list such as 0 or 0-1,3; not '0;1'"),
    ("0, cpus: 'all'", "cpus", "cpus must be a CPU list such as 0 or 0-1,3; not 'all'"),
    ("0, nodes: 1", "nodes", "unknown key 'nodes' (expected one of: cpus, mems)"),
])
def test_bad_cpuset_is_one_line(tmp_path, mems, field, message):
    path = tmp_path / "s.yaml"
    path.write_text(CPUSET.replace("MEMS", mems))
    with pytest.raises(InputError) as info:
        scenario.load_file(path)
    assert str(info.value) == f"{path}:3: setup.cpuset.{field}: {message}"


def test_cpuset_skips_without_the_controller_or_the_cpus(tmp_path, monkeypatch):
    _, (sc,) = load(tmp_path, CPUSET.replace("MEMS", "0, cpus: 0-7"))
    ctx = FakeCtx(tmp_path)
    (tmp_path / "sys/devices/system/cpu").mkdir(parents=True)
    (tmp_path / "sys/devices/system/cpu/online").write_text("0-1\n")
    monkeypatch.setattr(requirements.cgroup, "available", lambda proc, controller: None)
    assert requirements.cpuset_reasons(sc, ctx.roots) == [
        "setup.cpuset wants CPUs [2, 3, 4, 5, 6, 7] that are not online here (online: 0-1)"]
    monkeypatch.setattr(requirements.cgroup, "available", lambda proc, controller: f"no {controller} here")
    assert requirements.cpuset_reasons(sc, ctx.roots) == ["no cpuset here"]
    assert "no cpuset here" in requirements.reasons(sc, ctx)


def test_advice_that_lets_the_shared_zero_page_in_without_ksm_drops_pages(tmp_path):
    # MADV_DONTNEED: a read fault maps it; MADV_HUGEPAGE: a THP split maps zero-filled subpages to it (6.12+)
    _, (sc,) = load(tmp_path, BASE + "".join(f"  - do: advise\n    region: r\n    advice: {a}\n"
                                             for a in ("dontneed", "hugepage", "pageout", "mergeable")))
    assert [a.drops_pages for a in sc.steps[1:5]] == [True, True, False, False]
