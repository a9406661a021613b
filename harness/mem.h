/* Interface of harness._mem, read by both cffi's cdef and the C compiler:
 * declarations only, no preprocessor logic. */

/* madvise(2) advice values, include/uapi/asm-generic/mman-common.h */
#define KSMH_MADV_DONTNEED 4
#define KSMH_MADV_MERGEABLE 12
#define KSMH_MADV_UNMERGEABLE 13
#define KSMH_MADV_HUGEPAGE 14
#define KSMH_MADV_NOHUGEPAGE 15
#define KSMH_MADV_COLD 20
#define KSMH_MADV_PAGEOUT 21
#define KSMH_MADV_HWPOISON 100

/* mprotect(2) protections, include/uapi/asm-generic/mman-common.h */
#define KSMH_PROT_NONE 0
#define KSMH_PROT_READ 1
#define KSMH_PROT_WRITE 2

/* userfaultfd, include/uapi/linux/userfaultfd.h */
#define KSMH_UFFD_FEATURE_PAGEFAULT_FLAG_WP 1
#define KSMH_UFFD_FEATURE_MINOR_SHMEM 1024
#define KSMH_UFFDIO_REGISTER_MODE_WP 2
#define KSMH_UFFDIO_REGISTER_MODE_MINOR 4

/* fill patterns: how a page's key follows from (seed, page index, worker) */
#define KSMH_PAT_ZERO 0
#define KSMH_PAT_SAME 1
#define KSMH_PAT_GROUPS 2
#define KSMH_PAT_UNIQUE 3

#define KSMH_MAX_REPORT 16

struct ksmh_verify_result {
    size_t bad;                               /* pages whose content is not their key's */
    size_t sigbus;                            /* pages whose read raised SIGBUS */
    size_t nreport;                           /* entries used in the arrays below */
    size_t page[KSMH_MAX_REPORT];             /* first bad or SIGBUS page indexes */
    uint64_t found[KSMH_MAX_REPORT];          /* first word found there (0 for SIGBUS) */
    int was_sigbus[KSMH_MAX_REPORT];          /* 1 if that page raised SIGBUS */
};

struct ksmh_storm_result {
    long forks;        /* fork() calls that succeeded */
    long live;         /* children left alive (paused) */
    long failed;       /* fork() calls that failed (EAGAIN, ENOMEM) */
    int err;           /* errno of the last failure */
};

/* memory */
void *ksmh_map(size_t len);
void *ksmh_map_memfd(size_t len);
int ksmh_unmap(void *addr, size_t len);
int ksmh_madvise(void *addr, size_t len, int advice);
int ksmh_mprotect(void *addr, size_t len, int prot);
/* fresh anonymous memory over [addr, +len) (MAP_FIXED): addr, or NULL */
void *ksmh_map_fixed(void *addr, size_t len);
/* move a mapping to a new address (mremap MREMAP_FIXED): the new start, or NULL */
void *ksmh_mremap_away(void *addr, size_t len);
int ksmh_prctl_memory_merge(int set, int value);
/* userfaultfd: a new one with the given features asked of UFFDIO_API (the
 * features it offers go to *supported), a range registered in a mode, and
 * UFFDIO_WRITEPROTECT set (protect 1) or cleared over a range */
int ksmh_uffd_open(uint64_t features, uint64_t *supported);
int ksmh_uffd_register(int fd, void *addr, size_t len, uint64_t mode);
int ksmh_uffd_writeprotect(int fd, void *addr, size_t len, int protect);
int ksmh_mbind(void *addr, size_t len, int node);
long ksmh_move_pages(int pid, unsigned long count, void **pages, const int *nodes,
                     int *status, int flags);

/* content */
void ksmh_pattern_keys(int kind, uint64_t seed, uint64_t groups, uint64_t worker,
                       uint64_t generation, size_t first_page, size_t n, uint64_t *out);
void ksmh_fill(char *base, size_t npages, const uint64_t *keys);
void ksmh_verify(const char *base, size_t npages, const uint64_t *keys,
                 struct ksmh_verify_result *res);

/* faulting pages back: read or write one word of each page, from nthreads
 * threads, pausing pace_ns between pages; done_ns[i] = CLOCK_MONOTONIC when
 * page i was in (0 if it raised SIGBUS). Returns pages that raised SIGBUS. */
long ksmh_touch(char *base, size_t npages, const uint64_t *keys, int write,
                int nthreads, long pace_ns, uint64_t *done_ns);

/* wait until the file at path starts with expect, polling every poll_ns;
 * 0 when it did, -1 with errno ETIMEDOUT (or the open/read errno) */
int ksmh_wait_file(const char *path, const char *expect, long poll_ns, long timeout_ns);

/* wait until the number in the file at path is at_least, reading it without a
 * pause and reopening it each time, as kselftest's ksm_tests polls full_scans
 * (ksm_read_sysfs(): fopen, fscanf, fclose); the number read, or -1 with errno
 * ETIMEDOUT (or the open/read errno) */
long ksmh_wait_counter(const char *path, long at_least, long timeout_ns);

/* write byte into the first byte of each of npages pages, as ksm_tests'
 * ksm_cow_time() does (memset(page, '-', 1)): the content changes, so ksmd
 * cannot merge a copied page back while the loop runs; the CLOCK_MONOTONIC
 * nanoseconds the loop took */
uint64_t ksmh_scribble(char *base, size_t npages, int byte);

/* fork children until duration_ns passed, max_forks forked or stop_fd is
 * readable.  Each child (and its descendants, depth levels deep) lives on
 * paused while fewer than live_cap are alive, else exits at once; with
 * lifetime_ns > 0 the live ones exit after that long and are reaped, so a
 * rolling population of up to live_cap keeps joining and leaving.  The
 * CLOCK_MONOTONIC time of each of the first ntimes forks goes to times_ns. */
void ksmh_fork_storm(long duration_ns, long max_forks, int depth, long live_cap,
                     long lifetime_ns, int stop_fd, long interval_ns, uint64_t *times_ns,
                     long ntimes, struct ksmh_storm_result *res);

uint64_t ksmh_monotonic_ns(void);

/* process plumbing: die with the parent (PR_SET_PDEATHSIG SIGKILL), returning
 * 0 if the parent is still expected_ppid; adopt orphaned descendants
 * (PR_SET_CHILD_SUBREAPER) so that they can be reaped */
int ksmh_die_with_parent(int expected_ppid);
int ksmh_set_subreaper(void);
