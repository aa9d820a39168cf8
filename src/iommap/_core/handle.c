/* The MappedFile type: a file descriptor, its current Mapping, and the
 * read-write lock that orders every call on them.
 *
 * Locking rules, the whole of them:
 *  - pread, readinto, advise, sync and position take the lock shared;
 *    pwrite, truncate and close take it exclusive.  The lock prefers
 *    writers, so a stream of readers cannot starve them.
 *  - The lock is first tried with the GIL held; if it is busy, the GIL is
 *    released for the wait.  No thread ever blocks on the lock while holding
 *    the GIL, so the two cannot deadlock.
 *  - No Python code runs while the lock is held: arguments are converted
 *    before locking, and exceptions are raised after unlocking (a finalizer
 *    run by an allocation could otherwise call back into this handle).
 *  - close() sets `closing` first, so new calls fail at once, then takes the
 *    lock exclusive, which waits for the calls in flight.
 */
#include "handle.h"
#include "hints.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

PyObject *raise_status(mapped_file *h, const char *op, const status *s, uint64_t offset,
                       uint64_t length)
{
    iommap_state *st = STATE(h);
    switch (s->what) {
    case FAIL_CLOSED:
        return iommap_err_closed(st, op);
    case FAIL_OUT_OF_BOUNDS:
        return iommap_err_out_of_bounds(st, op, offset, length, s->size);
    case FAIL_SIGBUS:
        return iommap_err_sigbus(st, op);
    case FAIL_OS:
        return iommap_err_os(st, op, s->call, s->err, NULL);
    case DONE:
        break;
    }
    PyErr_SetString(PyExc_SystemError, "iommap: raise_status without a failure");
    return NULL;
}

/* ---- locking ------------------------------------------------------------ */

/* Makes a lock that prefers writers (glibc's default lets a steady stream
 * of readers starve them). */
static int init_lock(pthread_rwlock_t *lock)
{
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
#if defined(__GLIBC__)
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
    int rc = pthread_rwlock_init(lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return rc;
}

/* Fork.  A child gets each handle's lock as it was at the instant of fork:
 * held, if another thread of the parent was inside a call (a large copy runs
 * with the GIL released and the lock held).  That thread does not exist in
 * the child, so the lock would never be released and the child's next
 * pwrite, truncate or close would wait forever.
 *
 * So the child's at-fork handler bumps a process-wide generation, and every
 * locking call first checks that the handle's lock belongs to the current
 * generation (one relaxed load and a compare); if not, it re-initialises
 * the lock, free, before using it.  No thread of the child can be holding
 * it then: every thread takes it through this check.  What the vanished
 * call had done stays done (its bytes went as far as the copy got; for a
 * shared mapping the parent's thread finishes them in the same pages); its
 * effect on the handle (a truncate's new mapping) is as before the call.
 *
 * The mutex orders two threads that find the same stale lock; the child
 * handler re-initialises it too, in case a parent thread held it. */
atomic_uint fork_generation;
static pthread_mutex_t relock_mutex = PTHREAD_MUTEX_INITIALIZER;

static void after_fork_in_child(void)
{
    atomic_fetch_add_explicit(&fork_generation, 1, memory_order_relaxed);
    pthread_mutex_init(&relock_mutex, NULL);
}

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
static int fork_handler_rc;

static void install_fork_handler(void)
{
    fork_handler_rc = pthread_atfork(NULL, NULL, after_fork_in_child);
}

int iommap_fork_handler_install(void)
{
    pthread_once(&fork_handler_once, install_fork_handler);
    return fork_handler_rc;
}

void refresh_lock_after_fork(mapped_file *h, unsigned generation)
{
    pthread_mutex_lock(&relock_mutex);
    if (atomic_load_explicit(&h->lock_generation, memory_order_relaxed) != generation) {
        (void)init_lock(&h->lock); /* glibc's cannot fail */
        atomic_store_explicit(&h->lock_generation, generation, memory_order_release);
    }
    pthread_mutex_unlock(&relock_mutex);
}

/* ---- argument conversion -------------------------------------------------- */

int check_nargs(mapped_file *h, const char *op, Py_ssize_t nargs, Py_ssize_t want)
{
    if (nargs == want)
        return 0;
    (void)h;
    PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd arguments (%zd given)", op, want, nargs);
    return -1;
}

PyObject *refuse_mode(mapped_file *h, const char *op, const char *why)
{
    return iommap_err_refused(STATE(h), op, why);
}

/* ---- pread / readinto ----------------------------------------------------- */

/* A destination buffer that file bytes may be copied into: writable,
 * C-contiguous, and holding no Python object pointers.  A numpy object
 * array exports its PyObject* slots as a writable buffer; filling them with
 * file bytes makes the interpreter crash when the array is freed, so such a
 * buffer is badarg (struct field names, between colons, are skipped). */
int get_destination(PyObject *obj, Py_buffer *buf)
{
    if (PyObject_GetBuffer(obj, buf, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        PyErr_Clear();
        return -1;
    }
    for (const char *f = buf->format; f != NULL && *f != '\0'; f++) {
        if (*f == ':') {
            const char *end = strchr(f + 1, ':');
            if (end == NULL)
                break;
            f = end;
        } else if (*f == 'O') {
            PyBuffer_Release(buf);
            return -1;
        }
    }
    return 0;
}

/* Copies [offset, offset + n) of the current mapping into dst under the
 * shared lock, releasing the GIL for large copies. */
static status copy_out(mapped_file *h, uint64_t offset, size_t n, char *dst)
{
    status s = {DONE, 0, NULL, 0};
    lock_shared(h);
    iommap_mapping *m = h->mapping;
    if (m == NULL) {
        unlock(h);
        s.what = FAIL_CLOSED;
        return s;
    }
    if (!in_bounds(offset, n, m->size)) {
        unlock(h);
        s.what = FAIL_OUT_OF_BOUNDS;
        s.size = m->size;
        return s;
    }
    int rc = 0;
    if (n >= IOMMAP_GIL_RELEASE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        rc = iommap_guarded_copy(dst, m->addr + offset, n, m->addr, m->size);
        unlock(h);
        Py_END_ALLOW_THREADS
    } else {
        if (n > 0)
            rc = iommap_guarded_copy(dst, m->addr + offset, n, m->addr, m->size);
        unlock(h);
    }
    if (rc != 0)
        s.what = FAIL_SIGBUS;
    return s;
}

static PyObject *mf_pread(mapped_file *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t offset, length;
    if (check_nargs(h, "pread", nargs, 2) || to_u64(h, "pread", "offset", args[0], &offset) ||
        to_u64(h, "pread", "length", args[1], &length))
        return NULL;
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "pread");
    if (!IOMMAP_CAN_READ(h->opts.mode))
        return refuse_mode(h, "pread", "the handle is write-only");
    /* Refuse early what cannot fit, so a huge length is out_of_bounds rather
     * than MemoryError; the locked check below is the one that counts. */
    size_t hint = atomic_load_explicit(&h->size_hint, memory_order_relaxed);
    if (!in_bounds(offset, length, hint))
        return iommap_err_out_of_bounds(STATE(h), "pread", offset, length, hint);

    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
    if (result == NULL)
        return NULL;
    status s = copy_out(h, offset, (size_t)length, PyBytes_AS_STRING(result));
    if (s.what != DONE) {
        Py_DECREF(result);
        return raise_status(h, "pread", &s, offset, length);
    }
    return result;
}

static PyObject *mf_readinto(mapped_file *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t offset;
    if (check_nargs(h, "readinto", nargs, 2) || to_u64(h, "readinto", "offset", args[0], &offset))
        return NULL;
    Py_buffer buf;
    if (get_destination(args[1], &buf) != 0) {
        return iommap_err_bad_type(STATE(h),
                                   "readinto: buffer must be a writable C-contiguous "
                                   "buffer of plain data, not %.100s",
                                   Py_TYPE(args[1])->tp_name);
    }
    PyObject *result = NULL;
    if (is_closing(h)) {
        iommap_err_closed(STATE(h), "readinto");
    } else if (!IOMMAP_CAN_READ(h->opts.mode)) {
        refuse_mode(h, "readinto", "the handle is write-only");
    } else {
        status s = copy_out(h, offset, (size_t)buf.len, buf.buf);
        if (s.what == DONE)
            result = PyLong_FromSsize_t(buf.len);
        else
            raise_status(h, "readinto", &s, offset, (uint64_t)buf.len);
    }
    PyBuffer_Release(&buf);
    return result;
}

/* ---- pwrite ------------------------------------------------------------- */

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

static int chunks_add(mapped_file *h, chunks *c, PyObject *obj, int depth)
{
    if (PyList_Check(obj) || PyTuple_Check(obj)) {
        if (depth >= IOMMAP_MAX_IOLIST_DEPTH) {
            iommap_err_bad_value(STATE(h),
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
        iommap_err_bad_type(STATE(h),
                            "pwrite: data must be bytes-like or a list of them, "
                            "not %.100s",
                            Py_TYPE(obj)->tp_name);
        return -1;
    }
    if (c->count == c->capacity && chunks_grow(c) != 0)
        return -1;
    if (PyObject_GetBuffer(obj, &c->views[c->count], PyBUF_SIMPLE) != 0) {
        PyErr_Clear();
        iommap_err_bad_type(STATE(h),
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

static status copy_in(mapped_file *h, uint64_t offset, const chunks *c)
{
    status s = {DONE, 0, NULL, 0};
    lock_exclusive(h);
    iommap_mapping *m = h->mapping;
    if (m == NULL) {
        unlock(h);
        s.what = FAIL_CLOSED;
        return s;
    }
    if (!in_bounds(offset, c->total, m->size)) {
        unlock(h);
        s.what = FAIL_OUT_OF_BOUNDS;
        s.size = m->size;
        return s;
    }
    if (c->total == 0) {
        unlock(h);
        return s;
    }
    int rc = 0;
    int release_gil = c->total >= IOMMAP_GIL_RELEASE_BYTES;
    PyThreadState *ts = release_gil ? PyEval_SaveThread() : NULL;
    char *dst = m->addr + offset;
    for (Py_ssize_t i = 0; i < c->count && rc == 0; i++) {
        size_t n = (size_t)c->views[i].len;
        if (n > 0)
            rc = iommap_guarded_copy(dst, c->views[i].buf, n, m->addr, m->size);
        dst += n;
    }
    unlock(h);
    if (release_gil)
        PyEval_RestoreThread(ts);
    if (rc != 0)
        s.what = FAIL_SIGBUS;
    return s;
}

static PyObject *mf_pwrite(mapped_file *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t offset;
    if (check_nargs(h, "pwrite", nargs, 2) || to_u64(h, "pwrite", "offset", args[0], &offset))
        return NULL;
    chunks c;
    chunks_init(&c);
    if (chunks_add(h, &c, args[1], 0) != 0)
        goto fail;

    if (is_closing(h)) {
        iommap_err_closed(STATE(h), "pwrite");
        goto fail;
    }
    if (!IOMMAP_CAN_WRITE(h->opts.mode)) {
        refuse_mode(h, "pwrite", "the handle is read-only");
        goto fail;
    }
    status s = copy_in(h, offset, &c);
    if (s.what != DONE) {
        raise_status(h, "pwrite", &s, offset, c.total);
        goto fail;
    }
    chunks_release(&c);
    Py_RETURN_NONE;

fail:
    chunks_release(&c);
    return NULL;
}

/* ---- truncate ----------------------------------------------------------- */

/* Resizes the file to new_size and maps it anew, under the exclusive lock
 * with the GIL released.  `fresh` is an unfilled Mapping made beforehand
 * (allocating needs the GIL); on success it replaces the handle's mapping
 * and *old receives the previous one, to be released with the GIL.
 * Order keeps a failure from leaving the handle changed: grow the file
 * before mapping it (so mlock can fault the pages in), map before shrinking
 * it, and undo the file size if the later step fails. */
static status resize_locked(mapped_file *h, size_t new_size, iommap_mapping *fresh,
                            iommap_mapping **old)
{
    status s = {DONE, 0, NULL, 0};
    if (h->mapping == NULL) {
        s.what = FAIL_CLOSED;
        return s;
    }
    struct stat st;
    if (fstat(h->fd, &st) != 0) {
        s = (status){FAIL_OS, errno, "fstat()", 0};
        return s;
    }
    size_t file_size = (size_t)st.st_size;
    if (new_size > file_size && iommap_platform_reserve(h->fd, file_size, new_size) != 0) {
        s = (status){FAIL_OS, errno, "fallocate()", 0};
        return s;
    }
    char *addr = h->mapping->addr;
    if (new_size != h->mapping->size) {
        const char *call = NULL;
        if (iommap_map_region(h->fd, new_size, &h->opts, &addr, &call) != 0) {
            s = (status){FAIL_OS, errno, call, 0};
            if (new_size > file_size)
                (void)ftruncate(h->fd, (off_t)file_size);
            return s;
        }
    }
    if (new_size < file_size && ftruncate(h->fd, (off_t)new_size) != 0) {
        s = (status){FAIL_OS, errno, "ftruncate()", 0};
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
    fresh->addr = addr;
    fresh->size = new_size;
    *old = h->mapping;
    h->mapping = fresh;
    atomic_store_explicit(&h->size_hint, new_size, memory_order_relaxed);
    return s;
}

static PyObject *mf_truncate(mapped_file *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t new_size;
    if (check_nargs(h, "truncate", nargs, 1) ||
        to_u64(h, "truncate", "new_size", args[0], &new_size))
        return NULL;
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "truncate");
    if (IOMMAP_IS_WINDOW(&h->opts))
        return iommap_err_bad_value(STATE(h), "truncate: a window (opened with offset= or "
                                              "length=) never resizes its file");
    if (!IOMMAP_CAN_WRITE(h->opts.mode))
        return refuse_mode(h, "truncate", "the handle is read-only");
    if (h->opts.private_)
        return refuse_mode(h, "truncate", "a private mapping cannot resize its file");
    if (new_size > (uint64_t)INT64_MAX || new_size > (uint64_t)SIZE_MAX)
        return iommap_err_os(STATE(h), "truncate", "ftruncate()", EFBIG, NULL);

    iommap_mapping *fresh =
        iommap_mapping_wrap(STATE(h)->mapping_type, NULL, 0, iommap_mapping_writable(&h->opts));
    if (fresh == NULL)
        return NULL;
    iommap_mapping *old = NULL;
    status s;
    ensure_lock_current(h);
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&h->lock);
    s = resize_locked(h, (size_t)new_size, fresh, &old);
    pthread_rwlock_unlock(&h->lock);
    Py_END_ALLOW_THREADS
    if (s.what != DONE || old == NULL)
        Py_DECREF(fresh); /* unused: addr NULL, so nothing is unmapped */
    Py_XDECREF(old);      /* unmapped here unless a view still holds it */
    if (s.what != DONE)
        return raise_status(h, "truncate", &s, new_size, 0);
    Py_RETURN_NONE;
}

/* ---- remap -------------------------------------------------------------- */

/* The size a handle maps when its file is `file_size` bytes: the whole
 * file, or as much of the window as the file now holds. */
static size_t size_to_map(const iommap_map_options *opts, size_t file_size)
{
    if (opts->offset >= file_size)
        return 0;
    size_t rest = file_size - (size_t)opts->offset;
    return opts->length != 0 && opts->length < rest ? (size_t)opts->length : rest;
}

/* Maps the file's current size anew, leaving the file as it is; under the
 * exclusive lock with the GIL released, as resize_locked.  *new_size gets
 * the size now mapped; *old the replaced mapping, NULL if the size is the
 * same (the mapping stays: it covers the same pages). */
static status remap_locked(mapped_file *h, iommap_mapping *fresh, iommap_mapping **old,
                           size_t *new_size)
{
    status s = {DONE, 0, NULL, 0};
    *old = NULL;
    if (h->mapping == NULL) {
        s.what = FAIL_CLOSED;
        return s;
    }
    struct stat st;
    if (fstat(h->fd, &st) != 0)
        return (status){FAIL_OS, errno, "fstat()", 0};
    size_t size = size_to_map(&h->opts, (size_t)st.st_size);
    *new_size = size;
    if (size == h->mapping->size)
        return s;
    char *addr;
    const char *call = NULL;
    if (iommap_map_region(h->fd, size, &h->opts, &addr, &call) != 0)
        return (status){FAIL_OS, errno, call, 0};
    fresh->addr = addr;
    fresh->size = size;
    *old = h->mapping;
    h->mapping = fresh;
    atomic_store_explicit(&h->size_hint, size, memory_order_relaxed);
    return s;
}

static PyObject *mf_remap(mapped_file *h, PyObject *Py_UNUSED(ignored))
{
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "remap");
    iommap_mapping *fresh =
        iommap_mapping_wrap(STATE(h)->mapping_type, NULL, 0, iommap_mapping_writable(&h->opts));
    if (fresh == NULL)
        return NULL;
    iommap_mapping *old = NULL;
    size_t size = 0;
    status s;
    ensure_lock_current(h);
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&h->lock);
    s = remap_locked(h, fresh, &old, &size);
    pthread_rwlock_unlock(&h->lock);
    Py_END_ALLOW_THREADS
    if (s.what != DONE || old == NULL)
        Py_DECREF(fresh); /* unused: addr NULL, so nothing is unmapped */
    Py_XDECREF(old);      /* unmapped here unless a view still holds it */
    if (s.what != DONE)
        return raise_status(h, "remap", &s, 0, 0);
    return PyLong_FromSize_t(size);
}

/* The handle's own descriptor (a duplicate when open() was given one). */
static PyObject *mf_fileno(mapped_file *h, PyObject *Py_UNUSED(ignored))
{
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "fileno");
    lock_shared(h);
    int fd = h->fd;
    unlock(h);
    if (fd < 0)
        return iommap_err_closed(STATE(h), "fileno");
    return PyLong_FromLong(fd);
}

/* ---- sync / advise ------------------------------------------------------ */

/* Page-aligns [offset, offset + length) of a mapping: the start moves down
 * to its page, the kernel rounds the end up.  Pages are the machine's: a
 * window's mapping may start inside one. */
void page_align(const iommap_mapping *m, const range *r, char **start, size_t *len)
{
    uintptr_t page = iommap_page_size();
    size_t length = r->length != 0 ? (size_t)r->length : m->size - (size_t)r->offset;
    uintptr_t first = (uintptr_t)(m->addr + r->offset);
    uintptr_t aligned = first & ~(page - 1);
    *start = (char *)aligned;
    *len = length + (size_t)(first - aligned);
}

/* The whole pages inside [offset, offset + length): the start moves up to a
 * page boundary, the end down; *len may be 0. */
static void page_align_inward(const iommap_mapping *m, const range *r, char **start, size_t *len)
{
    uintptr_t page = iommap_page_size();
    size_t length = r->length != 0 ? (size_t)r->length : m->size - (size_t)r->offset;
    uintptr_t first = (uintptr_t)(m->addr + r->offset);
    uintptr_t end = (first + length) & ~(page - 1);
    first = (first + page - 1) & ~(page - 1);
    *start = (char *)first;
    *len = end > first ? (size_t)(end - first) : 0;
}

/* Checks `r` against the mapping under the shared lock and runs `call`
 * (msync or madvise) over its pages with the GIL released; a NULL `call`
 * only checks.  Raises and returns NULL on failure, else None. */
static PyObject *call_on_range(mapped_file *h, const char *op, range r,
                               int (*call)(void *, size_t, int), const char *call_name, int arg,
                               int inward)
{
    status s = {DONE, 0, NULL, 0};
    lock_shared(h);
    iommap_mapping *m = h->mapping;
    if (m == NULL) {
        s.what = FAIL_CLOSED;
    } else if (!in_bounds(r.offset, r.length, m->size)) {
        s.what = FAIL_OUT_OF_BOUNDS;
        s.size = m->size;
    } else if (call != NULL && m->size > 0 && r.offset < m->size) {
        char *start;
        size_t len;
        if (inward)
            page_align_inward(m, &r, &start, &len);
        else
            page_align(m, &r, &start, &len);
        int rc = 0;
        if (len > 0) {
            Py_BEGIN_ALLOW_THREADS
            rc = call(start, len, arg);
            Py_END_ALLOW_THREADS
        }
        if (rc != 0)
            s = (status){FAIL_OS, errno, call_name, 0};
    }
    unlock(h);
    if (s.what != DONE)
        return raise_status(h, op, &s, r.offset, r.length);
    Py_RETURN_NONE;
}

static int sync_flags_of(mapped_file *h, PyObject *mode, int *flags)
{
    if (!PyUnicode_Check(mode)) {
        iommap_err_bad_type(STATE(h), "sync: mode must be a str, not %.100s",
                            Py_TYPE(mode)->tp_name);
        return -1;
    }
    if (PyUnicode_CompareWithASCIIString(mode, "sync") == 0) {
        *flags = MS_SYNC;
    } else if (PyUnicode_CompareWithASCIIString(mode, "async") == 0) {
        *flags = MS_ASYNC;
    } else {
        iommap_err_bad_value(STATE(h), "sync: mode must be \"sync\" or \"async\", not %R", mode);
        return -1;
    }
    return 0;
}

static PyObject *mf_sync(mapped_file *h, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"mode", "offset", "length", NULL};
    PyObject *mode_obj = NULL, *offset_obj = NULL, *length_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|OOO:sync", keywords, &mode_obj, &offset_obj,
                                     &length_obj))
        return NULL;
    int flags = MS_SYNC;
    range r = {0, 0};
    if ((mode_obj != NULL && sync_flags_of(h, mode_obj, &flags) != 0) ||
        (offset_obj != NULL && to_u64(h, "sync", "offset", offset_obj, &r.offset) != 0) ||
        (length_obj != NULL && to_u64(h, "sync", "length", length_obj, &r.length) != 0))
        return NULL;
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "sync");

    /* A private mapping has nothing to write back: it never reaches the file. */
    int (*call)(void *, size_t, int) = h->opts.private_ ? NULL : msync;
    return call_on_range(h, "sync", r, call, "msync()", flags, 0);
}

static const iommap_hint *hint_of(mapped_file *h, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        iommap_err_bad_type(STATE(h), "advise: hint must be a str, not %.100s",
                            Py_TYPE(name)->tp_name);
        return NULL;
    }
    const iommap_hint *hint = iommap_hint_find(name);
    if (hint == NULL)
        iommap_err_bad_value(STATE(h), "advise: hint must be one of " IOMMAP_HINT_LIST ", not %R",
                             name);
    return hint;
}

/* What a known hint becomes on this handle: the advice to pass, or NULL
 * with the exception that refuses it (the platform lacks it, or the
 * handle's mode or kind forbids it). */
static int advice_for(mapped_file *h, const iommap_hint *hint, int *advice)
{
    char why[160];
    if (hint->advice == IOMMAP_HINT_ABSENT) {
        snprintf(why, sizeof(why), "hint \"%s\" is not available on this platform (no %s)",
                 hint->name, hint->call);
        iommap_err_errno(STATE(h), ENOTSUP, "advise", why);
        return -1;
    }
    const char *refusal = NULL;
    if ((hint->rules & IOMMAP_HINT_NEEDS_WRITE) && !IOMMAP_CAN_WRITE(h->opts.mode))
        refusal = "needs a handle that may write";
    else if ((hint->rules & IOMMAP_HINT_PRIVATE_ONLY) && !h->opts.private_)
        refusal = "applies to private mappings only: it would discard the file's pages";
    else if ((hint->rules & IOMMAP_HINT_SHARED_ONLY) && h->opts.private_)
        refusal = "changes the file, which a private mapping never does";
    if (refusal != NULL) {
        snprintf(why, sizeof(why), "hint \"%s\" %s", hint->name, refusal);
        refuse_mode(h, "advise", why);
        return -1;
    }
    *advice = hint->advice;
    if ((hint->rules & IOMMAP_HINT_KEEPS_PRIVATE) && h->opts.private_) {
        /* On a private mapping MADV_DONTNEED throws this process's own
         * changes away; a hint must never lose data. */
#ifdef MADV_COLD
        *advice = MADV_COLD;
#else
        *advice = MADV_NORMAL;
#endif
    }
    return 0;
}

static PyObject *mf_advise(mapped_file *h, PyObject *const *args, Py_ssize_t nargs)
{
    range r;
    const iommap_hint *hint;
    int advice;
    if (check_nargs(h, "advise", nargs, 3) || to_u64(h, "advise", "offset", args[0], &r.offset) ||
        to_u64(h, "advise", "length", args[1], &r.length) || (hint = hint_of(h, args[2])) == NULL)
        return NULL;
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "advise");
    if (advice_for(h, hint, &advice) != 0)
        return NULL;
    int inward = (hint->rules & IOMMAP_HINT_INWARD) != 0;
    return call_on_range(h, "advise", r, madvise, hint->call, advice, inward);
}

/* ---- size, close, lifecycle --------------------------------------------- */

/* The mapped size, or -1 with ClosedError set. */
static Py_ssize_t mapped_size(mapped_file *h, const char *op)
{
    if (is_closing(h)) {
        iommap_err_closed(STATE(h), op);
        return -1;
    }
    lock_shared(h);
    Py_ssize_t size = h->mapping != NULL ? (Py_ssize_t)h->mapping->size : -1;
    unlock(h);
    if (size < 0)
        iommap_err_closed(STATE(h), op);
    return size;
}

static PyObject *mf_position(mapped_file *h, PyObject *Py_UNUSED(ignored))
{
    Py_ssize_t size = mapped_size(h, "position");
    return size < 0 ? NULL : PyLong_FromSsize_t(size);
}

static Py_ssize_t mf_len(mapped_file *h)
{
    return mapped_size(h, "len");
}

/* Closes once; later calls wait for the first to finish and return. */
static int close_handle(mapped_file *h)
{
    atomic_store_explicit(&h->closing, 1, memory_order_release);
    lock_exclusive(h);
    iommap_mapping *m = h->mapping;
    int fd = h->fd;
    h->mapping = NULL;
    h->fd = -1;
    atomic_store_explicit(&h->size_hint, 0, memory_order_relaxed);
    unlock(h);
    Py_XDECREF(m); /* unmapped unless a view still holds it */
    if (fd >= 0 && close(fd) != 0 && errno != EINTR) {
        iommap_err_os(STATE(h), "close", "close()", errno, h->path);
        return -1;
    }
    return 0;
}

static PyObject *mf_close(mapped_file *h, PyObject *Py_UNUSED(ignored))
{
    if (close_handle(h) != 0)
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *mf_enter(mapped_file *h, PyObject *Py_UNUSED(ignored))
{
    if (is_closing(h))
        return iommap_err_closed(STATE(h), "__enter__");
    return Py_NewRef(h);
}

static PyObject *mf_exit(mapped_file *h, PyObject *const *args, Py_ssize_t nargs)
{
    (void)args;
    (void)nargs;
    return mf_close(h, NULL);
}

static PyObject *mf_reduce_ex(mapped_file *h, PyObject *Py_UNUSED(protocol))
{
    PyErr_Format(PyExc_TypeError, "cannot pickle '%.100s' object", Py_TYPE(h)->tp_name);
    return NULL;
}

static PyObject *mf_get_closed(mapped_file *h, void *Py_UNUSED(closure))
{
    return PyBool_FromLong(is_closing(h));
}

static PyObject *mf_get_mode(mapped_file *h, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(iommap_mode_name(h->opts.mode));
}

static PyObject *mf_get_path(mapped_file *h, void *Py_UNUSED(closure))
{
    return Py_NewRef(h->path);
}

static PyObject *mf_repr(mapped_file *h)
{
    if (h->path == Py_None) {
        /* Opened from a descriptor: the handle's own one names it. */
        int fd = -1;
        if (!is_closing(h)) {
            lock_shared(h);
            fd = h->fd;
            unlock(h);
        }
        if (fd < 0)
            return PyUnicode_FromFormat("<iommap.MappedFile fd mode=%s closed>",
                                        iommap_mode_name(h->opts.mode));
        return PyUnicode_FromFormat("<iommap.MappedFile fd=%d mode=%s size=%zu>", fd,
                                    iommap_mode_name(h->opts.mode),
                                    atomic_load_explicit(&h->size_hint, memory_order_relaxed));
    }
    if (is_closing(h))
        return PyUnicode_FromFormat("<iommap.MappedFile %R mode=%s closed>", h->path,
                                    iommap_mode_name(h->opts.mode));
    return PyUnicode_FromFormat("<iommap.MappedFile %R mode=%s size=%zu>", h->path,
                                iommap_mode_name(h->opts.mode),
                                atomic_load_explicit(&h->size_hint, memory_order_relaxed));
}

/* A handle collected unclosed is closed, with a ResourceWarning, as files are. */
static void mf_finalize(mapped_file *h)
{
    if (is_closing(h))
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

static int mf_traverse(mapped_file *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->path);
    return 0;
}

static int mf_clear(mapped_file *h)
{
    Py_CLEAR(h->path);
    return 0;
}

static void mf_dealloc(mapped_file *h)
{
    PyTypeObject *type = Py_TYPE(h);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)h) < 0)
        return; /* resurrected */
    PyObject_GC_UnTrack(h);
    mf_clear(h);
    Py_CLEAR(h->mapping);
    if (h->fd >= 0)
        close(h->fd);
    pthread_rwlock_destroy(&h->lock);
    type->tp_free(h);
    Py_DECREF(type);
}

PyObject *iommap_handle_new(iommap_state *st, int fd, iommap_mapping *mapping,
                            const iommap_map_options *opts, PyObject *path)
{
    mapped_file *h = PyObject_GC_New(mapped_file, st->mapped_file_type);
    if (h == NULL)
        return NULL;
    int rc = init_lock(&h->lock);
    atomic_init(&h->lock_generation, atomic_load_explicit(&fork_generation, memory_order_relaxed));
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

static PyMethodDef mf_methods[] = {
    {"pread", (PyCFunction)(void (*)(void))mf_pread, METH_FASTCALL,
     "pread($self, offset, length, /)\n--\n\n"
     "Return a copy of `length` bytes of the file at `offset`, as bytes.\n\n"
     "The range must lie inside the mapping (offset + length <= len(self)), else\n"
     "OutOfBoundsError, an IndexError; pread(len(self), 0) is b''. If the file\n"
     "shrank under the range: SigbusError, an OSError, and the handle stays usable.\n"
     "A 'write' handle refuses with PermissionError (reason 'eacces'). Copies of\n"
     "64 KiB and more release the GIL."},
    {"readinto", (PyCFunction)(void (*)(void))mf_readinto, METH_FASTCALL,
     "readinto($self, offset, buffer, /)\n--\n\n"
     "Fill `buffer` with the file's bytes from `offset`; return how many bytes were\n"
     "copied: memoryview(buffer).nbytes.\n\n"
     "`buffer` is any writable C-contiguous buffer (bytearray, memoryview,\n"
     "array.array, a numpy array); nothing is allocated. Errors as for pread()."},
    {"pwrite", (PyCFunction)(void (*)(void))mf_pwrite, METH_FASTCALL,
     "pwrite($self, offset, data, /)\n--\n\n"
     "Write `data` into the file at `offset`, as one operation under the lock.\n\n"
     "`data` is a bytes-like object, or a list or tuple of bytes-like objects and\n"
     "such lists, nested (no int, no str), written contiguously; nesting deeper\n"
     "than 100, or a list containing itself, is refused. The range must lie inside\n"
     "the mapping (OutOfBoundsError; truncate() grows the file). A 'read' handle\n"
     "refuses with PermissionError. A SigbusError may leave a prefix written."},
    {"sync", (PyCFunction)(void (*)(void))mf_sync, METH_VARARGS | METH_KEYWORDS,
     "sync($self, /, mode='sync', offset=0, length=0)\n--\n\n"
     "Flush the range's changes to the file.\n\n"
     "mode 'sync' returns once the data is on disk (MS_SYNC); 'async' schedules\n"
     "the write-back (MS_ASYNC). length 0 means to the end of the file; the range\n"
     "is widened to whole pages. A private mapping has nothing to write: it\n"
     "succeeds and writes nothing."},
    {"truncate", (PyCFunction)(void (*)(void))mf_truncate, METH_FASTCALL,
     "truncate($self, new_size, /)\n--\n\n"
     "Resize the file to `new_size` bytes and remap it.\n\n"
     "Data past `new_size` is lost; growing reserves disk space as open(size=)\n"
     "does. The current size is allowed: it sets the file back to the mapped\n"
     "size, which restores service after a shrink from outside. Views made before\n"
     "keep the old mapping. A 'read' handle or a private mapping refuses with\n"
     "PermissionError (reason 'eacces')."},
    {"flush", (PyCFunction)(void (*)(void))mf_sync, METH_VARARGS | METH_KEYWORDS,
     "flush($self, /, mode='sync', offset=0, length=0)\n--\n\n"
     "The same as sync(), for code written against mmap.mmap.\n\n"
     "mmap's flush(offset, size) is sync(offset=offset, length=size) here."},
    {"remap", (PyCFunction)mf_remap, METH_NOARGS,
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
    {"advise", (PyCFunction)(void (*)(void))mf_advise, METH_FASTCALL,
     "advise($self, offset, length, hint, /)\n--\n\n"
     "Tell the kernel how the range will be used (madvise).\n\n"
     "hint is 'normal', 'random', 'sequential', 'willneed' or 'dontneed'; length 0\n"
     "means to the end of the file; the range is widened to whole pages. On a\n"
     "private mapping 'dontneed' never discards this process's own changes."},
    {"view", (PyCFunction)(void (*)(void))mf_view, METH_VARARGS | METH_KEYWORDS,
     "view($self, /, offset=0, length=None)\n--\n\n"
     "Return a memoryview over the mapped pages, without copying; length None\n"
     "means to the end.\n\n"
     "Read-only for a 'read' handle, writable otherwise (a private mapping's\n"
     "writes stay private); a 'write' handle refuses with PermissionError. The\n"
     "view keeps its mapping alive after close() and truncate(). It is NOT\n"
     "SIGBUS-protected: touching pages the file no longer has kills the process.\n"
     "pread(), readinto() and gather() are the safe path."},
    {"gather", (PyCFunction)(void (*)(void))mf_gather, METH_VARARGS | METH_KEYWORDS,
     "gather($self, /, offsets, length, out=None)\n--\n\n"
     "Copy `length` bytes from each offset, in order, into one buffer; return it.\n\n"
     "`offsets` is a sequence of ints or a buffer of 64-bit integers (numpy\n"
     "int64/uint64, array('q')/array('Q')). `out` is a writable buffer of exactly\n"
     "len(offsets) * length bytes, or None for a new bytearray. Every range is\n"
     "checked before the first byte moves: the first bad one fails the call\n"
     "(OutOfBoundsError, its index in the message) and nothing is copied."},
    {"scatter", (PyCFunction)(void (*)(void))mf_scatter, METH_FASTCALL,
     "scatter($self, offsets, length, data, /)\n--\n\n"
     "Write chunk i of `data` at offsets[i], `length` bytes each, in order.\n\n"
     "`data` holds exactly len(offsets) * length bytes; a later overlapping chunk\n"
     "wins. Every range is checked before the first byte moves. A 'read' handle\n"
     "refuses with PermissionError."},
    {"resident", (PyCFunction)(void (*)(void))mf_resident, METH_VARARGS | METH_KEYWORDS,
     "resident($self, /, offset=0, length=0)\n--\n\n"
     "Return how many bytes of the pages the range touches are in memory now\n"
     "(mincore), whole pages counted; length 0 means to the end."},
    {"residency", (PyCFunction)(void (*)(void))mf_residency, METH_VARARGS | METH_KEYWORDS,
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
    {Py_sq_length, mf_len},
    {Py_mp_subscript, mf_subscript},
    {Py_mp_ass_subscript, mf_ass_subscript},
    {Py_nb_bool, mf_bool},
    {Py_tp_doc, "A memory-mapped file, made by iommap.open()."},
    {0, NULL},
};

PyType_Spec iommap_mapped_file_spec = {
    .name = "iommap.MappedFile",
    .basicsize = sizeof(mapped_file),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = mf_slots,
};
