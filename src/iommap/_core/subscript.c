/* m[i], m[a:b] and their assignments, and bool(m): what code written for
 * mmap.mmap or bytes reaches for.  They read and write as pread and pwrite
 * do (bounds-checked, under the handle lock, SIGBUS-protected), with
 * Python's negative indices counted from the end of the mapping.
 *
 * The end is the mapping's size under the lock, so a negative index or an
 * open slice end is resolved inside the locked section, against the same
 * size the copy is checked against: a truncate on another thread cannot
 * slip between the two. */
#include "handle.h"

#include <string.h>

/* One end of a range as written: a distance from the start, or (from_end)
 * from the end.  Ints beyond 64 bits saturate: such a position is out of
 * range, never an OverflowError. */
typedef struct {
    uint64_t distance;
    int from_end;
} position;

/* A range as written: [start, stop), either end possibly from the end. */
typedef struct {
    position start;
    position stop;
    int is_index; /* m[i]: one byte, returned or assigned as an int */
} key_range;

static int position_of(iommap_handle *h, const char *op, PyObject *obj, position *out)
{
    long long v;
    int overflow;
    int rc = iommap_index_value(obj, &v, &overflow);
    if (rc > 0)
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "%s: indices must be ints or slices of ints, not %.100s", op,
                            Py_TYPE(obj)->tp_name);
    if (rc != 0)
        return -1;
    if (overflow != 0) {
        out->distance = UINT64_MAX;
        out->from_end = overflow < 0;
    } else if (v < 0) {
        out->distance = (uint64_t)(-(v + 1)) + 1; /* no overflow at LLONG_MIN */
        out->from_end = 1;
    } else {
        out->distance = (uint64_t)v;
        out->from_end = 0;
    }
    return 0;
}

/* The key of m[key]: an int (or __index__ object), or a slice of them with
 * no step other than 1. */
static int key_range_of(iommap_handle *h, const char *op, PyObject *key, key_range *k)
{
    if (!PySlice_Check(key)) {
        if (position_of(h, op, key, &k->start) != 0)
            return -1;
        k->stop = k->start;
        k->is_index = 1;
        return 0;
    }
    PySliceObject *slice = (PySliceObject *)key;
    k->is_index = 0;
    if (slice->step != Py_None) {
        position step;
        if (position_of(h, op, slice->step, &step) != 0)
            return -1;
        if (step.from_end || step.distance != 1) {
            iommap_err_bad_value(IOMMAP_STATE(h),
                                 "%s: a slice of a mapped file takes no step but 1", op);
            return -1;
        }
    }
    k->start = (position){0, 0};
    k->stop = (position){0, 1}; /* None: the end */
    if (slice->start != Py_None && position_of(h, op, slice->start, &k->start) != 0)
        return -1;
    if (slice->stop != Py_None && position_of(h, op, slice->stop, &k->stop) != 0)
        return -1;
    return 0;
}

/* Resolves `k` against a mapping of `size` bytes into [*offset, +*length);
 * 0 if it lies inside, -1 if not. */
static int resolve(const key_range *k, size_t size, uint64_t *offset, uint64_t *length)
{
    uint64_t start, stop;
    if (k->start.from_end) {
        if (k->start.distance > size)
            return -1;
        start = size - k->start.distance;
    } else {
        start = k->start.distance;
    }
    if (k->is_index) {
        stop = start == UINT64_MAX ? UINT64_MAX : start + 1;
    } else if (k->stop.from_end) {
        if (k->stop.distance > size)
            return -1;
        stop = size - k->stop.distance;
    } else {
        stop = k->stop.distance;
    }
    if (start > stop || stop > size)
        return -1;
    *offset = start;
    *length = stop - start;
    return 0;
}

/* The length the key names if it does not depend on the size, else -1. */
static int64_t fixed_length(const key_range *k)
{
    if (k->is_index)
        return 1;
    if (k->start.from_end || k->stop.from_end || k->stop.distance < k->start.distance ||
        k->stop.distance - k->start.distance > (uint64_t)PY_SSIZE_T_MAX)
        return -1;
    return (int64_t)(k->stop.distance - k->start.distance);
}

static PyObject *key_out_of_range(iommap_handle *h, const char *op, PyObject *key, size_t size)
{
    return iommap_err_format(IOMMAP_STATE(h)->out_of_bounds_error,
                             "%s: %R is out of range for a mapping of %zu bytes", op, key, size);
}

/* The locked section of a subscript: takes the lock, then resolves `k`
 * against the mapping's size.  Returns the mapping with the lock held and
 * the range in *offset, *length; or NULL with the lock released and *s
 * saying why. */
static iommap_mapping *enter_key(iommap_handle *h, iommap_lock_kind kind, const key_range *k,
                                 uint64_t *offset, uint64_t *length, iommap_status *s)
{
    iommap_mapping *m = iommap_enter_open(h, kind, s);
    if (m == NULL || resolve(k, m->size, offset, length) == 0)
        return m;
    s->what = IOMMAP_FAIL_OUT_OF_BOUNDS;
    s->size = m->size;
    iommap_unlock(h);
    return NULL;
}

/* Copies the bytes `k` names into dst, which holds `room` bytes.  If they
 * are not `room` bytes (the size moved since the caller guessed), copies
 * nothing and sets *needed. */
static iommap_status copy_key_out(iommap_handle *h, const key_range *k, char *dst, size_t room,
                                  size_t *needed)
{
    iommap_status s;
    uint64_t offset, length;
    iommap_mapping *m = enter_key(h, IOMMAP_SHARED, k, &offset, &length, &s);
    if (m == NULL)
        return s;
    *needed = (size_t)length;
    if (length != room) {
        iommap_unlock(h);
        return s;
    }
    iommap_copy_work w = {m, (size_t)offset, dst, (size_t)length, 0};
    if (iommap_finish_released(h, (size_t)length, iommap_run_copy, &w) != 0)
        s.what = IOMMAP_FAIL_SIGBUS;
    return s;
}

PyObject *iommap_mf_subscript(iommap_handle *h, PyObject *key)
{
    const char *op = "__getitem__";
    key_range k;
    if (key_range_of(h, op, key, &k) != 0 || iommap_check_usable(h, op, IOMMAP_READ) != 0)
        return NULL;

    /* A first guess of the length, from the size readable without the lock;
     * a huge slice is out of range here rather than a MemoryError.  The
     * locked section decides. */
    size_t hint = atomic_load_explicit(&h->size_hint, memory_order_relaxed);
    int64_t fixed = fixed_length(&k);
    size_t room = 0;
    if (fixed >= 0) {
        if ((uint64_t)fixed > hint)
            return key_out_of_range(h, op, key, hint);
        room = (size_t)fixed;
    } else {
        uint64_t offset, length;
        if (resolve(&k, hint, &offset, &length) == 0)
            room = (size_t)length;
    }
    for (;;) {
        unsigned char byte = 0;
        PyObject *result = NULL;
        char *dst = (char *)&byte;
        if (!k.is_index) {
            result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)room);
            if (result == NULL)
                return NULL;
            dst = PyBytes_AS_STRING(result);
        }
        size_t needed = room;
        iommap_status s = copy_key_out(h, &k, dst, room, &needed);
        if (s.what != IOMMAP_DONE) {
            Py_XDECREF(result);
            if (s.what == IOMMAP_FAIL_OUT_OF_BOUNDS)
                return key_out_of_range(h, op, key, s.size);
            return iommap_raise_status(h, op, &s, 0, 0);
        }
        if (needed == room)
            return k.is_index ? PyLong_FromLong(byte) : result;
        Py_XDECREF(result); /* the size moved under an open end: again */
        room = needed;
    }
}

/* The bytes m[key] = value writes: an int in range(256) for an index, a
 * bytes-like object for a slice.  Returns 0 with *src, *n set (and *data
 * to release for a slice), or -1 with the exception set. */
static int value_bytes(iommap_handle *h, const char *op, const key_range *k, PyObject *value,
                       unsigned char *byte, Py_buffer *data, const char **src, size_t *n)
{
    if (k->is_index) {
        /* An int or an object with __index__ (numpy.uint8), as mmap.mmap
         * takes, and as keys are taken; what __index__ raises passes. */
        long long v;
        int overflow;
        int rc = iommap_index_value(value, &v, &overflow);
        if (rc > 0)
            iommap_err_bad_type(IOMMAP_STATE(h), "%s: m[i] takes an int in range(256), not %.100s",
                                op, Py_TYPE(value)->tp_name);
        if (rc != 0)
            return -1;
        if (overflow != 0 || v < 0 || v > 255) {
            iommap_err_bad_value(IOMMAP_STATE(h), "%s: a byte must be in range(256)", op);
            return -1;
        }
        *byte = (unsigned char)v;
        *src = (const char *)byte;
        *n = 1;
        return 0;
    }
    if (PyUnicode_Check(value) || PyObject_GetBuffer(value, data, PyBUF_SIMPLE) != 0) {
        PyErr_Clear();
        iommap_err_bad_type(IOMMAP_STATE(h), "%s: m[a:b] takes a bytes-like object, not %.100s", op,
                            Py_TYPE(value)->tp_name);
        return -1;
    }
    *src = data->buf;
    *n = (size_t)data->len;
    return 0;
}

int iommap_mf_ass_subscript(iommap_handle *h, PyObject *key, PyObject *value)
{
    const char *op = "__setitem__";
    if (value == NULL) {
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "__delitem__: bytes cannot be deleted from a mapped file");
        return -1;
    }
    key_range k;
    unsigned char byte = 0;
    Py_buffer data = {0};
    const char *src;
    size_t n;
    if (key_range_of(h, op, key, &k) != 0 ||
        value_bytes(h, op, &k, value, &byte, &data, &src, &n) != 0)
        return -1;

    int rc = -1;
    if (iommap_check_usable(h, op, IOMMAP_WRITE) == 0) {
        iommap_status s;
        uint64_t offset = 0, length = 0;
        int mismatch = 0;
        iommap_mapping *m = enter_key(h, IOMMAP_EXCLUSIVE, &k, &offset, &length, &s);
        if (m != NULL && length != n) {
            mismatch = 1; /* nothing written: the lengths must agree */
            iommap_unlock(h);
        } else if (m != NULL) {
            iommap_copy_work w = {m, (size_t)offset, (char *)src, n, 1};
            if (iommap_finish_released(h, n, iommap_run_copy, &w) != 0)
                s.what = IOMMAP_FAIL_SIGBUS;
        }
        if (s.what == IOMMAP_FAIL_OUT_OF_BOUNDS)
            key_out_of_range(h, op, key, s.size);
        else if (s.what != IOMMAP_DONE)
            iommap_raise_status(h, op, &s, offset, length);
        else if (mismatch)
            iommap_err_bad_value(IOMMAP_STATE(h),
                                 "%s: %R names %llu bytes but the data has %zu; a mapped file "
                                 "cannot change size through a slice",
                                 op, key, (unsigned long long)length, n);
        else
            rc = 0;
    }
    if (!k.is_index)
        PyBuffer_Release(&data);
    return rc;
}

/* A handle is true, open or closed, as a file object is: bool(m) never asks
 * for the size (an empty file is not false) and never raises. */
int iommap_mf_bool(iommap_handle *h)
{
    (void)h;
    return 1;
}
