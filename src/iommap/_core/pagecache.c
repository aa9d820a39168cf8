/* Page-cache counts of a file by path, for iommap.pagecache.
 *
 * file_cache_stat() does a file's open, fstat, cachestat(2) and close in one
 * call with the GIL released, so a walk over a tree of small files pays one
 * Python call per file instead of four.  It never maps the file: a walk
 * over 10,000 files makes no mapping at all.  Where cachestat(2) is missing
 * (before Linux 6.5, other systems; platform.c tells) it says so, and
 * iommap.pagecache counts with mincore(2) on a mapping instead.
 */
#include "files.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* What file_cache_stat() found, its tuple's first item. */
enum {
    CACHE_COUNTED = 0,     /* the counts are the kernel's */
    CACHE_HIDDEN = 1,      /* the kernel hides this file's page cache (EPERM) */
    CACHE_UNSUPPORTED = 2, /* no cachestat(2) here: count with mincore */
    CACHE_NOT_REGULAR = 3, /* a block device: counted through a mapping */
};

/* The range file_cache_stat() counts, [*start, *end) of a file of `size`
 * bytes: the bytes of [offset, offset + length) inside the file (length
 * UINT64_MAX: to the end), the start moved down to its page.  A range with
 * no byte of the file (empty, or past the end) is empty: start == end, at
 * the page of min(offset, size).  pagecache.py's _page_range is the same
 * rule for the mincore path. */
void iommap_counted_range(uint64_t size, uint64_t offset, uint64_t length, uint64_t page,
                          uint64_t *start, uint64_t *end)
{
    uint64_t lo = offset < size ? offset : size;
    uint64_t hi = length > size - lo ? size : lo + length;
    *start = lo - lo % page;
    *end = hi > lo ? hi : *start;
}

/* file_cache_stat(path, offset, length, follow, /) -> tuple
 *
 * (status, st_mode, size, st_dev, st_ino, start, end,
 *  cached, dirty, writeback, evicted, recently_evicted)
 *
 * [start, end) is the range counted (iommap_counted_range); length None means to
 * the end, and numbers past 64 bits are past any end.  follow=False refuses
 * a symlink (O_NOFOLLOW).  What open() refuses to map (a FIFO, a socket, a
 * character device, a directory, a pseudo-file) is refused here the same
 * way, with the same iommap.Error; an OS error raises it with the path as
 * its filename. */
PyObject *iommap_file_cache_stat(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    iommap_state *state = PyModule_GetState(module);
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "file_cache_stat() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    uint64_t offset, length = UINT64_MAX;
    if (iommap_arg_to_u64(state, "file_cache_stat", "offset", args[1], &offset) != 0 ||
        (args[2] != Py_None &&
         iommap_arg_to_u64(state, "file_cache_stat", "length", args[2], &length) != 0))
        return NULL;
    int follow = PyObject_IsTrue(args[3]);
    if (follow < 0)
        return NULL;
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(args[0], &encoded))
        return NULL;

    const char *path = PyBytes_AS_STRING(encoded);
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    uint64_t counts[5] = {0, 0, 0, 0, 0};
    int status = CACHE_COUNTED;
    int err = 0;
    const char *refused = NULL;
    uint64_t start = 0, end = 0;
    uint64_t page = (uint64_t)iommap_page_size();

    Py_BEGIN_ALLOW_THREADS
    /* As open() opens: never blocking, and refusing by type what it would
     * refuse, before opening it where it can. */
    int created = 0;
    int fd = iommap_open_file(path, O_RDONLY | (follow ? 0 : O_NOFOLLOW), &created, &refused);
    if (fd < 0) {
        err = errno;
    } else {
        if (fstat(fd, &sb) != 0) {
            err = errno;
        } else if (iommap_file_mappable(fd, &sb, &refused) != 0) {
            err = errno;
        } else if (!S_ISREG(sb.st_mode)) {
            status = CACHE_NOT_REGULAR;
        } else {
            iommap_counted_range((uint64_t)sb.st_size, offset, length, page, &start, &end);
            /* cachestat reads a zero length as "to the end": skip it. */
            int rc = 0;
            if (end > start && iommap_platform_cachestat(fd, start, end - start, counts) != 0)
                rc = errno;
            if (rc == EPERM)
                status = CACHE_HIDDEN;
            else if (rc == ENOSYS)
                status = CACHE_UNSUPPORTED;
            else if (rc != 0)
                err = rc;
        }
        close(fd);
    }
    Py_END_ALLOW_THREADS

    Py_DECREF(encoded);
    if (refused != NULL)
        return iommap_err_file_type(state, "open", refused, err, args[0]);
    if (err != 0) {
        /* The plain OSError of what failed (FileNotFoundError...), as
         * os.open raises it. */
        errno = err;
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, args[0]);
    }
    return Py_BuildValue("(iKKKKKKKKKKK)", status, (unsigned long long)sb.st_mode,
                         (unsigned long long)sb.st_size, (unsigned long long)sb.st_dev,
                         (unsigned long long)sb.st_ino, (unsigned long long)start,
                         (unsigned long long)end, (unsigned long long)counts[0],
                         (unsigned long long)counts[1], (unsigned long long)counts[2],
                         (unsigned long long)counts[3], (unsigned long long)counts[4]);
}

const char iommap_file_cache_stat_doc[] =
    "file_cache_stat(path, offset, length, follow, /)\n--\n\n"
    "Open a file, count its pages in the page cache over a range with\n"
    "cachestat(2), close it: (status, st_mode, size, st_dev, st_ino, start, end,\n"
    "cached, dirty, writeback, evicted, recently_evicted). status 0: counted;\n"
    "1: the kernel hides the file's page cache; 2: no cachestat(2) here;\n"
    "3: a block device (count it through a mapping). What open() cannot map\n"
    "is refused with the same iommap.Error.";
