"""`ksm-harness explore`: the options, the Hypothesis run, the reproducer and
its replay, the summary and the JSON result."""
import platform
import random
import sys
from pathlib import Path

from hypothesis import HealthCheck, Phase, Verbosity, seed as hypothesis_seed, settings as Settings
from hypothesis.database import DirectoryBasedExampleDatabase
from hypothesis.errors import HypothesisException
from hypothesis.stateful import run_state_machine_as_test

from .. import damage, errors, heartbeat, kernel, runner
from ..knobs import Knobs
from ..lock import MachineLock
from ..results import ERROR, PASS
from . import known, reproducer, report, vocabulary
from .executor import KernelExecutor
from .machine import ExploreMachine, Finding
from .session import BudgetSpent, HarnessTrouble, KernelUnfit, Session

DEFAULT_BUDGET = 600  # seconds
DEFAULT_REPLAY = 5
DEFAULT_OUT = "explore-out"
# rules per example (Hypothesis's stateful_step_count): the bug shapes need
# 6 to 10; more make each example slower and each shrink longer (Hypothesis
# stops shrinking after 5 minutes of it, whatever the budget)
STEPS_PER_EXAMPLE = 15
MAX_EXAMPLES = 1_000_000  # the budget ends an exploration, not a count


def hunt(vocab, session, database, steps_per_example=STEPS_PER_EXAMPLE):
    """Run the state machine until the budget is spent, the kernel crashed,
    or a failure was found and shrunk; returns which."""
    settings = Settings(database=DirectoryBasedExampleDatabase(str(database)), max_examples=MAX_EXAMPLES,
                        stateful_step_count=steps_per_example, deadline=None,
                        suppress_health_check=list(HealthCheck), report_multiple_bugs=False, print_blob=False,
                        verbosity=Verbosity.quiet,
                        phases=(Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink))

    def factory():
        return ExploreMachine(vocab, session)

    try:
        run_state_machine_as_test(hypothesis_seed(session.seed)(factory), settings=settings)
        return "no failure in the examples"
    except BudgetSpent:
        return "budget spent"
    except KernelUnfit:
        return "the kernel crashed"
    except HarnessTrouble as exc:
        return f"harness trouble: {exc}"
    except Finding:
        return "failure shrunk"
    except HypothesisException as exc:
        # Flaky: the shrunk example passed when Hypothesis ran it once more (a
        # race that does not always lose); the smallest failure is still kept
        return f"failure shrunk ({type(exc).__name__})"


def explore(executor, vocab, seed, budget, out, replay, progress, kernel_release=None,
            steps_per_example=STEPS_PER_EXAMPLE, answers=None):
    """The whole exploration; returns the JSON result (a dict).  answers:
    known.load()'s outcomes of documents earlier boots ran."""
    out = Path(out)
    database = out / "hypothesis"
    session = Session(executor, out, budget, seed, progress, known=answers or {})
    stopped = hunt(vocab, session, database, steps_per_example)
    repro = reproducer.write(session, kernel_release or platform.release(), database, out / "reproducer.yaml")
    result = None
    if repro is not None:
        repro, result = reproducer.replayed(repro, executor, replay, progress.replay if progress else None)
    return report.to_dict(session, database, repro, result, stopped)


def exit_status(data):
    """FAIL found: 1; nothing but harness trouble: 3; else 0."""
    totals = data["totals"]
    if data["reproducer"]:
        return errors.EXIT_FAIL
    if data["stopped"].startswith("harness trouble") or (totals[ERROR] and not totals[PASS]):
        return errors.EXIT_ERROR
    return errors.EXIT_PASS


def machine_vocabulary(paths, allow_kernel_damage=False):
    roots = runner.Roots()
    ctx = runner.RunContext(roots, None, None, allow_kernel_damage)
    lose = (damage.refusal(["hwpoison"], allow_kernel_damage, roots.proc) is None
            and ctx.faults.available() is None and ctx.poison.available() is None)
    vocab = vocabulary.detect(Knobs(roots.ksm), ctx.swap.available("file") is None, kernel.facts().thp is not None,
                              lose)
    return vocabulary.narrowed(vocab, paths) if paths else vocab


def cmd_explore(args):
    if args.budget <= 0:
        raise errors.InputError("must be > 0", field="--budget")
    if args.replay < 0:
        raise errors.InputError("must be >= 0", field="--replay")
    vocab = machine_vocabulary(args.paths, args.allow_kernel_damage)
    if not vocab.actions:
        raise errors.InputError("no worker action of the vocabulary is left (see ksm-harness explore --help)",
                                field="PATHS")
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    runner.preflight(runner.Roots())
    progress = report.ExploreProgress(sys.stderr, enabled=not args.quiet)
    progress.say(f"explore --seed {seed} --budget {args.budget:g} --out {args.out}: actions "
                 f"{', '.join(vocab.actions)}; knobs {', '.join(k for k, _ in vocab.knobs)}; "
                 f"nodes {list(vocab.nodes)}{'; pages lost in swapcache' if vocab.lose else ''}")
    lock = MachineLock()
    lock.acquire(wait=not args.no_wait, on_wait=lambda pid: progress.say(f"waiting for ksm-harness pid {pid}..."))
    beat = heartbeat.Heartbeat.from_env(progress, [])  # in a `ksm-harness vm` guest
    try:
        if beat:
            beat.start()
        executor = KernelExecutor(say=progress.say, beat=beat, allow_kernel_damage=args.allow_kernel_damage)
        data = explore(executor, vocab, seed, args.budget, args.out, args.replay, progress,
                       answers=known.load(args.known) if args.known else None)
    finally:
        lock.release()
        if beat:
            beat.close()
    if args.json:
        report.write_json(data, args.json)
    print(report.summary(data), end="", file=sys.stderr if args.json == "-" else sys.stdout)
    return exit_status(data)


def add_parser(sub):
    """The explore subcommand of `ksm-harness` (sub: its subparsers)."""
    p = sub.add_parser(
        "explore", help="generate scenarios, run them, shrink a failure to a YAML reproducer",
        description="Generate scenarios from the step vocabulary (Hypothesis stateful testing), run each "
                    "through the runner with all its checks, shrink a FAIL to the smallest scenario that "
                    "still fails, write it as OUT/reproducer.yaml and replay it.  PATHS: scenario files "
                    "whose actions and knobs narrow the vocabulary (default: everything this machine has).")
    p.add_argument("paths", nargs="*", help="scenario files or directories: explore only the worker actions "
                                            "and knobs they use")
    p.add_argument("--seed", type=int, help="Hypothesis seed (default: a random one, printed and in the result)")
    p.add_argument("--budget", type=float, default=DEFAULT_BUDGET, metavar="SECONDS",
                   help=f"time to explore and shrink (default {DEFAULT_BUDGET})")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"examples, failures, the reproducer and the Hypothesis database (default {DEFAULT_OUT}"
                        f"; the same DIR resumes)")
    p.add_argument("--replay", type=int, default=DEFAULT_REPLAY, metavar="N",
                   help=f"replay the reproducer N times (default {DEFAULT_REPLAY})")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON to PATH (- for stdout)")
    p.add_argument("--no-wait", action="store_true", help="fail at once if another run holds the KSM lock")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.add_argument("--known", metavar="FILE",
                   help="outcomes of documents already run (JSON lines, as OUT/outcomes.jsonl): answered without "
                        "running them; `ksm-harness vm ... explore` passes them on after a crash, with the same "
                        "seed, so that the crash is shrunk")
    p.add_argument(damage.ALLOW_OPTION, action="store_true",
                   help="let explore lose pages in swapcache to memory failure (do: hwpoison) outside a "
                        "ksm-harness VM guest, where it does so anyway: only on a machine you will reboot")
    p.set_defaults(fn=cmd_explore)
    return p
