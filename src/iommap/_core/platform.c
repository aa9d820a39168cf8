/* OS-specific calls, behind feature tests, in one place.
 *
 * Linux is built and tested.  The macOS, FreeBSD and OpenBSD paths compile
 * from the same feature tests but are untested until a machine proves them.
 *
 *   populate   Linux MAP_POPULATE; elsewhere a will-need hint after mapping
 *   nocache    macOS F_NOCACHE on the descriptor (and MAP_NOCACHE); Linux and
 *              the BSDs have no uncached mapping: accepted, no effect
 *   reserve    Linux fallocate; FreeBSD posix_fallocate; macOS F_PREALLOCATE
 *              then ftruncate; OpenBSD ftruncate
 */
#include "iommap.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <ucontext.h>
#include <sys/mman.h>
#include <unistd.h>

size_t iommap_page_size(void)
{
    static size_t page_size;
    if (page_size == 0)
        page_size = (size_t)sysconf(_SC_PAGESIZE);
    return page_size;
}

int iommap_platform_map_flags(int populate, int nocache)
{
    int flags = 0;
#ifdef MAP_POPULATE
    if (populate)
        flags |= MAP_POPULATE;
#else
    (void)populate;
#endif
#ifdef MAP_NOCACHE
    if (nocache)
        flags |= MAP_NOCACHE;
#else
    (void)nocache;
#endif
    return flags;
}

void iommap_platform_after_map(void *addr, size_t size, int populate)
{
#ifdef MAP_POPULATE
    (void)addr;
    (void)size;
    (void)populate;
#else
    /* Only a hint: its failure is not the caller's failure. */
    if (populate && size > 0)
        (void)madvise(addr, size, MADV_WILLNEED);
#endif
}

int iommap_platform_set_nocache(int fd)
{
#ifdef F_NOCACHE
    return fcntl(fd, F_NOCACHE, 1);
#else
    (void)fd;
    return 0;
#endif
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
