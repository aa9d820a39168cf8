/* Page-cache counts of a file by path, for iommap.pagecache.
 *
 * file_cache_stat() does a file's open, fstat, cachestat(2) and close in one
 * call with the GIL released, so a walk over a tree of small files pays one
 * Python call per file instead of four.  It never maps the file: a walk
 * over 10,000 files makes no mapping at all.  Where cachestat(2) is missing
 * (before Linux 6.5, other systems; platform.c tells) it says so, and
 * iommap.pagecache counts with mincore(2) on a mapping instead.
 */
#include "iommap.h"

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
    CACHE_NOT_REGULAR = 3, /* a directory, FIFO, socket or device: not counted */
};

/* file_cache_stat(path, offset, length, follow, /) -> tuple
 *
 * (status, st_mode, size, st_dev, st_ino, start, end,
 *  cached, dirty, writeback, evicted, recently_evicted)
 *
 * [start, end) is the range counted: offset rounded down to a page, both
 * ends within the file; length None means to the end.  follow=False refuses
 * a symlink (O_NOFOLLOW).  An OS error (the open) raises OSError with the
 * path as its filename. */
PyObject *iommap_file_cache_stat(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    (void)module;
    if (nargs != 4) {
        PyErr_Format(PyExc_TypeError, "file_cache_stat() takes 4 arguments (%zd given)", nargs);
        return NULL;
    }
    unsigned long long offset = PyLong_AsUnsignedLongLong(args[1]);
    if (offset == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
    int to_end = args[2] == Py_None;
    unsigned long long length = 0;
    if (!to_end) {
        length = PyLong_AsUnsignedLongLong(args[2]);
        if (length == (unsigned long long)-1 && PyErr_Occurred())
            return NULL;
    }
    int follow = PyObject_IsTrue(args[3]);
    if (follow < 0)
        return NULL;
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(args[0], &encoded))
        return NULL;

    const char *path = PyBytes_AS_STRING(encoded);
    int flags = O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW);
    struct stat sb;
    memset(&sb, 0, sizeof sb);
    uint64_t counts[5] = {0, 0, 0, 0, 0};
    int status = CACHE_COUNTED;
    int err = 0;
    uint64_t start = 0, end = 0;
    uint64_t page = (uint64_t)iommap_page_size();

    /* O_NONBLOCK: opening a FIFO must not hang (it is reported as not
     * regular); it changes nothing for a regular file. */
    Py_BEGIN_ALLOW_THREADS
    int fd = open(path, flags);
    if (fd < 0) {
        err = errno;
    } else {
        if (fstat(fd, &sb) != 0) {
            err = errno;
        } else if (!S_ISREG(sb.st_mode)) {
            status = CACHE_NOT_REGULAR;
        } else {
            uint64_t size = (uint64_t)sb.st_size;
            start = offset - offset % page;
            if (start > size)
                start = size;
            end = (to_end || length > size - (offset < size ? offset : size)) ? size
                                                                              : offset + length;
            if (end < start)
                end = start;
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

    if (err != 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, args[0]);
        Py_DECREF(encoded);
        return NULL;
    }
    Py_DECREF(encoded);
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
    "3: not a regular file.";
