"""pytest collects scenarios/**/*.yaml: one test item per scenario (and per
point of its matrix), located at the YAML line of its name, so that

    pytest scenarios -k fork --junitxml=r.xml

runs scenarios like tests; an unmet requirement is a skip with the reason.

Every scenario item carries the `kernel` marker (it drives KSM on the running
kernel, as root, under the global lock), and `numa` too where it needs two or
more NUMA nodes with memory, so that `pytest -m "not kernel"` collects none
of them and `pytest -m numa scenarios` picks those a NUMA machine adds.
"""
from pathlib import Path

import pytest

from harness import errors, requirements, scenario
from harness.results import PASS, SKIP

SCENARIOS = Path(__file__).resolve().parent / "scenarios"

try:
    from hypothesis import settings
except ImportError:  # without the test extras no property test runs
    pass
else:
    # The property tests (tests/unit/test_input_property.py) draw 200 documents
    # each by default, about 45 s in all here; `pytest --hypothesis-profile=deep`
    # draws 1000 each, about 4 minutes.
    settings.register_profile("quick", max_examples=200)
    settings.register_profile("deep", max_examples=1000)
    settings.load_profile("quick")


def pytest_collect_file(parent, file_path):
    if file_path.suffix == ".yaml" and SCENARIOS in file_path.parents:
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    def collect(self):
        try:
            loaded = scenario.load_file(self.path)
        except errors.InputError as exc:
            raise self.CollectError(str(exc)) from None
        for sc in loaded:
            yield ScenarioItem.from_parent(self, name=sc.name, scenario=sc)


class ScenarioFailed(Exception):
    pass


class ScenarioItem(pytest.Item):
    def __init__(self, *, scenario, **kwargs):
        super().__init__(**kwargs)
        self.scenario = scenario
        self.add_marker(pytest.mark.kernel)
        if requirements.numa_nodes_wanted(scenario) >= 2:
            self.add_marker(pytest.mark.numa)

    def runtest(self):
        from harness import runner
        from harness.report.terminal import Progress, summary

        try:
            result = runner.run_all([self.scenario], Progress(enabled=False))
        except errors.CannotRun as exc:
            pytest.skip(str(exc))
        sc = result.scenarios[0]
        if sc.status == SKIP:
            pytest.skip(sc.reason)
        if sc.status != PASS:
            raise ScenarioFailed(summary(result))

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, ScenarioFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.scenario.line - 1, f"scenario {self.scenario.name}"
