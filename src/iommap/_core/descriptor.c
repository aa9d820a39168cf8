/* open() given what the caller already holds: a file descriptor (an int)
 * or an object with fileno(), as mmap.mmap and numpy.memmap take.
 *
 * The handle works on its own duplicate of the descriptor, so closing the
 * handle never closes the caller's, and the caller closing theirs never
 * breaks the handle.  The two share the open file (offset, status flags),
 * as os.dup's do. */
#include "iommap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>

/* Looks `name` up on `obj`: 1 found (*out a new reference), 0 absent, -1
 * with the exception the lookup raised (anything but AttributeError). */
static int optional_attr(PyObject *obj, const char *name, PyObject **out)
{
    *out = PyObject_GetAttrString(obj, name);
    if (*out != NULL)
        return 1;
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return -1;
    PyErr_Clear();
    return 0;
}

/* Calls obj.flush() if it has one: 0, or -1 with what flush() raised. */
static int flush_file_object(PyObject *obj)
{
    PyObject *flush;
    int found = optional_attr(obj, "flush", &flush);
    if (found <= 0)
        return found;
    PyObject *done = PyObject_CallNoArgs(flush);
    Py_DECREF(flush);
    if (done == NULL)
        return -1;
    Py_DECREF(done);
    return 0;
}

int iommap_descriptor_of(iommap_state *st, PyObject *source)
{
    /* A path wins: str, bytes, and os.PathLike (whose type has __fspath__),
     * even one that also has fileno(). */
    if (PyUnicode_Check(source) || PyBytes_Check(source))
        return IOMMAP_NOT_A_DESCRIPTOR;
    PyObject *fspath;
    int found = optional_attr((PyObject *)Py_TYPE(source), "__fspath__", &fspath);
    Py_XDECREF(fspath);
    if (found != 0)
        return found < 0 ? -1 : IOMMAP_NOT_A_DESCRIPTOR;

    PyObject *number;
    if (PyBool_Check(source)) {
        iommap_err_bad_type(st, "open: a file descriptor must be an int, not bool");
        return -1;
    }
    if (PyLong_Check(source)) {
        number = Py_NewRef(source);
    } else {
        PyObject *fileno;
        found = optional_attr(source, "fileno", &fileno);
        if (found < 0)
            return -1;
        if (found == 0) {
            iommap_err_bad_type(st,
                                "open: path must be str, bytes, os.PathLike, a file "
                                "descriptor or an object with fileno(), not %.100s",
                                Py_TYPE(source)->tp_name);
            return -1;
        }
        /* Bytes written to a file object may still sit in its buffer: they
         * are part of the file the caller means (numpy.memmap(f) sees them
         * through f.seek/f.tell), so they go to the file before it is
         * measured and mapped. */
        if (flush_file_object(source) != 0) {
            Py_DECREF(fileno);
            return -1;
        }
        number = PyObject_CallNoArgs(fileno);
        Py_DECREF(fileno);
        if (number == NULL)
            return -1;
        if (!PyLong_Check(number) || PyBool_Check(number)) {
            iommap_err_bad_type(st, "open: fileno() returned %.100s, not an int",
                                Py_TYPE(number)->tp_name);
            Py_DECREF(number);
            return -1;
        }
    }
    int overflow;
    long value = PyLong_AsLongAndOverflow(number, &overflow);
    Py_DECREF(number);
    if (value == -1 && overflow == 0 && PyErr_Occurred())
        return -1;
    if (overflow != 0 || value < 0 || value > INT_MAX) {
        iommap_err_bad_value(st, "open: %s is not a file descriptor",
                             overflow > 0 || value > INT_MAX ? "a number that large"
                                                             : "a negative number");
        return -1;
    }
    return (int)value;
}

int iommap_dup_descriptor(iommap_state *st, int fd, iommap_mode mode, int needs_write)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0) {
        iommap_err_os(st, "open", "fcntl(F_GETFL)", errno, NULL);
        return -1;
    }
    /* mmap always reads the descriptor; a shared writable mapping, or a
     * size= to set, writes it too. */
#ifdef O_PATH
    /* An O_PATH descriptor names a file but cannot read it: mmap would
     * answer EBADF without a word of why. */
    if (flags & O_PATH) {
        char why[160];
        snprintf(why, sizeof(why),
                 "descriptor %d is an O_PATH descriptor, which names a file but cannot "
                 "read it: open the file for reading to map it",
                 fd);
        iommap_err_errno(st, EBADF, "open", why);
        return -1;
    }
#endif
    int access = flags & O_ACCMODE;
    if (access == O_WRONLY || (needs_write && access != O_RDWR)) {
        char why[200];
        snprintf(why, sizeof(why), "descriptor %d is open %s; mode \"%s\" needs it open %s", fd,
                 access == O_RDONLY   ? "read-only (O_RDONLY)"
                 : access == O_WRONLY ? "write-only (O_WRONLY)"
                                      : "without read access",
                 iommap_mode_name(mode),
                 needs_write ? "for reading and writing (O_RDWR)"
                             : "for reading (O_RDONLY or O_RDWR)");
        iommap_err_refused(st, "open", why);
        return -1;
    }
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
        iommap_err_os(st, "open", "fcntl(F_DUPFD_CLOEXEC)", errno, NULL);
        return -1;
    }
    return copy;
}
