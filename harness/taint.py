"""The kernel's taint flags (/proc/sys/kernel/tainted), decoded.

Bits and letters as in Documentation/admin-guide/tainted-kernels.rst and the
taint_flags[] table in kernel/panic.c.  A kernel report usually sets one: W for a
WARNING, D for an oops, B for a bad page, L for a soft lockup.
"""
from dataclasses import dataclass
from typing import Tuple

from .errors import KernelError


@dataclass(frozen=True)
class TaintFlag:
    bit: int  # bit number in /proc/sys/kernel/tainted
    letter: str  # the letter in "Tainted: G        W" lines
    meaning: str  # Documentation/admin-guide/tainted-kernels.rst wording


FLAGS = (
    TaintFlag(0, "P", "proprietary module was loaded"),
    TaintFlag(1, "F", "module was force loaded"),
    TaintFlag(2, "S", "kernel running on an out of specification system"),
    TaintFlag(3, "R", "module was force unloaded"),
    TaintFlag(4, "M", "processor reported a Machine Check Exception (MCE)"),
    TaintFlag(5, "B", "bad page referenced or some unexpected page flags"),
    TaintFlag(6, "U", "taint requested by userspace application"),
    TaintFlag(7, "D", "kernel died recently, i.e. there was an OOPS or BUG"),
    TaintFlag(8, "A", "an ACPI table was overridden by user"),
    TaintFlag(9, "W", "kernel issued warning"),
    TaintFlag(10, "C", "staging driver was loaded"),
    TaintFlag(11, "I", "workaround for bug in platform firmware applied"),
    TaintFlag(12, "O", "externally-built (\"out-of-tree\") module was loaded"),
    TaintFlag(13, "E", "unsigned module was loaded"),
    TaintFlag(14, "L", "soft lockup occurred"),
    TaintFlag(15, "K", "kernel has been live patched"),
    TaintFlag(16, "X", "auxiliary taint, defined for and used by distros"),
    TaintFlag(17, "T", "kernel was built with the struct randomization plugin"),
    TaintFlag(18, "N", "an in-kernel test has been run"),
    TaintFlag(19, "J", "userspace used a mutating debug operation in fwctl"),
)
_BY_BIT = {flag.bit: flag for flag in FLAGS}


def read_tainted(path="/proc/sys/kernel/tainted") -> int:
    """The taint mask now."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError as exc:
        raise KernelError(f"cannot read the taint flags: {path}: {exc.strerror}") from exc
    try:
        return int(text)
    except ValueError:
        raise KernelError(f"{path}: expected a number, read {text[:40]!r}") from None


def describe(value: int) -> Tuple[str, ...]:
    """Each set bit as "W (kernel issued warning)"; unknown bits as "bit 20 (unknown)"."""
    out = []
    bit = 0
    while value >> bit:
        if value >> bit & 1:
            flag = _BY_BIT.get(bit)
            out.append(f"{flag.letter} ({flag.meaning})" if flag else f"bit {bit} (unknown)")
        bit += 1
    return tuple(out)


def letters(value: int) -> str:
    """The kernel's own short form: "G" when untainted, else the letters, "GW", "PDW" ("G" = no P)."""
    set_letters = "".join(flag.letter for flag in FLAGS if value >> flag.bit & 1)
    return set_letters if value & 1 else "G" + set_letters


def new_flags(before: int, after: int) -> Tuple[str, ...]:
    """Flags set in `after` but not in `before`: ("W (kernel issued warning)",)."""
    return describe(after & ~before)
