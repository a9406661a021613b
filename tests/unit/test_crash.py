"""harness.crash and harness.scanlog over the fixtures in tests/data/logs (see its README)."""
import json
from pathlib import Path

import pytest
import yaml

from harness import crash, scanlog
from harness.crash import Scanner, parse_line, scan_lines, scan_text

LOGS = Path(__file__).resolve().parent.parent / "data" / "logs"


def scan(name):
    return scan_text((LOGS / name).read_bytes().decode("utf-8", "replace"))


def found(name):
    return [(c.kind, c.title, c.line) for c in scan(name)]


# fixture -> every report in it: (kind, title, first line); see tests/data/logs/expected.yaml
EXPECTED = {name: [tuple(report) for report in entry["reports"]]
            for name, entry in yaml.safe_load((LOGS / "expected.yaml").read_text()).items()}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture(name):
    assert found(name) == EXPECTED[name]


def test_every_fixture_has_a_test():
    assert sorted(p.name for p in LOGS.glob("*.log")) == sorted(EXPECTED)


def test_every_kind_has_a_fixture():
    assert {kind for reports in EXPECTED.values() for kind, _, _ in reports} == set(crash.KINDS)


# --- where a report starts and ends --------------------------------------------------------

def test_report_starts_at_cut_here_and_ends_at_end_marker():
    (c,) = scan("ksm-warning.log")
    assert c.lines[0].endswith("------------[ cut here ]------------")
    assert c.lines[-1].endswith("---[ end trace 0000000000000000 ]---")
    assert not any("ksm-harness: step 3 done" in line for line in c.lines)


def test_warn_message_between_cut_here_and_warning_is_kept():
    (c,) = scan("qemu-6.1-boot-topology-warning.log")
    assert "llc-sibling CPU #0 is not on the same node" in c.lines[1]
    assert len(c.lines) == 25


def test_sanitizer_report_ends_at_its_closing_banner():
    (c,) = scan("ksm-kasan-uaf.log")
    assert c.lines[0].endswith("=" * 66)
    assert c.lines[-1].endswith("=" * 66)
    assert "Memory state around the buggy address:" in "\n".join(c.lines)


def test_report_ends_at_first_unrelated_line_after_its_stack():
    (c,) = scan("hung-task.log")
    assert c.lines[-1].endswith("</TASK>")
    (c,) = scan("lockdep-circular.log")  # the chains' stacks do not end it: "stack backtrace:" does
    tail = c.lines[[i for i, line in enumerate(c.lines) if line.endswith("stack backtrace:")][0]:]
    assert tail[-1].endswith("</TASK>") and "Call Trace:" in tail[3]


def test_user_space_registers_inside_the_stack_stay_in_the_report():
    (c,) = scan("ksm-null-deref.log")
    assert c.lines[-1].endswith("---[ end trace 0000000000000000 ]---")
    assert any("RIP: 0033:0x401b3d" in line for line in c.lines)


def test_panic_after_an_oops_is_the_same_report():
    assert len(scan("ksm-kernel-bug-panic.log")) == 1
    (c,) = scan("hard-lockup.log")
    assert c.lines[-1].endswith("---[ end Kernel panic - not syncing: Hard LOCKUP ]---")


def test_fatal_exception_panic_alone_is_reported():
    (c,) = scan_lines(["[ 1.0] Kernel panic - not syncing: Fatal exception in interrupt"])
    assert (c.kind, c.title) == ("panic", "kernel panic: Fatal exception in interrupt")


def test_console_output_inside_a_report_is_not_part_of_it():
    (c,) = scan("qemu-6.1-sysrq-crash.log")
    assert not any("=== panic" in line for line in c.lines)
    (c,) = scan("serial-garbage.log")
    assert not any("ksm-test: running" in line for line in c.lines)


def test_time_gap_ends_a_report():
    lines = ["[  10.000000] BUG: workqueue lockup - pool cpus=0 node=0 flags=0x0 nice=0 stuck for 31s!",
             "[  10.000100] Showing busy workqueues and worker pools:",
             "[  15.000000] ksm-harness: next step"]
    (c,) = scan_lines(lines)
    assert (c.title, len(c.lines)) == ("BUG: workqueue lockup", 2)


def test_long_report_is_cut():
    lines = ["WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 f+0x1/0x2"] + ["filler"] * 1000
    (c,) = scan_lines(lines)
    assert len(c.lines) <= crash.MAX_REPORT_LINES


def test_two_reports_back_to_back():
    text = (LOGS / "ksm-warning.log").read_text() + (LOGS / "ksm-page-fault.log").read_text()
    assert [c.kind for c in scan_text(text)] == ["WARNING", "BUG"]


def test_untimestamped_log_after_timestamped_lines_is_not_trusted():
    text = (LOGS / "ksm-warning.log").read_text() + (LOGS / "ksm-gpf.log").read_text()
    assert [c.kind for c in scan_text(text)] == ["WARNING"]


def test_streaming_scanner_matches_batch_scan():
    text = (LOGS / "list-corruption.log").read_text()
    scanner = Scanner()
    seen = []
    for n, raw in enumerate(text.split("\n"), 1):
        scanner.feed(raw, n)
        seen.append(scanner.count)
    assert scanner.crashes() == scan_text(text)
    assert seen[:2] == [0, 1] and seen[-1] == 3  # a report counts from its header line


def test_caller_ids_keep_interleaved_reports_apart():
    warning, oops = scan("caller-id-interleaved.log")
    assert all("[  T100]" in line for line in warning.lines)
    assert all("[  T200]" in line for line in oops.lines)
    assert warning.lines[-1].endswith("---[ end trace 0000000000000000 ]---")
    assert not warning.corrupted and not oops.corrupted


def test_report_cut_by_the_end_of_the_log_is_corrupted():
    (kasan,) = scan("cut-at-end.log")
    assert kasan.corrupted  # no closing banner
    warning, bug = scan("cut-before-stack.log")
    assert warning.corrupted and not bug.corrupted  # the BUG came before the WARNING's stack


def test_whole_reports_are_not_corrupted():
    assert not any(c.corrupted for name in ("ksm-warning.log", "ksm-kasan-uaf.log", "lockdep-circular.log",
                                            "hung-task.log", "kmemleak-6.1.log") for c in scan(name))


def test_unknown_warning_or_info_header_needs_a_stack():
    stack = ["[ 1.1] CPU: 0 PID: 1 Comm: a.out Not tainted 6.1.192 #1", "[ 1.2] Call Trace:",
             "[ 1.3]  <TASK>", "[ 1.4]  ksm_do_scan+0x1/0x2", "[ 1.5]  </TASK>"]
    assert [c.title for c in scan_lines(["[ 1.0] WARNING: something new happened"] + stack)] == [
        "WARNING: something new happened in ksm_do_scan"]
    assert [c.title for c in scan_lines(["[ 1.0] INFO: something new: 12 jiffies"] + stack)] == [
        "INFO: something new in ksm_do_scan"]
    assert scan_lines(["[ 1.0] WARNING: something new happened", "[ 1.1] next"]) == []


def test_info_lines_inside_a_slub_report_do_not_start_reports():
    (c,) = scan("doc-6.12-slub.log")
    assert sum("INFO:" in line for line in c.lines) == 4


def test_untimestamped_continuation_of_an_open_report_is_kept():
    lines = ["[ 1.0] WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 f+0x1/0x2", "[ 1.1] Call Trace:",
             " [<ffffffff8116e9f5>] ksm_scan_thread+0x2a5/0x6c0", "ksm-test: running", "kernel BUG at mm/ksm.c:1!"]
    (c,) = scan_lines(lines)
    assert c.lines[-1] == lines[2]


def test_kmsg_caller_field():
    (line,) = parse_line("4,7,8,-,caller=T123;hello")
    assert (line.text, line.caller, line.seq) == ("hello", "T123", 7)
    (line,) = parse_line("[   12.345678][    C1] hello")
    assert (line.text, line.caller) == ("hello", "C1")


# --- look-alikes ---------------------------------------------------------------------------------

@pytest.mark.parametrize("line", [
    "[   14.000000] traps: a.out[312] general protection fault ip:401b3d sp:7ffd3b2e1c10 error:0 in libc.so.6",
    "[   12.000002] WARNING: The mand mount option has been deprecated and",
    "[   13.000000] EXT4-fs warning (device loop0): ext4_multi_mount_protect:328: MMP interval 42",
    "[    0.000000] [Firmware Bug]: TSC doesn't count with P0 frequency!",
    "[    0.249650] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible",
    "[   15.000000] INFO: lockdep is turned off.",
    "[   16.000000] ksm_test: saw 'kernel BUG at mm/ksm.c:1234!' in the previous boot's log",
])
def test_lookalike_line_is_quiet(line):
    assert scan_lines([line]) == []


def test_user_space_records_in_kmsg_dump_are_quiet():
    lines = ["12,801,688108824,-;kernel BUG at mm/ksm.c:1!",
             "4,802,688108858,-;WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 real+0x0/0x1"]
    assert [c.title for c in scan_lines(lines)] == ["WARNING in real"]


def test_untimestamped_line_among_kernel_lines_is_user_space():
    lines = ["[    1.000000] Run /init as init process", "kernel BUG at mm/ksm.c:1!"]
    assert scan_lines(lines) == []
    assert [c.title for c in scan_lines(["kernel BUG at mm/ksm.c:1!"])] == ["kernel BUG at mm/ksm.c:1"]


# --- parsing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("raw,text,kernel,usec", [
    ("[   12.345678] hello", "hello", True, 12_345_678),
    ("[   12.345678][  T123] hello", "hello", True, 12_345_678),
    ("[   12.345678] [Firmware Bug]: hello", "[Firmware Bug]: hello", True, 12_345_678),
    ("<4>[   12.345678] hello", "hello", True, 12_345_678),
    ("<12>hello", "hello", False, None),
    ("hello\r", "hello", None, None),
    ("\x1b[1;31m[    1.000000] red\x1b[0m\x00", "red", True, 1_000_000),
    ("kern  :warn  : [    1.000000] hello", "hello", True, 1_000_000),
    ("user  :warn  : [    1.000000] hello", "hello", False, 1_000_000),
    ("Nov 26 02:13:01 host kernel: hello", "hello", True, None),
    ("Nov 26 02:13:01 host prog[12]: hello", "hello", False, None),
    ("2025-11-26T02:14:00+0000 host kernel: [    2.000000] hello", "hello", True, 2_000_000),
    ("6,123,456789,-;hello", "hello", True, 456_789),
    ("14,124,456790,-,caller=T1;hello", "hello", False, 456_790),
])
def test_parse_line(raw, text, kernel, usec):
    (line,) = parse_line(raw, 7)
    assert (line.text, line.kernel, line.usec, line.lineno) == (text, kernel, usec, 7)


def test_parse_kmsg_record_with_newline_and_fields():
    lines = parse_line("4,5,6,-;first\\x0asecond \\x5c end")
    assert [(l.text, l.seq) for l in lines] == [("first", 5), ("second \\ end", 5)]
    assert parse_line(" SUBSYSTEM=acpi") == []


# --- ksm-harness scan-log -------------------------------------------------------------------------

def test_scanlog_json(capsys):
    assert scanlog.main([str(LOGS / "list-corruption.log"), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert [(c["kind"], c["title"], c["line"]) for c in out["crashes"]] == EXPECTED["list-corruption.log"]
    assert out["crashes"][0]["lines"][0].endswith("[ cut here ]------------")
    assert not out["crashes"][0]["corrupted"]


def test_scanlog_marks_corrupted_reports(capsys):
    assert scanlog.main([str(LOGS / "cut-at-end.log")]) == 1
    assert "KASAN: use-after-free Read in get_ksm_page [KASAN, corrupted]" in capsys.readouterr().out


def test_scanlog_human(capsys):
    assert scanlog.main([str(LOGS / "ksm-warning.log")]) == 1
    out = capsys.readouterr().out
    assert f"{LOGS / 'ksm-warning.log'}:1: WARNING in remove_stable_node [WARNING]" in out
    assert out.rstrip().endswith(f"1 kernel report found in {LOGS / 'ksm-warning.log'}")


def test_scanlog_clean_log(capsys):
    assert scanlog.main([str(LOGS / "lookalikes.log")]) == 0
    assert "no kernel report found" in capsys.readouterr().out
    assert scanlog.main([str(LOGS / "lookalikes.log"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"crashes": []}


def test_scanlog_unreadable(tmp_path, capsys):
    missing = tmp_path / "nope.log"
    assert scanlog.main([str(missing)]) == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "\n" not in err
    assert scanlog.main([str(tmp_path)]) == 2  # a directory


def test_scanlog_usage_error():
    assert scanlog.main([]) == 2
