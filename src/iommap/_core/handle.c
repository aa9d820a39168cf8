/* The MappedFile type: close and the rest of a handle's lifecycle, and the
 * method table.  open.c makes handles; the methods live by concern in
 * read.c, write.c, resize.c, hints.c, view.c, batch.c and subscript.c; the
 * locking rules are at the top of handle.h. */
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

static PyObject *mf_position(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t size = mapped_size(h, "position");
    return size < 0 ? NULL : PyLong_FromSsize_t(size);
}

static Py_ssize_t mf_len(iommap_handle *h)
{
    return mapped_size(h, "len");
}

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

static PyObject *mf_close(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    if (close_handle(h) != 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mf_enter(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    if (iommap_is_closing(h))
        return iommap_err_closed(IOMMAP_STATE(h), "__enter__");
    return Py_NewRef(h);
}

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
    {"pread", (PyCFunction)(void (*)(void))iommap_mf_pread, METH_FASTCALL,
     "pread($self, offset, length, /)\n--\n\n"
     "Return a copy of `length` bytes of the file at `offset`, as bytes.\n\n"
     "The range must lie inside the mapping (offset + length <= len(self)), else\n"
     "OutOfBoundsError, an IndexError; pread(len(self), 0) is b''. If the file\n"
     "shrank under the range: SigbusError, an OSError, and the handle stays usable.\n"
     "A 'write' handle refuses with PermissionError (reason 'eacces'). Copies of\n"
     "64 KiB and more release the GIL."},
    {"readinto", (PyCFunction)(void (*)(void))iommap_mf_readinto, METH_FASTCALL,
     "readinto($self, offset, buffer, /)\n--\n\n"
     "Fill `buffer` with the file's bytes from `offset`; return how many bytes were\n"
     "copied: memoryview(buffer).nbytes.\n\n"
     "`buffer` is any writable C-contiguous buffer (bytearray, memoryview,\n"
     "array.array, a numpy array); nothing is allocated. Errors as for pread()."},
    {"pwrite", (PyCFunction)(void (*)(void))iommap_mf_pwrite, METH_FASTCALL,
     "pwrite($self, offset, data, /)\n--\n\n"
     "Write `data` into the file at `offset`, as one operation under the lock.\n\n"
     "`data` is a bytes-like object, or a list or tuple of bytes-like objects and\n"
     "such lists, nested (no int, no str), written contiguously; nesting deeper\n"
     "than 100, or a list containing itself, is refused. The range must lie inside\n"
     "the mapping (OutOfBoundsError; truncate() grows the file). A 'read' handle\n"
     "refuses with PermissionError. A SigbusError may leave a prefix written."},
    {"sync", (PyCFunction)(void (*)(void))iommap_mf_sync, METH_VARARGS | METH_KEYWORDS,
     "sync($self, /, mode='sync', offset=0, length=0)\n--\n\n"
     "Flush the range's changes to the file.\n\n"
     "mode 'sync' returns once the data is on disk (MS_SYNC), and with it the\n"
     "file's size after any size change (fdatasync) and, the first time, the\n"
     "directory entry of a file open() created; 'async' schedules the data's\n"
     "write-back (MS_ASYNC) and waits for nothing. length 0 means to the end of\n"
     "the file; the range is widened to whole pages. A private mapping has no\n"
     "data to write."},
    {"truncate", (PyCFunction)(void (*)(void))iommap_mf_truncate, METH_FASTCALL,
     "truncate($self, new_size, /)\n--\n\n"
     "Resize the file to `new_size` bytes and remap it.\n\n"
     "Data past `new_size` is lost; growing reserves disk space as open(size=)\n"
     "does. The current size is allowed: it sets the file back to the mapped\n"
     "size, which restores service after a shrink from outside. Views made before\n"
     "keep the old mapping. A 'read' handle or a private mapping refuses with\n"
     "PermissionError (reason 'eacces')."},
    {"flush", (PyCFunction)(void (*)(void))iommap_mf_sync, METH_VARARGS | METH_KEYWORDS,
     "flush($self, /, mode='sync', offset=0, length=0)\n--\n\n"
     "The same as sync(), for code written against mmap.mmap.\n\n"
     "mmap's flush(offset, size) is sync(offset=offset, length=size) here."},
    {"remap", (PyCFunction)iommap_mf_remap, METH_NOARGS,
     "remap($self, /)\n--\n\n"
     "Map the file's current size anew, without changing the file; return it.\n\n"
     "Follows growth by another process (a log being appended to) and restores\n"
     "service after a shrink from outside: reads past the new end are then\n"
     "OutOfBoundsError, not SigbusError. A window maps as much of its range as\n"
     "the file now holds. Views made before keep the old mapping. On a private\n"
     "mapping the new mapping shows the file as it is: changes made through the\n"
     "handle stay in the old views only."},
    {"fileno", (PyCFunction)mf_fileno, METH_NOARGS,
     "fileno($self, /)\n--\n\n"
     "Return the handle's file descriptor, for os.fstat, fcntl locks, os.sendfile.\n\n"
     "It belongs to the handle (open() duplicates a descriptor it is given) and\n"
     "is closed by close(): do not close it yourself, and os.dup() it to keep it\n"
     "longer. ClosedError once the handle is closed."},
    {"advise", (PyCFunction)(void (*)(void))iommap_mf_advise, METH_FASTCALL,
     "advise($self, offset, length, hint, /)\n--\n\n"
     "Tell the kernel how the range will be used (madvise).\n\n"
     "hint is 'normal', 'random', 'sequential', 'willneed', 'dontneed', 'hugepage',\n"
     "'nohugepage', 'free', 'cold', 'pageout', 'populate_read', 'populate_write',\n"
     "'dontdump', 'dodump', 'dontfork', 'dofork' or 'remove'; one this platform\n"
     "lacks is an OSError naming it (ENOTSUP, or EINVAL from an older kernel).\n"
     "length 0 means to the end of the file; the range is widened to whole pages,\n"
     "except for 'free' and 'remove', which discard data: they act on the whole\n"
     "pages inside it only. On a private mapping 'dontneed' never discards this\n"
     "process's own changes."},
    {"view", (PyCFunction)(void (*)(void))iommap_mf_view, METH_VARARGS | METH_KEYWORDS,
     "view($self, /, offset=0, length=None)\n--\n\n"
     "Return a memoryview over the mapped pages, without copying; length None\n"
     "means to the end.\n\n"
     "Read-only for a 'read' handle, writable otherwise (a private mapping's\n"
     "writes stay private); a 'write' handle refuses with PermissionError. The\n"
     "view keeps its mapping alive after close() and truncate(). It is NOT\n"
     "SIGBUS-protected: touching pages the file no longer has kills the process.\n"
     "pread(), readinto() and gather() are the safe path."},
    {"gather", (PyCFunction)(void (*)(void))iommap_mf_gather, METH_VARARGS | METH_KEYWORDS,
     "gather($self, /, offsets, length, out=None)\n--\n\n"
     "Copy `length` bytes from each offset, in order, into one buffer; return it.\n\n"
     "`offsets` is a sequence of ints or a buffer of 64-bit integers (numpy\n"
     "int64/uint64, array('q')/array('Q')). `out` is a writable buffer of exactly\n"
     "len(offsets) * length bytes, or None for a new bytearray. Every range is\n"
     "checked before the first byte moves: the first bad one fails the call\n"
     "(OutOfBoundsError, its index in the message) and nothing is copied."},
    {"scatter", (PyCFunction)(void (*)(void))iommap_mf_scatter, METH_FASTCALL,
     "scatter($self, offsets, length, data, /)\n--\n\n"
     "Write chunk i of `data` at offsets[i], `length` bytes each, in order.\n\n"
     "`data` holds exactly len(offsets) * length bytes; a later overlapping chunk\n"
     "wins. Every range is checked before the first byte moves. A 'read' handle\n"
     "refuses with PermissionError."},
    {"resident", (PyCFunction)(void (*)(void))iommap_mf_resident, METH_VARARGS | METH_KEYWORDS,
     "resident($self, /, offset=0, length=0)\n--\n\n"
     "Return how many bytes of the pages the range touches are in memory now\n"
     "(mincore), whole pages counted; length 0 means to the end."},
    {"residency", (PyCFunction)(void (*)(void))iommap_mf_residency, METH_VARARGS | METH_KEYWORDS,
     "residency($self, /, offset=0, length=0)\n--\n\n"
     "Return one byte per page the range touches: 1 resident in memory now, 0 not\n"
     "(mincore); length 0 means to the end."},
    {"position", (PyCFunction)mf_position, METH_NOARGS,
     "position($self, /)\n--\n\n"
     "Return the current mapped size in bytes; len(self) is the same."},
    {"close", (PyCFunction)mf_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Unmap the file and close its descriptor.\n\n"
     "Calls in flight on other threads finish first; calls made after it raise\n"
     "ClosedError. Views stay valid: the pages are unmapped when the last one\n"
     "goes. Closing a closed handle does nothing."},
    {"__enter__", (PyCFunction)mf_enter, METH_NOARGS,
     "__enter__($self, /)\n--\n\nReturn the handle; ClosedError if it is closed."},
    {"__exit__", (PyCFunction)(void (*)(void))mf_exit, METH_FASTCALL,
     "__exit__($self, /, *exc_info)\n--\n\nClose the handle."},
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
