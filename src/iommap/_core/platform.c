/* OS-specific calls; platform.h says what differs on each OS. */
#include "iommap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

/* A signal handler's third argument: a ucontext_t, from <ucontext.h>, but
 * macOS's <ucontext.h> insists on _XOPEN_SOURCE, which CPython leaves
 * undefined there (its <sys/ucontext.h> has the type alone), and OpenBSD has
 * no ucontext_t at all: its handlers get a struct sigcontext (<signal.h>). */
#if defined(__APPLE__)
#include <sys/ucontext.h>
#elif !defined(__OpenBSD__)
#include <ucontext.h>
#endif

#if IOMMAP_HAVE_REP_MOVSB
#include <cpuid.h>
#endif

#if defined(__linux__)
#include <linux/fs.h> /* BLKGETSIZE64 */
#include <sys/ioctl.h>
#include <sys/vfs.h> /* fstatfs */
#endif

/* Read once, lazily.  Threads of interpreters that each have their own GIL
 * (or of a free-threaded build) may all ask for the first time at once.
 * Each would find and store the same value, so relaxed atomic accesses are
 * enough: they turn what would be a data race on a plain static (undefined
 * behaviour in C11) into well-defined concurrent stores of one value. */
size_t iommap_page_size(void)
{
    static atomic_size_t page_size;
    size_t size = atomic_load_explicit(&page_size, memory_order_relaxed);
    if (size == 0) {
        size = (size_t)sysconf(_SC_PAGESIZE);
        atomic_store_explicit(&page_size, size, memory_order_relaxed);
    }
    return size;
}

int iommap_platform_map_flags(int populate, int nocache)
{
    return (populate ? IOMMAP_MAP_POPULATE : 0) | (nocache ? IOMMAP_MAP_NOCACHE : 0);
}

void iommap_platform_after_map(void *addr, size_t size, int populate)
{
    /* Only a hint: its failure is not the caller's failure. */
    if (IOMMAP_MAP_POPULATE == 0 && populate && size > 0)
        (void)madvise(addr, size, MADV_WILLNEED);
}

int iommap_platform_set_nocache(int fd)
{
    return IOMMAP_F_NOCACHE != 0 ? fcntl(fd, IOMMAP_F_NOCACHE, 1) : 0;
}

int iommap_platform_mincore(void *addr, size_t len, unsigned char *vec)
{
#if defined(__OpenBSD__)
    (void)addr;
    (void)len;
    (void)vec;
    errno = ENOTSUP;
    return -1;
#else
    return mincore(addr, len, (void *)vec);
#endif
}

int iommap_platform_rwlock_init(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#if defined(__GLIBC__)
    /* glibc's default lets a steady stream of readers starve writers. */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    int rc = pthread_rwlock_init(lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc;
}

int iommap_platform_reserve(int fd, size_t old_size, size_t size)
{
    if (size <= old_size)
        return 0;
    if (size > (size_t)INT64_MAX) {
        errno = EFBIG;
        return -1;
    }
#if defined(__linux__)
    /* fallocate both reserves the blocks and sets the size; filesystems
     * without it (some network ones) get a plain ftruncate. */
    if (fallocate(fd, 0, (off_t)old_size, (off_t)(size - old_size)) == 0)
        return 0;
    if (errno != EOPNOTSUPP && errno != ENOSYS)
        return -1;
#elif defined(__FreeBSD__)
    int rc = posix_fallocate(fd, (off_t)old_size, (off_t)(size - old_size));
    if (rc == 0)
        return 0;
    if (rc != EINVAL && rc != EOPNOTSUPP) {
        errno = rc;
        return -1;
    }
#elif defined(__APPLE__) && defined(F_PREALLOCATE)
    fstore_t store = {F_ALLOCATECONTIG, F_PEOFPOSMODE, 0, (off_t)(size - old_size), 0};
    if (fcntl(fd, F_PREALLOCATE, &store) == -1) {
        store.fst_flags = F_ALLOCATEALL;
        (void)fcntl(fd, F_PREALLOCATE, &store); /* not all filesystems support it */
    }
#endif
    return ftruncate(fd, (off_t)size);
}

#if defined(__linux__)
#include <sys/syscall.h>
/* cachestat is 451 on every architecture that shares the generic syscall
 * table (all but alpha); older headers do not name it. */
#if !defined(__NR_cachestat) && !defined(__alpha__)
#define __NR_cachestat 451
#endif
#endif

int iommap_platform_cachestat(int fd, uint64_t off, uint64_t len, uint64_t counts[5])
{
#ifdef __NR_cachestat
    struct {
        uint64_t off, len;
    } range = {off, len};
    /* struct cachestat is five __u64 in this order: cache, dirty,
     * writeback, evicted, recently_evicted. */
    return syscall(__NR_cachestat, fd, &range, counts, 0) == 0 ? 0 : -1;
#else
    (void)fd;
    (void)off;
    (void)len;
    (void)counts;
    errno = ENOSYS;
    return -1;
#endif
}
/* Linux: the pseudo-file systems whose files report a size unrelated to
 * their content (and which do not support mmap as a file anyway). */
const char *iommap_platform_pseudo_file(int fd)
{
#if defined(__linux__)
    struct statfs fs;
    if (fstatfs(fd, &fs) != 0)
        return NULL;
    switch ((unsigned long)fs.f_type) {
    case 0x9fa0UL: /* PROC_SUPER_MAGIC */
        return "a /proc pseudo-file";
    case 0x62656572UL: /* SYSFS_MAGIC */
        return "a /sys pseudo-file";
    case 0x64626720UL: /* DEBUGFS_MAGIC */
        return "a debugfs pseudo-file";
    case 0x74726163UL: /* TRACEFS_MAGIC */
        return "a tracefs pseudo-file";
    case 0x73636673UL: /* SECURITYFS_MAGIC */
        return "a securityfs pseudo-file";
    case 0x27e0ebUL:   /* CGROUP_SUPER_MAGIC */
    case 0x63677270UL: /* CGROUP2_SUPER_MAGIC */
        return "a cgroup pseudo-file";
    case 0x62656570UL: /* CONFIGFS_MAGIC */
        return "a configfs pseudo-file";
    default:
        return NULL;
    }
#else
    (void)fd;
    return NULL;
#endif
}

int iommap_platform_device_size(int fd, uint64_t *size)
{
#if defined(__linux__) && defined(BLKGETSIZE64)
    return ioctl(fd, BLKGETSIZE64, size);
#else
    /* macOS and the BSDs either have no block devices or cannot mmap them:
     * a clear refusal rather than a guess. */
    (void)fd;
    (void)size;
    errno = ENODEV;
    return -1;
#endif
}

int iommap_platform_sync_file(int fd)
{
#if defined(__linux__) || defined(__FreeBSD__)
    return fdatasync(fd); /* data and the size needed to read it back */
#else
    return fsync(fd);
#endif
}

/* Whether the thread a signal interrupted was just returning from a system
 * call (the instruction before the interrupted one is the system call
 * instruction): then the thread raised the signal itself, as a handler that
 * re-raises does (raise(3) ends in tgkill or in the sigprocmask that
 * unblocks it).  A signal sent by another thread interrupts whatever the
 * thread runs, and a copy makes no system call.  Returns 1, 0, or -1 where
 * the machine cannot tell (another CPU or OS, an address at the start of a
 * page, where the bytes before it might not be mapped). */
int iommap_platform_interrupted_after_syscall(const void *context)
{
    if (context == NULL)
        return -1;
#if defined(__linux__) && defined(__x86_64__)
    const unsigned char *pc =
        (const unsigned char *)((const ucontext_t *)context)->uc_mcontext.gregs[REG_RIP];
    if (((uintptr_t)pc & (iommap_page_size() - 1)) < 2)
        return -1;
    return pc[-2] == 0x0f && pc[-1] == 0x05; /* syscall */
#elif defined(__linux__) && defined(__aarch64__)
    const unsigned char *pc = (const unsigned char *)((const ucontext_t *)context)->uc_mcontext.pc;
    if (((uintptr_t)pc & (iommap_page_size() - 1)) < 4)
        return -1;
    uint32_t insn;
    memcpy(&insn, pc - 4, sizeof(insn));
    return insn == 0xd4000001u; /* svc #0 */
#else
    return -1;
#endif
}

void iommap_platform_interrupted_mask(const void *context, sigset_t *mask)
{
#if defined(__OpenBSD__)
    *mask = (sigset_t)((const struct sigcontext *)context)->sc_mask;
#else
    *mask = ((const ucontext_t *)context)->uc_sigmask;
#endif
}

int iommap_platform_fast_rep_movsb(void)
{
#if IOMMAP_HAVE_REP_MOVSB
    unsigned int eax, ebx, ecx, edx;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        return (ebx >> 9) & 1; /* CPUID.(EAX=7,ECX=0):EBX.ERMS[bit 9] */
#endif
    return 0;
}
