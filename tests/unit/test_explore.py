"""explore without a kernel: generated documents load and stay within the
input limits; a fake 'kernel' that fails on a known step pattern is found,
shrunk to that pattern, written as a reproducer and replayed; the same seed
gives the same documents."""
import dataclasses
from pathlib import Path

import yaml

from harness import scenario, steps
from harness.explore import command, known, machine, vocabulary
from harness.explore.session import Outcome, Session, step_count
from harness.knobs import Knobs
from harness.limits import Limits
from harness.results import ERROR, FAIL, PASS, RunResult, ScenarioResult

LIMITS = Limits(memory_pages=(8 << 30) // scenario.PAGE)
VOCAB = vocabulary.Vocabulary(
    actions=tuple(n for n, c in steps.ACTIONS.items() if not c.damaging and c.explorable),
    knobs=tuple(vocabulary.KNOB_VALUES.items()), nodes=(0, 1), thp=True, swap=True)


def swapcache_then_unmerge(sc):
    """The fake kernel's bug: a pageout, then later run=2 (in a race or not)."""
    seen_pageout = False
    for s in steps.walk(sc.steps):
        if isinstance(s, steps.ACTIONS["pageout"]):
            seen_pageout = True
        elif isinstance(s, steps.STEPS["knob"]) and ("run", "2") in s.writes and seen_pageout:
            return True
    return False


class FakeKernel:
    """An executor whose 'kernel' fails documents matching `bug`; each run
    costs `cost` seconds of a fake clock.  Every document must load."""

    def __init__(self, tmp_path, bug=None, cost=1.0, replay_fails=(True, False)):
        self.knobs = Knobs(tmp_path / "no-ksm")
        self.bug = bug
        self.cost = cost
        self.now = 0.0
        self.documents = []  # the YAML text of every document run
        self.replay_fails = replay_fails  # replays fail in this cycle

    def clock(self):
        return self.now

    def load(self, path):
        (sc,) = scenario.load_file(path, LIMITS, self.knobs)
        return sc

    def run(self, path, session):
        self.now += self.cost
        self.documents.append(Path(path).read_text())
        sc = self.load(path)
        status = FAIL if self.bug and self.bug(sc) else PASS
        return Outcome(status, "fake: KSM page mapped after run=2" if status == FAIL else "",
                       len(sc.steps), 3)

    def replay(self, path, times, progress):
        sc = self.load(path)
        fails = [self.bug(sc) and self.replay_fails[i % len(self.replay_fails)] for i in range(times)]
        return RunResult("fake", "", 0.0, tuple(ScenarioResult(f"{sc.name}#{i + 1}", str(path), 1,
                                                               FAIL if f else PASS, 0.1)
                                                for i, f in enumerate(fails)))


def explore(tmp_path, fake, seed=7, budget=200, replay=5, vocab=VOCAB, steps=command.STEPS_PER_EXAMPLE):
    out = tmp_path / "out"
    original = command.Session

    class FakeClockSession(original):
        def __init__(self, *args, **kw):
            super().__init__(*args, clock=fake.clock, **kw)

    command.Session = FakeClockSession
    try:
        return command.explore(fake, vocab, seed, budget, out, replay, None, kernel_release="fake",
                               steps_per_example=steps)
    finally:
        command.Session = original


def test_a_repeated_document_is_answered_and_counted_once(tmp_path):
    # the 6.12 guest's "examples 34 and 35": one document that timed out,
    # drawn again, showed as two ERRORs and two files under errors/
    class TimingOut:
        def run(self, path, session):
            return Outcome(ERROR, "ScenarioStopped: scenario timeout of 300s reached at line 140", 33, 40)

    class Draft:
        def document(self, description):
            return {"name": "explore-1", "description": description, "steps": [{"knob": {"run": 2}}]}

    session = Session(TimingOut(), tmp_path, budget=60, seed=1)
    session.run(Draft())
    session.run(Draft())
    assert (session.examples, session.answered, session.statuses[ERROR]) == (2, 1, 1)
    assert (session.steps, session.checks) == (33, 40)
    assert [Path(e.file).name for e in session.errors] == ["00001.yaml"]
    assert sorted(p.name for p in (tmp_path / "errors").iterdir()) == ["00001.yaml"]


def test_hundreds_of_generated_documents_load_within_the_limits(tmp_path):
    fake = FakeKernel(tmp_path)
    data = explore(tmp_path, fake, seed=8, budget=200)  # seed 7 draws no fork behind a first ballast
    assert data["stopped"] == "budget spent"
    # a document written again is answered from its first run, not run again
    keys = [known.key(yaml.safe_load(text)) for text in fake.documents]
    assert len(set(keys)) == len(keys) >= 200 and data["answered"] > 0
    assert data["examples"] == len(fake.documents) + data["answered"]
    kinds = set()
    leading = trailing = swapins = swapins_passed = forks_behind = 0
    for text in fake.documents:
        doc = yaml.safe_load(text)
        # time for the runner's own checks after each step, even in a slow guest
        assert doc["timeout"] == max(machine.SCENARIO_TIMEOUT, machine.STEP_SECONDS * len(doc["steps"]))
        ballast = [i for i, g in enumerate(doc["workers"])
                   if g["regions"][0]["size"] == f"{machine.BALLAST_PAGES} pages"]
        leading += ballast[:1] == [0]
        trailing += any(i > 0 for i in ballast)
        for i, (a, b) in enumerate(zip(doc["steps"], doc["steps"][1:])):
            race = b.get("concurrent", [{}])[0]
            # part 2's shape: merged, then a fork on run=2 in a group after a first ballast
            forks_behind += a.get("wait") is not None and race.get("do") == "fork" \
                and race["wait_for"]["value"] == 2 and ballast[:1] == [0] and not race["workers"].startswith("g1")
            if a.get("do") == "pageout" and race.get("do") == "touch" and race.get("pace_us") == 0 \
                    and {"knob": {"run": 0}} in doc["steps"][:i]:
                swapins += 1
                # as in seed/swapin-during-unmerge.yaml: victim, partner, ballast last
                swapins_passed += len(doc["workers"]) == 3 and ballast == [2] and race["workers"] == "g2" \
                    and a["workers"] == "g2" and doc["steps"][i - 1] == {**doc["steps"][i - 1], "do": "touch",
                                                                          "workers": "g3", "write": True}
        kinds |= {s.get("do") or (set(s) & set(steps.STEPS)).pop() for s in doc["steps"]}
        assert len(doc["workers"]) <= 4
    # the vocabulary is used: every bug shape and most actions appear
    assert {"knob", "wait", "concurrent", "pageout", "touch", "fork", "exit", "migrate"} <= kinds
    # some examples open the unmerge windows: a ballast group first in ksmd's
    # list (groups after it still merged), or after a group (that group passed)
    assert 0 < leading < len(fake.documents) and 0 < trailing < len(fake.documents)
    # and part 3's shape in one rule: ksmd stopped, a pageout, then unpaced
    # faults raced against run=2, some of them by a victim whose pages only a
    # partner group shared, while a ballast after both is still being unmerged
    assert swapins > swapins_passed > 0
    assert forks_behind > 0
    assert data["reproducer"] is None and data["totals"][FAIL] == 0


def test_where_damage_is_allowed_pages_are_lost_in_swapcache_as_part_4_needs(tmp_path):
    fake = FakeKernel(tmp_path)
    explore(tmp_path, fake, budget=200, vocab=dataclasses.replace(VOCAB, lose=True))
    shapes = 0
    for text in fake.documents:
        doc = yaml.safe_load(text)
        kinds = [s.get("do") or (set(s) & set(steps.STEPS)).pop() for s in doc["steps"]]
        if "hwpoison" not in kinds:
            assert "expect" not in doc and "memory_failure" not in doc["requires"]
            continue
        shapes += 1
        i = kinds.index("hwpoison")
        poison, pageout = doc["steps"][i], doc["steps"][i - 2]
        # part 4's order (seed/poisoned-swapcache.yaml): ksmd stopped, the
        # pageout under failing writes, the same pages poisoned, swapoff
        assert doc["steps"][i - 3:i] == [{"fault_injection": True}, pageout, {"fault_injection": False}]
        assert {k: pageout[k] for k in ("workers", "region", "pages") if k in pageout} == \
            {k: v for k, v in poison.items() if k != "do"}
        assert {"knob": {"run": 0}} in doc["steps"][:i]
        assert doc["steps"][i + 1:i + 3] == [{"knob": {"run": 2}}, {"swapoff": True}]
        after = doc["steps"][i + 1:]
        assert not [s for s in after if s.get("do") == "pageout" or s.get("do") == "write"
                    and s["region"] == poison["region"]]
        assert doc["expect"] == [{"data": "sigbus-or-intact"}]
        assert doc["requires"]["memory_failure"] and doc["requires"]["fault_injection"]
    assert shapes > 0


def test_a_failure_is_shrunk_written_and_replayed(tmp_path):
    fake = FakeKernel(tmp_path, bug=swapcache_then_unmerge)
    # the vocabulary the bug needs and a little more, few rules an example: a
    # quick shrink (Hypothesis stops shrinking after 5 minutes of it)
    small = vocabulary.Vocabulary(actions=("pageout", "touch", "write"), knobs=(("run", ("1", "2", "0")),),
                                  nodes=(0,), thp=False, swap=True)
    data = explore(tmp_path, fake, budget=5000, vocab=small, steps=10)
    repro = data["reproducer"]
    assert repro is not None and data["stopped"].startswith("failure shrunk")
    text = Path(repro["file"]).read_text()
    assert text.startswith("# Found by `ksm-harness explore --seed 7` on Linux fake.")
    sc = fake.load(repro["file"])  # `ksm-harness run` takes it
    assert swapcache_then_unmerge(sc)
    # shrunk by whole rules: at best a pageout (and a partner's touch before
    # it) and run=2; the part-3 rule alone writes them with a merge before
    # (run=1, the wait, run=0), which Hypothesis deletes whole or not at all
    assert repro["steps"] <= 6 < repro["steps_first"]
    # replays: fail, pass, fail, pass, fail
    assert (repro["runs"], repro["failed"], repro["rate"]) == (5, 3, 0.6)
    assert data["replay"]["totals"][FAIL] == 3
    assert Path(data["database"]).is_dir()


class GuestDied(BaseException):
    """The fake guest died in the example it was running."""


class CrashingKernel(FakeKernel):
    """A kernel that dies in the documents matching `bug`, a boot at a time."""

    def run(self, path, session):
        self.now += self.cost
        self.documents.append(Path(path).read_text())
        if self.bug(self.load(path)):
            raise GuestDied()
        return Outcome(PASS, "", 1, 3)


def test_a_crash_is_shrunk_over_boots_that_answer_what_ran_from_known(tmp_path):
    small = vocabulary.Vocabulary(actions=("pageout", "touch", "write"), knobs=(("run", ("1", "2", "0")),),
                                  nodes=(0,), thp=False, swap=True)
    answers, boots, data = tmp_path / "known.jsonl", [], None
    answers.write_text("")
    while data is None:
        # three boots die in the first document that matches the bug; the
        # fourth kernel no longer crashes in new ones (a crash that does not
        # always come back), so shrinking ends there
        fake = (CrashingKernel if len(boots) < 3 else FakeKernel)(tmp_path / f"boot{len(boots)}",
                                                                  bug=swapcache_then_unmerge)
        if len(boots) == 3:
            fake.bug = None
        out = tmp_path / f"out{len(boots)}"
        try:
            data = command.explore(fake, small, 7, 5000, out, 0, None, kernel_release="fake", steps_per_example=10,
                                   answers=known.load(answers))
        except GuestDied:  # what the host does: learn what ran, and the example the guest died in
            with open(answers, "a") as f:
                if (out / known.FILE).exists():  # a boot that only answered before it died ran nothing
                    f.write((out / known.FILE).read_text())
                f.write(known.crash_line(yaml.safe_load((out / "example.yaml").read_text()), "BUG in fake"))
        boots.append(len(fake.documents))
    # the first boot ran up to the crash; each later one only what no earlier
    # boot ran: Hypothesis came back to the crash from the answers, then each
    # shrinking attempt that crashed cost a boot
    assert boots[0] > 1 and max(boots[1:3]) <= 2
    repro = data["reproducer"]
    assert data["stopped"].startswith("failure shrunk") and repro["crashed"]
    assert repro["reason"] == known.CRASHED + "BUG in fake" and data["answered"] >= boots[0] + 2
    assert swapcache_then_unmerge(fake.load(repro["file"])) and repro["steps"] <= repro["steps_first"]
    assert data["replay"] is None  # the host replays a crash, a boot each


def test_the_same_seed_gives_the_same_documents(tmp_path):
    runs = []
    for attempt, seed in enumerate((11, 11, 12)):
        fake = FakeKernel(tmp_path / str(attempt))
        explore(tmp_path / str(attempt), fake, seed=seed, budget=30)
        runs.append([d.replace(f"seed {seed}", "") for d in fake.documents])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_narrowed_to_what_a_scenario_uses(tmp_path):
    seed = Path(__file__).resolve().parents[2] / "scenarios/seed/fork-during-unmerge.yaml"
    narrowed = vocabulary.narrowed(VOCAB, [seed], LIMITS, Knobs(tmp_path / "no-ksm"))
    assert narrowed.actions == ("fork",)
    assert {k for k, _ in narrowed.knobs} == {"run", "merge_across_nodes"}


def test_step_count_counts_top_level_steps():
    assert step_count({"steps": [{"knob": {"run": 1}}, {"concurrent": []}]}) == 2


def test_no_merge_wait_where_nothing_is_mergeable():
    # ksmd drops an mm with no VM_MERGEABLE mapping from its list, and full_scans stops with it
    draft = machine.Draft("x", groups={"g1": {"name": "g1", "count": 2, "regions": [{"name": "r1"}]},
                                       "g2": {"name": "g2", "count": 1, "regions": [{"name": "r1"}]}})
    draft.add({"do": "advise", "workers": "g1[1]", "region": "r1", "advice": "unmergeable"})
    assert draft.mergeable()  # g2 still merges
    draft.add({"do": "advise", "workers": "g2", "region": "r1", "advice": "unmergeable"})
    assert not draft.mergeable()
    draft.add({"do": "advise", "workers": "all", "region": "r1", "advice": "mergeable"})
    assert draft.mergeable()
    draft.add({"do": "advise", "workers": "all", "region": "r1", "advice": "unmergeable"})
    assert not draft.mergeable()
    draft.add({"do": "prctl_merge", "workers": "g1", "value": 1})
    assert draft.mergeable()
    draft.add({"do": "advise", "workers": "all", "region": "r1", "advice": "mergeable"})
    draft.add({"do": "prctl_merge", "workers": "all", "value": 0})  # ksm_del_vmas(): every VMA
    assert not draft.mergeable()
