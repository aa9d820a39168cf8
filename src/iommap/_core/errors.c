/* Every exception the core raises, built from the classes in iommap._errors,
 * and a handle's locked section's status turned into one of them.  Messages
 * name the operation ("pread: ...") and, for OS errors, the system call
 * that failed. */
#include "handle.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

PyObject *iommap_err_format(PyObject *cls, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    PyObject *msg = PyUnicode_FromFormatV(fmt, ap);
    va_end(ap);
    if (msg != NULL) {
        PyErr_SetObject(cls, msg);
        Py_DECREF(msg);
    }
    return NULL;
}

PyObject *iommap_err_closed(iommap_state *st, const char *op)
{
    PyErr_Format(st->closed_error, "%s: the handle is closed", op);
    return NULL;
}

PyObject *iommap_err_out_of_bounds(iommap_state *st, const char *op, uint64_t offset,
                                   uint64_t length, size_t size)
{
    /* PyUnicode_FromFormat has no 64-bit unsigned conversion everywhere. */
    char buf[160];
    snprintf(buf, sizeof(buf),
             "%s: range [%" PRIu64 ", +%" PRIu64 ") passes the end of the mapping (%zu bytes)", op,
             offset, length, size);
    PyErr_SetString(st->out_of_bounds_error, buf);
    return NULL;
}

/* A number as the caller gave it: an int past 64 bits was saturated to
 * UINT64_MAX on conversion, so the message shows the int itself.  (The int
 * type's own repr: no code of a subclass runs.) */
static PyObject *as_given(PyObject *given, uint64_t value)
{
    if (given != NULL && PyLong_Check(given))
        return PyLong_Type.tp_repr(given);
    return PyUnicode_FromFormat("%llu", (unsigned long long)value);
}

PyObject *iommap_err_out_of_bounds_given(iommap_state *st, const char *op, PyObject *offset_obj,
                                         PyObject *length_obj, uint64_t offset, uint64_t length,
                                         size_t size)
{
    PyObject *off = as_given(offset_obj, offset);
    PyObject *len = off != NULL ? as_given(length_obj, length) : NULL;
    if (len != NULL)
        PyErr_Format(st->out_of_bounds_error,
                     "%s: range [%U, +%U) passes the end of the mapping (%zu bytes)", op, off, len,
                     size);
    Py_XDECREF(off);
    Py_XDECREF(len);
    return NULL;
}

PyObject *iommap_err_window_beyond(iommap_state *st, PyObject *offset_obj, PyObject *length_obj,
                                   uint64_t offset, uint64_t length, uint64_t file_size)
{
    PyObject *off = as_given(offset_obj, offset);
    if (off == NULL)
        return NULL;
    if (length_obj == NULL || length_obj == Py_None || length == 0) {
        PyErr_Format(st->out_of_bounds_error,
                     "open: the window at offset %U is past the end of the file (%llu bytes)", off,
                     (unsigned long long)file_size);
    } else {
        PyObject *len = as_given(length_obj, length);
        if (len != NULL)
            PyErr_Format(st->out_of_bounds_error,
                         "open: the window at offset %U, length %U passes the end of the file "
                         "(%llu bytes)",
                         off, len, (unsigned long long)file_size);
        Py_XDECREF(len);
    }
    Py_DECREF(off);
    return NULL;
}

PyObject *iommap_err_out_of_bounds_at(iommap_state *st, const char *op, size_t index,
                                      PyObject *offset_obj, PyObject *length_obj, uint64_t offset,
                                      uint64_t length, size_t size)
{
    PyObject *off = as_given(offset_obj, offset);
    PyObject *len = off != NULL ? as_given(length_obj, length) : NULL;
    if (len != NULL)
        PyErr_Format(st->out_of_bounds_error,
                     "%s: offsets[%zu]: range [%U, +%U) passes the end of the mapping (%zu "
                     "bytes); nothing was copied",
                     op, index, off, len, size);
    Py_XDECREF(off);
    Py_XDECREF(len);
    return NULL;
}

/* Raises `exc`, an exception instance, as itself; steals the reference. */
static PyObject *raise_instance(PyObject *exc)
{
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}

/* SigbusError(errno.EFAULT, message): it reads as the OSError it also is. */
PyObject *iommap_err_sigbus(iommap_state *st, const char *op)
{
    PyObject *msg = PyUnicode_FromFormat(
        "%s: SIGBUS: the pages behind the range are gone (file shrunk or I/O error)", op);
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(st->sigbus_error, "iO", EFAULT, msg);
    Py_DECREF(msg);
    return raise_instance(exc);
}

/* Raises the errno `code` exception from the factory with message `msg`
 * (a new reference, or NULL if making it failed) and `filename` (or None). */
static PyObject *raise_os(iommap_state *st, int code, PyObject *msg, PyObject *filename)
{
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(st->os_error_factory, "iOO", code, msg,
                                          filename != NULL ? filename : Py_None);
    Py_DECREF(msg);
    return raise_instance(exc);
}

PyObject *iommap_err_os(iommap_state *st, const char *op, const char *call, int code,
                        PyObject *filename)
{
    return raise_os(st, code, PyUnicode_FromFormat("%s: %s failed: %s", op, call, strerror(code)),
                    filename);
}

PyObject *iommap_err_refused(iommap_state *st, const char *op, const char *why)
{
    return raise_os(st, EACCES, PyUnicode_FromFormat("%s: %s", op, why), NULL);
}

PyObject *iommap_err_errno(iommap_state *st, int code, const char *op, const char *why)
{
    PyObject *msg = PyUnicode_FromFormat("%s: %s", op, why);
    if (msg == NULL)
        return NULL;
    PyObject *exc = PyObject_CallFunction(st->os_error_factory, "iOO", code, msg, Py_None);
    Py_DECREF(msg);
    return raise_instance(exc);
}

PyObject *iommap_err_file_type(iommap_state *st, const char *op, const char *kind, int code,
                               PyObject *filename)
{
    PyObject *msg = PyUnicode_FromFormat(
        "%s: cannot map %s: only regular files and block devices can be mapped", op, kind);
    return raise_os(st, code, msg, filename);
}

/* ---- a handle's calls: before and after the locked section -------------- */

int iommap_err_unusable(iommap_handle *h, const char *op, int need)
{
    if (iommap_is_closing(h)) {
        iommap_err_closed(IOMMAP_STATE(h), op);
        return -1;
    }
    if ((need & IOMMAP_READ) && !IOMMAP_CAN_READ(h->opts.mode)) {
        iommap_err_refused(IOMMAP_STATE(h), op, "the handle is write-only");
        return -1;
    }
    if ((need & IOMMAP_WRITE) && !IOMMAP_CAN_WRITE(h->opts.mode)) {
        iommap_err_refused(IOMMAP_STATE(h), op, "the handle is read-only");
        return -1;
    }
    return 0;
}

PyObject *iommap_raise_status(iommap_handle *h, const char *op, const iommap_status *s,
                              uint64_t offset, uint64_t length)
{
    return iommap_raise_status_given(h, op, s, NULL, NULL, offset, length);
}

PyObject *iommap_raise_status_given(iommap_handle *h, const char *op, const iommap_status *s,
                                    PyObject *offset_obj, PyObject *length_obj, uint64_t offset,
                                    uint64_t length)
{
    iommap_state *st = IOMMAP_STATE(h);
    switch (s->what) {
    case IOMMAP_FAIL_CLOSED:
        return iommap_err_closed(st, op);
    case IOMMAP_FAIL_OUT_OF_BOUNDS:
        return iommap_err_out_of_bounds_given(st, op, offset_obj, length_obj, offset, length,
                                              s->size);
    case IOMMAP_FAIL_SIGBUS:
        return iommap_err_sigbus(st, op);
    case IOMMAP_FAIL_OS:
        return iommap_err_os(st, op, s->call, s->err, NULL);
    case IOMMAP_DONE:
        break;
    }
    PyErr_SetString(PyExc_SystemError, "iommap: a status without a failure was raised");
    return NULL;
}
