"""Input that cannot hurt the machine: knob names that are not plain KSM
settings, sizes beyond memory plus swap, matrices, alias bombs and nesting
beyond their limits, and ranges and bounds that used to pass load and fail
after the kernel was touched: each is one `FILE:LINE: FIELD: message`
InputError at load (exit 2)."""
import pytest

from harness import scenario
from harness.errors import InputError
from harness.knobs import Knobs
from harness.limits import Limits

from test_scenario import BASE, SWAP

GIB_PAGES = (1 << 30) // scenario.PAGE
LIMITS = Limits(memory_pages=8 * GIB_PAGES)  # a machine with 8 GiB of memory plus swap


def load(tmp_path, text, limits=LIMITS):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    # no KSM directory: knob names are checked against mm/ksm.c's own list only
    return path, scenario.load_file(path, limits, Knobs(tmp_path / "no-ksm"))


def touch(extra):
    return BASE + "  - do: touch\n    workers: a\n    region: r\n" + extra


LIMITED = [
    ("knob-path", BASE.replace("{run: 1}", '{"../../../../proc/sys/vm/drop_caches": 3}'), 8,
     "steps[0].knob.../../../../proc/sys/vm/drop_caches",
     "'../../../../proc/sys/vm/drop_caches' is not a knob name (a file name in /sys/kernel/mm/ksm, "
     "e.g. pages_to_scan)"),
    ("knob-counter", BASE.replace("{run: 1}", "{pages_shared: 0}"), 8, "steps[0].knob.pages_shared",
     "'pages_shared' is a counter the kernel keeps (read-only), not a knob to write"),
    ("setup-knob-unknown", "setup:\n  knobs: {run_fast: 1}\n" + BASE, 2, "setup.knobs.run_fast",
     "'run_fast' is not a KSM knob (known: run, sleep_millisecs, pages_to_scan, merge_across_nodes, "
     "use_zero_pages, max_page_sharing, stable_node_chains_prune_millisecs, smart_scan, advisor_mode, "
     "advisor_max_cpu, advisor_min_pages_to_scan, advisor_max_pages_to_scan, advisor_target_scan_time)"),
    ("wait-for-path", touch("    wait_for: {knob: ../run, value: 2}\n"), 12, "steps[1].wait_for.knob",
     "'../run' is not a knob name (a file name in /sys/kernel/mm/ksm, e.g. run)"),
    ("workers-beyond-memory", BASE.replace("count: 2", "count: 1000").replace("size: 4M", "size: 1024G"), 4,
     "workers[0].count",
     "the workers map 1048576000 MiB in all, more than this machine's memory plus swap (8192 MiB): make "
     "regions smaller or fewer"),
    ("swap-beyond-memory", "setup:\n  swap: {kind: file, size: 9G}\n" + BASE, 2, "setup.swap.size",
     "9G is more than this machine's memory plus swap (8192 MiB)"),
    ("pages-reversed", touch("    pages: 10-5\n"), 12, "steps[1].pages", "'10-5': the first page comes after the last"),
    ("pages-over-100-percent", touch("    pages: last 200%\n"), 12, "steps[1].pages",
     "'last 200%': a share of the region is 1% to 100%"),
    ("pages-beyond-region", touch("    pages: 5000-5001\n"), 12, "steps[1].pages",
     "'5000-5001': the region 'r' has only 1024 pages (0..1023)"),
    ("negative-wait-timeout", BASE + "  - wait: {until: 'full_scans >= 1', timeout: -5}\n", 9,
     "steps[1].wait.timeout", "must be > 0, not -5"),
    ("negative-scenario-timeout", BASE + "timeout: -1\n", 9, "scenario.timeout", "must be > 0, not -1"),
    ("negative-node", BASE.replace("size: 4M}", "size: 4M, node: -1}"), 6, "workers[0].regions[0].node",
     "must be 0..127, not -1"),
    ("negative-times", SWAP + "requires: {fault_injection: true}\n" + BASE + "  - fault_injection: true\n"
     "    times: -7\n", 13, "steps[1].times", "times must be -1 (no limit) or >= 1, not -7"),
    ("threads-over-cap", touch("    threads: 1000\n"), 12, "steps[1].threads", "must be 1..64, not 1000"),
    ("touch-all-regions", BASE + "  - do: touch\n    workers: a\n    region: all\n", 11, "steps[1].region",
     "region: name one region ('all' is for verify and conditions)"),
    ("fork-never-ends", BASE + "  - do: fork\n    workers: a\n    depth: 2\n", 9, "steps[1].do",
     "fork needs count, duration or until_done"),
    ("fork-count-zero", BASE + "  - do: fork\n    workers: a\n    count: 0\n", 11, "steps[1].count",
     "must be 1..1099511627776, not 0"),
    ("fork-depth-negative", BASE + "  - do: fork\n    workers: a\n    count: 1\n    depth: -3\n", 12,
     "steps[1].depth", "must be 1..16, not -3"),
    ("matrix-too-large", "matrix:\n" + "".join(f"  p{i}: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]\n" for i in range(9))
     + BASE, 1, "matrix", "more than 1000 points: split the file or list the points that matter"),
    ("alias-bomb", "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
        for p, c in zip("abcdefgh", "bcdefghi")) + BASE, 5, None,
     "the document expands to more than 100000 values (aliases included): split it or drop the aliases"),
    ("nested-repeat", BASE + "".join("  " * (2 * i + 1) + "- repeat: 2\n" + "  " * (2 * i + 2) + "steps:\n"
                                     for i in range(40)) + "  " * 81 + "- knob: {run: 1}\n", 27, None,
     "nested more than 64 levels deep"),
    ("deep-repeat", BASE + "".join("  " * (2 * i + 1) + "- repeat: 2\n" + "  " * (2 * i + 2) + "steps:\n"
                                   for i in range(300)) + "  " * 601 + "- knob: {run: 1}\n", None, None,
     "nested too deeply (more than 64 levels)"),
]


@pytest.mark.parametrize("text,line,field,message", [c[1:] for c in LIMITED], ids=[c[0] for c in LIMITED])
def test_limited_input(tmp_path, text, line, field, message):
    with pytest.raises(InputError) as info:
        load(tmp_path, text)
    path = tmp_path / "s.yaml"
    where = f"{path}:{line}: " if line else f"{path}: "
    assert str(info.value) == where + (f"{field}: " if field else "") + message


def test_parameter_in_a_key_is_substituted(tmp_path):
    text = "matrix:\n  k: [pages_to_scan, sleep_millisecs]\n" + BASE.replace("{run: 1}", '{"${k}": 100}')
    _, loaded = load(tmp_path, text)
    assert [s.steps[0].writes for s in loaded] == [(("pages_to_scan", "100"),),
                                                           (("sleep_millisecs", "100"),)]


def test_concurrent_with_repeat(tmp_path):
    text = touch("").replace("  - do: touch\n", "  - repeat: 3\n    concurrent:\n      - do: touch\n").replace(
        "    workers: a\n    region: r\n", "        workers: a\n        region: r\n      - knob: {run: 2}\n")
    _, (s,) = load(tmp_path, text)
    step = s.steps[1]
    assert step.kind == "concurrent" and step.repeat == 3
    assert [c.kind for c in step.children] == ["do", "knob"]


def test_newer_kernels_knob_is_taken_from_the_live_directory(tmp_path):
    ksm = tmp_path / "ksm"
    ksm.mkdir()
    for name, mode in (("run", 0o644), ("new_setting", 0o644), ("new_counter", 0o444)):
        (ksm / name).write_text("0\n")
        (ksm / name).chmod(mode)
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("{run: 1}", "{new_setting: 1}"))
    (s,) = scenario.load_file(path, LIMITS, Knobs(ksm))
    assert s.steps[0].writes == (("new_setting", "1"),)
    path.write_text(BASE.replace("{run: 1}", "{new_counter: 1}"))
    with pytest.raises(InputError, match="is a counter the kernel keeps"):
        scenario.load_file(path, LIMITS, Knobs(ksm))


def test_a_page_range_for_no_workers_loads(tmp_path):
    """`workers: []` selects nobody: its page range is out of no region (found by Hypothesis)."""
    _, (s,) = load(tmp_path, BASE + "  - do: touch\n    workers: []\n    region: r\n    pages: 5000-5001\n")
    assert s.steps[1].pages.text == "5000-5001"
