/* Argument conversion: integers, open()'s mode, size and path, argument
 * counts.  Each raises badarg (or TypeError, as Python does for a wrong
 * argument count) and returns -1 or NULL. */
#include "iommap.h"

#include <string.h>

int iommap_index_value(PyObject *obj, long long *value, int *overflow)
{
    PyObject *index;
    if (PyLong_CheckExact(obj)) {
        index = Py_NewRef(obj);
    } else if (PyIndex_Check(obj) && !PyFloat_Check(obj)) {
        index = PyNumber_Index(obj); /* the caller's exception passes through */
        if (index == NULL)
            return -1;
    } else {
        return 1;
    }
    *value = PyLong_AsLongLongAndOverflow(index, overflow);
    Py_DECREF(index);
    return *overflow == 0 && *value == -1 && PyErr_Occurred() ? -1 : 0;
}

int iommap_arg_to_u64(iommap_state *st, const char *op, const char *name, PyObject *obj,
                      uint64_t *out)
{
    long long v;
    int overflow;
    int rc = iommap_index_value(obj, &v, &overflow);
    if (rc > 0)
        iommap_err_bad_type(st, "%s: %s must be an int, not %.100s", op, name,
                            Py_TYPE(obj)->tp_name);
    if (rc != 0)
        return -1;
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        iommap_err_bad_value(st, "%s: %s must not be negative", op, name);
        return -1;
    }
    *out = overflow > 0 ? UINT64_MAX : (uint64_t)v;
    return 0;
}

const char *iommap_mode_name(iommap_mode mode)
{
    switch (mode) {
    case IOMMAP_READ:
        return "read";
    case IOMMAP_WRITE:
        return "write";
    case IOMMAP_READ_WRITE:
        break;
    }
    return "read_write";
}

int iommap_parse_mode(iommap_state *st, PyObject *obj, iommap_mode *mode)
{
    if (obj == NULL) {
        *mode = IOMMAP_READ_WRITE;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        iommap_err_bad_type(st, "open: mode must be a str, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    static const iommap_mode modes[] = {IOMMAP_READ, IOMMAP_WRITE, IOMMAP_READ_WRITE};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (PyUnicode_CompareWithASCIIString(obj, iommap_mode_name(modes[i])) == 0) {
            *mode = modes[i];
            return 0;
        }
    }
    iommap_err_bad_value(st, "open: mode must be \"read\", \"write\" or \"read_write\", not %R",
                         obj);
    return -1;
}

int iommap_parse_size(iommap_state *st, PyObject *obj, uint64_t *size, int *given)
{
    uint64_t value;
    *size = 0;
    *given = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (iommap_arg_to_u64(st, "open", "size", obj, &value) != 0)
        return -1;
    /* A file size, not a memory size: on a 32-bit machine too a file can
     * be larger than the address space (and a window of it mapped).  Larger
     * than a file can be: the reservation fails with EFBIG. */
    *size = value;
    *given = 1;
    return 0;
}

PyObject *iommap_encode_path(iommap_state *st, PyObject *path)
{
    PyObject *name;
    if (PyUnicode_Check(path) || PyBytes_Check(path)) {
        name = Py_NewRef(path);
    } else {
        /* os.fspath()'s protocol, done here so that what __fspath__ raises
         * stays the caller's (PyUnicode_FSConverter turns it into a
         * TypeError we could not tell from a wrong type). */
        PyObject *fspath = PyObject_GetAttrString((PyObject *)Py_TYPE(path), "__fspath__");
        if (fspath == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError))
                return NULL;
            PyErr_Clear();
            return iommap_err_bad_type(st,
                                       "open: path must be str, bytes or os.PathLike, not "
                                       "%.100s",
                                       Py_TYPE(path)->tp_name);
        }
        name = PyObject_CallOneArg(fspath, path);
        Py_DECREF(fspath);
        if (name == NULL)
            return NULL; /* raised by __fspath__ */
        if (!PyUnicode_Check(name) && !PyBytes_Check(name)) {
            iommap_err_bad_type(st, "open: %.100s.__fspath__() returned %.100s, not str or bytes",
                                Py_TYPE(path)->tp_name, Py_TYPE(name)->tp_name);
            Py_DECREF(name);
            return NULL;
        }
    }
    PyObject *encoded = PyUnicode_Check(name) ? PyUnicode_EncodeFSDefault(name) : Py_NewRef(name);
    Py_DECREF(name);
    if (encoded == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_UnicodeError))
            return NULL;
        PyErr_Clear();
        return iommap_err_bad_value(st, "open: path %R cannot be used as a file name", path);
    }
    if (strlen(PyBytes_AS_STRING(encoded)) != (size_t)PyBytes_GET_SIZE(encoded)) {
        Py_DECREF(encoded);
        return iommap_err_bad_value(st, "open: path %R contains a NUL byte", path);
    }
    return encoded;
}

int iommap_err_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t want)
{
    PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", op, want, nargs);
    return -1;
}
