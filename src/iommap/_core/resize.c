/* Resizing and syncing: MappedFile.truncate, .remap and .sync, the calls
 * that act on the file or its pages through system calls (advise, the
 * other one, is with its hints in hints.c). */
#include "handle.h"
#include "files.h"

#include <sys/stat.h>
#include <unistd.h>

/* ---- truncate ----------------------------------------------------------- */

/* Puts `fresh`, now holding [addr, addr + size), in the place of the
 * handle's mapping, which goes to *old (views may keep it). */
static void swap_in(iommap_handle *h, iommap_mapping *fresh, char *addr, size_t size,
                    iommap_mapping **old)
{
    fresh->addr = addr;
    fresh->size = size;
    iommap_mapping_retire(h->mapping, h->fd, &h->opts);
    *old = h->mapping;
    h->mapping = fresh;
    atomic_store_explicit(&h->dontfork, 0, memory_order_relaxed); /* a new region: no hint */
    atomic_store_explicit(&h->size_hint, size, memory_order_relaxed);
}

/* Resizes the file to new_size and maps it anew, under the exclusive lock
 * with the GIL released; the caller checked the handle is open.  `fresh`
 * is an unfilled Mapping made beforehand (allocating needs the GIL); on
 * success it replaces the handle's mapping and *old receives the previous
 * one, to be released with the GIL.  Order keeps a failure from leaving the
 * handle changed: grow the file before mapping it (so mlock can fault the
 * pages in), map before shrinking it, and undo the file size if the later
 * step fails. */
static iommap_status resize_locked(iommap_handle *h, size_t new_size, iommap_mapping *fresh,
                                   iommap_mapping **old)
{
    iommap_status s = {IOMMAP_DONE, 0, NULL, 0};
    struct stat st;
    if (fstat(h->fd, &st) != 0) {
        s = (iommap_status){IOMMAP_FAIL_OS, errno, "fstat()", 0};
        return s;
    }
    uint64_t file_size = (uint64_t)st.st_size; /* may exceed SIZE_MAX on 32-bit */
    if (new_size > file_size && iommap_grow_file(h->fd, file_size, new_size) != 0) {
        s = (iommap_status){IOMMAP_FAIL_OS, errno, "fallocate()", 0};
        return s;
    }
    char *addr = h->mapping->addr;
    if (new_size != h->mapping->size) {
        const char *call = NULL;
        if (iommap_map_region(h->fd, new_size, &h->opts, &addr, &call) != 0) {
            s = (iommap_status){IOMMAP_FAIL_OS, errno, call, 0};
            if (new_size > file_size)
                (void)ftruncate(h->fd, (off_t)file_size);
            return s;
        }
    }
    /* Views of this mapping and of older ones read zeros past the new end
     * rather than fault: cut them before the file shrinks, and put the
     * file's pages back if it does not. */
    if (new_size < file_size)
        iommap_mappings_cut(h->fd, new_size, h->mapping, &h->opts);
    if (new_size < file_size && ftruncate(h->fd, (off_t)new_size) != 0) {
        s = (iommap_status){IOMMAP_FAIL_OS, errno, "ftruncate()", 0};
        iommap_mappings_restore(h->fd, new_size, h->mapping, &h->opts);
        if (addr != h->mapping->addr)
            iommap_unmap_region(addr, new_size);
        return s;
    }
    /* Shrinking the file can unmap locked pages below the new end too (Linux
     * splits the page-cache folio that straddles it and unmaps all of it).
     * The region stays VM_LOCKED, so mlock again only faults those pages
     * back in; it adds nothing to the locked-memory accounting, and if it
     * fails the pages still lock as they are touched again. */
    if (h->opts.lock && new_size < file_size && addr != NULL)
        (void)mlock(addr, new_size);
    if (new_size == h->mapping->size) {
        *old = NULL; /* same mapping: its pages are backed again */
        return s;
    }
    swap_in(h, fresh, addr, new_size, old);
    return s;
}

typedef struct {
    iommap_handle *h;
    size_t new_size;
    iommap_mapping *fresh;
    iommap_mapping **old;
    iommap_status *s;
} resize_work;

static int run_resize(void *arg)
{
    resize_work *w = arg;
    *w->s = resize_locked(w->h, w->new_size, w->fresh, w->old);
    if (w->s->what == IOMMAP_DONE) /* the next sync() makes the size durable */
        atomic_store_explicit(&w->h->unsynced_size, 1, memory_order_relaxed);
    return 0;
}

const char iommap_mf_truncate_doc[] =
    "truncate($self, new_size, /)\n--\n\n"
    "Resize the file to `new_size` bytes and remap it.\n\n"
    "Data past `new_size` is lost; growing reserves disk space as open(size=)\n"
    "does. The current size is allowed: it sets the file back to the mapped\n"
    "size, which restores service after a shrink from outside. Views made before\n"
    "keep the old mapping. A 'read' handle or a private mapping refuses with\n"
    "PermissionError (reason 'eacces').";

PyObject *iommap_mf_truncate(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t new_size;
    if (iommap_check_nargs("truncate", nargs, 1) ||
        iommap_to_u64(h, "truncate", "new_size", args[0], &new_size) ||
        iommap_check_usable(h, "truncate", IOMMAP_WRITE))
        return NULL;
    iommap_state *st = IOMMAP_STATE(h);
    if (IOMMAP_IS_WINDOW(&h->opts))
        return iommap_err_bad_value(st, "truncate: a window (opened with offset= or length=) "
                                        "never resizes its file");
    if (h->opts.private_)
        return iommap_err_refused(st, "truncate", "a private mapping cannot resize its file");
    if (new_size > (uint64_t)INT64_MAX || new_size > (uint64_t)SIZE_MAX)
        return iommap_err_os(st, "truncate", "ftruncate()", EFBIG, NULL);
    if (h->is_device) /* a device's size is its own, as ftruncate(2) says */
        return iommap_err_os(st, "truncate", "ftruncate()", EINVAL, NULL);

    iommap_mapping *fresh =
        iommap_mapping_wrap(st->mapping_type, NULL, 0, iommap_mapping_writable(&h->opts));
    if (fresh == NULL)
        return NULL;
    iommap_mapping *old = NULL;
    iommap_status s;
    if (iommap_enter(h, IOMMAP_EXCLUSIVE, 0, 0, &s) != NULL) {
        resize_work w = {h, (size_t)new_size, fresh, &old, &s};
        (void)iommap_finish_released(h, IOMMAP_BLOCKING, run_resize, &w);
    }
    if (s.what != IOMMAP_DONE || old == NULL)
        Py_DECREF(fresh); /* unused: addr NULL, so nothing is unmapped */
    Py_XDECREF(old);      /* unmapped here unless a view still holds it */
    if (s.what != IOMMAP_DONE)
        return iommap_raise_status(h, "truncate", &s, new_size, 0);
    Py_RETURN_NONE;
}

/* ---- remap -------------------------------------------------------------- */

/* Maps the file's current size anew, leaving the file as it is; under the
 * exclusive lock with the GIL released, as resize_locked.  *new_size gets
 * the size now mapped; *old the replaced mapping, or NULL if the size is the
 * same (the mapping stays: it covers the same pages). */
static iommap_status remap_locked(iommap_handle *h, iommap_mapping *fresh, iommap_mapping **old,
                                  size_t *new_size)
{
    *old = NULL;
    /* The size as open() saw it: st_size for a file, the device's own size
     * for a block device (whose st_size is 0). */
    iommap_file_kind kind;
    uint64_t file_size;
    const char *what;
    if (iommap_file_size(h->fd, &kind, &file_size, &what) != 0)
        return (iommap_status){IOMMAP_FAIL_OS, errno, "fstat()", 0};
    int whole;
    uint64_t mapped = iommap_window_size(&h->opts, file_size, &whole);
    if (mapped > SIZE_MAX) /* grown past what a 32-bit address space holds */
        return (iommap_status){IOMMAP_FAIL_OS, ENOMEM, "mmap()", 0};
    size_t size = (size_t)mapped;
    *new_size = size;
    if (size == h->mapping->size)
        return (iommap_status){IOMMAP_DONE, 0, NULL, 0};
    char *addr;
    const char *call = NULL;
    if (iommap_map_region(h->fd, size, &h->opts, &addr, &call) != 0)
        return (iommap_status){IOMMAP_FAIL_OS, errno, call, 0};
    swap_in(h, fresh, addr, size, old);
    return (iommap_status){IOMMAP_DONE, 0, NULL, 0};
}

typedef struct {
    iommap_handle *h;
    iommap_mapping *fresh;
    iommap_mapping **old;
    size_t *new_size;
    iommap_status *s;
} remap_work;

static int run_remap(void *arg)
{
    remap_work *w = arg;
    *w->s = remap_locked(w->h, w->fresh, w->old, w->new_size);
    return 0;
}

const char iommap_mf_remap_doc[] =
    "remap($self, /)\n--\n\n"
    "Map the file's current size anew, without changing the file; return it.\n\n"
    "Follows growth by another process (a log being appended to) and restores\n"
    "service after a shrink from outside: reads past the new end are then\n"
    "OutOfBoundsError, not SigbusError. A window maps as much of its range as\n"
    "the file now holds. Views made before keep the old mapping. On a private\n"
    "mapping the new mapping shows the file as it is: changes made through the\n"
    "handle stay in the old views only.";

PyObject *iommap_mf_remap(iommap_handle *h, PyObject *Py_UNUSED(ignored))
{
    if (iommap_check_usable(h, "remap", 0) != 0)
        return NULL;
    iommap_state *st = IOMMAP_STATE(h);
    iommap_mapping *fresh =
        iommap_mapping_wrap(st->mapping_type, NULL, 0, iommap_mapping_writable(&h->opts));
    if (fresh == NULL)
        return NULL;
    iommap_mapping *old = NULL;
    size_t new_size = 0;
    iommap_status s;
    if (iommap_enter(h, IOMMAP_EXCLUSIVE, 0, 0, &s) != NULL) {
        remap_work w = {h, fresh, &old, &new_size, &s};
        (void)iommap_finish_released(h, IOMMAP_BLOCKING, run_remap, &w);
    }
    if (s.what != IOMMAP_DONE || old == NULL)
        Py_DECREF(fresh); /* unused: addr NULL, so nothing is unmapped */
    Py_XDECREF(old);      /* unmapped here unless a view still holds it */
    if (s.what != IOMMAP_DONE)
        return iommap_raise_status(h, "remap", &s, 0, 0);
    return PyLong_FromSize_t(new_size);
}

/* ---- sync --------------------------------------------------------------- */

/* What msync does not cover, done after it by sync("sync"): the file's size
 * when it changed since the last sync (msync has nothing to flush for an
 * empty mapping, and POSIX does not make it write the size at all), then
 * the directory entry of a file open() created, once.  Under the exclusive
 * lock, so that a sync() on another thread returns only once all of it is
 * durable; it is needed at most once per change. */
typedef struct {
    iommap_handle *h;
    iommap_status *s;
} durable_work;

/* Under the exclusive lock (no GIL needed): the flags change only here and
 * in truncate and open, which hold the lock too or come before any sync. */
static int run_durable(void *arg)
{
    durable_work *w = arg;
    iommap_handle *h = w->h;
    char *dir = atomic_load_explicit(&h->created_dir, memory_order_relaxed);
    if (!atomic_load_explicit(&h->unsynced_size, memory_order_relaxed) && dir == NULL)
        return 0; /* another sync did it while this one waited for the lock */
    if (iommap_platform_sync_file(h->fd) != 0) {
        *w->s = (iommap_status){IOMMAP_FAIL_OS, errno, "fdatasync()", 0};
        return -1;
    }
    atomic_store_explicit(&h->unsynced_size, 0, memory_order_relaxed);
    if (dir != NULL) {
        if (iommap_sync_directory(dir) != 0) {
            *w->s = (iommap_status){IOMMAP_FAIL_OS, errno, "fsync() of the directory", 0};
            return -1;
        }
        atomic_store_explicit(&h->created_dir, NULL, memory_order_relaxed);
        PyMem_RawFree(dir);
    }
    return 0;
}

static PyObject *make_durable(iommap_handle *h)
{
    if (!atomic_load_explicit(&h->unsynced_size, memory_order_acquire) &&
        atomic_load_explicit(&h->created_dir, memory_order_acquire) == NULL)
        Py_RETURN_NONE;
    iommap_status s;
    if (iommap_enter(h, IOMMAP_EXCLUSIVE, 0, 0, &s) != NULL) {
        durable_work w = {h, &s};
        (void)iommap_finish_released(h, IOMMAP_BLOCKING, run_durable, &w);
    }
    if (s.what != IOMMAP_DONE)
        return iommap_raise_status(h, "sync", &s, 0, 0);
    Py_RETURN_NONE;
}

static int sync_flags_of(iommap_handle *h, PyObject *mode, int *flags)
{
    if (!PyUnicode_Check(mode)) {
        iommap_err_bad_type(IOMMAP_STATE(h), "sync: mode must be a str, not %.100s",
                            Py_TYPE(mode)->tp_name);
        return -1;
    }
    if (PyUnicode_CompareWithASCIIString(mode, "sync") == 0) {
        *flags = MS_SYNC;
    } else if (PyUnicode_CompareWithASCIIString(mode, "async") == 0) {
        *flags = MS_ASYNC;
    } else {
        iommap_err_bad_value(IOMMAP_STATE(h), "sync: mode must be \"sync\" or \"async\", not %R",
                             mode);
        return -1;
    }
    return 0;
}

const char iommap_mf_sync_doc[] =
    "sync($self, /, mode='sync', offset=0, length=0)\n--\n\n"
    "Flush the range's changes to the file.\n\n"
    "mode 'sync' returns once the data is on disk (MS_SYNC), and with it the\n"
    "file's size after any size change (fdatasync) and, the first time, the\n"
    "directory entry of a file open() created; 'async' schedules the data's\n"
    "write-back (MS_ASYNC) and waits for nothing. length 0 means to the end of\n"
    "the file; the range is widened to whole pages. A private mapping has no\n"
    "data to write.";

const char iommap_mf_flush_doc[] =
    "flush($self, /, mode='sync', offset=0, length=0)\n--\n\n"
    "The same as sync(), for code written against mmap.mmap.\n\n"
    "mmap's flush(offset, size) is sync(offset=offset, length=size) here.";

PyObject *iommap_mf_sync(iommap_handle *h, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"mode", "offset", "length", NULL};
    PyObject *mode_obj = NULL, *offset_obj = NULL, *length_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOO:sync", keywords, &mode_obj, &offset_obj,
                                     &length_obj))
        return NULL;
    int flags = MS_SYNC;
    iommap_range r = {0, 0};
    if ((mode_obj != NULL && sync_flags_of(h, mode_obj, &flags) != 0) ||
        (offset_obj != NULL && iommap_to_u64(h, "sync", "offset", offset_obj, &r.offset) != 0) ||
        (length_obj != NULL && iommap_to_u64(h, "sync", "length", length_obj, &r.length) != 0) ||
        iommap_check_usable(h, "sync", 0))
        return NULL;

    /* A private mapping has nothing to write back: it never reaches the file. */
    int (*call)(void *, size_t, int) = h->opts.private_ ? NULL : msync;
    PyObject *done =
        iommap_call_on_range(h, "sync", r, offset_obj, length_obj, call, "msync()", flags, 0);
    if (done == NULL || flags != MS_SYNC)
        return done; /* "async" schedules the data and waits for nothing */
    Py_DECREF(done);
    return make_durable(h);
}
