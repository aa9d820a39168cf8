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
#include <stdatomic.h>
#include <sys/mman.h>
#include <unistd.h>

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
