/* Writes: MappedFile.pwrite, its data flattened to a list of buffers and
 * copied into the mapping under the exclusive lock. */
#include "handle.h"
#include "inputs.h"

#include <string.h>

/* pwrite's data flattened: the buffers of a bytes-like object or of a nested
 * list/tuple of them, in order.  The common single buffer needs no heap. */
typedef struct {
    Py_buffer *views; /* &first_view until a second buffer arrives */
    Py_ssize_t count;
    Py_ssize_t capacity;
    size_t total;
    Py_buffer first_view;
} chunks;

static void chunks_init(chunks *c)
{
    c->views = &c->first_view;
    c->count = 0;
    c->capacity = 1;
    c->total = 0;
}

static void chunks_release(chunks *c)
{
    for (Py_ssize_t i = 0; i < c->count; i++)
        PyBuffer_Release(&c->views[i]);
    if (c->views != &c->first_view)
        PyMem_Free(c->views);
    chunks_init(c);
}

static int chunks_grow(chunks *c)
{
    Py_ssize_t capacity = c->capacity * 2;
    Py_buffer *views = PyMem_Malloc((size_t)capacity * sizeof(Py_buffer));
    if (views == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    memcpy(views, c->views, (size_t)c->count * sizeof(Py_buffer));
    if (c->views != &c->first_view)
        PyMem_Free(c->views);
    c->views = views;
    c->capacity = capacity;
    return 0;
}

static int chunks_add(iommap_handle *h, chunks *c, PyObject *obj, int depth)
{
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        if (depth >= IOMMAP_MAX_IOLIST_DEPTH) {
            iommap_err_bad_value(IOMMAP_STATE(h),
                                 "pwrite: data nests lists deeper than %d (or contains "
                                 "itself)",
                                 IOMMAP_MAX_IOLIST_DEPTH);
            return -1;
        }
        int rc = 0;
#ifdef Py_GIL_DISABLED
        Py_BEGIN_CRITICAL_SECTION(obj); /* another thread may resize the list */
#endif
        /* Index by index, re-reading the size: the list is not ours. */
        for (Py_ssize_t i = 0; rc == 0 && i < PySequence_Fast_GET_SIZE(obj); i++) {
            PyObject *item = Py_NewRef(PySequence_Fast_GET_ITEM(obj, i));
            rc = chunks_add(h, c, item, depth + 1);
            Py_DECREF(item);
        }
#ifdef Py_GIL_DISABLED
        Py_END_CRITICAL_SECTION();
#endif
        return rc;
    }
    if (PyUnicode_Check(obj) || PyLong_Check(obj)) {
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "pwrite: data must be bytes-like or a list of them, "
                            "not %.100s",
                            Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (c->count == c->capacity && chunks_grow(c) != 0)
        return -1;
    int got = iommap_get_buffer(obj, &c->views[c->count], 0);
    if (got < 0)
        return -1; /* the exporter's own exception */
    if (got > 0) {
        iommap_err_bad_type(IOMMAP_STATE(h),
                            "pwrite: data must be bytes-like (contiguous) or a list of "
                            "them, not %.100s",
                            Py_TYPE(obj)->tp_name);
        return -1;
    }
    /* The same large buffer repeated in a list can add up past SIZE_MAX:
     * saturate, so the bounds check refuses it instead of wrapping to a
     * small total and copying far past the mapping. */
    size_t len = (size_t)c->views[c->count].len;
    c->total = len > SIZE_MAX - c->total ? SIZE_MAX : c->total + len;
    c->count++;
    return 0;
}

typedef struct {
    size_t offset;
    const chunks *c;
    const iommap_mapping *m;
} copy_in_work;

static int run_copy_in(void *arg)
{
    copy_in_work *w = arg;
    if (w->c->total == 0)
        return 0; /* an empty mapping's addr is NULL: no arithmetic on it */
    char *dst = w->m->addr + w->offset;
    int rc = 0;
    for (Py_ssize_t i = 0; i < w->c->count && rc == 0; i++) {
        size_t n = (size_t)w->c->views[i].len;
        if (n > 0)
            rc = iommap_guarded_copy(dst, w->c->views[i].buf, n, w->m->addr, w->m->size);
        dst += n;
    }
    return rc;
}

/* True for a list or tuple that holds lists or tuples: only sharing can
 * make a list expand to more than its own size, and only a list can be
 * shared.  (A flat list is as long as its expansion: it is not measured.) */
static int holds_lists(PyObject *data)
{
    if (!PyList_Check(data) && !PyTuple_Check(data))
        return 0;
    int found = 0;
#ifdef Py_GIL_DISABLED
    Py_BEGIN_CRITICAL_SECTION(data);
#endif
    for (Py_ssize_t i = 0; !found && i < PySequence_Fast_GET_SIZE(data); i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(data, i);
        found = PyList_Check(item) || PyTuple_Check(item);
    }
#ifdef Py_GIL_DISABLED
    Py_END_CRITICAL_SECTION();
#endif
    return found;
}

/* A nested list measured before it is expanded: one that shares its
 * sublists can expand to far more than its own size.  Too long for the
 * mapping is out_of_bounds at once; more pieces than memory could hold,
 * badarg.  Returns 0 to go on, or -1 with the exception set. */
static int measure_first(iommap_handle *h, PyObject *const *args, uint64_t offset)
{
    iommap_iolist_size size;
    if (iommap_iolist_measure(IOMMAP_STATE(h), "pwrite", args[1], &size) != 0 ||
        iommap_check_usable(h, "pwrite", IOMMAP_WRITE) != 0)
        return -1;
    size_t hint = atomic_load_explicit(&h->size_hint, memory_order_relaxed);
    if (!iommap_in_bounds(offset, size.bytes, hint)) {
        iommap_err_out_of_bounds_given(IOMMAP_STATE(h), "pwrite", args[0], NULL, offset, size.bytes,
                                       hint);
        return -1;
    }
    if (iommap_too_many(size.pieces, sizeof(Py_buffer))) {
        iommap_err_bad_value(IOMMAP_STATE(h),
                             "pwrite: data holds %llu pieces, more than memory could hold",
                             (unsigned long long)size.pieces);
        return -1;
    }
    return 0;
}

const char iommap_mf_pwrite_doc[] =
    "pwrite($self, offset, data, /)\n--\n\n"
    "Write `data` into the file at `offset`, as one operation under the lock.\n\n"
    "`data` is a bytes-like object, or a list or tuple of bytes-like objects and\n"
    "such lists, nested (no int, no str), written contiguously; nesting deeper\n"
    "than 100, or a list containing itself, is refused. The range must lie inside\n"
    "the mapping (OutOfBoundsError; truncate() grows the file). A 'read' handle\n"
    "refuses with PermissionError. A SigbusError may leave a prefix written.";

PyObject *iommap_mf_pwrite(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    chunks c;
    chunks_init(&c);
    uint64_t offset;
    PyObject *result = NULL;
    if (iommap_offset_arg(h, "pwrite", args, nargs, &offset) == 0 &&
        (!holds_lists(args[1]) || measure_first(h, args, offset) == 0) &&
        chunks_add(h, &c, args[1], 0) == 0 && iommap_check_usable(h, "pwrite", IOMMAP_WRITE) == 0) {
        iommap_status s;
        iommap_mapping *m = iommap_enter(h, IOMMAP_EXCLUSIVE, offset, c.total, &s);
        if (m != NULL) {
            copy_in_work w = {(size_t)offset, &c, m};
            if (iommap_finish_released(h, c.total, run_copy_in, &w) != 0)
                s.what = IOMMAP_FAIL_SIGBUS;
        }
        if (s.what == IOMMAP_DONE)
            result = Py_NewRef(Py_None);
        else
            iommap_raise_status_given(h, "pwrite", &s, args[0], NULL, offset, c.total);
    }
    chunks_release(&c);
    return result;
}
