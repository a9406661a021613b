"""Kernel reports that qemu's TCG, not the guest kernel, can cause.

x86 kernels patch their own text while every CPU runs it: static keys
(jump labels), alternatives and static calls go through text_poke_bp()
(arch/x86/kernel/alternative.c text_poke_bp_batch(), 6.1 and 6.12).  It writes
an int3 over the first byte, then the rest of the new instruction, then the
new first byte, with text_poke_sync() after each write: an IPI that makes
every CPU serialize (sync_core()) before the next write.  A CPU that meets the
int3 meanwhile is sent on by poke_int3_handler(); once the last sync is done
no CPU can still execute the int3, and the handler stops recognizing it.

So an int3 oops ("Oops: int3" from do_int3() -> die()) whose trapping byte
already reads as the patched instruction means a CPU executed code that was
no longer in memory.  Hardware cannot do that after sync_core(); qemu's TCG
(the software CPU these guests run on without KVM) can, when a vCPU runs a
translation of the page made before the patch.  Seen once, in a 6.12.117
guest (core/cpuset, whose cgroup flips the cpusets_enabled_key static branch,
in the fourth of five whole-suite passes; 40 more runs of it alone did not
repeat it): the bytes at the trap read `eb 33`, the jump cpusets_enabled()
is patched to.

The verdict on such a crash is ERROR naming this, never a FAIL that blames
the kernel; under KVM or on hardware the same report stays a FAIL.
"""
import re
from typing import Optional, Sequence

from .results import Crash

INT3 = 0xCC  # the breakpoint opcode text_poke_bp() writes (INT3_INSN_OPCODE)
# show_opcodes() (arch/x86/kernel/dumpstack.c): "Code: " then the bytes around
# the RIP, the byte at the RIP in angle brackets
CODE = re.compile(r"Code: (?P<before>(?:[0-9a-f]{2} )*)<(?P<at>[0-9a-f]{2})>")


def stale_int3(crash: Crash) -> Optional[str]:
    """Why an int3 report shows a breakpoint that was no longer in memory, or
    None.  do_int3() reports the RIP after the int3, so the trapping byte is
    the one just before the bracketed one in the report's first Code: line
    (the kernel's; a second one belongs to the user-space registers)."""
    if not crash.title.startswith("int3"):
        return None
    code = next((m for m in map(CODE.search, crash.lines) if m), None)
    before = code.group("before").split() if code else []
    if not before or int(before[-1], 16) == INT3:
        return None
    return (f"the trapping byte reads {before[-1]}, not int3 (cc): a vCPU ran kernel text from before "
            f"text_poke_bp() patched it, which qemu's TCG can do and a real CPU cannot "
            f"(arch/x86/kernel/alternative.c text_poke_bp_batch())")


def emulator_fault(crashes: Sequence[Crash], accel: str) -> str:
    """Why the first of a guest's crashes is the emulator's, not the kernel's
    (only under TCG, `accel` "tcg"); "" when it is not, or when there is none."""
    return (stale_int3(crashes[0]) or "") if crashes and accel == "tcg" else ""
