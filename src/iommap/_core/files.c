/* The file behind a handle: opening it without ever blocking, deciding
 * whether it can be mapped and at what size, growing it so that a failure
 * leaves it as it was, and making its size and directory entry durable.
 *
 * None of these needs the GIL: open() and truncate() call them with it
 * released.  Each returns 0 (or a descriptor), or -1 with errno set.
 *
 * What can be mapped:
 *   - a regular file, at st_size;
 *   - a block device, at the device's size (st_size is 0 for devices), where
 *     the platform can tell it (iommap_platform_device_size);
 *   - nothing else.  A FIFO or a character device is refused with ENODEV,
 *     mmap(2)'s own errno for a file it cannot map, and so is a pseudo-file
 *     of /proc or /sys: st_size says 0 or 4096 whatever the content, so a
 *     mapping of it would be a lie.  A socket is refused with ENXIO, what
 *     open(2) says for one, whether it comes by path or as a descriptor.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- what a descriptor is ------------------------------------------------ */

static const char *kind_of_mode(mode_t mode)
{
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISDIR(mode))
        return "a directory";
    return "not a regular file or block device";
}

/* The errno a refused file type gets. */
static int refusal_errno(mode_t mode)
{
    return S_ISDIR(mode) ? EISDIR : S_ISSOCK(mode) ? ENXIO : ENODEV;
}

/* Whether iommap_file_size's errno is a refusal of the file's type (else
 * a system call failed). */
static int is_refusal(int err)
{
    return err == ENODEV || err == EISDIR || err == ENXIO;
}

int iommap_file_mappable(int fd, const struct stat *st, const char **what)
{
    *what = NULL;
    if (S_ISREG(st->st_mode)) {
        *what = iommap_platform_pseudo_file(fd);
        if (*what == NULL)
            return 0;
        errno = ENODEV;
        return -1;
    }
    if (S_ISBLK(st->st_mode))
        return 0;
    *what = kind_of_mode(st->st_mode);
    errno = refusal_errno(st->st_mode);
    return -1;
}

int iommap_file_size(int fd, iommap_file_kind *kind, size_t *size, const char **what)
{
    struct stat st;
    *what = NULL;
    if (fstat(fd, &st) != 0) {
        *what = "fstat()";
        return -1;
    }
    if (iommap_file_mappable(fd, &st, what) != 0)
        return -1;
    if (S_ISREG(st.st_mode)) {
        *kind = IOMMAP_FILE_REGULAR;
        *size = (size_t)st.st_size;
        return 0;
    }
    uint64_t bytes = 0; /* a block device */
    if (iommap_platform_device_size(fd, &bytes) != 0) {
        *what = errno == ENODEV ? "a block device (not mappable on this system)"
                                : "a block device whose size cannot be read";
        return -1;
    }
    if (bytes > (uint64_t)SIZE_MAX) {
        *what = "a block device larger than the address space";
        errno = EFBIG;
        return -1;
    }
    *kind = IOMMAP_FILE_BLOCK_DEVICE;
    *size = (size_t)bytes;
    return 0;
}

/* ---- opening --------------------------------------------------------------- */

int iommap_open_file(const char *path, int flags, int *created, const char **what)
{
    *created = 0;
    *what = NULL;
    /* A look before opening spares the side effects of opening what will be
     * refused anyway (a FIFO's writer wakes up, some devices act on open).
     * The fstat after opening is the check that counts: the file may change
     * in between. */
    struct stat st;
    if (stat(path, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode) ||
                                 S_ISCHR(st.st_mode) || S_ISDIR(st.st_mode))) {
        *what = kind_of_mode(st.st_mode);
        errno = refusal_errno(st.st_mode);
        return -1;
    }
    /* O_NONBLOCK: open(2) of a FIFO waits for the other end, and a leased
     * file waits for the lease; with it, neither can block.  O_NOCTTY: a
     * terminal never becomes our controlling one. */
    int base = flags | O_NONBLOCK | O_NOCTTY | O_CLOEXEC;
    int fd;
    if (flags & O_CREAT) {
        /* Learn whether this call makes the file: a failed open removes
         * only what it made, and the first sync makes the new entry durable. */
        fd = open(path, base | O_EXCL, 0644);
        if (fd >= 0) {
            *created = 1;
        } else if (errno == EEXIST) {
            /* It exists (or is a symbolic link, dangling or not, which
             * O_EXCL refuses): open it as it is, creating a symbolic link's
             * target as open(2) would.  Not known to be ours. */
            fd = open(path, base, 0644);
        }
    } else {
        fd = open(path, base, 0644);
    }
    if (fd < 0) {
        int err = errno;
        if (err == ENXIO && stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            *what = "a socket";
        errno = err;
        return -1;
    }
    return fd;
}

int iommap_clear_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || (fl & O_NONBLOCK) == 0)
        return fl < 0 ? -1 : 0;
    return fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

void iommap_remove_created(const char *path, int fd)
{
    /* Only the file this call made: the path may name another by now. */
    struct stat by_fd, by_path;
    int saved = errno;
    if (fstat(fd, &by_fd) == 0 && lstat(path, &by_path) == 0 && by_fd.st_dev == by_path.st_dev &&
        by_fd.st_ino == by_path.st_ino)
        (void)unlink(path);
    errno = saved;
}

/* ---- growing without a trace on failure ------------------------------------- */

int iommap_grow_file(int fd, size_t old_size, size_t size)
{
    if (size <= old_size)
        return 0;
    if (iommap_platform_reserve(fd, old_size, size) == 0)
        return 0;
    /* A reservation that ran out of space may have taken blocks and moved
     * the end of file before failing: cut the file back to its old size,
     * which frees every block past it.  The content below old_size is
     * untouched by both calls. */
    int saved = errno;
    (void)ftruncate(fd, (off_t)old_size);
    errno = saved;
    return -1;
}

int iommap_reserve_whole(int fd, size_t old_size, size_t size)
{
#if defined(__linux__)
    /* Every block of [0, size) allocated, holes included, so that emptying
     * the file and reserving `size` again needs no block it does not free. */
    if (size > 0 && size <= (size_t)INT64_MAX) {
        if (fallocate(fd, 0, 0, (off_t)size) == 0)
            return 0;
        if (errno != EOPNOTSUPP && errno != ENOSYS) {
            int saved = errno;
            if (size > old_size)
                (void)ftruncate(fd, (off_t)old_size);
            errno = saved;
            return -1;
        }
    }
#endif
    return iommap_grow_file(fd, old_size, size);
}

int iommap_refill_with_zeros(int fd, size_t size)
{
    if (ftruncate(fd, 0) != 0)
        return -1;
    if (size == 0 || iommap_platform_reserve(fd, 0, size) == 0)
        return 0;
    /* Another writer took the blocks just freed: the file is empty and
     * short; give it its size, unreserved, and report the failure. */
    int saved = errno;
    (void)ftruncate(fd, (off_t)size);
    errno = saved;
    return -1;
}

/* ---- durability ---------------------------------------------------------------- */

int iommap_sync_directory(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    /* Some file systems cannot fsync a directory (EINVAL): their entries
     * are as durable as they will ever be. */
    if (rc != 0 && errno == EINVAL)
        rc = 0;
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

char *iommap_parent_directory(const char *path)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash == NULL ? 0 : slash == path ? 1 : (size_t)(slash - path);
    char *dir = PyMem_RawMalloc(n == 0 ? 2 : n + 1);
    if (dir == NULL)
        return NULL;
    if (n == 0) {
        strcpy(dir, ".");
    } else {
        memcpy(dir, path, n);
        dir[n] = '\0';
    }
    return dir;
}

/* ---- setting a file up for open() --------------------------------------------- */

int iommap_setup_file(int fd, const iommap_setup *in, iommap_setup_result *out)
{
    size_t old;
    out->addr = NULL;
    out->length = 0;
    out->size_changed = 0;
    out->call = NULL;
    out->refused_kind = NULL;
    out->beyond = 0;
    out->file_size = 0;
    if (iommap_file_size(fd, &out->kind, &old, &out->refused_kind) != 0) {
        if (!is_refusal(errno)) { /* a failed call, not a refusal */
            out->call = out->refused_kind;
            out->refused_kind = NULL;
        }
        return -1;
    }
    size_t target = old;
    if (out->kind == IOMMAP_FILE_BLOCK_DEVICE) {
        /* A device's size is the device's own. */
        if (in->truncate || (in->size_given && in->size > old)) {
            out->call = "ftruncate()";
            errno = EINVAL;
            return -1;
        }
    } else {
        target = in->truncate ? 0 : old;
        if (in->size_given && target < in->size)
            target = in->size;
        /* Space first, while a failure can still be undone. */
        int rc = 0;
        if (in->truncate && old > 0 && target > 0)
            rc = iommap_reserve_whole(fd, old, target);
        else if (target > old)
            rc = iommap_grow_file(fd, old, target);
        if (rc != 0) {
            out->call = "fallocate()";
            return -1;
        }
    }
    size_t grown = target > old ? target : old; /* the file's size now */
    if (in->nocache && iommap_platform_set_nocache(fd) != 0) {
        out->call = "fcntl(F_NOCACHE)";
        goto undo;
    }
    /* The window: all of it inside the file, or nothing is mapped. */
    int whole;
    size_t length = iommap_window_size(in->opts, target, &whole);
    out->file_size = target;
    if (!whole) {
        out->beyond = 1;
        goto undo;
    }
    if (iommap_map_region(fd, length, in->opts, &out->addr, &out->call) != 0)
        goto undo;
    /* The point of no return: only now is an existing file emptied. */
    if (in->truncate && old > 0) {
        int rc = target == 0 ? ftruncate(fd, 0) : iommap_refill_with_zeros(fd, target);
        if (rc != 0) {
            int saved = errno;
            iommap_unmap_region(out->addr, length);
            out->addr = NULL;
            out->call = target == 0 ? "ftruncate()" : "fallocate()";
            errno = saved;
            return -1;
        }
        /* Emptying the file unmapped its pages (locked ones too): fault
         * them in again, as the mapping asked. */
        if (in->opts->lock && out->addr != NULL)
            (void)mlock(out->addr, length);
    }
    out->length = length;
    out->size_changed = target != old || (in->truncate && old > 0);
    return 0;

undo:;
    int saved = errno;
    if (out->kind == IOMMAP_FILE_REGULAR && grown != old)
        (void)ftruncate(fd, (off_t)old);
    errno = saved;
    return -1;
}
