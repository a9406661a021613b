"""Skip reasons from a fake /proc, /sys and knob tree: what a scenario needs
beyond `requires:` is derived from what it does."""
from types import SimpleNamespace

from harness import requirements, scenario
from harness.knobs import Knobs

SCENARIO = """\
name: t
setup:
  knobs: {use_zero_pages: 1}
workers:
  - name: a
    count: 2
    regions: [{name: r, size: 4M, node: 2}]
steps:
  - knob: {run: 1}
"""


def fake_machine(tmp_path, nodes="0", knobs=("run", "pages_shared")):
    proc, sys_root, ksm = tmp_path / "proc", tmp_path / "sys", tmp_path / "ksm"
    (proc / "sys/kernel").mkdir(parents=True)
    (proc / "sys/kernel/osrelease").write_text("6.1.0\n")
    (proc / "vmstat").write_text("pswpin 0\npswpout 0\n")
    (sys_root / "devices/system/node").mkdir(parents=True)
    (sys_root / "devices/system/node/has_memory").write_text(nodes + "\n")
    ksm.mkdir()
    for name in knobs:
        (ksm / name).write_text("0\n")
    return SimpleNamespace(roots=SimpleNamespace(proc=proc, sys=sys_root), knobs=Knobs(ksm))


def test_written_knobs_and_region_nodes_are_required(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    (sc,) = scenario.load_file(path)
    assert requirements.reasons(sc, fake_machine(tmp_path)) == [
        "this kernel has no /sys/kernel/mm/ksm/use_zero_pages",
        "needs 3 NUMA nodes with memory, this machine has 1 (boot a VM: ksm-harness vm --numa 3)",
    ]


def test_met_when_the_machine_has_them(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(SCENARIO)
    (sc,) = scenario.load_file(path)
    machine = fake_machine(tmp_path, nodes="0-2", knobs=("run", "pages_shared", "use_zero_pages"))
    assert requirements.reasons(sc, machine) == []
