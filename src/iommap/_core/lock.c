/* The handle lock across fork, and the locked section over a range of
 * pages that sync and advise run their system call in: what handle.h's
 * locked section needs out of line (errors.c turns what it reports into
 * exceptions).  The locking rules are at the top of handle.h. */
#include "handle.h"

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
atomic_uint iommap_fork_generation;
static pthread_mutex_t relock_mutex = PTHREAD_MUTEX_INITIALIZER;

static void after_fork_in_child(void)
{
    atomic_fetch_add_explicit(&iommap_fork_generation, 1, memory_order_relaxed);
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

int iommap_lock_init(iommap_handle *h)
{
    atomic_init(&h->lock_generation,
                atomic_load_explicit(&iommap_fork_generation, memory_order_relaxed));
    return iommap_platform_rwlock_init(&h->lock);
}

void iommap_lock_refresh_after_fork(iommap_handle *h, unsigned generation)
{
    iommap_mapping *absent = NULL;
    pthread_mutex_lock(&relock_mutex);
    if (atomic_load_explicit(&h->lock_generation, memory_order_relaxed) != generation) {
        (void)iommap_platform_rwlock_init(&h->lock); /* glibc's cannot fail */
        if (atomic_load_explicit(&h->dontfork, memory_order_relaxed) && h->mapping != NULL) {
            /* advise("dontfork"): this child did not inherit the pages, and
             * a copy from them would fault outside any guard.  The handle is
             * closed here; its mapping forgets the region, which is not this
             * process's to unmap (the addresses may hold something else). */
            absent = h->mapping;
            absent->addr = NULL;
            absent->size = 0;
            h->mapping = NULL;
            atomic_store_explicit(&h->size_hint, 0, memory_order_relaxed);
            atomic_store_explicit(&h->closing, 1, memory_order_release);
        }
        atomic_store_explicit(&h->lock_generation, generation, memory_order_release);
    }
    pthread_mutex_unlock(&relock_mutex);
    Py_XDECREF(absent); /* with addr NULL, freeing it unmaps nothing */
}

/* The pages [offset, offset + length) touches (length 0: to the end).  The
 * pages are the machine's: a window's mapping may start inside one.  The
 * start moves down to its page; the kernel rounds the end up. */
static void page_align(const iommap_mapping *m, const iommap_range *r, char **start, size_t *len)
{
    uintptr_t page = iommap_page_size();
    size_t length = r->length != 0 ? (size_t)r->length : m->size - (size_t)r->offset;
    uintptr_t first = (uintptr_t)(m->addr + r->offset);
    uintptr_t aligned = first & ~(page - 1);
    *start = (char *)aligned;
    *len = length + (size_t)(first - aligned);
}

/* The whole pages inside the range: the start moves up to a page boundary
 * and the end down; *len may be 0. */
static void page_align_inward(const iommap_mapping *m, const iommap_range *r, char **start,
                              size_t *len)
{
    uintptr_t page = iommap_page_size();
    size_t length = r->length != 0 ? (size_t)r->length : m->size - (size_t)r->offset;
    uintptr_t first = (uintptr_t)(m->addr + r->offset);
    uintptr_t end = (first + length) & ~(page - 1);
    first = (first + page - 1) & ~(page - 1);
    *start = (char *)first;
    *len = end > first ? (size_t)(end - first) : 0;
}

static int enter_aligned(iommap_handle *h, const iommap_range *r, iommap_status *s, char **start,
                         size_t *len, int inward)
{
    iommap_mapping *m = iommap_enter(h, IOMMAP_SHARED, r->offset, r->length, s);
    if (m == NULL)
        return -1;
    if (m->size == 0 || r->offset >= m->size) {
        iommap_unlock(h);
        return 0;
    }
    if (inward)
        page_align_inward(m, r, start, len);
    else
        page_align(m, r, start, len);
    if (*len == 0) {
        iommap_unlock(h);
        return 0;
    }
    return 1;
}

int iommap_enter_pages(iommap_handle *h, const iommap_range *r, iommap_status *s, char **start,
                       size_t *len)
{
    return enter_aligned(h, r, s, start, len, 0);
}

int iommap_enter_whole_pages(iommap_handle *h, const iommap_range *r, iommap_status *s,
                             char **start, size_t *len)
{
    return enter_aligned(h, r, s, start, len, 1);
}

/* ---- a system call over a range of pages ------------------------------- */

typedef struct {
    int (*call)(void *, size_t, int);
    char *start;
    size_t len;
    int arg;
    int err; /* errno when the call failed */
} range_call_work;

static int run_range_call(void *arg)
{
    range_call_work *w = arg;
    if (w->call(w->start, w->len, w->arg) == 0)
        return 0;
    w->err = errno;
    return -1;
}

/* Checks `r` against the mapping under the shared lock and runs `call`
 * (msync or madvise) over its pages with the GIL released; a NULL `call`
 * only checks.  Raises and returns NULL on failure, else None. */
PyObject *iommap_call_on_range(iommap_handle *h, const char *op, iommap_range r,
                               PyObject *offset_obj, PyObject *length_obj,
                               int (*call)(void *, size_t, int), const char *call_name, int arg,
                               int inward)
{
    iommap_status s;
    range_call_work w = {call, NULL, 0, arg, 0};
    int entered = inward ? iommap_enter_whole_pages(h, &r, &s, &w.start, &w.len)
                         : iommap_enter_pages(h, &r, &s, &w.start, &w.len);
    if (entered > 0) {
        if (call == NULL)
            iommap_unlock(h);
        else if (iommap_finish_released(h, IOMMAP_BLOCKING, run_range_call, &w) != 0)
            s = (iommap_status){IOMMAP_FAIL_OS, w.err, call_name, 0};
    }
    if (s.what != IOMMAP_DONE)
        return iommap_raise_status_given(h, op, &s, offset_obj, length_obj, r.offset, r.length);
    Py_RETURN_NONE;
}
