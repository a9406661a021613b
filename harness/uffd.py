"""userfaultfd modes a worker registers its regions in (do: userfaultfd).

    wp      UFFDIO_REGISTER_MODE_WP, then UFFDIO_WRITEPROTECT over the pages:
            their PTEs carry the uffd-wp bit (pagemap PM_UFFD_WP)
    minor   UFFDIO_REGISTER_MODE_MINOR: only a shmem or hugetlb VMA takes it
            (vma_can_userfault()), so the region must be `memfd: true`

The kernel says which it offers: UFFDIO_API answers with its features
(fs/userfaultfd.c userfaultfd_api()); wp needs UFFD_FEATURE_PAGEFAULT_FLAG_WP
(CONFIG_HAVE_ARCH_USERFAULTFD_WP), minor on shmem UFFD_FEATURE_MINOR_SHMEM
(CONFIG_HAVE_ARCH_USERFAULTFD_MINOR, 5.14+).
"""
import os
from typing import Optional

from ._mem import ffi, lib

MODES = ("minor", "wp")
# mode -> (UFFDIO_API feature, UFFDIO_REGISTER mode, the feature's name)
FEATURES = {
    "wp": (lib.KSMH_UFFD_FEATURE_PAGEFAULT_FLAG_WP, lib.KSMH_UFFDIO_REGISTER_MODE_WP,
           "UFFD_FEATURE_PAGEFAULT_FLAG_WP (CONFIG_HAVE_ARCH_USERFAULTFD_WP)"),
    "minor": (lib.KSMH_UFFD_FEATURE_MINOR_SHMEM, lib.KSMH_UFFDIO_REGISTER_MODE_MINOR,
              "UFFD_FEATURE_MINOR_SHMEM (CONFIG_HAVE_ARCH_USERFAULTFD_MINOR, 5.14+)"),
}


def open_fd(mode):
    """A userfaultfd (O_CLOEXEC) with the mode's feature enabled; raises OSError."""
    supported = ffi.new("uint64_t *")
    fd = lib.ksmh_uffd_open(FEATURES[mode][0], supported)
    if fd < 0:
        err = ffi.errno
        raise OSError(err, f"userfaultfd with {FEATURES[mode][2]}: {os.strerror(err)}")
    return fd


def unavailable(mode) -> Optional[str]:
    """None if this kernel registers ranges in `mode`, else the reason to skip."""
    supported = ffi.new("uint64_t *")
    fd = lib.ksmh_uffd_open(0, supported)
    if fd < 0:
        return f"no userfaultfd here (CONFIG_USERFAULTFD): {os.strerror(ffi.errno)}"
    os.close(fd)
    feature, _, name = FEATURES[mode]
    if not supported[0] & feature:
        return f"userfaultfd {mode} mode needs {name}, which this kernel does not offer"
    return None
