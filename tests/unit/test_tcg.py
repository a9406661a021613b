"""harness.tcg: an int3 oops whose trapping byte is no longer int3 is qemu
TCG's stale code, an ERROR under TCG and a FAIL otherwise (real log:
tests/data/logs/qemu-6.12-tcg-stale-int3.log)."""
import dataclasses
from pathlib import Path

from harness import crash, heartbeat, tcg, vmrun
from harness.results import ERROR, FAIL

LOG = Path(__file__).resolve().parents[1] / "data" / "logs" / "qemu-6.12-tcg-stale-int3.log"
BEAT = heartbeat.Beat(5, "cpuset#4", "scenarios/core/cpuset.yaml", 1, 120.0, "fork a[0]", ("cpuset#4",), "6.12")


def report():
    (found,) = crash.scan_text(LOG.read_text())
    return found


def with_trap_byte(found, byte):
    """The report with the byte before the RIP's replaced."""
    lines = tuple(line.replace("45 18 eb <33>", f"45 18 {byte} <33>") for line in found.lines)
    return dataclasses.replace(found, lines=lines)


def test_an_int3_whose_byte_reads_as_the_patched_jump_ran_stale_code():
    why = tcg.stale_int3(report())
    assert why.startswith("the trapping byte reads eb, not int3 (cc)")
    assert "text_poke_bp_batch()" in why


def test_an_int3_still_in_memory_or_another_report_is_not_the_emulator():
    assert tcg.stale_int3(with_trap_byte(report(), "cc")) is None
    assert tcg.stale_int3(dataclasses.replace(report(), title="BUG: unable to handle page fault in f")) is None
    no_code = dataclasses.replace(report(), lines=tuple(l for l in report().lines if "Code:" not in l))
    assert tcg.stale_int3(no_code) is None


def test_the_crash_is_an_error_under_tcg_and_a_failure_under_kvm():
    under_tcg = vmrun.crashed(BEAT, "by itself (reboot or power off)", [report()], 3.0, "tcg")
    assert under_tcg.status == ERROR
    assert under_tcg.reason.startswith("int3 in prepare_alloc_pages: the guest ended by itself")
    assert "no verdict on the kernel: the trapping byte reads eb" in under_tcg.reason
    assert under_tcg.reason.endswith("run it again, or under KVM")
    assert vmrun.crashed(BEAT, "by itself", [report()], 3.0, "kvm").status == FAIL
    assert vmrun.crashed(BEAT, "by itself", [with_trap_byte(report(), "cc")], 3.0, "tcg").status == FAIL
