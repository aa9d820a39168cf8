/* OS-specific calls; platform.h says what differs on each OS. */
#include "iommap.h"

#include <errno.h>
#include <fcntl.h>
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
