"""cffi build script for harness._mem: the C helpers that touch memory under test.

Python drives; C does what must run at memory speed or inside a tight race
window: filling and verifying pages, faulting pages back, forking storms,
spinning on a sysfs file until it reads a value.  Built at install time
(setup.py's cffi_modules).
"""
from pathlib import Path

from cffi import FFI

HERE = Path(__file__).resolve().parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "mem.h").read_text())
ffibuilder.set_source(
    "harness._mem",
    '#define _GNU_SOURCE\n#include <stdint.h>\n#include <stddef.h>\n#include <sys/types.h>\n#include "mem.h"\n' + (HERE / "mem.c").read_text(),
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall"],
    libraries=["pthread"],
)

if __name__ == "__main__":
    ffibuilder.compile(tmpdir=str(HERE.parent), verbose=True)
