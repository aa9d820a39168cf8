/* Zero-copy views and page residency: MappedFile.view, .resident and
 * .residency.  A view is a slice of a memoryview of the handle's current
 * Mapping, so it keeps that mapping alive on its own. */
#include "handle.h"

#include <sys/mman.h>

const char iommap_mf_view_doc[] =
    "view($self, /, offset=0, length=None)\n--\n\n"
    "Return a memoryview over the mapped pages, without copying; length None\n"
    "means to the end.\n\n"
    "Read-only for a 'read' handle, writable otherwise (a private mapping's\n"
    "writes stay private); a 'write' handle refuses with PermissionError. The\n"
    "view keeps its mapping alive after close() and truncate(). It is NOT\n"
    "SIGBUS-protected: touching pages the file no longer has kills the process.\n"
    "pread(), readinto() and gather() are the safe path.";

/* view(offset=0, length=None): a memoryview over the mapped pages, no copy.
 * It is a slice of a memoryview of the Mapping itself, so it (and every
 * slice or numpy array made from it) keeps that Mapping mapped after
 * close() or truncate().  Not SIGBUS-protected: the access is the caller's. */
PyObject *iommap_mf_view(iommap_handle *h, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"offset", "length", NULL};
    PyObject *offset_obj = NULL, *length_obj = Py_None;
    uint64_t offset = 0, length = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO:view", keywords, &offset_obj,
                                     &length_obj) ||
        (offset_obj != NULL && iommap_to_u64(h, "view", "offset", offset_obj, &offset) != 0) ||
        (length_obj != Py_None && iommap_to_u64(h, "view", "length", length_obj, &length) != 0) ||
        iommap_check_usable(h, "view", IOMMAP_READ))
        return NULL;

    /* length None (still 0 here) is to the end: the offset alone is checked. */
    iommap_status s;
    iommap_mapping *m = iommap_enter(h, IOMMAP_SHARED, offset, length, &s);
    if (m == NULL)
        return iommap_raise_status_given(h, "view", &s, offset_obj,
                                         length_obj != Py_None ? length_obj : NULL, offset, length);
    if (length_obj == Py_None)
        length = m->size - offset;
    Py_INCREF(m); /* plain refcounting runs no Python code */
    iommap_unlock(h);

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
 * touches; length 0 means to the end.  Sets *vec (raw memory, one byte per
 * page, bit 0 set when resident; NULL when the range holds no byte) and
 * *pages, and returns 0; or -1 with the exception set. */
typedef struct {
    char *start;
    size_t len;
    size_t pages;
    unsigned char *vec;
    int err;          /* errno when the call failed */
    const char *call; /* the call that failed */
} residency_work;

static int run_mincore(void *arg)
{
    residency_work *w = arg;
    size_t page = iommap_page_size();
    w->pages = (w->len + page - 1) / page;
    w->vec = PyMem_RawMalloc(w->pages);
    if (w->vec == NULL) {
        w->err = ENOMEM;
        w->call = "malloc()";
    } else if (iommap_platform_mincore(w->start, w->len, w->vec) != 0) {
        w->err = errno;
        w->call = "mincore()";
    } else {
        return 0;
    }
    return -1;
}

static int page_residency(iommap_handle *h, const char *op, PyObject *args, PyObject *kwargs,
                          unsigned char **vec, size_t *pages)
{
    static char *keywords[] = {"offset", "length", NULL};
    PyObject *offset_obj = NULL, *length_obj = NULL;
    iommap_range r = {0, 0};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OO", keywords, &offset_obj, &length_obj) ||
        (offset_obj != NULL && iommap_to_u64(h, op, "offset", offset_obj, &r.offset) != 0) ||
        (length_obj != NULL && iommap_to_u64(h, op, "length", length_obj, &r.length) != 0) ||
        iommap_check_usable(h, op, 0))
        return -1;
    iommap_status s;
    residency_work w = {NULL, 0, 0, NULL, 0, NULL};
    if (iommap_enter_pages(h, &r, &s, &w.start, &w.len) > 0 &&
        iommap_finish_released(h, w.len, run_mincore, &w) != 0)
        s = (iommap_status){IOMMAP_FAIL_OS, w.err, w.call, 0};
    if (s.what != IOMMAP_DONE) {
        PyMem_RawFree(w.vec);
        iommap_raise_status_given(h, op, &s, offset_obj, length_obj, r.offset, r.length);
        return -1;
    }
    *vec = w.vec;
    *pages = w.pages;
    return 0;
}

const char iommap_mf_resident_doc[] =
    "resident($self, /, offset=0, length=0)\n--\n\n"
    "Return how many bytes of the pages the range touches are in memory now\n"
    "(mincore), whole pages counted; length 0 means to the end.";

PyObject *iommap_mf_resident(iommap_handle *h, PyObject *args, PyObject *kwargs)
{
    unsigned char *vec;
    size_t pages, resident = 0;
    if (page_residency(h, "resident", args, kwargs, &vec, &pages) != 0)
        return NULL;
    for (size_t i = 0; i < pages; i++)
        resident += vec[i] & 1;
    PyMem_RawFree(vec);
    return PyLong_FromSize_t(resident * iommap_page_size());
}

const char iommap_mf_residency_doc[] =
    "residency($self, /, offset=0, length=0)\n--\n\n"
    "Return one byte per page the range touches: 1 resident in memory now, 0 not\n"
    "(mincore); length 0 means to the end.";

PyObject *iommap_mf_residency(iommap_handle *h, PyObject *args, PyObject *kwargs)
{
    unsigned char *vec;
    size_t pages;
    if (page_residency(h, "residency", args, kwargs, &vec, &pages) != 0)
        return NULL;
    for (size_t i = 0; i < pages; i++)
        vec[i] &= 1; /* the other bits are reserved */
    PyObject *result = PyBytes_FromStringAndSize((const char *)vec, (Py_ssize_t)pages);
    PyMem_RawFree(vec);
    return result;
}
