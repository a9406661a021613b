"""`ksm-harness vm ... explore` without qemu: the guest command, the paths
brought back, and a guest that dies in an example (vm.run_in_vm faked: it
writes what the guest would have left on the side channel)."""
import json
from pathlib import Path

import pytest

import yaml

from harness import crash, heartbeat, initramfs, qemu, vm, vmcli, vmexplore
from harness.errors import EXIT_ERROR, EXIT_FAIL, InputError
from harness.explore import known

RES = initramfs.GUEST_RESULTS


def test_command_writes_to_the_side_channel():
    argv = vmexplore.command(["--budget", "900", "--seed", "3"])
    assert argv[argv.index("explore"):] == ["explore", "--out", f"{RES}/explore", "--json", f"{RES}/explore.json",
                                            "--budget", "900", "--seed", "3"]


@pytest.mark.parametrize("arg", ["--out", "--out=x", "--json", "--known"])
def test_command_refuses_its_own_options(arg):
    with pytest.raises(InputError, match="vm sets it itself"):
        vmexplore.command([arg, "x"])


def test_host_paths():
    data = {"out": f"{RES}/explore", "reproducer": {"file": f"{RES}/explore/reproducer.yaml"},
            "errors": [{"file": f"{RES}/explore/errors/00001.yaml"}], "kernel": "6.1.192", "examples": 3}
    assert vmexplore.host_paths(data, RES, "/h") == {
        "out": "/h/explore", "reproducer": {"file": "/h/explore/reproducer.yaml"},
        "errors": [{"file": "/h/explore/errors/00001.yaml"}], "kernel": "6.1.192", "examples": 3}


def fake_boot(monkeypatch, guest_exit, leave, crashes=()):
    """vm.run_in_vm as a guest that ran explore and left `leave` ({name: text})
    on the share, its console showing `crashes`."""
    fake_boots(monkeypatch, [(guest_exit, leave, crashes)])


def fake_boots(monkeypatch, boots, commands=None, shares=None):
    """vm.run_in_vm as guests, one boot after another as `boots` says
    ((guest_exit, leave, crashes) each, the last one again once they run out);
    each guest command goes to `commands`, the KNOWN file each found on the share to `shares`."""
    queue = list(boots)

    def run_in_vm(options, command, out, *, share, follower, **kw):
        guest_exit, leave, crashes = queue.pop(0) if len(queue) > 1 else queue[0]
        if commands is not None:
            commands.append(command)
        if shares is not None:
            shares.append((share / vmexplore.KNOWN).read_text() if (share / vmexplore.KNOWN).exists() else None)
        out.mkdir(parents=True, exist_ok=True)
        for name, text in leave.items():
            (share / name).parent.mkdir(parents=True, exist_ok=True)
            (share / name).write_text(text)
        for path in share.iterdir():
            if path.is_file():
                (out / path.name).write_text(path.read_text())
        status = {None: EXIT_FAIL}.get(guest_exit, guest_exit)
        return vm.VmRun(status, "the guest stopped before the command finished" if guest_exit is None else "",
                        guest_exit, tuple(crashes), False, 4.0, 60.0, out, qemu.Accel("tcg", "test"), None,
                        killed="after a kernel panic" if guest_exit is None else "")
    monkeypatch.setattr(vm, "run_in_vm", run_in_vm)


def test_a_finished_exploration_comes_back_with_host_paths(monkeypatch, tmp_path):
    data = {"out": f"{RES}/explore", "reproducer": None}
    fake_boot(monkeypatch, 0, {"explore.json": json.dumps(data), "explore/example.yaml": "name: x\n"})
    run = vmexplore.explore_in_vm(vm.VmOptions(kernel=Path("k")), [], tmp_path)
    assert run.data == {"out": f"{tmp_path.resolve()}/explore", "reproducer": None}
    assert json.loads((tmp_path / "explore.json").read_text()) == run.data
    assert (tmp_path / "explore/example.yaml").exists() and run.crash_reproducer is None
    assert vmexplore.status(run) == 0


def test_a_guest_that_dies_in_an_example_keeps_it(monkeypatch, tmp_path):
    fake_boot(monkeypatch, None, {"explore/example.yaml": "name: explore-3\nsteps: []\n"})
    run = vmexplore.explore_in_vm(vm.VmOptions(kernel=Path("k")), [], tmp_path)
    assert run.data is None and vmexplore.status(run) == EXIT_FAIL
    text = run.crash_reproducer.read_text()
    assert text.startswith("# The guest ended after a kernel panic while running this example: "
                           "no kernel report on the console\n")
    assert text.endswith("name: explore-3\nsteps: []\n")


def test_a_guest_that_runs_stale_code_under_tcg_gives_no_verdict(monkeypatch, tmp_path):
    log = Path(__file__).resolve().parents[1] / "data" / "logs" / "qemu-6.12-tcg-stale-int3.log"
    fake_boot(monkeypatch, None, {"explore/example.yaml": "name: explore-3\nsteps: []\n"},
              crash.scan_text(log.read_text()))
    run = vmexplore.explore_in_vm(vm.VmOptions(kernel=Path("k")), [], tmp_path)
    assert vmexplore.status(run) == EXIT_ERROR and run.emulator.startswith("the trapping byte reads eb")
    assert run.crash_reproducer.read_text().splitlines()[1] == f"# No verdict on the kernel: {run.emulator}"


def test_a_guest_that_dies_before_any_example(monkeypatch, tmp_path):
    fake_boot(monkeypatch, None, {})
    run = vmexplore.explore_in_vm(vm.VmOptions(kernel=Path("k")), [], tmp_path)
    assert run.data is None and run.crash_reproducer is None


def test_cli_explore_needs_no_arguments_and_prints_the_summary(monkeypatch, tmp_path, capsys):
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"")
    monkeypatch.setattr(qemu, "kernel_version", lambda path: "6.1.192")
    fake_boot(monkeypatch, None, {"explore/example.yaml": "name: explore-3\n"})
    monkeypatch.setattr(vmexplore, "replayed", lambda *a, **kw: vmexplore.Replay(5, 4, tmp_path / "o" / "r"))
    monkeypatch.setattr(vmexplore, "MIN_BUDGET", 1e9)  # no boot after the crash
    assert vmcli.main(["--kernel", str(kernel), "--out", str(tmp_path / "o"), "explore"]) == EXIT_FAIL
    out = capsys.readouterr().out
    assert "FAIL: the guest stopped before the command finished" in out
    assert f"the example it was running: {tmp_path / 'o' / 'crash-reproducer.yaml'}" in out
    assert "replayed 5 times, a boot after each crash: failed 4 of 5" in out


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 100.0  # each look at the clock: a boot's worth of time
        return self.now


EXAMPLE = "name: explore-7\nsteps:\n- knob: {run: 1}\n"


def test_a_crash_is_shrunk_in_later_boots_that_know_what_ran(monkeypatch, tmp_path):
    commands, replays, shares = [], [], []
    ran = known.line("k1", "pass", "")
    died = (None, {"explore/example.yaml": EXAMPLE, f"explore/{known.FILE}": ran}, ())
    shrunk = {"out": f"{RES}/explore", "reproducer": {"file": f"{RES}/explore/reproducer.yaml", "crashed": True}}
    finished = (1, {"explore.json": json.dumps(shrunk), f"explore/{known.FILE}": known.line("k2", "fail", "x")}, ())
    fake_boots(monkeypatch, [died, died, finished], commands, shares)
    monkeypatch.setattr(vmexplore, "replayed", lambda options, path, times, **kw: replays.append((path, times))
                        or vmexplore.Replay(times, 1, path.parent / "crash-replay"))
    boots = vmexplore.explore_across_boots(vm.VmOptions(kernel=Path("k")),
                                           ["--seed", "7", "--budget=900", "--replay", "2", "scenarios/x.yaml"],
                                           tmp_path, clock=Clock())
    assert [b.boot.out for b in boots] == [tmp_path, tmp_path / "boot-2", tmp_path / "boot-3"]
    # every boot: the same seed and the budget left; later ones answer from what ran before
    explore_args = [c[c.index("--json") + 2:] for c in commands]
    assert explore_args == [["--replay", "2", "scenarios/x.yaml", "--budget", "900", "--seed", "7"],
                            ["--known", f"{RES}/{vmexplore.KNOWN}",
                             "--replay", "2", "scenarios/x.yaml", "--budget", "800", "--seed", "7"],
                            ["--known", f"{RES}/{vmexplore.KNOWN}",
                             "--replay", "2", "scenarios/x.yaml", "--budget", "700", "--seed", "7"]]
    crash_line = known.crash_line(yaml.safe_load(EXAMPLE), "no kernel report on the console")
    assert shares[1] == ran + crash_line and shares[2] == 2 * (ran + crash_line)
    # the shrunk crash is replayed on the host, a boot after each crash
    assert replays == [(tmp_path / "boot-3" / "explore" / "reproducer.yaml", 2)]
    assert boots[2].replay.failed == 1 and boots[0].replay is None
    assert vmexplore.status_of_all(boots) == EXIT_FAIL


def test_no_boot_after_a_crash_when_the_budget_is_spent_or_before_any_example(monkeypatch, tmp_path):
    monkeypatch.setattr(vmexplore, "replayed", lambda *a, **kw: vmexplore.Replay(0, 0, tmp_path))
    fake_boot(monkeypatch, None, {"explore/example.yaml": "name: explore-3\n"})
    assert len(vmexplore.explore_across_boots(vm.VmOptions(kernel=Path("k")), ["--budget", "120"], tmp_path,
                                              clock=Clock())) == 1
    fake_boot(monkeypatch, None, {})
    assert len(vmexplore.explore_across_boots(vm.VmOptions(kernel=Path("k")), [], tmp_path / "b", clock=Clock())) == 1


def test_arguments_explore_refuses_are_refused_before_any_boot(monkeypatch, tmp_path, capsys):
    with pytest.raises(InputError, match="usage: argument --budget: invalid float value: .soon."):
        vmexplore.explore_across_boots(vm.VmOptions(kernel=Path("k")), ["--budget", "soon"], tmp_path)


def test_heartbeat_around_follows_one_example_at_a_time(tmp_path):
    class Example:
        name, file, line, timeout = "explore-3", "/run/x/example.yaml", 1, 300.0

    class Quiet:
        def scenario_started(self, *a):
            pass

    beat = heartbeat.Heartbeat(tmp_path, None, [])
    beat.around(Quiet(), [Example()]).scenario_started("explore-3", 1, 1)
    got = heartbeat.read_beat(tmp_path)
    assert (got.scenario, got.file, got.timeout, got.selection) == ("explore-3", "/run/x/example.yaml", 300.0, ())
