/* Batch copies: MappedFile.gather and .scatter Every
 * range is checked before the first byte moves, under one lock acquisition,
 * and the copy runs in one SIGBUS guard scope. */
#include "handle.h"

#include <string.h>

/* gather/scatter's offsets, copied into an array of our own: the caller's
 * buffer could change under us while the GIL is released, after the ranges
 * were checked.  A C-contiguous buffer of native 64-bit integers (numpy
 * int64/uint64, array('q'/'Q')) is read without a Python int per element;
 * anything else is read as a sequence of ints. */
typedef struct {
    uint64_t *values;
    size_t count;
} offset_array;

static int is_native_int64_format(const char *format)
{
    if (format == NULL)
        return 0;
    if (format[0] != '\0' && strchr(IOMMAP_NATIVE_ORDER_PREFIXES, format[0]) != NULL)
        format++;
    return (format[0] == 'q' || format[0] == 'Q' || format[0] == 'l' || format[0] == 'L') &&
           format[1] == '\0';
}

static int offsets_from_buffer(iommap_handle *h, const char *op, Py_buffer *b, offset_array *out)
{
    size_t count = (size_t)b->len / 8;
    int is_signed = strchr(b->format, 'q') != NULL || strchr(b->format, 'l') != NULL;
    out->values = PyMem_Malloc(count ? count * sizeof(uint64_t) : 1);
    if (out->values == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(out->values, b->buf, count * sizeof(uint64_t));
    out->count = count;
    if (is_signed) {
        for (size_t i = 0; i < count; i++) {
            if ((int64_t)out->values[i] < 0) {
                iommap_err_bad_value(IOMMAP_STATE(h), "%s: offsets[%zu] is negative", op, i);
                PyMem_Free(out->values);
                out->values = NULL;
                return -1;
            }
        }
    }
    return 0;
}

static int offsets_from_sequence(iommap_handle *h, const char *op, PyObject *obj, offset_array *out)
{
    PyObject *seq = PySequence_Fast(obj, "");
    if (seq == NULL) {
        PyErr_Clear();
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "%s: offsets must be a sequence of ints or a buffer of 64-bit "
                            "integers, not %.100s",
                            op, Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    out->values = PyMem_Malloc(count ? (size_t)count * sizeof(uint64_t) : 1);
    if (out->values == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    int rc = 0;
    /* Re-read the size each step: converting an item can run Python code. */
    for (Py_ssize_t i = 0; rc == 0 && i < count && i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        if (iommap_small_int(item, &out->values[i]))
            continue;
        char name[32]; /* only the general path may need it, for its message */
        snprintf(name, sizeof(name), "offsets[%zd]", i);
        Py_INCREF(item);
        rc = iommap_arg_to_u64(IOMMAP_STATE(h), op, name, item, &out->values[i]);
        Py_DECREF(item);
    }
    if (rc == 0 && count != PySequence_Fast_GET_SIZE(seq)) {
        iommap_err_bad_value(IOMMAP_STATE(h), "%s: offsets changed size while being read", op);
        rc = -1;
    }
    Py_DECREF(seq);
    if (rc != 0) {
        PyMem_Free(out->values);
        out->values = NULL;
        return -1;
    }
    out->count = (size_t)count;
    return 0;
}

static int read_offsets(iommap_handle *h, const char *op, PyObject *obj, offset_array *out)
{
    if (PyObject_CheckBuffer(obj)) {
        Py_buffer b;
        if (PyObject_GetBuffer(obj, &b, PyBUF_FORMAT | PyBUF_C_CONTIGUOUS) == 0) {
            int native = b.itemsize == 8 && b.ndim <= 1 && is_native_int64_format(b.format);
            int rc = native ? offsets_from_buffer(h, op, &b, out) : 0;
            PyBuffer_Release(&b);
            if (native)
                return rc;
        } else {
            PyErr_Clear();
        }
    }
    return offsets_from_sequence(h, op, obj, out);
}

/* Index of the first record out of bounds, or `count` if all are in. */
static size_t first_out_of_bounds(const offset_array *o, uint64_t length, size_t size)
{
    for (size_t i = 0; i < o->count; i++)
        if (!iommap_in_bounds(o->values[i], length, size))
            return i;
    return o->count;
}

static int run_guarded_batch(void *batch)
{
    return iommap_guarded_batch(batch);
}

/* Runs a gather or scatter under the handle lock: every range checked before
 * the first byte moves, one guard scope, the GIL released when large. */
static iommap_status run_batch(iommap_handle *h, iommap_batch *batch, size_t *bad_index)
{
    iommap_status s;
    iommap_mapping *m =
        iommap_enter(h, batch->to_mapping ? IOMMAP_EXCLUSIVE : IOMMAP_SHARED, 0, 0, &s);
    if (m == NULL)
        return s;
    offset_array o = {(uint64_t *)batch->offsets, batch->count};
    *bad_index = first_out_of_bounds(&o, batch->length, m->size);
    if (*bad_index < batch->count) {
        iommap_unlock(h);
        s.what = IOMMAP_FAIL_OUT_OF_BOUNDS;
        s.size = m->size;
        return s;
    }
    /* batch_total() checked that the product fits */
    size_t total = batch->count * batch->length;
    batch->region = m->addr;
    batch->region_size = m->size;
    if (total == 0)
        iommap_unlock(h);
    else if (iommap_finish_released(h, total, run_guarded_batch, batch) != 0)
        s.what = IOMMAP_FAIL_SIGBUS;
    return s;
}

static PyObject *raise_batch_status(iommap_handle *h, const char *op, const iommap_status *s,
                                    const offset_array *o, uint64_t length, size_t bad_index)
{
    if (s->what == IOMMAP_FAIL_OUT_OF_BOUNDS)
        return iommap_err_out_of_bounds_at(IOMMAP_STATE(h), op, bad_index, o->values[bad_index],
                                           length, s->size);
    return iommap_raise_status(h, op, s, 0, length);
}

/* count * length in bytes, or -1 with badarg set if it cannot be a size. */
static int batch_total(iommap_handle *h, const char *op, size_t count, uint64_t length,
                       size_t *total)
{
    if (length > (uint64_t)PY_SSIZE_T_MAX || __builtin_mul_overflow(count, (size_t)length, total) ||
        *total > PY_SSIZE_T_MAX) {
        iommap_err_bad_value(IOMMAP_STATE(h), "%s: len(offsets) * length is too large", op);
        return -1;
    }
    return 0;
}

PyObject *iommap_mf_gather(iommap_handle *h, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"offsets", "length", "out", NULL};
    PyObject *offsets_obj, *length_obj, *out_obj = Py_None;
    uint64_t length;
    offset_array o;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OO|O:gather", keywords, &offsets_obj,
                                     &length_obj, &out_obj) ||
        iommap_to_u64(h, "gather", "length", length_obj, &length) != 0 ||
        iommap_check_usable(h, "gather", IOMMAP_READ) != 0 ||
        read_offsets(h, "gather", offsets_obj, &o) != 0)
        return NULL;
    /* Refuse hopeless requests before allocating for them (as pread does);
     * the check under the lock is the one that counts. */
    size_t hint = atomic_load_explicit(&h->size_hint, memory_order_relaxed);
    size_t bad = first_out_of_bounds(&o, length, hint);
    size_t total = 0;
    PyObject *result = NULL;
    Py_buffer out;
    out.obj = NULL;
    if (bad < o.count) {
        iommap_status s = {IOMMAP_FAIL_OUT_OF_BOUNDS, 0, NULL, hint};
        raise_batch_status(h, "gather", &s, &o, length, bad);
        goto done;
    }
    if (batch_total(h, "gather", o.count, length, &total) != 0)
        goto done;
    if (out_obj == Py_None) {
        result = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)total);
        if (result == NULL)
            goto done;
        out_obj = result;
    } else {
        result = Py_NewRef(out_obj);
    }
    if (iommap_get_destination(out_obj, &out) != 0) {
        out.obj = NULL;
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "gather: out must be a writable C-contiguous buffer of plain "
                            "data, not "
                            "%.100s",
                            Py_TYPE(out_obj)->tp_name);
        Py_CLEAR(result);
        goto done;
    }
    if ((size_t)out.len != total) {
        iommap_err_bad_value(IOMMAP_STATE(h),
                             "gather: out holds %zd bytes, len(offsets) * length is %zu", out.len,
                             total);
        Py_CLEAR(result);
        goto done;
    }
    iommap_batch batch = {NULL, 0, o.values, o.count, (size_t)length, out.buf, 0};
    iommap_status s = run_batch(h, &batch, &bad);
    if (s.what != IOMMAP_DONE) {
        raise_batch_status(h, "gather", &s, &o, length, bad);
        Py_CLEAR(result);
    }
done:
    if (out.obj != NULL)
        PyBuffer_Release(&out);
    PyMem_Free(o.values);
    return result;
}

PyObject *iommap_mf_scatter(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t length;
    offset_array o;
    if (iommap_check_nargs("scatter", nargs, 3) ||
        iommap_to_u64(h, "scatter", "length", args[1], &length) ||
        iommap_check_usable(h, "scatter", IOMMAP_WRITE) ||
        read_offsets(h, "scatter", args[0], &o) != 0)
        return NULL;
    PyObject *result = NULL;
    Py_buffer data;
    size_t total, bad = 0;
    if (batch_total(h, "scatter", o.count, length, &total) != 0)
        goto free_offsets;
    if (PyObject_GetBuffer(args[2], &data, PyBUF_SIMPLE) != 0) {
        PyErr_Clear();
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "scatter: data must be bytes-like (contiguous), not %.100s",
                            Py_TYPE(args[2])->tp_name);
        goto free_offsets;
    }
    if ((size_t)data.len != total) {
        iommap_err_bad_value(IOMMAP_STATE(h),
                             "scatter: data holds %zd bytes, len(offsets) * length is %zu",
                             data.len, total);
        goto release;
    }
    iommap_batch batch = {NULL, 0, o.values, o.count, (size_t)length, data.buf, 1};
    iommap_status s = run_batch(h, &batch, &bad);
    if (s.what != IOMMAP_DONE)
        raise_batch_status(h, "scatter", &s, &o, length, bad);
    else
        result = Py_NewRef(Py_None);
release:
    PyBuffer_Release(&data);
free_offsets:
    PyMem_Free(o.values);
    return result;
}
