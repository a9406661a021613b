"""Find kernel reports (oopses, WARNINGs, sanitizer reports, lockups...) in kernel log text.

The ideas follow syzkaller's pkg/report/linux.go: a report starts at a header line the
kernel prints in a fixed form ("WARNING: CPU: 0 PID: 1 at mm/ksm.c:123 fn+0x1/0x2",
"BUG: KASAN: use-after-free in fn+0x..", "kernel BUG at mm/ksm.c:123!"), and its title
names the first meaningful function of its stack in syzbot style ("WARNING in fn"),
skipping the frames of the reporting machinery (dump_stack, __warn, kasan_report,
panic, the exception entry glue, __list_del_entry_valid...).  The report kinds are data:
the _RULES table (one _Rule per kind, with the kernel function that prints it named),
ending in catch-alls for unknown "BUG:", "WARNING:" and "INFO:" headers.

Input may be `dmesg` output (with or without "[   12.345678] " time stamps), a
/dev/kmsg dump ("4,123,456,-;text"), `dmesg -r` / `dmesg -x` output, a syslog or
journal file ("... kernel: text"), or a serial console log (CR line ends, control
characters and user-space output mixed in).  Lines that are known not to come from
the kernel never start or extend a report: records user space wrote to /dev/kmsg
(facility != kern, see devkmsg_write() in kernel/printk/printk.c), syslog lines of
other programs, and lines without a time stamp in a log whose kernel lines carry one
(user-space output on a serial console).

A report ends at the kernel's end marker ("---[ end trace ... ]---", printed by
oops_exit()/__warn(); "---[ end Kernel panic ... ]---" from panic()), at the closing
"=====" banner of a sanitizer report, at the next report header, at the first
unrelated line after its last stack trace, after a 2 s gap in time stamps, or after
MAX_REPORT_LINES lines; one that ends before its stack or banner is "corrupted".
Lines with a CONFIG_PRINTK_CALLER id ("[  T123]") only go on reports of the same caller.

Use scan_text()/scan_lines() for a whole log, or a Scanner to feed a log as it grows
(harness.kmsg.KmsgWatcher does).
"""
import re
from collections import deque
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from .results import Crash

MAX_REPORT_LINES = 300  # a report longer than this is cut (lockdep reports reach ~150)
MAX_GAP_USEC = 2_000_000  # a line logged this long after the report's last line is unrelated
NO_STACK_LINES = 60  # a report with no stack frame this far after its header is over

# Crash.kind values.
BUG, WARNING, GPF = "BUG", "WARNING", "GPF"
KASAN, KFENCE, KMSAN, KCSAN, UBSAN = "KASAN", "KFENCE", "KMSAN", "KCSAN", "UBSAN"
LIST, LOCKDEP, LEAK, HUNG, STALL, LOCKUP, PANIC = "list", "lockdep", "leak", "hung", "stall", "lockup", "panic"
KINDS = (BUG, WARNING, GPF, KASAN, KFENCE, KMSAN, KCSAN, UBSAN, LIST, LOCKDEP, LEAK, HUNG, STALL, LOCKUP, PANIC)


@dataclass(frozen=True)
class LogLine:
    """One line of a kernel log, with the prefixes of its log format taken off."""

    raw: str  # the line as logged (line end and control characters removed)
    text: str  # the message alone: no time stamp, kmsg header or syslog prefix
    lineno: int  # 1-based line (or record index) in the log it came from
    kernel: Optional[bool] = None  # True: printed by the kernel; False: user space; None: unknown
    usec: Optional[int] = None  # printk time stamp in microseconds, when logged
    seq: Optional[int] = None  # /dev/kmsg sequence number, when known
    caller: Optional[str] = None  # "T123" (task) or "C1" (CPU, in interrupt): CONFIG_PRINTK_CALLER


# --- log formats ---------------------------------------------------------------------------

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]")
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# /dev/kmsg record: "PRI,SEQ,USEC,FLAGS[,KEY=VALUE...];text" (Documentation/ABI/testing/dev-kmsg)
_KMSG = re.compile(r"(\d{1,4}),(\d+),(\d+),([^,;]*)(?:,[^;]*?(?:caller=([TC]\d+))?[^;]*)?;(.*)")
_KMSG_FIELD = re.compile(r" [A-Z][A-Z0-9_]*=")  # " SUBSYSTEM=pci" lines after a kmsg record
_KMSG_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")
# syslog / journal: "Nov 26 02:13:01 host kernel: ..." or ISO 8601 time (journalctl -o short-iso)
_SYSLOG = re.compile(
    r"(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d"
    r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?)"
    r" \S+ ([^\s:\[]+)(?:\[\d+\])?: "
)
# dmesg -x: "kern  :warn  : [   1.2] text"
_DMESG_X = re.compile(
    r"(kern|user|mail|daemon|auth|syslog|lpr|news|uucp|cron|authpriv|ftp|res0|res1|res2|res3"
    r"|local[0-7]) *:(emerg|alert|crit|err|warn|notice|info|debug) *: "
)
_PRI = re.compile(r"<(\d{1,4})>")  # dmesg -r, or a raw console line
_TIME = re.compile(r"\[\s*(\d+)\.(\d{1,9})\]\s?")
# CONFIG_PRINTK_CALLER: "[   12.345678][  T123] text" (info_print_prefix() in kernel/printk/printk.c)
_CALLER = re.compile(r"\[\s*([TC]\d+)\]\s?")


def _unescape_kmsg(text):
    """Undo /dev/kmsg's \\xNN escapes (msg_add_ext_text() escapes bytes < 0x20 or >= 0x7f)."""
    if "\\x" not in text:
        return text
    data = _KMSG_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)
    return data.encode("latin-1", "replace").decode("utf-8", "replace")


def parse_line(raw, lineno=0) -> List[LogLine]:
    """Split one logged line into LogLines (a /dev/kmsg record may hold several lines).

    Returns [] for the " KEY=value" lines that follow a /dev/kmsg record.
    """
    raw = raw.rstrip("\r\n")
    if not raw.isprintable():  # escape sequences, NULs, CRs of a serial console (a tab, too)
        raw = _CONTROL.sub("", _ANSI.sub("", raw))
    text, kernel, usec, seq, caller = raw, None, None, None, None
    if not raw.startswith("["):  # "[   12.345678] ": plain dmesg or console, the common case
        m = _KMSG.match(text)
        if m:
            facility = int(m.group(1)) >> 3
            kernel, seq, usec = facility == 0, int(m.group(2)), int(m.group(3))
            parts = _unescape_kmsg(m.group(6)).split("\n")
            return [LogLine(raw, part, lineno, kernel, usec, seq, m.group(5)) for part in parts]
        if _KMSG_FIELD.match(text) and "=" in text and " " not in text[1:]:
            return []
        m = _SYSLOG.match(text)
        if m:
            kernel, text = m.group(1) == "kernel", text[m.end():]
        m = _DMESG_X.match(text)
        if m:
            kernel, text = m.group(1) == "kern", text[m.end():]
        m = _PRI.match(text)
        if m:
            kernel, text = int(m.group(1)) >> 3 == 0 if kernel is None else kernel, text[m.end():]
    m = _TIME.match(text)
    if m:
        usec = int(m.group(1)) * 1_000_000 + int(m.group(2).ljust(6, "0")[:6])
        kernel = True if kernel is None else kernel
        text = text[m.end():]
        if text.startswith("["):
            m = _CALLER.match(text)
            if m:
                caller, text = m.group(1), text[m.end():]
    return [LogLine(raw, text.rstrip(), lineno, kernel, usec, seq, caller)]


# --- stack frames ----------------------------------------------------------------------------

_FN = r"([A-Za-z_$][\w.$]*)"
_HFN = r"(?P<fn>[A-Za-z_$][\w.$]*)"  # the function named in a header line
_OFF = r"\+0x[0-9a-f]+/0x[0-9a-f]+"
# " fn+0x1/0x2 [mod]", " ? fn+0x1/0x2", " [<ffffffff81000000>] ? fn+0x1/0x2", and the
# symbolized forms " fn+0x1/0x2 mm/ksm.c:12", " fn mm/ksm.c:12 [inline]"
_FRAME = re.compile(
    r"\s*(?:\[<[0-9a-f]+>\]\s*)?(\?\s+)?(?:\[<[0-9a-f]+>\]\s*)?" + _FN
    + r"(?:" + _OFF + r"(?: \[[\w]+\])?(?: \S+:\d+)?(?: \[inline\])?| (?:\S+:\d+|\?\?:\?)(?: \[inline\])?)\s*$"
)
# arm (arch/arm/kernel/traps.c dump_backtrace_entry()): "[<c0a2f6a0>] (rb_erase) from [<c02c4a10>] (caller+0x90/0x140)"
_ARM_FRAME = re.compile(r"\s*\[<[0-9a-f]+>\] \(" + _FN + r"(?:" + _OFF + r")?\) from \[<[0-9a-f]+>\] \(")
# powerpc (arch/powerpc/kernel/process.c show_stack()): "[c0000000fe3f3b70] [c000000000123456] fn+0x12/0x40"
_PPC_FRAME = re.compile(r"\s*\[[0-9a-f]+\] \[[0-9a-f]+\] " + _FN + _OFF + r"(?: \(unreliable\))?\s*$")
_RAW_FRAME = re.compile(r"\s*(?:\[<[0-9a-f]+>\]\s*)?(?:\?\s+)?0x[0-9a-f]+\s*$")  # an address with no symbol
_STACK_MARK = re.compile(r"\s*</?(?:IRQ|TASK|NMI|SOFTIRQ|EOI)>\s*$")
# "backtrace:" / "backtrace (crc 1a2b):" is kmemleak's (print_unreferenced() in mm/kmemleak.c)
_TRACE_START = re.compile(
    r"\s*(?:Call Trace|Call trace|Backtrace|Exception stack\(.*\)|backtrace(?: \(crc [0-9a-f]+\))?)"
    r":?\s*$")
# The function the CPU was in: RIP (x86-64, kernel CS only), EIP/IP (i386), pc (arm64),
# PC is at (arm), NIP (powerpc), epc (riscv), Krnl PSW (s390).
_RIP = re.compile(
    r"\s*(?:RIP: 0010:(?:\[<[0-9a-f]+>\]\s+\[<[0-9a-f]+>\] )?|EIP: (?:0060:\[<[0-9a-f]+>\] )?|EIP is at |"
    r"IP: \[<[0-9a-f]+>\] |pc : |PC is at |NIP \[[0-9a-f]+\] |epc : |Krnl PSW : [0-9a-f]+ [0-9a-f]+ \()"
    + _FN + r"\+0x"
)
_LOCKDEP_AT = re.compile(r"at: (?:\[<[0-9a-f]+>\] )?" + _FN + r"\+0x")
_SUFFIX = re.compile(r"(?:\.(?:isra|constprop|part|cold|llvm|lto_priv|localalias|\d+)(?:\.\d+)?)+$")


def _frame(text) -> Optional[Tuple[bool, str]]:
    """(unreliable, function) of a stack frame line, None for any other line."""
    m = _FRAME.match(text)
    if m:
        return bool(m.group(1)), m.group(2)
    m = _ARM_FRAME.match(text) or _PPC_FRAME.match(text)
    return (text.endswith(" (unreliable)"), m.group(1)) if m else None


def _clean_fn(name):
    """topology_sane.isra.0 -> topology_sane (compiler clones keep their source name)."""
    return _SUFFIX.sub("", name)


def _skips(*patterns):
    return re.compile("|".join(f"(?:{p})" for p in patterns))


# Frames that belong to the reporting machinery, never to the bug.
_SKIP = _skips(
    # stack dumping, WARN/BUG/panic machinery (kernel/panic.c, lib/bug.c, arch/x86/kernel/traps.c)
    r"dump_stack\w*", r"show_stack\w*", r"show_regs\w*", r"__show_regs", r"show_trace_log_lvl",
    r"_?printk\w*", r"vprintk\w*", r"__warn\w*", r"warn_slowpath\w*", r"report_bug\w*", r"handle_bug",
    r"fixup_bug", r"do_error_trap", r"do_trap\w*", r"do_invalid_op", r"panic\w*", r"nmi_panic",
    r"check_panic_on_warn", r"die\w*", r"__die\w*", r"oops_\w+", r"__bug", r"bug_handler",
    r"check_data_corruption", r"ubsan_epilogue", r"bad_page", r"dump_page", r"__dump_page",
    r"print_bad_pte", r"_*refcount_\w+", r"debug_check_no_locks_\w+", r"debug_print_object", r"debug_object_\w+",
    r"_*fortify_\w+", r"usercopy_\w+", r"_*check_heap_object", r"kobject_\w+", r"__stack_chk_fail",
    # exception and interrupt entry glue
    r"asm_\w+", r"exc_\w+", r"entry_\w+", r"ret_from_\w+", r"error_entry", r"sysvec_\w+",
    r"__sysvec_\w+", r"el[01]h?_\w+", r"do_mem_abort", r"__do_kernel_fault", r"do_page_fault",
    r"__do_page_fault", r"do_translation_fault", r"die_kernel_fault", r"do_kern_addr_fault",
    r"do_user_addr_fault", r"handle_page_fault", r"no_context", r"__bad_area\w*", r"bad_area\w*",
    r"kernelmode_fixup_or_oops", r"page_fault_oops", r"fixup_exception", r"do_general_protection",
    r"general_protection", r"page_fault",
    # sanitizers
    r"_*kasan_\w+", r"__asan_\w+", r"asan_\w+", r"print_report", r"print_address_description\w*",
    r"describe_object\w*", r"start_report", r"end_report", r"check_memory_region\w*",
    r"check_region_inline", r"_*kfence_\w+", r"_*kmsan_\w+", r"__msan_\w+", r"_*ubsan_\w+",
    r"__sanitizer_\w+", r"instrument_\w+", r"__tsan_\w+", r"kcsan_\w+",
    # list debugging (lib/list_debug.c)
    r"__list_\w+_valid\w*", r"__list_add\w*", r"__list_del\w*", r"list_add\w*", r"list_del\w*",
    r"hlist_del\w*", r"__hlist_del",
    # memory and string helpers
    r"_*mem(?:cpy|move|set|cmp|chr)\w*", r"str(?:n|l|s)?(?:len|cmp|cpy|cat|chr|dup)\w*",
    r"copy_page\w*", r"_*copy_(?:to|from)_user\w*", r"copy_user\w*", r"rep_movs_alternative",
    r"_*check_object_size",
    # slab (mm/slub.c debugging included)
    r"kfree\w*", r"kvfree\w*", r"_*kmem_cache_\w+", r"_*slab_\w+", r"___slab_alloc",
    r"_*kmalloc(?:_(?:node|trace|large|order|track_caller|array|cache|buckets))*(?:_noprof)?",
    r"kzalloc(?:_node)?(?:_noprof)?", r"kcalloc(?:_noprof)?", r"_*krealloc(?:_noprof)?",
    r"_*kvmalloc(?:_node)?(?:_noprof)?", r"kvzalloc(?:_node)?", r"kmemdup(?:_noprof)?", r"kstrn?dup",
    r"free_debug_processing", r"alloc_debug_processing", r"object_err", r"print_trailer",
    r"check_object", r"check_bytes_and_report", r"free_consistency_checks", r"on_freelist",
    # locking and lockdep
    r"_*lock_acquire\w*", r"_*lock_release", r"lock_is_held\w*", r"lockdep_\w+", r"print_\w+_bug",
    r"check_noncircular", r"check_prevs?_add", r"validate_chain", r"mark_lock\w*", r"mark_usage",
    r"valid_state", r"register_lock_class", r"look_up_lock_class", r"_*raw_\w+", r"do_raw_\w+",
    r"spin_\w+", r"_*queued_\w+",
    r"native_queued_\w+", r"__pv_queued_\w+", r"rwlock_bug", r"_*mutex_\w+", r"_*down\w*",
    r"_*up_(?:read|write)\w*", r"up", r"_*rwsem_\w+", r"_*percpu_(?:down|up)_\w+",
    # sleeping-in-atomic checks (kernel/sched/core.c)
    r"_*might_\w+", r"__cond_resched\w*", r"_cond_resched", r"__schedule_bug",
    r"preempt_count_\w+", r"check_preemption_disabled", r"debug_smp_processor_id",
    r"__this_cpu_preempt_check",
)
# Where kmemleak's allocation backtrace starts (mm/kmemleak.c records it in create_object()):
# the first frame after these allocated the leaked object.
_SKIP_ALLOC = _skips(
    r"_*kmemleak_\w+", r"create_object\w*", r"_*alloc_pages\w*", r"alloc_pages\w*", r"_*get_free_pages",
    r"_*vmalloc\w*", r"_*vzalloc\w*", r"__vmalloc_node\w*", r"alloc_slab_page", r"new_slab", r"allocate_slab",
    r"pcpu_\w+", r"_*alloc_percpu\w*", r"kmalloc_reserve", r"__alloc_skb", r"alloc_skb\w*", r"kvmemdup\w*",
    r"memdup_user\w*", r"stack_depot_save\w*", r"set_track\w*",
)
# Where a hung task sleeps (kernel/hung_task.c prints the stack of the sleeping task).
_SKIP_SLEEP = _skips(
    r"_*schedule\w*", r"io_schedule\w*", r"context_switch", r"__switch_to\w*", r"_*wait_for_\w+",
    r"_*wait_on_\w+", r"out_of_line_wait_on_\w+", r"bit_wait\w*", r"folio_wait\w*",
    r"_*folio_lock\w*", r"_*lock_page\w*", r"\w+_slowpath", r"percpu_rwsem_wait",
    r"rcuwait_wait_event", r"wait_woken", r"prepare_to_wait\w*", r"finish_wait",
)
# Interrupt-time frames of stall and lockup reports: the interrupted function is the culprit.
_SKIP_IRQ = _skips(
    r"\w*apic_timer_interrupt", r"\w*hrtimer\w*", r"tick_\w+", r"update_process_times",
    r"rcu_\w+", r"nmi_\w+", r"arch_trigger_\w+", r"trigger_\w+_backtrace", r"watchdog\w*",
    r"irq_exit\w*", r"__irq_exit_rcu", r"handle_softirqs", r"__do_softirq", r"do_softirq\w*",
    r"print_cpu_stall\w*", r"check_cpu_stall", r"show_regs_if_on_stack",
)
# Freeing or allocating the bad page (mm/page_alloc.c) is not where the bug is.
_SKIP_PAGE = _skips(
    r"free_page_is_bad\w*", r"check_free_page\w*", r"check_new_page\w*", r"free_pages_prepare",
    r"free_pcp_prepare", r"free_unref_page\w*", r"free_unref_folios", r"_*free_pages?\w*",
    r"_*free_one_page", r"free_the_page", r"_*folio_put\w*", r"folios_put\w*", r"_*put_page\w*",
    r"release_pages", r"free_pages_and_swap_cache", r"free_swap_cache", r"destroy_large_folio",
    r"free_compound_page", r"__put_single_page", r"tlb_\w+", r"prep_new_page",
    r"get_page_from_freelist", r"_*alloc_pages\w*", r"folio_alloc\w*",
)


# --- report kinds ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rule:
    """One kind of report, as data: what its header looks like, how it is titled, where the
    guilty function is, which frames are machinery, how the report ends."""

    kind: Optional[str]  # Crash.kind; None: a look-alike header that starts no report
    pattern: "re.Pattern[str]"  # matched at the start of the message text
    title: str  # str.format() template over the match's named groups; "{fn}" is the function
    fns: Tuple[str, ...] = ("trace",)  # where the function comes from, in order: header/rip/lockdep/trace
    skip: Optional["re.Pattern[str]"] = None  # frames to skip beyond _SKIP
    banner_end: bool = False  # the report ends with a "=====" line (sanitizers)
    armed_by: Optional[str] = None  # the report ends after the stack that follows this line
    dies: bool = False  # an "Oops: ... [#1]"-style die() line follows inside the report
    die_line: bool = False  # this header is itself such a die() line
    single: bool = False  # one-line report (more of the same header join it), unless it absorbs a header
    consequence: bool = False  # a panic that only follows another report
    absorbs: Optional["re.Pattern[str]"] = None  # later headers that join it before its stack
    needs_stack: bool = False  # no report unless a stack frame follows (catch-alls)
    catch_all: bool = False  # inside an open report's header part it is a line of that report


def _rule(kind, pattern, title, absorbs=None, **kw):
    return _Rule(kind, re.compile(pattern), title, absorbs=re.compile(absorbs) if absorbs else None, **kw)


_DIE = r": [0-9a-f]{4,} \[#\d+\]"
_WARN_OR_BUG = r"WARNING: |[Kk]ernel BUG at |(?:Oops: )?invalid opcode|Internal error: Oops - BUG"
_L = r"(?:WARNING|INFO|BUG): "  # lockdep's header prefixes; 3.x-4.x print "[ INFO: ... ]", see _match_header
# kernel/locking/lockdep.c (print_circular_bug_header(), print_bad_irq_dependency(),
# print_deadlock_bug(), print_usage_bug(), print_irq_inversion_bug(), print_unlock_imbalance_bug(),
# print_freed_lock_bug(), print_held_locks_bug(), lockdep_sys_exit(), print_lock_nested_lock_not_held(),
# print_lock_invalid_wait_context(), lockdep_rcu_suspicious(), print_lock_contention_bug(),
# register_lock_class() "trying to register non-static key"): header, title, function sources.
_LOCKDEP_TITLES = (
    (r"possible circular locking dependency detected", "possible deadlock", ("lockdep", "trace")),
    (r"possible recursive locking detected", "possible deadlock", ("lockdep", "trace")),
    (r"possible irq lock inversion dependency detected", "possible deadlock", ("lockdep", "trace")),
    (r"(?:HARD|SOFT)IRQ-(?:READ-)?safe -> (?:HARD|SOFT)IRQ-(?:READ-)?unsafe lock order detected",
     "possible deadlock", ("lockdep", "trace")),
    (r"inconsistent lock state", "inconsistent lock state", ("lockdep", "trace")),
    (r"bad unlock balance detected", "WARNING: bad unlock balance", ("lockdep", "trace")),
    (r"bad contention detected", "WARNING: bad contention", ("lockdep", "trace")),
    (r"held lock freed", "WARNING: held lock freed", ("trace",)),
    (r"lock held when returning to user space", "WARNING: lock held when returning to user space",
     ("lockdep", "trace")),
    (r"(?:\S+/\d+ )?still has locks held", "WARNING: still has locks held", ("trace", "lockdep")),
    (r"[Nn]ested lock was not taken", "WARNING: nested lock was not taken", ("lockdep", "trace")),
    (r"suspicious RCU usage", "WARNING: suspicious RCU usage", ("trace",)),
    (r"Invalid wait context", "BUG: Invalid wait context", ("lockdep", "trace")),
)
# WARN()s whose file names a subsystem's checker: the title names the checker (syzkaller's
# pkg/report/linux.go does the same), the function is the checker's caller.
_WARN_SOURCES = (
    (re.compile(r"lib/refcount\.c"), "WARNING: refcount bug in {fn}"),  # refcount_warn_saturate()
    (re.compile(r"lib/kobject\.c"), "WARNING: kobject bug in {fn}"),
    (re.compile(r"mm/usercopy\.c"), "WARNING: bad usercopy in {fn}"),  # usercopy_warn()
    (re.compile(r"lib/debugobjects\.c"), "WARNING: ODEBUG bug in {fn}"),  # debug_print_object()
    (re.compile(r"kernel/locking/lockdep\.c"), "WARNING: locking bug in {fn}"),
    (re.compile(r"fs/proc/generic\.c"), "WARNING: proc registration bug in {fn}"),
)

_RULES = (
    # Look-alikes that start with a header word: lockdep's and the NMI handler's notes, the SLUB
    # detail lines of mm/slub.c print_trailer()/print_tracking() when their report was not seen
    _rule(None, r"INFO: (?:lockdep is turned off|NMI handler (?:\(|took too long)|(?:Allocated|Freed) in "
          r"|Slab 0x|Object 0x|0x[0-9a-f]+-0x)", ""),
    # Sanitizers: KASAN (mm/kasan/report.c), KFENCE (mm/kfence/report.c), KMSAN, KCSAN
    # (kernel/kcsan/report.c print_report(): "BUG: KCSAN: data-race in f1 / f2", the two sorted)
    _rule(KASAN, r"BUG: KASAN: (?P<what>[\w-]+(?: or [\w-]+)?) in " + _HFN,
          "KASAN: {what}{access} in {fn}", fns=("header", "trace"), banner_end=True),
    _rule(KFENCE, r"BUG: KFENCE: (?P<what>[\w -]+?) in " + _HFN, "KFENCE: {what} in {fn}",
          fns=("header", "trace"), banner_end=True),
    _rule(KMSAN, r"BUG: KMSAN: (?P<what>[\w-]+) in " + _HFN, "KMSAN: {what} in {fn}",
          fns=("header", "trace"), banner_end=True),
    _rule(KCSAN, r"BUG: KCSAN: (?P<what>[\w:\- ]+?) in " + _HFN + r"(?:\+0x\S+)?(?P<pair> / [\w.$]+)?",
          "KCSAN: {what} in {fn}{pair}", fns=("header", "trace"), banner_end=True),
    # lib/ubsan.c ubsan_prologue()
    _rule(UBSAN, r"UBSAN: (?P<what>[\w -]+?) in (?P<loc>\S+)", "UBSAN: {what} in {fn}", banner_end=True),
    # lockdep: "WARNING: ..." headers, so before the WARN rule
    *(_rule(LOCKDEP, _L + pat, title + " in {fn}", fns=fns, armed_by="stack backtrace:")
      for pat, title, fns in _LOCKDEP_TITLES),
    _rule(LOCKDEP, r"INFO: trying to register non-static key", "INFO: trying to register non-static key in {fn}"),
    # CHECK_DATA_CORRUPTION() messages (include/linux/bug.h): the WARN or BUG follows; before 5.x
    # fs/super.c printed the first one alone ("Self-destruct in 5 seconds.  Have a nice day...")
    _rule(BUG, r"VFS: Busy inodes after unmount", "VFS: Busy inodes after unmount", fns=(), absorbs=_WARN_OR_BUG,
          single=True),
    _rule(BUG, r"VFS: Close: file count is 0", "VFS: Close: file count is 0", fns=(), absorbs=_WARN_OR_BUG,
          single=True),
    # mm/usercopy.c usercopy_abort(): the message, then "kernel BUG at mm/usercopy.c"
    _rule(BUG, r"usercopy: Kernel memory (?:exposure|overwrite) attempt detected", "BUG: bad usercopy in {fn}",
          fns=("rip", "trace"), absorbs=_WARN_OR_BUG, dies=True),
    # WARN(): "WARNING: CPU: 0 PID: 1 at mm/ksm.c:1 fn+0x1/0x2" (3.10+), "WARNING: at mm/ksm.c:1
    # fn()" (older), "WARNING: mm/ksm.c:1 at fn+0x1/0x2, CPU#0: comm/1" (6.18+)
    _rule(WARNING, r"WARNING: (?:CPU: \d+ PID: \d+ at (?P<loc>\S+)(?: " + _HFN + r"(?:\+0x|\())?"
          r"|at (?P<loc2>\S+) (?P<fn2>[\w.$]+)(?:\+0x|\()|(?P<loc3>\S+:\d+) at (?P<fn3>[\w.$]+)\+0x)",
          "WARNING in {fn}", fns=("header", "rip", "trace")),
    # lib/list_debug.c (a WARN or a BUG follows, with CONFIG_BUG_ON_DATA_CORRUPTION): syzbot
    # titles every kind "BUG: corrupted list in FUNC"
    _rule(LIST, r"(?:list_add|list_del|hlist_add|hlist_del)(?: corruption| double add)\b",
          "BUG: corrupted list in {fn}", fns=("rip", "trace"), dies=True),
    # BUG(): "kernel BUG at mm/ksm.c:1234!" then "invalid opcode: 0000 [#1]" (x86)
    _rule(BUG, r"[Kk]ernel BUG at (?P<loc>[^!\s]+)", "kernel BUG in {fn}", fns=("rip", "trace"), dies=True),
    # page faults: arch/x86/mm/fault.c show_fault_oops() (4.17+ and before),
    # arch/arm64/mm/fault.c die_kernel_fault(), arch/arm/mm/fault.c __do_kernel_fault()
    # arch/powerpc/mm/fault.c bad_page_fault(), arch/riscv/mm/fault.c, arch/s390/mm/fault.c
    _rule(BUG, r"BUG: [Kk]ernel NULL pointer dereference|BUG: unable to handle kernel NULL pointer dereference"
          r"|Unable to handle kernel NULL pointer dereference",
          "BUG: unable to handle kernel NULL pointer dereference in {fn}", fns=("rip", "trace"), dies=True),
    _rule(BUG, r"BUG: unable to handle (?:page fault|kernel paging request)|Unable to handle kernel paging request"
          r"|BUG: Unable to handle kernel data access",
          "BUG: unable to handle kernel paging request in {fn}", fns=("rip", "trace"), dies=True),
    _rule(BUG, r"(?:BUG: )?Unable to handle kernel (?P<what>access to user memory|execute from non-executable memory"
          r"|write to read-only memory|\w[\w ]*?)(?: outside uaccess routines)?"
          r"(?: at virtual address| in virtual \w+ address space| at 0x|$| \()",
          "BUG: unable to handle kernel {what} in {fn}", fns=("rip", "trace"), dies=True),
    # arch/arm/mm/fault.c do_DataAbort() (a user-mode fault prints it too, without a stack),
    # arch/arm/mm/alignment.c do_alignment()
    _rule(BUG, r"Unhandled fault: (?P<what>.+?) \(0x[0-9a-f]+\) at", "Unhandled fault: {what} in {fn}",
          fns=("rip", "trace"), dies=True, needs_stack=True),
    _rule(BUG, r"Alignment trap: not handling", "Alignment trap in {fn}", fns=("rip", "trace"),
          absorbs=r"Unhandled fault|Internal error", dies=True),
    # arch/arm64/kernel/traps.c panic_bad_stack(), then "Kernel panic - not syncing: kernel stack overflow"
    _rule(BUG, r"Insufficient stack space to handle exception", "kernel stack overflow in {fn}",
          fns=("rip", "trace")),
    # arch/x86/kernel/traps.c handle_stack_overflow(), then die("stack guard page")
    _rule(BUG, r"BUG: \w+ stack guard page was hit", "BUG: stack guard page was hit in {fn}",
          fns=("rip", "trace"), dies=True),
    # mm/page_alloc.c bad_page(), mm/memory.c print_bad_pte(), kernel/fork.c check_mm()
    _rule(BUG, r"BUG: (?P<what>Bad page (?:state|map|cache)) in process", "BUG: {what} in {fn}",
          skip=_SKIP_PAGE),
    _rule(BUG, r"BUG: Bad rss-counter state", "BUG: Bad rss-counter state", fns=(), single=True),
    # kernel/sched/core.c __might_resched(), __schedule_bug(); lib/smp_processor_id.c
    _rule(BUG, r"BUG: sleeping function called from invalid context",
          "BUG: sleeping function called from invalid context in {fn}"),
    _rule(BUG, r"BUG: scheduling while atomic", "BUG: scheduling while atomic in {fn}", skip=_SKIP_SLEEP),
    _rule(BUG, r"BUG: using (?P<what>\w+\(\)) in preemptible", "BUG: using {what} in preemptible code in {fn}"),
    # kernel/locking/spinlock_debug.c
    _rule(BUG, r"BUG: (?P<what>(?:spinlock|rwlock) (?:bad magic|recursion|lockup suspected|already unlocked"
          r"|wrong owner|wrong CPU|cpu recursion))", "BUG: {what} in {fn}"),
    # mm/kmemleak.c print_unreferenced() (syzkaller writes "BUG: memory leak" above it)
    _rule(LEAK, r"unreferenced object 0x[0-9a-f]+ \(size \d+\):|BUG: memory leak", "memory leak in {fn}",
          skip=_SKIP_ALLOC),
    # kernel/watchdog.c, kernel/watchdog_hld.c
    _rule(LOCKUP, r"(?:(?:NMI )?watchdog: )?BUG: soft lockup", "BUG: soft lockup in {fn}",
          fns=("rip", "trace"), skip=_SKIP_IRQ),
    _rule(LOCKUP, r"(?:(?:NMI )?watchdog: )?Watchdog detected hard LOCKUP", "hard LOCKUP in {fn}",
          fns=("rip", "trace"), skip=_SKIP_IRQ),
    # kernel/hung_task.c, kernel/rcu/tree_stall.h
    _rule(HUNG, r"INFO: task .* blocked for more than \d+ seconds", "INFO: task hung in {fn}", skip=_SKIP_SLEEP),
    _rule(STALL, r"(?:rcu: )?INFO: rcu_\w+ (?:self-)?detected (?:expedited )?stalls? on",
          "INFO: rcu detected stall in {fn}", fns=("rip", "trace"), skip=_SKIP_IRQ),
    # net/core/dev.c netdev_wait_allrefs_any(), repeated every 10 s
    _rule(BUG, r"unregister_netdevice: waiting for \S+ to become free",
          "unregister_netdevice: waiting for DEV to become free", fns=(), single=True),
    # die() lines (arch/x86/kernel/dumpstack.c __die_header(), arch/arm*/kernel/traps.c __die()):
    # headers of their own, or part of the report above ("kernel BUG at" is followed by
    # "invalid opcode: 0000 [#1]")
    _rule(GPF, r"(?:Oops: )?general protection fault(?:, [^:]*)?" + _DIE, "general protection fault in {fn}",
          fns=("rip", "trace"), die_line=True),
    _rule(BUG, r"PANIC: double fault", "PANIC: double fault in {fn}", fns=("rip", "trace"), dies=True),
    _rule(BUG, r"(?:Oops: )?double fault" + _DIE, "PANIC: double fault in {fn}", fns=("rip", "trace"),
          die_line=True),
    _rule(BUG, r"(?:Oops: )?stack segment" + _DIE, "stack segment fault in {fn}", fns=("rip", "trace"),
          die_line=True),
    _rule(BUG, r"(?:Oops: )?(?P<what>invalid opcode|divide error|stack guard page|bounds|alignment check"
          r"|invalid TSS|segment not present|int3)" + _DIE, "{what} in {fn}", fns=("rip", "trace"), die_line=True),
    _rule(BUG, r"(?:Internal error: )?Oops(?: - BUG)?: (?:[0-9a-f]+ )?\[#\d+\]|Internal error: (?:Oops[^:]*)?: "
          r"|Oops(?:: [^\[]*)? ?\[#\d+\]",  # powerpc "Oops: Kernel access of bad area, sig: 11 [#1]",
          # riscv "Oops [#1]", s390 "Oops: 0004 ilc:3 [#1]"
          "Oops in {fn}", fns=("rip", "trace"), die_line=True),
    _rule(BUG, r"Internal error: (?P<what>[a-z][\w -]*): [0-9a-f]+ \[#\d+\]", "{what} in {fn}",
          fns=("rip", "trace"), die_line=True),
    # kernel/panic.c: __stack_chk_fail() panics; a panic that only follows another report joins it
    _rule(PANIC, r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted in: " + _HFN,
          "kernel panic: stack is corrupted in {fn}", fns=("header", "trace")),
    _rule(PANIC, r"Kernel panic - not syncing: (?:Fatal exception|panic_on_warn set|\w+: panic_on_warn set"
          r"|softlockup: hung tasks|hung_task: blocked tasks|Hard LOCKUP|Watchdog detected hard LOCKUP"
          r"|RCU Stall|Oops - BUG|\w+\.fault=panic|Fatal machine check|Fatal hardware error"
          r"|kernel stack overflow|\w+ stack guard hit)",
          "kernel panic: {reason}", fns=(), consequence=True),
    _rule(PANIC, r"Kernel panic - not syncing: ", "kernel panic: {reason}", fns=()),
    # SLUB debugging (mm/slub.c slab_bug()): "BUG kmalloc-64 (Not tainted): Poison overwritten"
    _rule(BUG, r"BUG (?P<cache>[\w.:-]+)(?: \((?:Not tainted|Tainted: [^)]*)\))?: (?P<what>.+)",
          "BUG {cache}: {what}", fns=()),
    # any other "BUG: ..." (workqueue lockup, non-zero pgtables_bytes, ...), "WARNING: ...", "INFO: ..."
    _rule(BUG, r"BUG: (?P<what>.+)", "BUG: {what} in {fn}", catch_all=True),
    _rule(WARNING, r"WARNING: (?P<what>.+)", "WARNING: {what} in {fn}", catch_all=True, needs_stack=True),
    _rule(BUG, r"INFO: (?P<what>.+)", "INFO: {what} in {fn}", catch_all=True, needs_stack=True),
)
_PREFILTER = re.compile(
    r"(?:(?:NMI )?watchdog: |rcu: |\[ )?(?:BUG|WARNING|INFO|UBSAN|[Kk]ernel (?:BUG|panic)|general protection|Oops"
    r"|invalid opcode|divide error|stack segment|double fault|PANIC: double|h?list_(?:add|del)|stack guard"
    r"|Unable to handle|Unhandled fault|Alignment trap|Internal error|Watchdog detected|unreferenced object"
    r"|Insufficient stack|VFS: |unregister_netdevice|usercopy: |bounds: |alignment check|invalid TSS"
    r"|segment not present|int3)"
)
_BRACKETED = re.compile(r"\[ ((?:INFO|BUG): .*?)\.? \]$")  # lockdep headers of 2.6.x-4.x
_END = re.compile(r"\s*---\[ end (?:trace|Kernel panic)")
_BANNER = re.compile(r"\s*={20,}\s*$")
_CUT_HERE = re.compile(r"\s*(?:-+\[ cut here \]-+|8<-+ cut here -+)\s*$")  # lib/bug.c; arm's fault.c
_ACCESS = re.compile(r"(Read|Write) of size \d+")
_CONTINUATION = re.compile(r"\s*(?:-> #\d+ |#\d+: |\[<[0-9a-f]+>\])")  # see Scanner._continues()
_LOCK_LINE = re.compile(r"\s*#\d+: ")  # a held lock (lockdep print_lock()): listed like frames
# Lines that may follow a report's last stack trace and still belong to it.
_AFTER_STACK = re.compile(
    r"\s*$|\s*(?:[0-9a-f]{8,16} ){2,}[0-9a-f]{8,16}$"  # stack words (3.x show_stack_log_lvl())
    r"|\s*(?:R[A-Z0-9]{2}|E[A-Z]{2}|[C-G]S|CR\d|DR\d|PKRU|RIP|EIP|Code|pc|lr|sp|x\d+)\s?: "
    r"|(?:Modules linked in|CPU: |Pid: |Hardware name|Workqueue|irq event stamp|hardirqs last|softirqs last"
    r"|Kernel panic|Kernel Offset|Rebooting in|Disabling lock debugging|Showing all locks held|no locks held"
    r"|\d+ locks? held by| *#\d+: |INFO: lockdep is turned off|Sending NMI|NMI backtrace|task:|Dumping ftrace"
    r"|Fixing recursive fault|---\[|PGD |#PF: |Oops|Internal error|\s*(?:Call Trace|Call trace)|Stack:"
    r"|Instruction dump|Last Breaking-Event-Address)"
)


def _match_header(text) -> Optional[Tuple[_Rule, "re.Match[str]"]]:
    if not _PREFILTER.match(text):
        return None
    body = text
    if text[0] in "wNr":
        body = re.sub(r"^(?:(?:NMI )?watchdog: |rcu: )", "", text)
    elif text[0] == "[":
        m = _BRACKETED.match(text)
        body = m.group(1) if m else text
    for rule in _RULES:
        m = rule.pattern.match(text) or rule.pattern.match(body)
        if m:
            return (rule, m) if rule.kind else None
    return None


# --- reports -------------------------------------------------------------------------------------

class _Report:
    """A report being collected."""

    def __init__(self, rule, match, prefix, line):
        self.rule, self.match = rule, match
        self.lines: List[LogLine] = list(prefix) + [line]
        self.header = len(prefix)  # index of the header line in self.lines
        self.tracing = False  # inside a stack trace
        self.frames = 0  # stack frame lines seen
        self.armed = rule.armed_by is None and not rule.banner_end  # ends after its next stack
        self.stack_done = False  # armed and that stack is over: unrelated lines end the report
        self.died = rule.die_line  # its die() line has been seen
        self.list_corruption = False  # a WARNING/BUG that turned out to be list corruption
        self.complete = False  # it reached its end (end marker, banner, the end of its stack)
        self.counted = False  # listed among the scanner's reports
        self.absorbed = False  # a later header joined it (rule.absorbs)

    def add(self, line):
        self.lines.append(line)

    def step(self, line) -> str:
        """Whether `line` continues this report: "add", "last" (add, then close) or "close"."""
        text = line.text
        last = self.lines[-1]
        if line.usec is not None and last.usec is not None and line.usec - last.usec > MAX_GAP_USEC:
            return "close"
        if len(self.lines) >= MAX_REPORT_LINES:
            return "close"
        if _END.match(text):
            self.complete = True
            return "last"
        if self.rule.banner_end and _BANNER.match(text) and len(self.lines) > self.header + 1:
            self.complete = True
            return "last"
        if self.rule.single and not self.absorbed:
            return "close"
        mark = _STACK_MARK.match(text)
        frame = _frame(text) or _LOCK_LINE.match(text) or _RAW_FRAME.match(text)
        if frame or mark:
            self.frames += 1
        elif not self.frames and len(self.lines) - self.header > NO_STACK_LINES:
            return "close"
        if self.rule.armed_by and text.strip() == self.rule.armed_by:
            self.armed, self.tracing = True, False
            return "add"
        if _TRACE_START.match(text):
            self.tracing, self.stack_done = True, False
            return "add"
        if mark:
            if text.strip() == "</TASK>" and self.tracing:
                self.tracing, self.stack_done = False, self.armed
            return "add"
        if frame:
            self.tracing = True
            return "add"
        if self.tracing:
            self.tracing, self.stack_done = False, self.armed
        if self.stack_done and not _AFTER_STACK.match(text):
            self.complete = not self.rule.banner_end
            return "close"
        return "add"

    def absorbs(self, rule, match) -> bool:
        """Whether a header line is part of this report rather than a report of its own."""
        if rule.consequence:
            return True
        if rule.catch_all and not self.stack_done:
            return True
        if self.rule.absorbs and not self.frames and self.rule.absorbs.match(match.string):
            self.absorbed = True
            return True
        if rule.die_line and self.rule.dies and not self.died:
            self.died = True
            return True
        if self.rule.kind == LIST and rule.kind in (WARNING, BUG) and not self.frames:
            return True
        if rule.kind == LIST and self.rule.kind in (WARNING, BUG) and "list_debug.c" in self._loc():
            self.list_corruption = True
            return True
        return rule is self.rule and rule.single

    def qualifies(self) -> bool:
        """Whether it is a report (a catch-all header is one only once a stack follows it)."""
        return not self.rule.needs_stack or self.frames > 0

    def corrupted(self) -> bool:
        """Cut short: by the end of the log, the next report, a time gap or MAX_REPORT_LINES,
        before its closing banner (sanitizers) or before a stack to name the function by."""
        if not self.rule.fns or self.rule.single or self.complete:
            return False
        return self.rule.banner_end or len(self.lines) >= MAX_REPORT_LINES or not (self.frames or self.stack_done)

    def _loc(self):
        groups = self.match.groupdict()
        return groups.get("loc") or groups.get("loc2") or groups.get("loc3") or ""

    def crash(self) -> Crash:
        kind, title = self._title()
        lines = list(self.lines)
        while len(lines) > self.header + 1 and not lines[-1].text.strip():
            lines.pop()  # blank lines after the report are not part of it
        first = lines[0]
        return Crash(kind=kind, title=title, line=first.lineno,
                     lines=tuple(line.raw for line in lines), seq=first.seq, corrupted=self.corrupted())

    def _title(self):
        rule = self.rule
        groups = {k: v for k, v in self.match.groupdict().items() if k not in ("fn", "fn2", "fn3")}
        kind, template = rule.kind, rule.title
        if self.list_corruption:
            kind, template = LIST, _LIST_RULE.title
        elif template == "WARNING in {fn}":
            template = next((t for src, t in _WARN_SOURCES if src.match(self._loc())), template)
        elif template == "kernel BUG in {fn}" and self._loc().startswith("mm/usercopy.c"):
            template = "BUG: bad usercopy in {fn}"
        groups["reason"] = self._panic_reason()
        groups["access"] = self._kasan_access()
        if rule.catch_all:
            groups["what"] = _short(groups["what"])
        fn = self._function(_LIST_RULE if self.list_corruption else rule)
        if "{fn}" in template and fn is None:
            return kind, self._title_without_fn(kind, template, groups)
        return kind, template.format(fn=fn, **{k: v or "" for k, v in groups.items()})

    def _title_without_fn(self, kind, template, groups):
        loc = self._loc()
        if template == "WARNING in {fn}":
            return f"WARNING at {loc}" if loc else "WARNING"
        if template.startswith("kernel BUG"):
            return f"kernel BUG at {loc}"
        if kind == UBSAN:
            return f"UBSAN: {groups['what']} in {_source_file(loc)}"
        head = template.split(" in {fn}")[0]
        return head.format(**{k: v or "" for k, v in groups.items()})

    def _panic_reason(self):
        text = self.lines[self.header].text
        if not text.startswith("Kernel panic - not syncing: "):
            return ""
        reason = text[len("Kernel panic - not syncing: "):]
        reason = re.sub(r"\s*exitcode=\S+|\s*0x[0-9a-f]+|\s*\[<[0-9a-f]+>\]", "", reason)
        return reason.strip().rstrip(".")

    def _kasan_access(self):
        for line in self.lines[self.header + 1:self.header + 4]:
            m = _ACCESS.match(line.text)
            if m:
                return " " + m.group(1)
        return ""

    def _function(self, rule) -> Optional[str]:
        skip = rule.skip
        for source in rule.fns:
            for name in self._candidates(source):
                name = _clean_fn(name)
                if not _SKIP.fullmatch(name) and not (skip and skip.fullmatch(name)):
                    return name
        return None

    def _candidates(self, source):
        body = self.lines[self.header:]
        if source == "header":
            groups = self.match.groupdict()
            return [groups[key] for key in ("fn", "fn2", "fn3") if groups.get(key)]
        if source == "rip":
            return [m.group(1) for m in map(_RIP.match, (line.text for line in body)) if m][:1]
        if source == "lockdep":
            for i, line in enumerate(body):
                m = _LOCKDEP_AT.search(line.text)
                if m:
                    return [m.group(1)]
                if line.text.rstrip().endswith(" at:") and i + 1 < len(body):
                    frame = _frame(body[i + 1].text)
                    if frame:
                        return [frame[1]]
            return []
        return self._trace(body)

    @staticmethod
    def _trace(body):
        """Frames of the first stack trace after the header: reliable ones, then "? " ones."""
        texts = [line.text for line in body[1:]]
        start = next((i + 1 for i, t in enumerate(texts) if _TRACE_START.match(t)), None)
        if start is None:
            start = next((i for i, t in enumerate(texts) if _frame(t)), len(texts))
        frames = []
        for text in texts[start:]:
            frame = _frame(text)
            if frame:
                frames.append(frame)
            elif _STACK_MARK.match(text) and text.strip() != "</TASK>":
                continue
            elif frames:
                break
        return [fn for unsure, fn in frames if not unsure] + [fn for unsure, fn in frames if unsure]


_LIST_RULE = next(rule for rule in _RULES if rule.kind == LIST)


def _short(what):
    """"workqueue lockup - pool cpus=0 ..." -> "workqueue lockup": a title names the bug, not its numbers."""
    what = re.split(r" - |: |! |!$|\.$|, | \[| \(|=| at | on CPU| for address", what, maxsplit=1)[0]
    return re.sub(r"\s*(?:0x)?[0-9a-f]{8,}|\s+\d+$", "", what).strip()


def _source_file(loc):
    """"../include/linux/bitops.h:110:33" -> "include/linux/bitops.h"."""
    return re.sub(r"^(?:\.\./)+|(?::\d+)+$", "", loc)


# --- scanning ------------------------------------------------------------------------------------

class Scanner:
    """Finds reports in a log fed line by line; keeps state between feeds.

    Lines that carry a caller id (CONFIG_PRINTK_CALLER: "[  T123]" for a task, "[    C1]" for
    a CPU in interrupt context) are kept apart by it: each caller has its own open report, so
    two reports printed at once by two tasks or CPUs do not mix.
    """

    def __init__(self, marked=False):
        """marked: the log is known to time-stamp kernel lines (see feed_line())."""
        self._counted: List[_Report] = []  # reports, in the order they came to count
        self._open: Dict[Optional[str], _Report] = {}  # the report being collected, per caller id
        self._recent: Dict[Optional[str], deque] = {}  # per caller, lines before a header: "cut here"
        self._marked = marked  # some line carried a kernel marker (time stamp, kmsg header)

    def feed(self, raw, lineno):
        """Feed one raw line of a log file (any format parse_line() accepts)."""
        for line in parse_line(raw, lineno):
            self.feed_line(line)

    def feed_line(self, line: LogLine):
        """Feed one parsed line."""
        if line.kernel is False:
            return
        if line.kernel is None and self._marked and not self._continues(line):
            return  # untimestamped text between kernel lines: user-space output on the console
        if line.kernel:
            self._marked = True
        caller = line.caller
        recent = self._recent.get(caller)
        if recent is None:
            recent = self._recent[caller] = deque(maxlen=6)
        found = _match_header(line.text)
        report = self._open.get(caller)
        if report is not None:
            if found and report.absorbs(*found):
                self._add(report, line)
                return
            if not found:
                step = report.step(line)
                if step != "close":
                    self._add(report, line)
                    if step == "last":
                        self._close(caller)
                    return
            prefix = self._split_cut_here(report) if found else []
            if found and report.frames and not report.rule.banner_end:
                report.complete = True  # the next report ends one whose stack was printed
            self._close(caller)
            recent.extend(prefix)
        if found:
            rule, match = found
            if rule.consequence and self._counted:
                return  # "Kernel panic - not syncing: Fatal exception" after the oops it ends
            report = self._open[caller] = _Report(rule, match, self._prefix(recent), line)
            self._count(report)
            recent.clear()
        else:
            recent.append(line)

    def _continues(self, line) -> bool:
        """An untimestamped line that goes on an open report: before 4.x the kernel stamped
        only the first line of a printk() with several ("\n-> #1 (&mm->mmap_sem){++++++}:"
        in lockdep's print_circular_bug_entry(), stack frames printed with pr_cont())."""
        return line.caller in self._open and bool(_CONTINUATION.match(line.text) or _frame(line.text))

    def crashes(self, start=0) -> List[Crash]:
        """Every report found so far (from the start-th on), in log order; open ones as they stand."""
        return [report.crash() for report in self._counted[start:]]

    @property
    def count(self):
        """How many reports were found so far (open ones included)."""
        return len(self._counted)

    def _add(self, report, line):
        report.add(line)
        self._count(report)

    def _count(self, report):
        if not report.counted and report.qualifies():
            report.counted = True
            self._counted.append(report)

    def _close(self, caller):
        self._open.pop(caller, None)

    @staticmethod
    def _prefix(recent):
        """The "cut here" line (and the WARN message after it), or the banner, before a header."""
        recent = list(recent)
        for i in range(len(recent) - 1, max(len(recent) - 5, -1), -1):
            if _CUT_HERE.match(recent[i].text):
                return recent[i:]
        return recent[-1:] if recent and _BANNER.match(recent[-1].text) else []

    @staticmethod
    def _split_cut_here(report):
        """A "cut here" at the tail of the previous report belongs to the next one."""
        tail = report.lines[report.header + 1:][-5:]
        for i in range(len(tail) - 1, -1, -1):
            if _CUT_HERE.match(tail[i].text):
                moved = tail[i:]
                del report.lines[len(report.lines) - len(moved):]
                return moved
        return []


def scan_lines(lines: Iterable[str]) -> List[Crash]:
    """Kernel reports in a log given as lines, in log order; Crash.line is 1-based."""
    scanner = Scanner()
    for lineno, raw in enumerate(lines, 1):
        scanner.feed(raw, lineno)
    return scanner.crashes()


def scan_text(text: str) -> List[Crash]:
    """Kernel reports in a whole log text (lines split at "\\n" only, as `grep -n` counts)."""
    return scan_lines(text.split("\n"))
