/* What the MappedFile files share: the handle's layout, its lock, and the
 * locked section every method runs through.
 *
 * Locking rules, the whole of them:
 *  - Calls that only read the mapping take the lock shared; pwrite,
 *    scatter, truncate and close take it exclusive.  The lock prefers
 *    writers, so a stream of readers cannot starve them.
 *  - The lock is first tried with the GIL held; if it is busy, the GIL is
 *    released for the wait, so the two cannot deadlock.
 *  - No Python code runs while the lock is held: a method converts its
 *    arguments, makes one locked call (iommap_enter, then
 *    iommap_finish_released or iommap_unlock), and raises after unlocking.
 *  - close() sets `closing` first, so new calls fail at once, then takes the
 *    lock exclusive, which waits for the calls in flight.
 *  - A forked child re-initialises a lock it inherited (lock.c says why).
 */
#ifndef IOMMAP_HANDLE_H
#define IOMMAP_HANDLE_H

#include "iommap.h"

#include <errno.h>
#include <sched.h>
#include <stdatomic.h>

typedef struct {
    PyObject_HEAD
    pthread_rwlock_t lock;
    atomic_uint lock_generation; /* the fork generation `lock` belongs to */
    atomic_int closing;          /* set once, first thing in close() */
    atomic_size_t size_hint;     /* the mapping's size, readable without the
                                    lock: only to refuse hopeless requests early */
    int fd;                      /* -1 once closed; guarded by lock */
    iommap_mapping *mapping;     /* NULL once closed; guarded by lock */
    iommap_map_options opts;
    PyObject *path;              /* as given to open() */
    PyObject *weakrefs;          /* weak references to the handle */
    int is_device;               /* a block device: its size is its own */
    atomic_int dontfork;         /* advise("dontfork") reached the current
                                    mapping: a forked child does not have it */
    atomic_int unsynced_size;    /* the file's size changed since the last sync */
    _Atomic(char *) created_dir; /* until the first sync, the directory where
                                    open() created the file (PyMem_Raw) */
} iommap_handle;

#define IOMMAP_STATE(h) iommap_state_of_type(Py_TYPE(h))

/* What a locked section found; turned into an exception after unlocking. */
typedef enum {
    IOMMAP_DONE = 0,
    IOMMAP_FAIL_CLOSED,
    IOMMAP_FAIL_OUT_OF_BOUNDS,
    IOMMAP_FAIL_SIGBUS,
    IOMMAP_FAIL_OS,
} iommap_outcome;

typedef struct {
    iommap_outcome what;
    int err;          /* FAIL_OS: errno */
    const char *call; /* FAIL_OS: the system call */
    size_t size;      /* FAIL_OUT_OF_BOUNDS: the mapping size seen */
} iommap_status;

/* Raises what `s` reports for `op` on [offset, offset + length) (errors.c). */
PyObject *iommap_raise_status(iommap_handle *h, const char *op, const iommap_status *s,
                              uint64_t offset, uint64_t length);
/* The same, an out-of-bounds message naming offset and length as the caller
 * gave them (their objects; either may be NULL). */
PyObject *iommap_raise_status_given(iommap_handle *h, const char *op, const iommap_status *s,
                                    PyObject *offset_obj, PyObject *length_obj, uint64_t offset,
                                    uint64_t length);

/* An (offset, length) pair where length 0 means to the end of the mapping. */
typedef struct {
    uint64_t offset;
    uint64_t length;
} iommap_range;

/* ---- the lock --------------------------------------------------------- */

extern atomic_uint iommap_fork_generation;
int iommap_lock_init(iommap_handle *h);
void iommap_lock_refresh_after_fork(iommap_handle *h, unsigned generation);

static inline void iommap_lock_current(iommap_handle *h)
{
    unsigned generation = atomic_load_explicit(&iommap_fork_generation, memory_order_relaxed);
    if (atomic_load_explicit(&h->lock_generation, memory_order_acquire) != generation)
        iommap_lock_refresh_after_fork(h, generation);
}

typedef enum { IOMMAP_SHARED, IOMMAP_EXCLUSIVE } iommap_lock_kind;

static inline int iommap_try_lock(iommap_handle *h, iommap_lock_kind kind)
{
    return kind == IOMMAP_SHARED ? pthread_rwlock_tryrdlock(&h->lock)
                                 : pthread_rwlock_trywrlock(&h->lock);
}

static inline void iommap_lock(iommap_handle *h, iommap_lock_kind kind)
{
    iommap_lock_current(h);
    if (iommap_try_lock(h, kind) == 0)
        return;
    Py_BEGIN_ALLOW_THREADS
    if (kind == IOMMAP_EXCLUSIVE)
        pthread_rwlock_wrlock(&h->lock);
    else
        while (pthread_rwlock_rdlock(&h->lock) == EAGAIN)
            sched_yield(); /* too many readers at once: wait for one to leave */
    Py_END_ALLOW_THREADS
}

static inline void iommap_unlock(iommap_handle *h)
{
    pthread_rwlock_unlock(&h->lock);
}

/* Whether the handle is closed or closing.  In a forked child, the lock's
 * generation check runs first: a handle whose pages the child did not
 * inherit (advise "dontfork") reads as closed from the first look, not
 * only after a call fails.  Called with the GIL held. */
static inline int iommap_is_closing(iommap_handle *h)
{
    iommap_lock_current(h);
    return atomic_load_explicit(&h->closing, memory_order_acquire);
}

/* ---- the locked section ----------------------------------------------- */

/* `offset + length <= size`, without overflow. */
static inline int iommap_in_bounds(uint64_t offset, uint64_t length, size_t size)
{
    return offset <= size && length <= size - offset;
}

/* Enters a locked section: takes the lock and checks that the handle is
 * open.  Returns the mapping with the lock held, or NULL with the lock
 * released and *s saying why. */
static inline iommap_mapping *iommap_enter_open(iommap_handle *h, iommap_lock_kind kind,
                                                iommap_status *s)
{
    *s = (iommap_status){IOMMAP_DONE, 0, NULL, 0};
    iommap_lock(h, kind);
    iommap_mapping *m = h->mapping;
    if (m != NULL)
        return m;
    s->what = IOMMAP_FAIL_CLOSED;
    iommap_unlock(h);
    return NULL;
}

/* The same, and checks that [offset, offset + length) lies inside the
 * mapping. */
static inline iommap_mapping *iommap_enter(iommap_handle *h, iommap_lock_kind kind, uint64_t offset,
                                           uint64_t length, iommap_status *s)
{
    iommap_mapping *m = iommap_enter_open(h, kind, s);
    if (m == NULL || iommap_in_bounds(offset, length, m->size))
        return m;
    s->what = IOMMAP_FAIL_OUT_OF_BOUNDS;
    s->size = m->size;
    iommap_unlock(h);
    return NULL;
}

/* A guarded copy of n bytes between [offset, offset + n) of the mapping and
 * `buf`, as a locked section's work (iommap_run_copy). */
typedef struct {
    const iommap_mapping *m;
    size_t offset;
    char *buf;
    size_t n;
    int to_mapping; /* 1: buf -> mapping; 0: mapping -> buf */
} iommap_copy_work;

static inline int iommap_run_copy(void *arg)
{
    iommap_copy_work *w = arg;
    if (w->n == 0)
        return 0; /* an empty mapping's addr is NULL: no arithmetic on it */
    char *at = w->m->addr + w->offset;
    if (w->to_mapping)
        return iommap_guarded_copy(at, w->buf, w->n, w->m->addr, w->m->size);
    return iommap_guarded_copy(w->buf, at, w->n, w->m->addr, w->m->size);
}

typedef struct {
    iommap_handle *h;
    int (*work)(void *);
    void *arg;
} iommap_locked_work;

static inline int iommap_work_then_unlock(void *arg)
{
    iommap_locked_work *w = arg;
    int rc = w->work(w->arg);
    iommap_unlock(w->h);
    return rc;
}

/* Leaves a locked section: runs work(arg), a copy or a system call on the
 * mapping, then unlocks, all with the GIL released when `bytes` is large
 * (iommap_run_released).  Returns what work returned. */
static inline int iommap_finish_released(iommap_handle *h, size_t bytes, int (*work)(void *),
                                         void *arg)
{
    /* Beside work this large, one sigaction(2) costs nothing: the SIGBUS
     * guard gets back in front if another handler took its place (guard.c).
     * If it cannot, the handler stays where it was; nothing to report. */
    if (bytes >= IOMMAP_GIL_RELEASE_BYTES)
        (void)iommap_guard_install();
    iommap_locked_work w = {h, work, arg};
    return iommap_run_released(bytes, iommap_work_then_unlock, &w);
}

/* Enters a shared locked section over the pages `r` touches (length 0: to
 * the end).  Returns 1 with the lock held and [*start, *start + *len) set;
 * 0 with the lock released when the range holds no byte; -1 with the lock
 * released and *s saying why. */
int iommap_enter_pages(iommap_handle *h, const iommap_range *r, iommap_status *s, char **start,
                       size_t *len);

/* The same, over the whole pages inside `r` only (for hints that discard
 * data, which must never reach a byte outside the range). */
int iommap_enter_whole_pages(iommap_handle *h, const iommap_range *r, iommap_status *s,
                             char **start, size_t *len);

/* Checks `r` against the mapping under the shared lock and runs `call`
 * (msync or madvise) over its pages with the GIL released; a NULL `call`
 * only checks; `inward`: the whole pages inside `r` only.  Raises (naming
 * offset_obj and length_obj, either may be NULL) and returns NULL on
 * failure, else None. */
PyObject *iommap_call_on_range(iommap_handle *h, const char *op, iommap_range r,
                               PyObject *offset_obj, PyObject *length_obj,
                               int (*call)(void *, size_t, int), const char *call_name, int arg,
                               int inward);

/* ---- before the locked section ---------------------------------------- */

/* ClosedError if close() has begun; PermissionError if the handle's mode
 * lacks `need` (IOMMAP_READ, IOMMAP_WRITE, or 0 for neither).  Returns 0,
 * or -1 with the exception set (errors.c raises it).  Inline: every call
 * makes this check. */
int iommap_err_unusable(iommap_handle *h, const char *op, int need);
static inline int iommap_check_usable(iommap_handle *h, const char *op, int need)
{
    if (!iommap_is_closing(h) && (need & (int)h->opts.mode) == need)
        return 0;
    return iommap_err_unusable(h, op, need);
}

/* A non-negative integer argument as uint64 (see iommap_arg_to_u64). */
static inline int iommap_to_u64(iommap_handle *h, const char *op, const char *name, PyObject *obj,
                                uint64_t *out)
{
    if (iommap_small_int(obj, out))
        return 0;
    return iommap_arg_to_u64(IOMMAP_STATE(h), op, name, obj, out);
}

/* The offset of a two-argument fast call (offset, x): checks the count,
 * converts args[0]. */
static inline int iommap_offset_arg(iommap_handle *h, const char *op, PyObject *const *args,
                                    Py_ssize_t nargs, uint64_t *offset)
{
    if (iommap_check_nargs(op, nargs, 2) != 0)
        return -1;
    return iommap_to_u64(h, op, "offset", args[0], offset);
}

/* ---- the methods, by file --------------------------------------------- */

/* read.c */
PyObject *iommap_mf_pread(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_mf_pread_doc[];
PyObject *iommap_mf_readinto(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_mf_readinto_doc[];
/* write.c */
PyObject *iommap_mf_pwrite(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_mf_pwrite_doc[];
/* resize.c */
PyObject *iommap_mf_truncate(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_mf_truncate_doc[];
PyObject *iommap_mf_sync(iommap_handle *h, PyObject *args, PyObject *kwargs);
extern const char iommap_mf_sync_doc[];
extern const char iommap_mf_flush_doc[];
PyObject *iommap_mf_remap(iommap_handle *h, PyObject *Py_UNUSED(ignored));
extern const char iommap_mf_remap_doc[];
/* hints.c */
PyObject *iommap_mf_advise(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_mf_advise_doc[];
/* view.c */
PyObject *iommap_mf_view(iommap_handle *h, PyObject *args, PyObject *kwargs);
extern const char iommap_mf_view_doc[];
PyObject *iommap_mf_resident(iommap_handle *h, PyObject *args, PyObject *kwargs);
extern const char iommap_mf_resident_doc[];
PyObject *iommap_mf_residency(iommap_handle *h, PyObject *args, PyObject *kwargs);
extern const char iommap_mf_residency_doc[];
/* batch.c */
PyObject *iommap_mf_gather(iommap_handle *h, PyObject *args, PyObject *kwargs);
extern const char iommap_mf_gather_doc[];
PyObject *iommap_mf_scatter(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_mf_scatter_doc[];
/* subscript.c */
PyObject *iommap_mf_subscript(iommap_handle *h, PyObject *key);
int iommap_mf_ass_subscript(iommap_handle *h, PyObject *key, PyObject *value);
int iommap_mf_bool(iommap_handle *h);

#endif
