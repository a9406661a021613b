"""The registry of step kinds (harness/steps/): what `ksm-harness explore`
builds on.  Every kind and action is enumerable, its fields are
machine-readable (type, bounds, choices, required, default) and enough to
generate a valid step, each step dumps back to the mapping it came from, and
a set-up ScenarioRun runs steps one at a time (here against a fake KSM and
proc tree)."""
import dataclasses
from types import SimpleNamespace

import pytest
import yaml

from harness import runner, runstate, scenario, steps
from harness.errors import InputError
from harness.knobs import Knobs
from harness.limits import Limits
from harness.steps import fields, values

from test_scenario import BASE

LIMITS = Limits(memory_pages=(8 << 30) // scenario.PAGE)


def test_every_kind_is_enumerated_once():
    classes = steps.kinds()
    assert len(set(classes)) == len(classes) == len(steps.STEPS) - 1 + len(steps.ACTIONS)
    assert {c.kind for c in classes} == set(steps.STEPS)
    assert all(issubclass(c, steps.Action) for c in steps.ACTIONS.values())


@pytest.mark.parametrize("cls", steps.kinds(), ids=lambda c: getattr(c, "action", c.kind))
def test_fields_are_described(cls):
    assert cls.summary and dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    for name, spec in fields.specs(cls):
        assert spec.type in fields.TYPES and spec.doc, name
        assert not (spec.required and spec.default is not None), name
        if spec.choices and spec.type == "choice":
            assert spec.default is None or spec.default in spec.choices, name
        low, high = spec.bounds(LIMITS)
        if spec.default is not None and isinstance(spec.default, (int, float)) and not isinstance(spec.default, bool):
            assert (low is None or spec.default >= low) and (high is None or spec.default <= high), name


def example(spec):
    """A valid YAML value for a field, from its metadata alone."""
    low, high = spec.bounds(LIMITS)
    simple = {"int": lambda: high if high is not None else low if low is not None else 1,
              "number": lambda: (low or 0) + 1, "bool": lambda: spec.choices[0] if spec.choices else True,
              "flag": lambda: 1, "choice": lambda: spec.choices[-1], "region": lambda: "r",
              "workers": lambda: "a[1]", "pages": lambda: "last 50%", "pattern": lambda: {"kind": "groups", "groups": 2},
              "wait_for": lambda: {"knob": "run", "value": 1, "timeout": 5}, "str": lambda: "BUG",
              "condition": lambda: "a.r.ksm >= 1"}
    return simple[spec.type]()


@pytest.mark.parametrize("action", steps.ACTIONS)
def test_metadata_makes_valid_actions(tmp_path, action):
    """Every field of every action set to a value chosen from its metadata
    alone loads, and dumps back to an equal step."""
    cls = steps.ACTIONS[action]
    mapping = {"do": action}
    # (measure is refused in a concurrent block: test_a_measured_step_records_a_measurement)
    mapping.update({spec.key: example(spec) for name, spec in fields.specs(cls) if spec.key not in ("name", "measure")})
    doc = yaml.safe_load(BASE)
    doc["setup"] = {"swap": {"kind": "file", "size": "4M"}}  # pageout needs it
    doc["requires"] = {"memory_failure": True}  # hwpoison needs it
    doc["steps"].append({"concurrent": [mapping, {"knob": {"run": 1}}]})  # until_done is for races
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    (sc,) = scenario.load_file(path, LIMITS, Knobs(tmp_path / "no-ksm"))
    loaded = sc.steps[1].children[0]
    assert isinstance(loaded, cls)
    assert loaded.dump()["do"] == action
    again = tmp_path / "again.yaml"
    again.write_text(scenario.dump_text(sc))
    assert scenario.load_file(again, LIMITS, Knobs(tmp_path / "no-ksm"))[0] == sc


def test_selectors_and_page_ranges_are_parsed_at_load(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - do: touch\n    workers: ['a[0:1]', a]\n    region: r\n    pages: last 25%\n")
    (sc,) = scenario.load_file(path)
    touch = sc.steps[1]
    assert touch.workers == (values.Selector("a[0:1]", "a", sliced=True, lo=0, hi=1), values.Selector("a", "a"))
    assert touch.pages == values.PageRange("last 25%", percent=25, from_end=True)
    assert touch.pages.span(1024) == (768, 256)
    assert values.PageRange("10-2000", 10, 2000).span(1024) == (10, 1014)
    assert values.worker_names(touch.workers, {"a": 2}) == {"a[0]", "a[1]"}


class Progress:
    def __init__(self):
        self.steps = []

    def step(self, title):
        self.steps.append(title)


@pytest.fixture
def fake_run(tmp_path):
    """A ScenarioRun over a fake KSM directory and /proc (no workers: the
    steps below need none)."""
    ksm, proc = tmp_path / "ksm", tmp_path / "proc"
    ksm.mkdir()
    for name, value in {"run": 0, "pages_to_scan": 100, "sleep_millisecs": 20, "pages_shared": 0,
                        "pages_sharing": 0, "full_scans": 3}.items():
        (ksm / name).write_text(f"{value}\n")
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("6.18.0\n")
    (proc / "vmstat").write_text("pswpout 0\n")
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - knob: {pages_to_scan: 500}\n  - check: 'full_scans >= 3'\n"
                           "  - repeat: 2\n    steps:\n      - check: 'pages_shared == 0'\n")
    (sc,) = scenario.load_file(path, LIMITS, Knobs(ksm))
    roots = runner.Roots(ksm=ksm, proc=proc, sys=tmp_path / "sys", kmsg=tmp_path / "kmsg")
    ctx = runner.RunContext(roots, None, Progress())
    run = runner.ScenarioRun(ctx, sc)
    run.reference = ctx.counters.read()
    return run, ksm


def test_steps_run_one_at_a_time(fake_run):
    run, ksm = fake_run
    knob, check, repeat = run.sc.steps[1:]
    assert run.run_step(knob) is True
    assert (ksm / "pages_to_scan").read_text() == "500"
    assert run.checks[-1].what == "knob pages_to_scan=500 gives ok" and run.checks[-1].passed
    assert run.run_step(check) is True and run.checks[-1].passed
    assert run.run_step(repeat) is True
    assert [c.what for c in run.checks[-2:]] == [f"pages_shared == 0 (line {repeat.steps[0].line})"] * 2
    assert run.ctx.progress.steps == ["knob pages_to_scan=500", "check full_scans >= 3", "repeat",
                                      "check pages_shared == 0", "check pages_shared == 0"]
    assert [m.name for m in run.steps] == ["knob pages_to_scan=500", "check full_scans >= 3",
                                           "check pages_shared == 0", "check pages_shared == 0", "repeat"]


def test_a_measured_step_records_a_measurement(fake_run, tmp_path):
    run, ksm = fake_run
    path = tmp_path / "m.yaml"
    path.write_text(BASE + "  - wait: {until: 'full_scans >= 3', measure: merge}\n"
                           "  - do: write\n    region: r\n    pages: 0-9\n    pattern: same\n    measure: cow\n")
    (sc,) = scenario.load_file(path, LIMITS, Knobs(ksm))
    wait, write = sc.steps[1:]
    assert run.run_step(wait) is True
    (m,) = run.measurements
    assert m.name == "merge" and m.seconds >= 0 and m.nbytes is None  # a global counter covers no pages
    worker = SimpleNamespace(name="a[0]", exit=None, regions={"r": {"npages": 1024}})
    run.state.groups = {"a": [worker, SimpleNamespace(name="a[1]", exit=None, regions={"r": {"npages": 1024}})]}
    assert write.measured_pages(run) == 20
    assert scenario.load_file(path, LIMITS, Knobs(ksm))[0].steps[2].dump()["measure"] == "cow"


@pytest.mark.parametrize("step, error", [
    ("  - wait: {until: 'full_scans >= 3', measure: 'two words'}\n",
     "steps[1].wait.measure: a measurement name is letters, digits, _ and -; not 'two words'"),
    ("  - concurrent:\n      - do: touch\n        region: r\n        measure: t\n"
     "        wait_for: {knob: run, value: 2}\n      - knob: {run: 2}\n",
     "steps[1].concurrent[0].measure: the steps of a concurrent block run at once"),
])
def test_a_bad_measure_names_its_field(tmp_path, step, error):
    path = tmp_path / "m.yaml"
    path.write_text(BASE + step)
    with pytest.raises(InputError) as exc:
        scenario.load_file(path, LIMITS, Knobs(tmp_path / "no-ksm"))
    assert error in str(exc.value)


def test_a_failed_check_is_recorded_not_raised(fake_run):
    run, ksm = fake_run
    (ksm / "full_scans").write_text("1\n")
    assert run.run_step(run.sc.steps[2]) is True
    assert not run.checks[-1].passed and "full_scans=1" in run.checks[-1].detail


def test_a_merge_during_the_page_walk_is_no_invariant_failure(fake_run, monkeypatch):
    """ksmd at work makes a KSM page before pages_shared counts it: a walk
    that saw KSM pages while pages_shared moved off 0 proves nothing."""
    run, ksm = fake_run
    merged = SimpleNamespace(label="g1[0]", pages=SimpleNamespace(pid=1, ksm=((0x7f0000000000, 5),)))

    def look(processes, count=1):
        (ksm / "pages_shared").write_text(f"{count}\n")  # ksmd merged meanwhile
        return [merged]

    monkeypatch.setattr(run.truth, "look", look)
    run.racing = True  # the counters' page truth is another test's
    run.invariant("at the end")
    assert run.checks[-1].passed and run.checks[-1].detail == (
        "not applicable: ksmd merged while the pages were looked at (pages_shared 0, then 1)")
    (ksm / "pages_shared").write_text("0\n")
    monkeypatch.setattr(run.truth, "look", lambda processes: look(processes, 0))
    run.invariant("at the end")  # still 0 after the walk: the KSM pages are a failure
    assert not run.checks[-1].passed and run.checks[-1].detail.startswith("g1[0] (pid 1): 1 KSM pages")


def test_a_write_step_gives_every_worker_one_generation(tmp_path):
    """`same` and `groups` content written by one step is the same in every
    worker (as at setup); the next write step's is new."""
    path = tmp_path / "s.yaml"
    path.write_text(BASE + "  - do: write\n    region: r\n    pattern: same\n" * 2)
    (sc,) = scenario.load_file(path)
    sent = []

    class Worker:
        def __init__(self, index):
            self.index = index
            self.regions = {"r": {"npages": 1024}}

        def send(self, op, **args):
            sent.append((self.index, args["generation"]))

    class Run:
        state = runstate.RunState(sc)

    for step in sc.steps[1:]:
        step.begin(Run)
        for w in (Worker(0), Worker(1)):
            step.send(Run, w)
    assert sent == [(0, 1), (1, 1), (0, 2), (1, 2)]
