/* Zero-copy views and page residency: MappedFile.view, .resident and
 * .residency (beyond the seed).  A view is a slice of a memoryview of the
 * handle's current Mapping, so it keeps that mapping alive on its own. */
#include "handle.h"

#include <sys/mman.h>

/* view(offset=0, length=None): a memoryview over the mapped pages, no copy.
 * It is a slice of a memoryview of the Mapping itself, so it (and every
 * slice or numpy array made from it) keeps that Mapping mapped after
 * close() or truncate().  Not SIGBUS-protected: the access is the caller's. */
PyObject *mf_view(mapped_file *h, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"offset", "length", NULL};
    PyObject *offset_obj = NULL, *length_obj = Py_None;
    uint64_t offset = 0, length = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:view", keywords, &offset_obj,
                                     &length_obj) ||
        (offset_obj != NULL && to_u64(h, "view", "offset", offset_obj, &offset) != 0) ||
        (length_obj != Py_None && to_u64(h, "view", "length", length_obj, &length) != 0))
        return NULL;
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "view");
    if (!IOMMAP_CAN_READ(h->opts.mode))
        return refuse_mode(h, "view", "the handle is write-only");

    status s = {DONE, 0, NULL, 0};
    lock_shared(h);
    iommap_mapping *m = h->mapping;
    if (m == NULL) {
        s.what = FAIL_CLOSED;
    } else {
        if (length_obj == Py_None && offset <= m->size)
            length = m->size - offset;
        if (!in_bounds(offset, length, m->size)) {
            s.what = FAIL_OUT_OF_BOUNDS;
            s.size = m->size;
        } else {
            Py_INCREF(m); /* plain refcounting runs no Python code */
        }
    }
    unlock(h);
    if (s.what != DONE)
        return raise_status_given(h, "view", &s, offset_obj,
                                  length_obj != Py_None ? length_obj : NULL, offset, length);

    int whole_mapping = offset == 0 && length == m->size;
    PyObject *whole = PyMemoryView_FromObject((PyObject *)m);
    Py_DECREF(m); /* the memoryview holds it now */
    if (whole == NULL || whole_mapping)
        return whole;
    PyObject *start = PyLong_FromUnsignedLongLong(offset);
    PyObject *stop = PyLong_FromUnsignedLongLong(offset + length);
    PyObject *slice = start != NULL && stop != NULL ? PySlice_New(start, stop, NULL) : NULL;
    PyObject *view = slice != NULL ? PyObject_GetItem(whole, slice) : NULL;
    Py_XDECREF(slice);
    Py_XDECREF(start);
    Py_XDECREF(stop);
    Py_DECREF(whole);
    return view;
}

/* resident / residency: mincore over the pages [offset, offset + length)
 * touches; length 0 means to the end.  On success *vec (raw memory, one byte
 * per page, bit 0 set when resident) and *pages are set. */
static status page_residency(mapped_file *h, range r, unsigned char **vec, size_t *pages)
{
    status s = {DONE, 0, NULL, 0};
    *vec = NULL;
    *pages = 0;
    lock_shared(h);
    iommap_mapping *m = h->mapping;
    if (m == NULL) {
        s.what = FAIL_CLOSED;
    } else if (!in_bounds(r.offset, r.length, m->size)) {
        s.what = FAIL_OUT_OF_BOUNDS;
        s.size = m->size;
    } else if (m->size > 0 && r.offset < m->size) {
        char *start;
        size_t len;
        page_align(m, &r, &start, &len);
        size_t page = iommap_page_size();
        size_t count = (len + page - 1) / page;
        *vec = PyMem_RawMalloc(count);
        if (*vec == NULL) {
            s = (status){FAIL_OS, ENOMEM, "malloc()", 0};
        } else if (mincore(start, len, (void *)*vec) != 0) {
            s = (status){FAIL_OS, errno, "mincore()", 0};
        } else {
            *pages = count;
        }
    }
    unlock(h);
    if (s.what != DONE) {
        PyMem_RawFree(*vec);
        *vec = NULL;
    }
    return s;
}

/* *given receives the offset and length objects (borrowed; NULL when not
 * given), for messages that name them as given. */
static int parse_range(mapped_file *h, const char *op, PyObject *args, PyObject *kwargs, range *r,
                       PyObject **given)
{
    static char *keywords[] = {"offset", "length", NULL};
    PyObject *offset_obj = NULL, *length_obj = NULL;
    r->offset = r->length = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO", keywords, &offset_obj, &length_obj))
        return -1;
    given[0] = offset_obj;
    given[1] = length_obj;
    if ((offset_obj != NULL && to_u64(h, op, "offset", offset_obj, &r->offset) != 0) ||
        (length_obj != NULL && to_u64(h, op, "length", length_obj, &r->length) != 0))
        return -1;
    if (is_closing(h)) {
        iommap_err_closed(STATE(h), op);
        return -1;
    }
    return 0;
}

PyObject *mf_resident(mapped_file *h, PyObject *args, PyObject *kwargs)
{
    range r;
    PyObject *given[2];
    if (parse_range(h, "resident", args, kwargs, &r, given) != 0)
        return NULL;
    unsigned char *vec;
    size_t pages;
    status s = page_residency(h, r, &vec, &pages);
    if (s.what != DONE)
        return raise_status_given(h, "resident", &s, given[0], given[1], r.offset, r.length);
    size_t resident = 0;
    for (size_t i = 0; i < pages; i++)
        resident += vec[i] & 1;
    PyMem_RawFree(vec);
    return PyLong_FromSize_t(resident * iommap_page_size());
}

PyObject *mf_residency(mapped_file *h, PyObject *args, PyObject *kwargs)
{
    range r;
    PyObject *given[2];
    if (parse_range(h, "residency", args, kwargs, &r, given) != 0)
        return NULL;
    unsigned char *vec;
    size_t pages;
    status s = page_residency(h, r, &vec, &pages);
    if (s.what != DONE)
        return raise_status_given(h, "residency", &s, given[0], given[1], r.offset, r.length);
    for (size_t i = 0; i < pages; i++)
        vec[i] &= 1; /* the other bits are reserved */
    PyObject *result = PyBytes_FromStringAndSize((const char *)vec, (Py_ssize_t)pages);
    PyMem_RawFree(vec);
    return result;
}
