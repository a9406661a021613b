"""Fill+verify throughput of the C helpers, beside memset/memcmp bandwidth.

Goal: filling and verifying pages runs at >= half the speed of plain memset
and memcmp on one core, measured here in the same run.  Prints the numbers
and the bound; exits 1 when the goal is missed.
"""
import sys
import time

from cffi import FFI

from harness._mem import ffi, lib

SIZE = 256 << 20
PAGE = 4096
ROUNDS = 5

libc = FFI()
libc.cdef("void *memset(void *s, int c, size_t n); int memcmp(const void *a, const void *b, size_t n);")
C = libc.dlopen(None)


def best(fn):
    times = []
    for _ in range(ROUNDS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return SIZE / min(times) / 1e9  # GB/s


def main():
    npages = SIZE // PAGE
    a = lib.ksmh_map(SIZE)
    b = lib.ksmh_map(SIZE)
    keys = ffi.new("uint64_t[]", npages)
    lib.ksmh_pattern_keys(lib.KSMH_PAT_UNIQUE, 1, 1, 0, 0, 0, npages, keys)
    res = ffi.new("struct ksmh_verify_result *")
    C.memset(a, 1, SIZE)
    C.memset(b, 1, SIZE)  # fault everything in first: measure bandwidth, not page faults
    memset_bw = best(lambda: C.memset(a, 1, SIZE))
    memcmp_bw = best(lambda: C.memcmp(a, b, SIZE))  # equal buffers: memcmp reads all of both
    fill_bw = best(lambda: lib.ksmh_fill(ffi.cast("char *", a), npages, keys))
    verify_bw = best(lambda: lib.ksmh_verify(ffi.cast("char *", a), npages, keys, res))
    assert res.bad == 0
    ok = True
    for name, got, ref, refname in (("fill", fill_bw, memset_bw, "memset"), ("verify", verify_bw, memcmp_bw, "memcmp")):
        bound = ref / 2
        good = got >= bound
        ok &= good
        print(f"{name:7} {got:6.2f} GB/s   {refname} {ref:6.2f} GB/s   bound >= {bound:6.2f} GB/s (half)   "
              f"{'OK' if good else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
