/* C helpers of ksm-harness over mmap'd memory (see mem.h for the interface). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif
#define KSMH_MPOL_BIND 2
#define KSMH_MPOL_MF_STRICT 1
#define KSMH_MPOL_MF_MOVE 2
#define GOLDEN 0x9E3779B97F4A7C15ull

uint64_t ksmh_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(long ns)
{
    struct timespec ts = { ns / 1000000000L, ns % 1000000000L };
    if (ns > 0)
        nanosleep(&ts, NULL);
}

/* ---- memory ---- */

void *ksmh_map(size_t len)
{
    /* KSM only merges private anonymous memory: a MAP_SHARED mapping (what
     * Python's mmap.mmap(-1, n) gives) is never VM_MERGEABLE-eligible
     * (mm/ksm.c: vma_ksm_compatible() rejects VM_SHARED). */
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *ksmh_map_memfd(size_t len)
{
    /* MAP_PRIVATE over a memfd (a shmem file): vma_ksm_compatible() takes it
     * (no VM_SHARED) and a written page is an anonymous copy KSM merges
     * (do_cow_fault()), while vma_is_shmem() lets userfaultfd register it in
     * minor mode (vma_can_userfault() in include/linux/userfaultfd_k.h). */
    int fd = memfd_create("ksm-harness", MFD_CLOEXEC);
    void *p = MAP_FAILED;
    if (fd < 0)
        return NULL;
    if (ftruncate(fd, len) == 0)
        p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    int err = errno;
    close(fd);
    errno = err;
    return p == MAP_FAILED ? NULL : p;
}

int ksmh_unmap(void *addr, size_t len) { return munmap(addr, len); }

int ksmh_madvise(void *addr, size_t len, int advice) { return madvise(addr, len, advice); }
int ksmh_mprotect(void *addr, size_t len, int prot) { return mprotect(addr, len, prot); }

void *ksmh_map_fixed(void *addr, size_t len)
{
    /* fresh private anonymous memory over [addr, +len): mm/mmap.c
     * mmap_region() unmaps what was there, then tries to merge the new VMA
     * with its neighbours (mm/vma.c) */
    void *p = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *ksmh_mremap_away(void *addr, size_t len)
{
    /* MREMAP_FIXED onto a fresh reservation, so the pages surely move (a
     * plain MREMAP_MAYMOVE of an unchanged length leaves them in place):
     * mm/mremap.c move_vma() moves the page tables to the new address. */
    void *to = mmap(NULL, len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (to == MAP_FAILED)
        return NULL;
    void *p = mremap(addr, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
    if (p == MAP_FAILED) {
        int err = errno;
        munmap(to, len);
        errno = err;
        return NULL;
    }
    return p;
}

int ksmh_prctl_memory_merge(int set, int value)
{
    if (set)
        return prctl(PR_SET_MEMORY_MERGE, value, 0, 0, 0);
    return prctl(PR_GET_MEMORY_MERGE, 0, 0, 0, 0);
}

int ksmh_uffd_open(uint64_t features, uint64_t *supported)
{
    struct uffdio_api api = { .api = UFFD_API, .features = features };
    int fd = syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -1;
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    *supported = api.features;
    return fd;
}

int ksmh_uffd_register(int fd, void *addr, size_t len, uint64_t mode)
{
    struct uffdio_register reg = { .range = { (uintptr_t)addr, len }, .mode = mode };
    return ioctl(fd, UFFDIO_REGISTER, &reg);
}

int ksmh_uffd_writeprotect(int fd, void *addr, size_t len, int protect)
{
    struct uffdio_writeprotect wp = { .range = { (uintptr_t)addr, len },
                                      .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0 };
    return ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
}

int ksmh_mbind(void *addr, size_t len, int node)
{
    unsigned long mask[2] = { 0, 0 };
    if (node < 0 || node >= 128) {
        errno = EINVAL;
        return -1;
    }
    mask[node / 64] = 1ul << (node % 64);
    /* get_nodes() in mm/mempolicy.c drops one from maxnode: pass bits + 1 */
    return syscall(SYS_mbind, addr, len, KSMH_MPOL_BIND, mask, 129,
                   KSMH_MPOL_MF_MOVE | KSMH_MPOL_MF_STRICT);
}

long ksmh_move_pages(int pid, unsigned long count, void **pages, const int *nodes,
                     int *status, int flags)
{
    return syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
}

/* ---- content ---- */

static uint64_t mix64(uint64_t z)
{
    z += GOLDEN;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void ksmh_pattern_keys(int kind, uint64_t seed, uint64_t groups, uint64_t worker,
                       uint64_t generation, size_t first_page, size_t n, uint64_t *out)
{
    uint64_t base = mix64(seed ^ mix64(generation));
    for (size_t k = 0; k < n; k++) {
        size_t i = first_page + k;
        uint64_t key;
        switch (kind) {
        case KSMH_PAT_ZERO: out[k] = 0; continue;
        case KSMH_PAT_SAME: key = base; break;
        case KSMH_PAT_GROUPS: key = mix64(base ^ mix64(i % (groups ? groups : 1) + 1)); break;
        default: key = mix64(base ^ mix64((i + 1) ^ mix64(worker + 0x1000))); break;
        }
        out[k] = key ? key : 1; /* key 0 is reserved for the zero page */
    }
}

/* word j of a page with key k is k ^ words[j]; key 0 is the all-zero page */
static size_t page_words;
static uint64_t words[65536 / 8];

static void init_words(void)
{
    if (page_words)
        return;
    page_words = (size_t)sysconf(_SC_PAGESIZE) / 8;
    for (size_t j = 0; j < page_words; j++)
        words[j] = j * GOLDEN;
}

void ksmh_fill(char *base, size_t npages, const uint64_t *keys)
{
    init_words();
    for (size_t i = 0; i < npages; i++) {
        uint64_t *p = (uint64_t *)(base + i * page_words * 8), k = keys[i];
        if (!k) {
            memset(p, 0, page_words * 8);
            continue;
        }
        for (size_t j = 0; j < page_words; j++)
            p[j] = k ^ words[j];
    }
}

static int page_ok(const uint64_t *p, uint64_t k)
{
    uint64_t diff = 0;
    if (!k) {
        for (size_t j = 0; j < page_words; j++)
            diff |= p[j];
    } else {
        for (size_t j = 0; j < page_words; j++)
            diff |= p[j] ^ k ^ words[j];
    }
    return diff == 0;
}

/* A read of a page whose swap-in failed raises SIGBUS (do_swap_page() returns
 * VM_FAULT_SIGBUS for a !PageUptodate swapcache page).  The handler jumps back
 * into the loop that touched the page, so the page is reported, not fatal. */
static __thread sigjmp_buf *sigbus_jump;

static void on_sigbus(int sig)
{
    if (sigbus_jump)
        siglongjmp(*sigbus_jump, 1);
    signal(sig, SIG_DFL);
    raise(sig);
}

static void catch_sigbus(struct sigaction *old)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigbus;
    sa.sa_flags = SA_NODEFER;
    sigaction(SIGBUS, &sa, old);
}

static void report(struct ksmh_verify_result *res, size_t page, uint64_t found, int was_sigbus)
{
    if (res->nreport < KSMH_MAX_REPORT) {
        res->page[res->nreport] = page;
        res->found[res->nreport] = found;
        res->was_sigbus[res->nreport] = was_sigbus;
        res->nreport++;
    }
}

void ksmh_verify(const char *base, size_t npages, const uint64_t *keys,
                 struct ksmh_verify_result *res)
{
    struct sigaction old;
    sigjmp_buf jb;
    volatile size_t i = 0;

    init_words();
    memset(res, 0, sizeof(*res));
    catch_sigbus(&old);
    if (sigsetjmp(jb, 1)) { /* page i raised SIGBUS */
        res->sigbus++;
        report(res, i, 0, 1);
        i++;
    }
    sigbus_jump = &jb;
    for (; i < npages; i++) {
        const uint64_t *p = (const uint64_t *)(base + i * page_words * 8);
        if (!page_ok(p, keys[i])) {
            res->bad++;
            report(res, i, p[0], 0);
        }
    }
    sigbus_jump = NULL;
    sigaction(SIGBUS, &old, NULL);
}

struct touch_job {
    char *base;
    size_t npages;
    const uint64_t *keys;
    int write, nthreads, index;
    long pace_ns;
    uint64_t *done_ns;
    long sigbus;
};

static void *touch_thread(void *arg)
{
    struct touch_job *job = arg;
    sigjmp_buf jb;
    volatile size_t i = job->index;

    if (sigsetjmp(jb, 1)) {
        job->sigbus++;
        job->done_ns[i] = 0;
        i += job->nthreads;
    }
    sigbus_jump = &jb;
    for (; i < job->npages; i += job->nthreads) {
        volatile uint64_t *p = (volatile uint64_t *)(job->base + i * page_words * 8);
        if (job->write)
            *p = job->keys[i]; /* word 0 of a page is its key: content unchanged */
        else
            (void)*p;
        job->done_ns[i] = ksmh_monotonic_ns();
        sleep_ns(job->pace_ns);
    }
    sigbus_jump = NULL;
    return NULL;
}

long ksmh_touch(char *base, size_t npages, const uint64_t *keys, int write,
                int nthreads, long pace_ns, uint64_t *done_ns)
{
    struct touch_job jobs[64];
    pthread_t tids[64];
    struct sigaction old;
    long sigbus = 0;

    init_words();
    if (nthreads < 1)
        nthreads = 1;
    if (nthreads > 64)
        nthreads = 64;
    catch_sigbus(&old);
    for (int t = 0; t < nthreads; t++)
        jobs[t] = (struct touch_job){ base, npages, keys, write, nthreads, t, pace_ns, done_ns, 0 };
    for (int t = 1; t < nthreads; t++)
        if (pthread_create(&tids[t], NULL, touch_thread, &jobs[t]))
            touch_thread(&jobs[t]), jobs[t].index = -1; /* ran inline: nothing to join */
    touch_thread(&jobs[0]);
    for (int t = 1; t < nthreads; t++)
        if (jobs[t].index >= 0)
            pthread_join(tids[t], NULL);
    sigaction(SIGBUS, &old, NULL);
    for (int t = 0; t < nthreads; t++)
        sigbus += jobs[t].sigbus;
    return sigbus;
}

/* ---- races ---- */

int ksmh_wait_file(const char *path, const char *expect, long poll_ns, long timeout_ns)
{
    char buf[64];
    size_t want = strlen(expect);
    uint64_t deadline = ksmh_monotonic_ns() + (uint64_t)timeout_ns;
    int fd = open(path, O_RDONLY);

    if (fd < 0)
        return -1;
    for (;;) {
        /* sysfs regenerates the value on every read at offset 0 */
        ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n < 0) {
            int err = errno;
            close(fd);
            errno = err;
            return -1;
        }
        if ((size_t)n >= want && !memcmp(buf, expect, want)) {
            close(fd);
            return 0;
        }
        if (ksmh_monotonic_ns() >= deadline) {
            close(fd);
            errno = ETIMEDOUT;
            return -1;
        }
        sleep_ns(poll_ns);
    }
}

long ksmh_wait_counter(const char *path, long at_least, long timeout_ns)
{
    uint64_t deadline = ksmh_monotonic_ns() + (uint64_t)timeout_ns;

    for (;;) {
        long value;
        FILE *f = fopen(path, "r");
        int got;

        if (!f)
            return -1;
        got = fscanf(f, "%ld", &value);
        fclose(f);
        if (got != 1) {
            errno = EIO;
            return -1;
        }
        if (value >= at_least)
            return value;
        if (ksmh_monotonic_ns() >= deadline) {
            errno = ETIMEDOUT;
            return -1;
        }
    }
}

uint64_t ksmh_scribble(char *base, size_t npages, int byte)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uint64_t start = ksmh_monotonic_ns();

    for (size_t i = 0; i < npages; i++)
        memset(base + i * page, byte, 1);
    return ksmh_monotonic_ns() - start;
}

static void storm_child(int depth, int live, pid_t parent, long lifetime_ns)
{
    /* die with the parent: a harness crash must not leave children behind */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent || !live)
        _exit(0);
    if (depth > 1) {
        pid_t me = getpid();
        if (fork() == 0)
            storm_child(depth - 1, 1, me, lifetime_ns);
    }
    if (lifetime_ns > 0) {
        sleep_ns(lifetime_ns);
        _exit(0);
    }
    for (;;)
        pause();
}

/* Reap children that ended their lifetime; returns how many. */
static long reap_exited(void)
{
    long n = 0;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        n++;
    return n;
}

static int readable(int fd)
{
    struct pollfd p = { fd, POLLIN, 0 };
    return fd >= 0 && poll(&p, 1, 0) > 0;
}

void ksmh_fork_storm(long duration_ns, long max_forks, int depth, long live_cap,
                     long lifetime_ns, int stop_fd, long interval_ns, uint64_t *times_ns,
                     long ntimes, struct ksmh_storm_result *res)
{
    uint64_t end = ksmh_monotonic_ns() + (uint64_t)duration_ns;
    pid_t me = getpid();

    memset(res, 0, sizeof(*res));
    while (ksmh_monotonic_ns() < end && res->forks < max_forks && !readable(stop_fd)) {
        int live;
        if (lifetime_ns > 0)
            res->live -= reap_exited();
        live = res->live < live_cap;
        pid_t pid = fork();
        if (pid < 0) {
            res->failed++;
            res->err = errno;
            sleep_ns(1000000);
            continue;
        }
        if (pid == 0)
            storm_child(depth, live, me, lifetime_ns);
        if (res->forks < ntimes)
            times_ns[res->forks] = ksmh_monotonic_ns();
        res->forks++;
        if (live)
            res->live++;
        else
            waitpid(pid, NULL, 0);
        sleep_ns(interval_ns);
    }
    /* children with a lifetime end soon: reap them, leave no zombie behind */
    while (lifetime_ns > 0 && res->live > 0 && waitpid(-1, NULL, 0) > 0)
        res->live--;
}

int ksmh_die_with_parent(int expected_ppid)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
        return -1;
    return getppid() == expected_ppid ? 0 : -1;
}

int ksmh_set_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }
