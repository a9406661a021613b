"""harness/heartbeat.py and the host's reading of it (harness/vmrun.py), on a tmp_path side channel."""
import json
from types import SimpleNamespace

from harness import heartbeat, vmrun
from harness.results import ERROR, FAIL, PASS, ScenarioResult
from harness.watchdog import NOT_RUN


class Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


def scenarios(*names):
    return [SimpleNamespace(name=n, file=f"{n}.yaml", line=3, timeout=60.0) for n in names]


def result(name, status=PASS, reason=""):
    return ScenarioResult(name, f"{name}.yaml", 3, status, 1.5, reason=reason)


def test_heartbeat_done_and_remaining(tmp_path):
    beat = heartbeat.Heartbeat(tmp_path, Quiet(), scenarios("a", "b", "c"))
    beat.scenario_started("a", 1, 3)
    beat.step("touch a")
    seen = heartbeat.read_beat(tmp_path)
    assert (seen.scenario, seen.file, seen.line, seen.timeout, seen.step) == ("a", "a.yaml", 3, 60.0, "touch a")
    assert seen.selection == ("a", "b", "c")
    beat.scenario_done(result("a", FAIL, "the kernel reported BUG"))
    beat.scenario_done(result("b", ERROR, f"{NOT_RUN} a (BUG)"))  # not recorded: the next boot runs it
    assert heartbeat.read_beat(tmp_path).seq > seen.seq and heartbeat.read_beat(tmp_path).scenario == ""
    with open(tmp_path / heartbeat.DONE_FILE, "a") as f:
        f.write('{"format": "ksm-harness-res')  # a guest that died while writing
    assert [(r.name, r.status) for r in heartbeat.read_done(tmp_path)] == [("a", FAIL)]
    assert [sc.name for sc in beat.remaining(scenarios("a", "b", "c"))] == ["b", "c"]


def test_no_heartbeat_without_env():
    assert heartbeat.Heartbeat.from_env(Quiet(), [], env={}) is None
    assert heartbeat.read_beat("/nonexistent") is None


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


BUG = ["[   20.100000] ------------[ cut here ]------------",
       "[   20.100001] kernel BUG at drivers/misc/lkdtm/bugs.c:78!",
       "[   20.100002] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI",
       "[   20.100003] RIP: 0010:lkdtm_BUG+0x5/0x10"]


def follower_after(lines, clock):
    follower = vmrun.Follower(clock)
    feed = follower.on_line("ready 1234")
    for n, line in enumerate(["[    1.0] boot WARNING context", "ready 1234"] + lines, 1):
        feed(line, n)
    return follower


def test_follower_reads_reports_after_the_marker_only():
    follower = follower_after(BUG, Clock())
    (report,) = follower.crashes()
    assert report.title.startswith("kernel BUG") and report.line == 3  # its "cut here" line


def test_follower_kill_reasons():
    clock = Clock()
    follower = follower_after(BUG, clock)
    follower.beat = heartbeat.Beat(5, "a", "a.yaml", 3, 60.0, "provoke a[0]", ("a", "b"), "6.1")
    follower.scenario_at = clock.now
    args = dict(start=0.0, alive_at=clock.now, progress_at=clock.now - 1, seen_reports=0, timeout=900)
    assert follower._why(clock.now, **args) == ""
    clock.now += vmrun.REPORT_GRACE + 1
    assert "kernel report" in follower._why(clock.now, **dict(args, alive_at=clock.now))
    clock.now += vmrun.SILENT
    assert "without a heartbeat" in follower._why(clock.now, **args)
    follower.on_line("ready 1234")("[   30.0] Kernel panic - not syncing: dumptest", 9)
    clock.now += vmrun.PANIC_GRACE
    assert follower._why(clock.now, **args) == "after a kernel panic"


def test_crashed_and_merged():
    beat = heartbeat.Beat(5, "b", "b.yaml", 3, 60.0, "provoke a[0]", ("a", "b", "c"), "6.1")
    report = follower_after(BUG, Clock()).crashes()
    failed = vmrun.crashed(beat, "after a kernel panic", report, 4.2)
    assert failed.status == FAIL and failed.reason.startswith("kernel BUG")
    assert "the guest ended after a kernel panic in step provoke a[0]" in failed.reason
    run = vmrun.merged(beat.selection, [result("a"), failed], f"{NOT_RUN} b (BUG)", "6.1", "", 9.0)
    assert [(s.name, s.status) for s in run.scenarios] == [("a", PASS), ("b", FAIL), ("c", ERROR)]
    assert run.scenarios[2].reason == f"{NOT_RUN} b (BUG)"
    assert json.loads(json.dumps([s.name for s in run.scenarios]))
