/* Inputs that run the caller's code or whose size is not their length: see
 * inputs.h for the two rules every function here keeps. */
#include "inputs.h"

#include <stdatomic.h>

#include <string.h>
#include <unistd.h>

/* ---- buffers ------------------------------------------------------------- */

/* A buffer whose format holds Python object pointers ('O'; struct field
 * names, between colons, skipped): filling it with file bytes would crash
 * the interpreter when it is freed. */
static int holds_objects(const char *format)
{
    for (const char *f = format; f != NULL && *f != '\0'; f++) {
        if (*f == ':') {
            const char *end = strchr(f + 1, ':');
            if (end == NULL)
                break;
            f = end;
        } else if (*f == 'O') {
            return 1;
        }
    }
    return 0;
}

/* True when `obj`'s buffer comes from Python code (a class defining
 * __buffer__, Python 3.12+), whose exceptions are the caller's own; false
 * for the built-in exporters (memoryview, bytes, array, mmap, numpy...),
 * whose failures are refusals of the argument (a released memoryview, a
 * closed mmap): badarg. */
static int exported_by_python_code(PyObject *obj)
{
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *method = PyObject_GetAttrString((PyObject *)Py_TYPE(obj), "__buffer__");
    int python = method != NULL && !PyObject_TypeCheck(method, &PyWrapperDescr_Type);
    Py_XDECREF(method);
    PyErr_Clear();
    PyErr_Restore(type, value, traceback);
    return python;
}

/* PyObject_GetBuffer(obj, view, flags) where a failure of a built-in
 * exporter is a refusal (1, no exception set) and one of Python code is the
 * caller's own (-1, its exception set).  A read-write request that the
 * exporter would grant read-only is a refusal too. */
static int get_any_buffer(PyObject *obj, Py_buffer *view, int flags)
{
    if (!PyObject_CheckBuffer(obj))
        return 1;
    if (PyObject_GetBuffer(obj, view, flags) == 0)
        return 0;
    if (!exported_by_python_code(obj)) {
        PyErr_Clear();
        return 1;
    }
    if (flags & PyBUF_WRITABLE) {
        PyObject *type, *value, *traceback;
        PyErr_Fetch(&type, &value, &traceback);
        if (PyObject_GetBuffer(obj, view, flags & ~PyBUF_WRITABLE) == 0) {
            PyBuffer_Release(view);
            Py_XDECREF(type);
            Py_XDECREF(value);
            Py_XDECREF(traceback);
            return 1;
        }
        PyErr_Clear();
        PyErr_Restore(type, value, traceback);
    }
    return -1;
}

int iommap_get_buffer(PyObject *obj, Py_buffer *view, int writable)
{
    /* Exactly what is needed, so the hot calls pay for nothing more: a
     * contiguous buffer (PyBUF_SIMPLE asks for one), writable and with its
     * format (to refuse object pointers) for a destination. */
    int flags = writable ? PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT : PyBUF_SIMPLE;
    int rc = get_any_buffer(obj, view, flags);
    if (rc != 0)
        return rc;
    if (writable && holds_objects(view->format)) {
        PyBuffer_Release(view);
        return 1;
    }
    return 0;
}

int iommap_get_destination(PyObject *obj, Py_buffer *buf)
{
    return iommap_get_buffer(obj, buf, 1);
}

/* ---- counts ----------------------------------------------------------------- */

/* Read once, lazily.  Threads of several interpreters (each with its own
 * GIL) or of a free-threaded build may ask for the first time at once; each
 * finds and stores the same value, so relaxed atomics are enough, and keep
 * those first stores from being a data race. */
static uint64_t physical_memory(void)
{
    static _Atomic uint64_t known;
    uint64_t bytes = atomic_load_explicit(&known, memory_order_relaxed);
    if (bytes == 0) {
        long pages = sysconf(_SC_PHYS_PAGES);
        long page = sysconf(_SC_PAGESIZE);
        bytes = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : (uint64_t)PY_SSIZE_T_MAX;
        atomic_store_explicit(&known, bytes, memory_order_relaxed);
    }
    return bytes;
}

int iommap_too_many(uint64_t count, size_t each)
{
    uint64_t total;
    if (__builtin_mul_overflow(count, (uint64_t)each, &total))
        return 1;
    return total > (uint64_t)PY_SSIZE_T_MAX || total > physical_memory();
}

/* ---- pwrite's nested lists ---------------------------------------------------- */

static uint64_t add_saturating(uint64_t a, uint64_t b)
{
    return b > UINT64_MAX - a ? UINT64_MAX : a + b;
}

static PyObject *wrong_type(iommap_state *st, const char *op, PyObject *obj)
{
    return iommap_err_bad_type(st,
                               "%s: data must be bytes-like (contiguous) or a list of them, "
                               "not %.100s",
                               op, Py_TYPE(obj)->tp_name);
}

/* A leaf's length, without asking exact bytes, bytearray or memoryview
 * objects for a buffer (they run no code of the caller's). */
static int leaf_length(iommap_state *st, const char *op, PyObject *obj, uint64_t *length)
{
    if (PyBytes_CheckExact(obj)) {
        *length = (uint64_t)PyBytes_GET_SIZE(obj);
        return 0;
    }
    if (PyByteArray_CheckExact(obj)) {
        *length = (uint64_t)PyByteArray_GET_SIZE(obj);
        return 0;
    }
    if (PyMemoryView_Check(obj)) {
        *length = (uint64_t)PyMemoryView_GET_BUFFER(obj)->len;
        return 0;
    }
    if (PyUnicode_Check(obj) || PyLong_Check(obj)) {
        wrong_type(st, op, obj);
        return -1;
    }
    Py_buffer view;
    int rc = iommap_get_buffer(obj, &view, 0);
    if (rc < 0)
        return -1;
    if (rc > 0) {
        wrong_type(st, op, obj);
        return -1;
    }
    *length = (uint64_t)view.len;
    PyBuffer_Release(&view);
    return 0;
}

/* `memo` maps id(list) to (list, bytes, pieces) for each sublist measured;
 * holding the list keeps its id from being reused during the walk. */
static int measure(iommap_state *st, const char *op, PyObject *obj, int depth, PyObject **memo,
                   iommap_iolist_size *size)
{
    if (!PyList_Check(obj) && !PyTuple_Check(obj)) {
        uint64_t length;
        if (leaf_length(st, op, obj, &length) != 0)
            return -1;
        size->bytes = length;
        size->pieces = 1;
        return 0;
    }
    if (depth >= IOMMAP_MAX_IOLIST_DEPTH) {
        iommap_err_bad_value(st, "%s: data nests lists deeper than %d (or contains itself)", op,
                             IOMMAP_MAX_IOLIST_DEPTH);
        return -1;
    }
    PyObject *key = NULL;
    if (depth > 0 && *memo != NULL) {
        key = PyLong_FromVoidPtr(obj);
        if (key == NULL)
            return -1;
        PyObject *known = PyDict_GetItemWithError(*memo, key); /* borrowed */
        if (known != NULL) {
            Py_DECREF(key);
            size->bytes = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(known, 1));
            size->pieces = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(known, 2));
            return 0;
        }
        if (PyErr_Occurred()) {
            Py_DECREF(key);
            return -1;
        }
    }
    iommap_iolist_size total = {0, 0};
    int rc = 0, has_lists = 0;
    /* Index by index, re-reading the size: an exporter's code may change
     * the list (the expansion that follows checks again in any case). */
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(obj); /* another thread may resize the list */
#endif
    for (Py_ssize_t i = 0; rc == 0 && i < PySequence_Fast_GET_SIZE(obj); i++) {
        PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(obj, i));
        iommap_iolist_size part;
        has_lists |= PyList_Check(item) || PyTuple_Check(item);
        rc = measure(st, op, item, depth + 1, memo, &part);
        Py_DECREF(item);
        if (rc == 0) {
            total.bytes = add_saturating(total.bytes, part.bytes);
            total.pieces = add_saturating(total.pieces, part.pieces);
        }
    }
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    /* Remembered when measuring it again would cost: a list holding lists,
     * or more than a few pieces.  A small list of buffers costs no more to
     * measure again than the reference to it did. */
    int worth = has_lists || PySequence_Fast_GET_SIZE(obj) > 8;
    if (rc == 0 && depth > 0 && worth && key == NULL) {
        if ((*memo == NULL && (*memo = PyDict_New()) == NULL) ||
            (key = PyLong_FromVoidPtr(obj)) == NULL)
            rc = -1;
    }
    if (rc == 0 && key != NULL && worth) {
        PyObject *entry = Py_BuildValue("(OKK)", obj, (unsigned long long)total.bytes,
                                        (unsigned long long)total.pieces);
        if (entry == NULL || PyDict_SetItem(*memo, key, entry) != 0)
            rc = -1;
        Py_XDECREF(entry);
    }
    Py_XDECREF(key);
    if (rc == 0)
        *size = total;
    return rc;
}

int iommap_iolist_measure(iommap_state *st, const char *op, PyObject *data,
                          iommap_iolist_size *size)
{
    PyObject *memo = NULL;
    int rc = measure(st, op, data, 0, &memo, size);
    Py_XDECREF(memo);
    return rc;
}

/* ---- offsets ------------------------------------------------------------------ */

/* An 8-byte integer in this machine's byte order: q, Q, l or L, with no
 * prefix or a prefix meaning native order ("@", "=", and "<" or ">" where it
 * is the machine's). */
static int is_native_int64(const Py_buffer *b)
{
    const char *f = b->format != NULL ? b->format : "B";
    if (*f != '\0' && strchr(IOMMAP_NATIVE_ORDER_PREFIXES, *f) != NULL)
        f++;
    return b->itemsize == 8 && (f[0] == 'q' || f[0] == 'Q' || f[0] == 'l' || f[0] == 'L') &&
           f[1] == '\0';
}

static int offsets_from_buffer(iommap_state *st, const char *op, PyObject *obj, uint64_t **values,
                               size_t *count)
{
    Py_buffer b;
    int got = get_any_buffer(obj, &b, PyBUF_FULL_RO);
    if (got < 0)
        return -1; /* the exporter's own failure */
    if (got > 0) {
        iommap_err_bad_type(st, "%s: offsets: %.100s cannot give its buffer", op,
                            Py_TYPE(obj)->tp_name);
        return -1;
    }
    int rc = -1;
    if (b.ndim != 1 || b.suboffsets != NULL) {
        iommap_err_bad_type(st,
                            "%s: offsets must be one-dimensional, not a %d-dimensional buffer "
                            "(%.100s)",
                            op, b.ndim, Py_TYPE(obj)->tp_name);
        goto done;
    }
    if (!is_native_int64(&b)) {
        iommap_err_bad_type(st,
                            "%s: a buffer of offsets must hold 8-byte integers in native byte "
                            "order (format %s), not format '%.20s' of %zd-byte items",
                            op, sizeof(long) == 8 ? "q, Q, l or L" : "q or Q",
                            b.format != NULL ? b.format : "B", b.itemsize);
        goto done;
    }
    size_t n = (size_t)b.shape[0];
    int is_signed = strpbrk(b.format != NULL ? b.format : "", "ql") != NULL;
    uint64_t *v = PyMem_Malloc(n ? n * sizeof(uint64_t) : 1);
    if (v == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const char *p = b.buf;
    for (size_t i = 0; i < n; i++, p += b.strides[0]) {
        memcpy(&v[i], p, sizeof(uint64_t));
        if (is_signed && (int64_t)v[i] < 0) {
            iommap_err_bad_value(st, "%s: offsets[%zu] is negative", op, i);
            PyMem_Free(v);
            goto done;
        }
    }
    *values = v;
    *count = n;
    rc = 0;
done:
    PyBuffer_Release(&b);
    return rc;
}

static int has_length(PyObject *obj)
{
    PyTypeObject *t = Py_TYPE(obj);
    return (t->tp_as_sequence != NULL && t->tp_as_sequence->sq_length != NULL) ||
           (t->tp_as_mapping != NULL && t->tp_as_mapping->mp_length != NULL);
}

static int offsets_from_iterable(iommap_state *st, const char *op, PyObject *obj, uint64_t **values,
                                 size_t *count)
{
    if (Py_TYPE(obj)->tp_iter == NULL && !PySequence_Check(obj)) {
        iommap_err_bad_type(st,
                            "%s: offsets must be a sequence of ints or a buffer of 8-byte "
                            "integers, not %.100s",
                            op, Py_TYPE(obj)->tp_name);
        return -1;
    }
    /* Refuse what could never be held before making a list of it. */
    if (!PyList_CheckExact(obj) && !PyTuple_CheckExact(obj) && has_length(obj)) {
        Py_ssize_t n = PyObject_Size(obj);
        if (n < 0 && PyRange_Check(obj) && PyErr_ExceptionMatches(PyExc_OverflowError)) {
            /* A range longer than Py_ssize_t (2**31 and more on 32-bit):
             * Python's own arithmetic, not the caller's code, gave up. */
            PyErr_Clear();
            iommap_err_bad_value(st, "%s: more offsets than memory could hold", op);
            return -1;
        }
        if (n < 0)
            return -1; /* the caller's __len__ */
        if (iommap_too_many((uint64_t)n, sizeof(PyObject *) + sizeof(uint64_t))) {
            iommap_err_bad_value(st, "%s: %zd offsets are more than memory could hold", op, n);
            return -1;
        }
    }
    /* Not PySequence_Fast: it replaces a TypeError from the caller's
     * __iter__ with its own. */
    PyObject *seq =
        PyList_CheckExact(obj) || PyTuple_CheckExact(obj) ? Py_NewRef(obj) : PySequence_List(obj);
    if (seq == NULL)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uint64_t *v = PyMem_Malloc(n ? (size_t)n * sizeof(uint64_t) : 1);
    if (v == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    /* The caller's own list may be changed by another thread as it is read:
     * with the GIL only while converting an item runs Python code, without
     * it (free-threaded builds) at any time.  So the size is re-read each
     * step, an item is read only under the list's critical section, and it
     * is held (a reference of ours) before any Python code can run; a
     * critical section suspended by that code is taken again before the
     * next item.  With the GIL the critical section is nothing. */
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(seq);
#endif
    for (Py_ssize_t i = 0; rc == 0 && i < n && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (iommap_small_int(item, &v[i]))
            continue;
        char name[32]; /* only the general path may need it, for its message */
        snprintf(name, sizeof(name), "offsets[%zd]", i);
        Py_INCREF(item);
        rc = iommap_arg_to_u64(st, op, name, item, &v[i]);
        Py_DECREF(item);
    }
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    if (rc == 0 && n != PySequence_Fast_GET_SIZE(seq)) {
        iommap_err_bad_value(st, "%s: offsets changed size while being read", op);
        rc = -1;
    }
    Py_DECREF(seq);
    if (rc != 0) {
        PyMem_Free(v);
        return -1;
    }
    *values = v;
    *count = (size_t)n;
    return 0;
}

int iommap_read_offsets(iommap_state *st, const char *op, PyObject *obj, uint64_t **values,
                        size_t *count)
{
    *values = NULL;
    *count = 0;
    if (PyObject_CheckBuffer(obj))
        return offsets_from_buffer(st, op, obj, values, count);
    return offsets_from_iterable(st, op, obj, values, count);
}
