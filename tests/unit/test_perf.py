"""ksm-harness perf: its arithmetic, its knob plan and requirements against
a fake /sys/kernel/mm/ksm, its orchestration with fake measurements (lock,
journal, knobs back as found, SKIP and ERROR), and its three output formats."""
import json
import os

import pytest

from harness import cli, perf, runner, zygote
from harness.errors import InputError, WorkerError
from harness.journal import Journal
from harness.kernel import Thp
from harness.knobs import Knobs
from harness.lock import MachineLock
from harness.report import perf as perf_report
from harness.report.terminal import measure_text
from harness.results import ERROR, PASS, SKIP, Measurement, throughput

MIB = 1 << 20
SETTINGS = perf.Settings(size_mib=100, pages_to_scan=10, timeout=120)


def fake_ksm(root, numa=True):
    """A /sys/kernel/mm/ksm as found: settings 0644, counters 0444."""
    root.mkdir()
    values = {"run": "0", "sleep_millisecs": "20", "pages_to_scan": "100", "max_page_sharing": "256"}
    if numa:
        values["merge_across_nodes"] = "1"
    for name, value in values.items():
        (root / name).write_text(value + "\n")
    for name in ("full_scans", "pages_shared", "pages_sharing"):
        (root / name).write_text("0\n")
        (root / name).chmod(0o444)
    return root


def context(tmp_path, numa=True, thp=Thp(("always", "madvise", "never"), "madvise")):
    ctx = perf.Context(Knobs(fake_ksm(tmp_path / "ksm", numa)), SETTINGS, tmp_path, tmp_path)
    ctx.thp = thp
    return ctx


def test_throughput_is_mib_per_second():
    assert throughput(100 * MIB, 0.5) == 200.0
    assert throughput(8192000, 0.0073) == pytest.approx(7.8125 / 0.0073)
    assert throughput(MIB, 0) == 0.0


class Recorder:
    """A worker that answers every command at once and keeps what it was sent."""

    def __init__(self):
        self.calls = []

    def call(self, op, timeout=60.0, **args):
        self.calls.append((op, args))
        return {}


def test_a_merge_polled_from_the_worker_waits_there_for_two_full_scans(tmp_path):
    ctx = context(tmp_path)
    ctx.settings = perf.Settings(size_mib=100, pages_to_scan=10, timeout=120, poll_from=perf.POLL_FROM_WORKER)
    (tmp_path / "ksm" / "full_scans").chmod(0o644)
    (tmp_path / "ksm" / "full_scans").write_text("3\n")
    worker = Recorder()
    assert ctx.merge(worker) >= 0
    assert worker.calls == [("advise", {"region": "r", "advice": "mergeable"}),
                            ("wait_counter", {"path": str(tmp_path / "ksm" / "full_scans"), "at_least": 5,
                                              "within": 120})]
    assert ctx.knobs.read("run") == "1"


def test_the_worker_polls_a_counter_until_it_reaches_the_number(tmp_path):
    counter = tmp_path / "full_scans"
    counter.write_text("7\n")
    worker = zygote.Worker(None)
    assert worker.op_wait_counter({"path": str(counter), "at_least": 5, "within": 1}) == {"value": 7}
    with pytest.raises(zygote.CommandError, match="full_scans to reach 9: Connection timed out"):
        worker.op_wait_counter({"path": str(counter), "at_least": 9, "within": 0.01})


def test_a_scribble_changes_a_byte_of_each_page_and_times_the_loop():
    worker = zygote.Worker(None)
    worker.op_map({"region": "r", "npages": 8, "pattern": {"kind": "unique"}, "worker": 0})
    assert worker.op_verify({"region": "r"})["bad"] == 0
    reply = worker.op_scribble({"region": "r", "start": 2, "count": 4})
    assert reply["pages"] == 4 and reply["elapsed_ns"] > 0
    region = worker.regions["r"]
    assert [region.base[i * zygote.PAGE_SIZE] == b"-" for i in range(8)] == [False] * 2 + [True] * 4 + [False] * 2
    with pytest.raises(zygote.CommandError, match="scribbled on"):
        worker.op_verify({"region": "r"})
    worker.op_write({"region": "r", "start": 2, "count": 4, "pattern": {"kind": "unique"}, "worker": 0,
                     "generation": 1})
    assert worker.op_verify({"region": "r"})["bad"] == 0


def test_an_advice_is_timed_around_the_madvise_call_in_the_worker():
    worker = zygote.Worker(None)
    worker.op_map({"region": "r", "npages": 8, "pattern": {"kind": "same"}, "worker": 0, "mergeable": False})
    # a region never made mergeable: ksm_madvise() returns at once, and no KSM state changes
    assert worker.op_advise({"region": "r", "advice": "unmergeable"})["elapsed_ns"] > 0


def test_a_measure_line_says_size_time_and_speed_as_ksm_tests():
    line = measure_text(Measurement("merge", 0.773693265, 100 * MIB))
    assert line == "merge: 100 MiB in 0.773693 s: 129.250 MiB/s"
    assert measure_text(Measurement("cow", 0.5, 2000 * 4096)).startswith("cow: 7.8125 MiB in")


def test_knobs_are_written_in_ksm_tests_order(tmp_path):
    ctx = context(tmp_path)
    assert ctx.knob_plan() == (("run", "2"), ("sleep_millisecs", "0"), ("merge_across_nodes", "1"),
                               ("pages_to_scan", "10"))
    ctx.prepare()
    assert {n: ctx.knobs.read(n) for n in ("run", "sleep_millisecs", "pages_to_scan")} == \
        {"run": "2", "sleep_millisecs": "0", "pages_to_scan": "10"}


def test_merge_across_nodes_only_where_the_kernel_has_numa(tmp_path):
    assert "merge_across_nodes" not in dict(context(tmp_path, numa=False).knob_plan())


def test_requirements_skip_with_the_reason(tmp_path):
    ctx = context(tmp_path, thp=None)
    assert perf.MergeTime().why_not(ctx) is None
    assert "CONFIG_TRANSPARENT_HUGEPAGE=n" in perf.ThpMergeTime().why_not(ctx)
    ctx.thp = Thp(("always", "madvise", "never"), "never")
    assert perf.ThpMergeTime().why_not(ctx) == "transparent hugepages are off (enabled: never)"
    (tmp_path / "ksm" / "full_scans").unlink()
    assert perf.CowTime().why_not(ctx) == "this kernel's KSM lacks full_scans"


def test_thp_merge_rounds_the_size_down_to_whole_huge_pages(tmp_path):
    ctx = context(tmp_path)
    ctx.settings = perf.Settings(size_mib=5, pages_to_scan=10, timeout=1)
    assert perf.ThpMergeTime().npages(ctx) == 4 * MIB // perf.pages.PAGE_SIZE
    assert perf.MergeTime().npages(ctx) == 5 * MIB // perf.pages.PAGE_SIZE


def test_tests_are_chosen_by_name_once_each_in_the_order_given():
    assert [t.name for t in perf.selected_tests([])] == ["merge", "thp-merge", "unmerge", "cow"]
    assert [t.name for t in perf.selected_tests(["cow", "merge", "cow"])] == ["cow", "merge"]
    with pytest.raises(InputError, match="unknown test 'fast'"):
        perf.selected_tests(["fast"])


class Fake:
    """A measurement that measures nothing (or fails), for the orchestration."""

    def __init__(self, name, why=None, error=None):
        self.name, self.option, self.why, self.error = name, "-X", why, error

    def why_not(self, ctx):
        return self.why

    def measure(self, ctx, pool):
        if self.error:
            raise self.error
        assert ctx.knobs.read("run") == "2" and ctx.knobs.read("pages_to_scan") == "10"
        return (Measurement(self.name, 0.25, MIB),), ("a note",)


def test_a_run_holds_the_lock_and_puts_the_knobs_back(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.os, "geteuid", lambda: 0)
    ksm = fake_ksm(tmp_path / "ksm")
    before = Knobs(ksm).read_all()
    roots = runner.Roots(ksm=ksm, proc=tmp_path, sys=tmp_path)
    lock = MachineLock(tmp_path / "lock")
    tests = (Fake("a"), Fake("b", why="needs a thing"), Fake("c", error=WorkerError("worker perf died")))
    result = perf.run(tests, SETTINGS, roots=roots, journal=Journal(tmp_path / "state"), lock=lock, say=print)
    assert [(o.name, o.status) for o in result.outcomes] == [("a", PASS), ("b", SKIP), ("c", ERROR)]
    assert result.outcomes[0].measures[0].mib_per_s == 4.0
    assert result.outcomes[1].reason == "needs a thing"
    assert "worker perf died" in result.outcomes[2].reason
    assert Knobs(ksm).read_all() == before
    assert not (tmp_path / "state" / "journal.json").exists()
    assert cli.exit_status({o.status for o in result.outcomes}) == 3


RUN = perf.PerfRun(
    kernel="6.18.0", started="2026-12-03T15:00:00+00:00", duration=4.5,
    settings=(("run", "2"), ("sleep_millisecs", "0"), ("pages_to_scan", "10")),
    outcomes=(
        perf.Outcome("merge", "-P", PASS, measures=(Measurement("merge", 0.5, 100 * MIB),),
                     notes=("merged: ksm_merging_pages 25600 of 25600",)),
        perf.Outcome("thp-merge", "-H", SKIP, reason="transparent hugepages are off (enabled: never)"),
        perf.Outcome("cow", "-C", PASS, measures=(Measurement("cow", 0.008, 8192000),
                                                  Measurement("cow-unmerged", 0.0001, 8192000))),
        perf.Outcome("unmerge", "-D", ERROR, reason="WorkerError: worker perf\nkilled"),
    ))


def test_ktap_has_each_measure_as_a_diagnostic_before_its_result():
    lines = perf_report.render_ktap(RUN).splitlines()
    assert lines[:4] == ["KTAP version 1", "1..4", "# kernel: 6.18.0",
                         "# knobs before each test: run=2 sleep_millisecs=0 pages_to_scan=10"]
    assert lines[4:8] == ["# merge: 100 MiB in 0.500000 s: 200.000 MiB/s",
                          "# merge: merged: ksm_merging_pages 25600 of 25600", "ok 1 merge",
                          "ok 2 thp-merge # SKIP transparent hugepages are off (enabled: never)"]
    assert lines[8].startswith("# cow: 7.8125 MiB in 0.008000 s: 976.562 MiB/s")
    assert lines[10] == "ok 3 cow"
    assert lines[11] == "not ok 4 unmerge # error WorkerError: worker perf killed"
    assert lines[-1] == "# Totals: pass:2 fail:0 xfail:0 xpass:0 skip:1 error:1"


def test_json_keeps_every_number():
    data = json.loads(perf_report.render_json(RUN))
    assert data["format"] == "ksm-harness-perf" and data["kernel"] == "6.18.0"
    assert data["settings"] == {"run": "2", "sleep_millisecs": "0", "pages_to_scan": "10"}
    merge, thp, cow, unmerge = data["tests"]
    assert merge["measures"] == [{"name": "merge", "bytes": 100 * MIB, "seconds": 0.5, "mib_per_s": 200.0}]
    assert thp["status"] == "skip" and thp["measures"] == []
    assert [m["name"] for m in cow["measures"]] == ["cow", "cow-unmerged"]
    assert unmerge["status"] == "error" and unmerge["option"] == "-D"


def test_text_says_what_did_not_run_and_why():
    text = perf_report.render_text(RUN)
    assert "  merge: 100 MiB in 0.500000 s: 200.000 MiB/s\n" in text
    assert "  thp-merge: SKIP: transparent hugepages are off (enabled: never)\n" in text
    assert "  unmerge: ERROR: WorkerError: worker perf killed\n" in text


def test_report_files_are_written(tmp_path):
    perf_report.write("json", RUN, tmp_path / "out" / "perf.json")
    perf_report.write("ktap", RUN, tmp_path / "perf.ktap")
    assert json.loads((tmp_path / "out" / "perf.json").read_text())["tests"][0]["name"] == "merge"
    assert (tmp_path / "perf.ktap").read_text().startswith("KTAP version 1\n")


@pytest.mark.parametrize("argv, says", [
    (["perf", "--size", "0"], "--size: '0' is not a positive number"),
    (["perf", "--timeout", "x"], "--timeout: 'x' is not a positive number"),
    (["perf", "merge", "slow"], "TEST: unknown test 'slow'"),
    (["perf", "--json", "-", "--ktap", "-"], "only one report can go to standard output"),
])
def test_bad_input_is_one_line_and_exit_2_before_any_kernel_state(argv, says, capsys, monkeypatch):
    monkeypatch.setattr(perf, "run", lambda *a, **k: pytest.fail("perf ran despite bad input"))
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1


def test_perf_is_listed_in_the_help(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    assert "perf" in capsys.readouterr().out
    assert os.path.basename(perf.__file__) == "perf.py"
