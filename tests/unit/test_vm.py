"""The VM runner's pure parts: guest command, verdicts, CLI parsing (no qemu)."""
import subprocess
import sys
from pathlib import Path

import pytest

from harness import crash, initramfs, vm, vmcli
from harness.errors import CannotRun, EmulatorFault, InputError
from harness.results import Crash

PANIC = Crash("panic", "Kernel panic - not syncing: sysrq triggered crash", 420, ("Kernel panic",))
WARN = Crash("WARNING", "WARNING in remove_stable_node", 400, ("WARNING: CPU: 0",))


def test_harness_command_sends_reports_to_the_side_channel():
    argv = vm.harness_command(["--filter", "x", "scenarios/seed"])
    assert argv[:4] == [sys.executable, "-m", "harness.cli", "run"]
    res = initramfs.GUEST_RESULTS
    assert argv[4:12] == ["--json", f"{res}/result.json", "--junit", f"{res}/junit.xml", "--ktap", f"{res}/result.ktap",
                          "--kcidb", f"{res}/kcidb.json"]
    assert argv[12:] == ["--filter", "x", "scenarios/seed"]
    assert vm.harness_command(["s"], verbose=True)[3:5] == ["--verbose", "run"]


def test_guest_env_keeps_little_and_finds_the_harness():
    env = vm.guest_env({"PATH": "/p", "DISPLAY": ":0", "KSM_HARNESS_KERNELS": "/k", "PYTHONPATH": "/x"})
    assert env["PATH"] == "/p" and env["KSM_HARNESS_KERNELS"] == "/k" and "DISPLAY" not in env
    root = str(Path(vm.__file__).resolve().parent.parent)
    assert env["PYTHONPATH"] == f"{root}:/x"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_command_script_runs_under_a_shell(tmp_path):
    # The script quotes every word: run it with the host's sh, /dev/kmsg swapped for a file.
    script = vm.command_script(
        ["sh", "-c", 'echo "$1 $FOO" > out; exit 3', "sh", "it's"], str(tmp_path), {"FOO": "a b'c", "PATH": "/usr/bin:/bin"},
        "ksm-harness: guest ready 1234",
    )
    assert script.splitlines()[1] == "echo 'ksm-harness: guest ready 1234' > /dev/kmsg"
    script = script.replace("/dev/kmsg", str(tmp_path / "kmsg"))
    proc = subprocess.run(["sh", "-c", script], cwd="/")
    assert proc.returncode == 3
    assert (tmp_path / "out").read_text() == "it's a b'c\n"
    assert (tmp_path / "kmsg").read_text() == "ksm-harness: guest ready 1234\n"


def test_command_script_missing_cwd(tmp_path):
    script = vm.command_script(["true"], str(tmp_path / "gone"), {}, "m").replace("/dev/kmsg", "/dev/null")
    assert subprocess.run(["sh", "-c", script], stderr=subprocess.DEVNULL).returncode == 125


def verdict(**kw):
    base = dict(hung=False, ready=True, guest_exit=0, crashes=(), timeout=900)
    base.update(kw)
    return vm.verdict(**base)


def test_verdict_pass_and_guest_codes():
    assert verdict() == (0, "")
    assert verdict(guest_exit=1) == (1, "guest command exited 1")
    assert verdict(guest_exit=2) == (2, "guest command exited 2")
    assert verdict(guest_exit=125)[0] == 125


def test_verdict_signal_exit_is_a_failure_bisect_can_use():
    assert verdict(guest_exit=137) == (1, "guest command exited 137")


def test_verdict_crash_after_ready_fails_a_passing_command():
    status, reason = verdict(crashes=(WARN,))
    assert status == 1 and "WARNING in remove_stable_node" in reason


def test_verdict_panic_names_the_crash():
    status, reason = verdict(guest_exit=None, crashes=(PANIC,))
    assert status == 1
    assert reason == "the guest stopped before the command finished; the kernel reported: " + PANIC.title


def test_verdict_stopped_without_report():
    assert verdict(guest_exit=None) == (1, "the guest stopped before the command finished (no crash report on the console)")


def test_verdict_hang():
    assert verdict(hung=True, guest_exit=None, timeout=30) == (
        1, "guest hung while running the command: killed after 30 s")
    status, reason = verdict(hung=True, ready=False, guest_exit=None, timeout=30, crashes=(PANIC,))
    assert status == 1 and reason.startswith("guest hung while booting") and PANIC.title in reason


def test_verdict_never_ready_cannot_run():
    with pytest.raises(CannotRun, match="ksm-harness-init: error: mount 9p hostroot"):
        verdict(ready=False, guest_exit=None, init_error="ksm-harness-init: error: mount 9p hostroot")
    with pytest.raises(CannotRun, match="sysrq triggered crash"):
        verdict(ready=False, guest_exit=None, crashes=(PANIC,))


def args(argv):
    return vmcli.parser().parse_args(argv)


def test_cli_options():
    a = args(["--kernel", "k", "--numa", "4", "--cpus", "8", "--memory", "4G", "--kernel-arg", "a=1",
              "--kernel-arg", "b", "--timeout", "60", "run", "--filter", "x", "--verbose", "scen"])
    opts = vmcli.options(a)
    assert opts == vm.VmOptions(kernel=Path("k"), numa=4, cpus=8, memory_mib=4096, kernel_args=("a=1", "b"),
                                timeout=60.0)
    assert a.run_args == ["--filter", "x", "--verbose", "scen"]  # everything after `run` is the guest's
    assert not a.verbose
    assert not a.stop_on_crash and args(["--kernel", "k", "--stop-on-crash", "run", "s"]).stop_on_crash


@pytest.mark.parametrize(
    "argv,match",
    [
        (["--kernel", "k", "run"], "no scenarios"),
        (["--kernel", "k", "run", "--json", "x", "s"], "--json"),
        (["--kernel", "k", "run", "--ktap=x", "s"], "--ktap"),
        (["--kernel", "k", "--timeout", "0", "run", "s"], "--timeout"),
        (["--kernel", "k", "--memory", "lots", "run", "s"], "--memory"),
    ],
)
def test_cli_rejects(argv, match):
    with pytest.raises(InputError, match=match):
        vmcli.options(args(argv))


def test_cli_main_bad_input_exits_2(tmp_path, capsys):
    assert vmcli.main(["--kernel", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "run", "s"]) == 2
    assert "no such kernel image" in capsys.readouterr().err
    assert vmcli.main(["--kernel", "k"]) == 2  # argparse: `run` missing


def test_cli_main_not_a_bzimage_exits_2(tmp_path, capsys):
    kernel = tmp_path / "vmlinux"
    kernel.write_bytes(b"\x7fELF" + bytes(0x300))
    assert vmcli.main(["--kernel", str(kernel), "--out", str(tmp_path / "o"), "run", "s"]) == 2
    assert "not an x86 bzImage" in capsys.readouterr().err


def test_kernel_name(tmp_path):
    assert vmcli.kernel_name(Path("/k/ksm-6.1.192-fixed.bzImage")) == "ksm-6.1.192-fixed"
    assert vmcli.kernel_name(Path("/boot/vmlinuz-6.1.0-56-amd64")) == "vmlinuz-6.1.0-56-amd64"
    head = bytearray(0x1000)
    head[0x202:0x206] = b"HdrS"
    head[0x20E:0x210] = (0x400).to_bytes(2, "little")
    head[0x600:0x610] = b"6.1.192 (r@h) #9"
    (tmp_path / "bzImage").write_bytes(bytes(head))
    assert vmcli.kernel_name(tmp_path / "bzImage") == "6.1.192"


def test_cli_help(capsys):
    assert vmcli.main(["--help"]) == 0
    assert "run [run-args...] SCENARIOS..." in capsys.readouterr().out


# A 6.12.117 guest under TCG that died while booting: "Oops: int3" whose
# trapping byte reads 0f, the nop that text_poke_bp() had put back (CI, 2026-12-04)
STALE_INT3_BOOT = Path(__file__).resolve().parents[1] / "data" / "logs" / "qemu-6.12-tcg-stale-int3-boot.log"


def test_a_guest_that_tcg_killed_while_booting_is_the_emulators_fault_not_the_kernels():
    crashes = tuple(crash.scan_text(STALE_INT3_BOOT.read_text()))
    with pytest.raises(EmulatorFault, match="the guest stopped before running the command: int3 in .*: no verdict "
                                            "on the kernel: the trapping byte reads 0f, not int3"):
        verdict(ready=False, guest_exit=None, crashes=crashes, accel="tcg")
    with pytest.raises(CannotRun) as under_kvm:
        verdict(ready=False, guest_exit=None, crashes=crashes, accel="kvm")
    assert not isinstance(under_kvm.value, EmulatorFault)


def test_a_boot_the_emulator_killed_is_booted_again_and_its_console_kept(tmp_path, monkeypatch):
    boots, said = [], []

    def boot_once(options, command, out, **kw):
        boots.append(kw)
        (out / "console.log").write_text(f"boot {len(boots)}\n")
        if len(boots) <= 2:  # the first two boots die of the emulator
            raise EmulatorFault(f"the guest stopped before running the command: int3 in f (boot {len(boots)})")
        return "ran"

    monkeypatch.setattr(vm, "boot_once", boot_once)
    (tmp_path / "console.emulator-7.log").write_text("a reused --out's\n")
    assert vm.run_in_vm(vm.VmOptions(kernel=Path("bzImage")), ["true"], tmp_path, log=said.append, share="s") == "ran"
    assert len(boots) == vm.EMULATOR_BOOTS == 3 and all(kw["share"] == "s" for kw in boots)
    assert [(tmp_path / f"console.emulator-{i}.log").read_text() for i in (1, 2)] == ["boot 1\n", "boot 2\n"]
    assert not (tmp_path / "console.emulator-7.log").exists()
    assert said[0] == (f"the guest stopped before running the command: int3 in f (boot 1): booting again "
                       f"(kept {tmp_path / 'console.emulator-1.log'})")
    boots.clear()
    monkeypatch.setattr(vm, "EMULATOR_BOOTS", 2)
    with pytest.raises(EmulatorFault, match="boot 2"):
        vm.run_in_vm(vm.VmOptions(kernel=Path("bzImage")), ["true"], tmp_path, log=said.append)
