"""One document through the runner, as `ksm-harness run FILE` runs it:
scenario.load_file (every check of the loader) and runner.run_all (setup,
steps, the checks it makes unasked, cleanup).  Explore holds the machine
lock for its whole run; run_all is handed a lock it already holds."""
from .. import runner, scenario
from ..results import FAIL
from .session import Outcome

# a kernel that left this in a result can take no more scenarios (runner.run_scenario)
UNFIT_CHECK = "every worker reaped after SIGKILL"


class HeldLock:
    """The MachineLock explore took for its whole run, as run_all's `lock`:
    nothing to take or drop per example."""

    def acquire(self, wait=True, on_wait=None):
        pass

    def release(self):
        pass


class Counting:
    """run_all's progress: counts the steps the runner runs, shows them on
    explore's progress line."""

    def __init__(self, progress):
        self.progress = progress  # report.ExploreProgress or None
        self.steps = 0

    def scenario_started(self, name, index, total):
        pass

    def step(self, name):
        self.steps += 1
        if self.progress:
            self.progress.step(name)

    def counters(self, values):
        pass

    def scenario_done(self, result):
        pass


def outcome_of(result, steps):
    """The Outcome of one scenario's result; a kernel crash report, or
    workers the kernel would not let go of, make the kernel unfit."""
    crashed = result.status == FAIL and (bool(result.crashes) or any(
        c.what == UNFIT_CHECK and not c.passed for c in result.checks))
    return Outcome(result.status, result.reason, steps, len(result.checks), crashed, result)


class KernelExecutor:
    def __init__(self, roots=runner.Roots(), say=print, beat=None, allow_kernel_damage=False):
        self.roots = roots  # where the kernel interfaces are (runner.Roots)
        self.say = say  # run_all's messages (restores)
        self.beat = beat  # heartbeat.Heartbeat in a `ksm-harness vm` guest, else None
        self.allow_kernel_damage = allow_kernel_damage  # hwpoison steps may run outside a guest

    def beating(self, progress, scenarios):
        """run_all's progress: through the guest's heartbeat where there is one."""
        return self.beat.around(progress, scenarios) if self.beat else progress

    def run(self, path, session):
        scenarios = scenario.load_file(path)
        counting = Counting(session.progress)
        result = runner.run_all(scenarios, self.beating(counting, scenarios), roots=self.roots, say=self.say,
                                lock=HeldLock(), allow_kernel_damage=self.allow_kernel_damage)
        return outcome_of(result.scenarios[0], counting.steps)

    def replay(self, path, times, progress):
        """The reproducer `times` over, exactly as `ksm-harness run --repeat
        TIMES PATH` runs it (cli.selected + cli.repeated + run_all): the RunResult."""
        from ..cli import repeated
        scenarios = repeated(scenario.load_all([path]), times)
        return runner.run_all(scenarios, self.beating(progress, scenarios), roots=self.roots, say=self.say,
                              lock=HeldLock(), allow_kernel_damage=self.allow_kernel_damage)
