/* iommap.open(): the arguments checked, the file opened and set up with
 * the GIL released, and the handle made around it. */
#include "handle.h"
#include "files.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

/* A new MappedFile owning `fd` and `mapping` (a reference is stolen from
 * neither: the caller keeps its own). */
static PyObject *handle_new(iommap_state *st, int fd, iommap_mapping *mapping,
                            const iommap_map_options *opts, PyObject *path)
{
    iommap_handle *h = PyObject_GC_New(iommap_handle, st->mapped_file_type);
    if (h == NULL)
        return NULL;
    int rc = iommap_lock_init(h);
    h->weakrefs = NULL;
    h->is_device = 0;
    atomic_init(&h->dontfork, 0);
    atomic_init(&h->unsynced_size, 0);
    atomic_init(&h->created_dir, NULL);
    if (rc != 0) {
        h->fd = -1;
        h->mapping = NULL;
        h->path = NULL;
        atomic_init(&h->closing, 1);
        Py_DECREF(h);
        errno = rc;
        return iommap_err_os(st, "open", "pthread_rwlock_init()", rc, NULL);
    }
    atomic_init(&h->closing, 0);
    atomic_init(&h->size_hint, mapping->size);
    h->fd = fd;
    h->mapping = (iommap_mapping *)Py_NewRef(mapping);
    h->opts = *opts;
    h->path = Py_NewRef(path);
    PyObject_GC_Track(h);
    return (PyObject *)h;
}

PyObject *iommap_open(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path",   "mode",     "private", "lock",   "populate", "nocache",
                               "create", "truncate", "size",    "offset", "length",   NULL};
    iommap_state *st = PyModule_GetState(module);
    PyObject *path, *mode_obj = NULL, *size_obj = NULL, *offset_obj = NULL, *length_obj = NULL;
    int private_ = 0, lock = 0, populate = 0, nocache = 0, create = 0, truncate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$ppppppOOO:open", keywords, &path, &mode_obj,
                                     &private_, &lock, &populate, &nocache, &create, &truncate,
                                     &size_obj, &offset_obj, &length_obj))
        return NULL;

    iommap_map_options opts = {IOMMAP_READ_WRITE, private_, populate, nocache, lock, 0, 0};
    size_t size;
    int size_given;
    if (iommap_parse_mode(st, mode_obj, &opts.mode) != 0 ||
        iommap_parse_size(st, size_obj, &size, &size_given) != 0 ||
        (offset_obj != NULL &&
         iommap_arg_to_u64(st, "open", "offset", offset_obj, &opts.offset) != 0) ||
        (length_obj != NULL && length_obj != Py_None &&
         iommap_arg_to_u64(st, "open", "length", length_obj, &opts.length) != 0))
        return NULL;
    if (opts.mode == IOMMAP_READ && (create || truncate || size_given))
        return iommap_err_bad_value(st, "open: mode \"read\" cannot create, truncate or size "
                                        "a file");
    int given_fd = iommap_descriptor_of(st, path);
    if (given_fd == -1)
        return NULL;
    if (given_fd >= 0 && (create || truncate))
        return iommap_err_bad_value(st, "open: create and truncate need a path, not a "
                                        "descriptor");

    /* A private mapping never writes the file, so it needs write access only
     * to set the file up (truncate, size).  No O_TRUNC: iommap_setup_file
     * empties the file once everything that can fail has succeeded. */
    int needs_write = opts.mode != IOMMAP_READ && (!private_ || truncate || size_given);
    PyObject *encoded = NULL;
    PyObject *filename = NULL; /* for errors: the path, when there is one */
    const char *name = NULL;
    int fd = -1;
    if (given_fd >= 0) {
        fd = iommap_dup_descriptor(st, given_fd, opts.mode, needs_write);
        if (fd < 0)
            return NULL;
        path = Py_None; /* m.path: the handle was not opened by name */
    } else {
        encoded = iommap_encode_path(st, path);
        if (encoded == NULL)
            return NULL;
        name = PyBytes_AS_STRING(encoded);
        filename = path;
    }
    char *created_dir = NULL; /* for the first sync(), if this call creates the file */
    if (create && (created_dir = iommap_parent_directory(name)) == NULL) {
        Py_DECREF(encoded);
        return PyErr_NoMemory();
    }

    int flags = (needs_write ? O_RDWR : O_RDONLY) | (create ? O_CREAT : 0);
    iommap_setup setup = {truncate, size_given, size, nocache, &opts};
    iommap_setup_result done = {IOMMAP_FILE_REGULAR, NULL, 0, 0, NULL, NULL, 0, 0};
    int created = 0, err = 0;
    Py_BEGIN_ALLOW_THREADS
    if (fd < 0)
        fd = iommap_open_file(name, flags, &created, &done.refused_kind);
    if (fd < 0) {
        if (done.refused_kind == NULL)
            done.call = "open()";
    } else if (iommap_setup_file(fd, &setup, &done) != 0) {
        if (done.call == NULL && done.refused_kind == NULL && !done.beyond)
            done.call = "open()";
    } else if (given_fd < 0 && iommap_clear_nonblock(fd) != 0) {
        /* (A caller's descriptor keeps its flags: they are the caller's.) */
        done.call = "fcntl()";
        iommap_unmap_region(done.addr, done.length);
        done.addr = NULL;
    }
    err = errno;
    if ((done.call != NULL || done.refused_kind != NULL || done.beyond) && fd >= 0) {
        if (created) /* a failed open leaves no file it made */
            iommap_remove_created(name, fd);
        close(fd);
    }
    Py_END_ALLOW_THREADS
    Py_XDECREF(encoded);
    if (!created || done.call != NULL || done.refused_kind != NULL || done.beyond) {
        PyMem_RawFree(created_dir);
        created_dir = NULL;
    }
    if (done.refused_kind != NULL)
        return iommap_err_file_type(st, "open", done.refused_kind, err, filename);
    if (done.call != NULL)
        return iommap_err_os(st, "open", done.call, err, filename);
    if (done.beyond)
        return iommap_err_window_beyond(st, offset_obj, length_obj, opts.offset, opts.length,
                                        done.file_size);

    /* Put the SIGBUS handler back in front if another was installed since. */
    if (iommap_guard_install() != 0) {
        err = errno;
        iommap_unmap_region(done.addr, done.length);
        close(fd);
        PyMem_RawFree(created_dir);
        return iommap_err_os(st, "open", "sigaction()", err, NULL);
    }
    iommap_mapping *mapping = iommap_mapping_wrap(st->mapping_type, done.addr, done.length,
                                                  iommap_mapping_writable(&opts));
    if (mapping == NULL) {
        close(fd);
        PyMem_RawFree(created_dir);
        return NULL;
    }
    PyObject *handle = handle_new(st, fd, mapping, &opts, path);
    Py_DECREF(mapping);
    if (handle == NULL) {
        close(fd);
        PyMem_RawFree(created_dir);
        return NULL;
    }
    iommap_handle *h = (iommap_handle *)handle;
    h->is_device = done.kind == IOMMAP_FILE_BLOCK_DEVICE;
    atomic_store_explicit(&h->unsynced_size, done.size_changed || created, memory_order_relaxed);
    atomic_store_explicit(&h->created_dir, created_dir, memory_order_relaxed);
    return handle;
}
