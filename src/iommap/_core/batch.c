/* Batch copies: MappedFile.gather and .scatter.  Every range is checked
 * before the first byte moves, under one lock acquisition, and the copy
 * runs in one SIGBUS guard scope. */
#include "handle.h"
#include "inputs.h"

#include <string.h>

/* gather/scatter's offsets, copied into an array of our own (inputs.c
 * reads them): the caller's buffer could change under us while the GIL is
 * released, after the ranges were checked. */
typedef struct {
    uint64_t *values;
    size_t count;
} offset_array;

static int read_offsets(iommap_handle *h, const char *op, PyObject *obj, offset_array *out)
{
    return iommap_read_offsets(IOMMAP_STATE(h), op, obj, &out->values, &out->count);
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

/* Out of bounds: names record `bad_index`'s offset and the length as the
 * caller gave them (an offset past 64 bits was saturated when read). */
static PyObject *raise_batch_status(iommap_handle *h, const char *op, const iommap_status *s,
                                    const offset_array *o, PyObject *offsets_obj,
                                    PyObject *length_obj, uint64_t length, size_t bad_index)
{
    if (s->what == IOMMAP_FAIL_OUT_OF_BOUNDS) {
        PyObject *item = NULL; /* an exact list or tuple runs no code of the caller's */
        if ((PyList_CheckExact(offsets_obj) || PyTuple_CheckExact(offsets_obj)) &&
            (item = PySequence_GetItem(offsets_obj, (Py_ssize_t)bad_index)) == NULL)
            PyErr_Clear(); /* changed meanwhile: the value read is named instead */
        iommap_err_out_of_bounds_at(IOMMAP_STATE(h), op, bad_index, item, length_obj,
                                    o->values[bad_index], length, s->size);
        Py_XDECREF(item);
        return NULL;
    }
    return iommap_raise_status(h, op, s, 0, length);
}

/* count * length in bytes, or -1 with badarg set if it cannot be a size. */
static int batch_total(iommap_handle *h, const char *op, size_t count, uint64_t length,
                       size_t *total)
{
    if (count == 0) { /* zero records of any length are zero bytes */
        *total = 0;
        return 0;
    }
    if (length > (uint64_t)PY_SSIZE_T_MAX || __builtin_mul_overflow(count, (size_t)length, total) ||
        *total > PY_SSIZE_T_MAX) {
        iommap_err_bad_value(IOMMAP_STATE(h), "%s: len(offsets) * length is too large", op);
        return -1;
    }
    return 0;
}

const char iommap_mf_gather_doc[] =
    "gather($self, /, offsets, length, out=None)\n--\n\n"
    "Copy `length` bytes from each offset, in order, into one buffer; return it.\n\n"
    "`offsets` is a sequence of ints or a buffer of 64-bit integers (numpy\n"
    "int64/uint64, array('q')/array('Q')). `out` is a writable buffer of exactly\n"
    "len(offsets) * length bytes, or None for a new bytearray. Every range is\n"
    "checked before the first byte moves: the first bad one fails the call\n"
    "(OutOfBoundsError, its index in the message) and nothing is copied.";

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
        raise_batch_status(h, "gather", &s, &o, offsets_obj, length_obj, length, bad);
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
    int got = iommap_get_destination(out_obj, &out);
    if (got < 0) {
        out.obj = NULL; /* the exporter's own exception */
        Py_CLEAR(result);
        goto done;
    }
    if (got > 0) {
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
        raise_batch_status(h, "gather", &s, &o, offsets_obj, length_obj, length, bad);
        Py_CLEAR(result);
    }
done:
    if (out.obj != NULL)
        PyBuffer_Release(&out);
    PyMem_Free(o.values);
    return result;
}

const char iommap_mf_scatter_doc[] =
    "scatter($self, offsets, length, data, /)\n--\n\n"
    "Write chunk i of `data` at offsets[i], `length` bytes each, in order.\n\n"
    "`data` holds exactly len(offsets) * length bytes; a later overlapping chunk\n"
    "wins. Every range is checked before the first byte moves. A 'read' handle\n"
    "refuses with PermissionError.";

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
    int got = iommap_get_buffer(args[2], &data, 0);
    if (got < 0)
        goto free_offsets; /* the exporter's own exception */
    if (got > 0) {
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
        raise_batch_status(h, "scatter", &s, &o, args[0], args[1], length, bad);
    else
        result = Py_NewRef(Py_None);
release:
    PyBuffer_Release(&data);
free_offsets:
    PyMem_Free(o.values);
    return result;
}
