/* The MappedFile type: close and the rest of a handle's lifecycle, and the
 * method table.  open.c makes handles; the methods live by concern in
 * read.c, write.c, resize.c, hints.c, view.c, batch.c and subscript.c, each
 * with its docstring beside it; the locking rules are at the top of
 * handle.h. */
#include "handle.h"

#include <errno.h>
#include <structmember.h>
#include <unistd.h>

/* ---- size, close, lifecycle --------------------------------------------- */

/* The mapped size, or -1 with ClosedError set. */
static Py_ssize_t mapped_size(iommap_handle *h, const char *op)
{
    if (iommap_check_usable(h, op, 0) != 0)
        return -1;
    iommap_status s;
    iommap_mapping *m = iommap_enter(h, IOMMAP_SHARED, 0, 0, &s);
    if (m == NULL) {
        iommap_raise_status(h, op, &s, 0, 0);
        return -1;
    }
    Py_ssize_t size = (Py_ssize_t)m->size;
    iommap_unlock(h);
    return size;
}

static const char mf_position_doc[] =
    "position($self, /)\n--\n\n"
    "Return the current mapped size in bytes; len(self) is the same.";

static PyObject *mf_position(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t size = mapped_size(h, "position");
    return size < 0 ? NULL : PyLong_FromSsize_t(size);
}

static Py_ssize_t mf_len(iommap_handle *h)
{
    return mapped_size(h, "len");
}

static const char mf_fileno_doc[] =
    "fileno($self, /)\n--\n\n"
    "Return the handle's file descriptor, for os.fstat, fcntl locks, os.sendfile.\n\n"
    "It belongs to the handle (open() duplicates a descriptor it is given) and\n"
    "is closed by close(): do not close it yourself, and os.dup() it to keep it\n"
    "longer. ClosedError once the handle is closed.";

/* The handle's own descriptor (a duplicate when open() was given one),
 * valid until close(). */
static PyObject *mf_fileno(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    if (iommap_check_usable(h, "fileno", 0) != 0)
        return NULL;
    iommap_status s;
    if (iommap_enter(h, IOMMAP_SHARED, 0, 0, &s) == NULL)
        return iommap_raise_status(h, "fileno", &s, 0, 0);
    int fd = h->fd;
    iommap_unlock(h);
    return PyLong_FromLong(fd);
}

/* Closes once; later calls wait for the first to finish and return. */
static int close_handle(iommap_handle *h)
{
    atomic_store_explicit(&h->closing, 1, memory_order_release);
    iommap_lock(h, IOMMAP_EXCLUSIVE);
    iommap_mapping *m = h->mapping;
    int fd = h->fd;
    h->mapping = NULL;
    h->fd = -1;
    atomic_store_explicit(&h->size_hint, 0, memory_order_relaxed);
    iommap_unlock(h);
    if (m != NULL && fd >= 0)
        iommap_mapping_retire(m, fd, &h->opts); /* views may keep it */
    Py_XDECREF(m);                              /* unmapped unless a view still holds it */
    if (fd >= 0 && close(fd) != 0 && errno != EINTR) {
        iommap_err_os(IOMMAP_STATE(h), "close", "close()", errno, h->path);
        return -1;
    }
    return 0;
}

static const char mf_close_doc[] =
    "close($self, /)\n--\n\n"
    "Unmap the file and close its descriptor.\n\n"
    "Calls in flight on other threads finish first; calls made after it raise\n"
    "ClosedError. Views stay valid: the pages are unmapped when the last one\n"
    "goes. Closing a closed handle does nothing.";

static PyObject *mf_close(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    if (close_handle(h) != 0)
        return NULL;
    Py_RETURN_NONE;
}

static const char mf_enter_doc[] =
    "__enter__($self, /)\n--\n\nReturn the handle; ClosedError if it is closed.";

static PyObject *mf_enter(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    if (iommap_is_closing(h))
        return iommap_err_closed(IOMMAP_STATE(h), "__enter__");
    return Py_NewRef(h);
}

static const char mf_exit_doc[] = "__exit__($self, /, *exc_info)\n--\n\nClose the handle.";

static PyObject *mf_exit(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return mf_close(h, NULL);
}

static PyObject *mf_reduce_ex(iommap_handle *h, PyObject *Py_UNUSED(protocol))
{
    PyErr_Format(PyExc_TypeError, "cannot pickle '%.100s' object", Py_TYPE(h)->tp_name);
    return NULL;
}

static PyObject *mf_get_closed(iommap_handle *h, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(iommap_is_closing(h));
}

static PyObject *mf_get_mode(iommap_handle *h, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(iommap_mode_name(h->opts.mode));
}

static PyObject *mf_get_path(iommap_handle *h, void *Py_UNUSED(closure))
{
    return Py_NewRef(h->path);
}

static PyObject *mf_repr(iommap_handle *h)
{
    if (h->path == Py_None) {
        /* Opened from a descriptor: the handle's own one names it. */
        iommap_status s;
        int fd = -1;
        if (!iommap_is_closing(h) && iommap_enter(h, IOMMAP_SHARED, 0, 0, &s) != NULL) {
            fd = h->fd;
            iommap_unlock(h);
        }
        if (fd < 0)
            return PyUnicode_FromFormat("<iommap.MappedFile fd mode=%s closed>",
                                        iommap_mode_name(h->opts.mode));
        return PyUnicode_FromFormat("<iommap.MappedFile fd=%d mode=%s size=%zu>", fd,
                                    iommap_mode_name(h->opts.mode),
                                    atomic_load_explicit(&h->size_hint, memory_order_relaxed));
    }
    if (iommap_is_closing(h))
        return PyUnicode_FromFormat("<iommap.MappedFile %R mode=%s closed>", h->path,
                                    iommap_mode_name(h->opts.mode));
    return PyUnicode_FromFormat("<iommap.MappedFile %R mode=%s size=%zu>", h->path,
                                iommap_mode_name(h->opts.mode),
                                atomic_load_explicit(&h->size_hint, memory_order_relaxed));
}

/* A handle collected unclosed is closed, with a ResourceWarning, as files are. */
static void mf_finalize(iommap_handle *h)
{
    if (iommap_is_closing(h))
        return;
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyObject *path = h->path != NULL ? h->path : Py_None;
    if (PyErr_ResourceWarning((PyObject *)h, 1, "unclosed iommap.MappedFile %R", path) != 0)
        PyErr_WriteUnraisable((PyObject *)h);
    if (close_handle(h) != 0)
        PyErr_WriteUnraisable((PyObject *)h);
    PyErr_Restore(type, value, traceback);
}

static int mf_traverse(iommap_handle *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->path);
    return 0;
}

static int mf_clear(iommap_handle *h)
{
    Py_CLEAR(h->path);
    return 0;
}

static void mf_dealloc(iommap_handle *h)
{
    PyTypeObject *type = Py_TYPE(h);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)h) < 0)
        return; /* resurrected */
    PyObject_GC_UnTrack(h);
    if (h->weakrefs != NULL)
        PyObject_ClearWeakRefs((PyObject *)h);
    mf_clear(h);
    PyMem_RawFree(atomic_load_explicit(&h->created_dir, memory_order_relaxed));
    Py_CLEAR(h->mapping);
    if (h->fd >= 0)
        close(h->fd);
    pthread_rwlock_destroy(&h->lock);
    type->tp_free(h);
    Py_DECREF(type);
}

static PyMethodDef mf_methods[] = {
    {"pread", (PyCFunction)(void (*)(void))iommap_mf_pread, METH_FASTCALL, iommap_mf_pread_doc},
    {"readinto", (PyCFunction)(void (*)(void))iommap_mf_readinto, METH_FASTCALL,
     iommap_mf_readinto_doc},
    {"pwrite", (PyCFunction)(void (*)(void))iommap_mf_pwrite, METH_FASTCALL, iommap_mf_pwrite_doc},
    {"sync", (PyCFunction)(void (*)(void))iommap_mf_sync, METH_VARARGS | METH_KEYWORDS,
     iommap_mf_sync_doc},
    {"truncate", (PyCFunction)(void (*)(void))iommap_mf_truncate, METH_FASTCALL,
     iommap_mf_truncate_doc},
    {"flush", (PyCFunction)(void (*)(void))iommap_mf_sync, METH_VARARGS | METH_KEYWORDS,
     iommap_mf_flush_doc},
    {"remap", (PyCFunction)iommap_mf_remap, METH_NOARGS, iommap_mf_remap_doc},
    {"fileno", (PyCFunction)mf_fileno, METH_NOARGS, mf_fileno_doc},
    {"advise", (PyCFunction)(void (*)(void))iommap_mf_advise, METH_FASTCALL, iommap_mf_advise_doc},
    {"view", (PyCFunction)(void (*)(void))iommap_mf_view, METH_VARARGS | METH_KEYWORDS,
     iommap_mf_view_doc},
    {"gather", (PyCFunction)(void (*)(void))iommap_mf_gather, METH_VARARGS | METH_KEYWORDS,
     iommap_mf_gather_doc},
    {"scatter", (PyCFunction)(void (*)(void))iommap_mf_scatter, METH_FASTCALL,
     iommap_mf_scatter_doc},
    {"resident", (PyCFunction)(void (*)(void))iommap_mf_resident, METH_VARARGS | METH_KEYWORDS,
     iommap_mf_resident_doc},
    {"residency", (PyCFunction)(void (*)(void))iommap_mf_residency, METH_VARARGS | METH_KEYWORDS,
     iommap_mf_residency_doc},
    {"position", (PyCFunction)mf_position, METH_NOARGS, mf_position_doc},
    {"close", (PyCFunction)mf_close, METH_NOARGS, mf_close_doc},
    {"__enter__", (PyCFunction)mf_enter, METH_NOARGS, mf_enter_doc},
    {"__exit__", (PyCFunction)(void (*)(void))mf_exit, METH_FASTCALL, mf_exit_doc},
    {"__reduce_ex__", (PyCFunction)mf_reduce_ex, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

/* Weak references, as to files and mmap.mmap: caches can key on handles. */
static PyMemberDef mf_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(iommap_handle, weakrefs), READONLY, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyGetSetDef mf_getset[] = {
    {"closed", (getter)mf_get_closed, NULL, "True once close() has been called.", NULL},
    {"mode", (getter)mf_get_mode, NULL, "'read', 'write' or 'read_write'.", NULL},
    {"path", (getter)mf_get_path, NULL, "The path as given to open().", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot mf_slots[] = {
    {Py_tp_dealloc, mf_dealloc},
    {Py_tp_finalize, mf_finalize},
    {Py_tp_traverse, mf_traverse},
    {Py_tp_clear, mf_clear},
    {Py_tp_repr, mf_repr},
    {Py_tp_methods, mf_methods},
    {Py_tp_getset, mf_getset},
    {Py_tp_members, mf_members},
    {Py_sq_length, mf_len},
    {Py_mp_subscript, iommap_mf_subscript},
    {Py_mp_ass_subscript, iommap_mf_ass_subscript},
    {Py_nb_bool, iommap_mf_bool},
    {Py_tp_doc, "A memory-mapped file, made by iommap.open()."},
    {0, NULL},
};

PyType_Spec iommap_mapped_file_spec =
    IOMMAP_TYPE_SPEC("iommap.MappedFile", iommap_handle, Py_TPFLAGS_HAVE_GC, mf_slots);
