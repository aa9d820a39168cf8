/* What the MappedFile's methods share, across handle.c (open, Part 1 calls,
 * lifecycle, the method table), view.c (view, resident, residency) and
 * batch.c (gather, scatter): the handle's layout, how a locked section
 * reports, the lock, and argument conversion.  The locking rules are at the
 * top of handle.c. */
#ifndef IOMMAP_HANDLE_H
#define IOMMAP_HANDLE_H

#include "iommap.h"

#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h> /* ob_digit, for small_int_value(); Python.h has it from 3.11 */
#endif

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
    PyObject *path; /* as given to open() */
} mapped_file;

/* What a locked section found; turned into an exception after unlocking. */
typedef enum {
    DONE = 0,
    FAIL_CLOSED,
    FAIL_OUT_OF_BOUNDS,
    FAIL_SIGBUS,
    FAIL_OS,
} outcome;

typedef struct {
    outcome what;
    int err;          /* FAIL_OS: errno */
    const char *call; /* FAIL_OS: the system call */
    size_t size;      /* FAIL_OUT_OF_BOUNDS: the mapping size seen */
} status;

#define STATE(h) iommap_state_of_type(Py_TYPE(h))

PyObject *raise_status(mapped_file *h, const char *op, const status *s, uint64_t offset,
                       uint64_t length);

/* Reads an optional (offset, length) range argument pair where length 0
 * means to the end; checked against the mapping under the lock. */
typedef struct {
    uint64_t offset;
    uint64_t length;
} range;

/* Page-aligns a range inside a mapping that starts on a page boundary. */
void page_align(const iommap_mapping *m, const range *r, char **start, size_t *len);

/* ---- locking (see handle.c for fork) ------------------------------------- */

extern atomic_uint fork_generation;
void refresh_lock_after_fork(mapped_file *h, unsigned generation);

static inline void ensure_lock_current(mapped_file *h)
{
    unsigned generation = atomic_load_explicit(&fork_generation, memory_order_relaxed);
    if (atomic_load_explicit(&h->lock_generation, memory_order_acquire) != generation)
        refresh_lock_after_fork(h, generation);
}

static inline void lock_shared(mapped_file *h)
{
    ensure_lock_current(h);
    if (pthread_rwlock_tryrdlock(&h->lock) == 0)
        return;
    Py_BEGIN_ALLOW_THREADS
    while (pthread_rwlock_rdlock(&h->lock) == EAGAIN)
        sched_yield(); /* too many readers at once: wait for one to leave */
    Py_END_ALLOW_THREADS
}

static inline void lock_exclusive(mapped_file *h)
{
    ensure_lock_current(h);
    if (pthread_rwlock_trywrlock(&h->lock) == 0)
        return;
    Py_BEGIN_ALLOW_THREADS
    pthread_rwlock_wrlock(&h->lock);
    Py_END_ALLOW_THREADS
}

static inline void unlock(mapped_file *h)
{
    pthread_rwlock_unlock(&h->lock);
}

static inline int is_closing(mapped_file *h)
{
    return atomic_load_explicit(&h->closing, memory_order_acquire);
}

/* ---- argument conversion -------------------------------------------------- */

static inline int to_u64_slow(mapped_file *h, const char *op, const char *name, PyObject *obj,
                              uint64_t *out)
{
    return iommap_arg_to_u64(STATE(h), op, name, obj, out);
}

/* The value of an exact, non-negative int of at most a few digits, read
 * straight from the object: no call, no reference counting.  The hot calls
 * convert two ints each, and the general path (a new reference, a call into
 * PyLong_AsLongLongAndOverflow, its overflow checks) cost as much as the
 * lock.  Returns 0 when the general path has to decide. */
static inline int small_int_value(PyObject *obj, uint64_t *out)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyLongObject *v = (PyLongObject *)obj;
    if (!PyUnstable_Long_IsCompact(v))
        return 0;
    Py_ssize_t value = PyUnstable_Long_CompactValue(v);
    if (value < 0)
        return 0;
    *out = (uint64_t)value;
    return 1;
#else
    /* Before 3.12, ob_size is the digit count, negative for negative ints. */
    const digit *d = ((PyLongObject *)obj)->ob_digit;
    switch (Py_SIZE(obj)) {
    case 0:
        *out = 0;
        return 1;
    case 1:
        *out = d[0];
        return 1;
    case 2:
        *out = ((uint64_t)d[1] << PyLong_SHIFT) | d[0];
        return 1;
    default:
        return 0;
    }
#endif
}

/* A non-negative integer argument as uint64 (see to_u64_slow). */
static inline int to_u64(mapped_file *h, const char *op, const char *name, PyObject *obj,
                         uint64_t *out)
{
    if (PyLong_CheckExact(obj) && small_int_value(obj, out))
        return 0;
    return to_u64_slow(h, op, name, obj, out);
}

/* `offset + length <= size`, without overflow. */
static inline int in_bounds(uint64_t offset, uint64_t length, size_t size)
{
    return offset <= size && length <= size - offset;
}

int check_nargs(mapped_file *h, const char *op, Py_ssize_t nargs, Py_ssize_t want);
PyObject *refuse_mode(mapped_file *h, const char *op, const char *why);
/* A writable, C-contiguous destination holding no object pointers, or -1. */
int get_destination(PyObject *obj, Py_buffer *buf);

/* ---- methods defined outside handle.c ------------------------------------ */

PyObject *mf_view(mapped_file *h, PyObject *args, PyObject *kwargs);
PyObject *mf_resident(mapped_file *h, PyObject *args, PyObject *kwargs);
PyObject *mf_residency(mapped_file *h, PyObject *args, PyObject *kwargs);
PyObject *mf_gather(mapped_file *h, PyObject *args, PyObject *kwargs);
PyObject *mf_scatter(mapped_file *h, PyObject *const *args, Py_ssize_t nargs);
/* subscript.c: m[key], m[key] = value, bool(m) */
PyObject *mf_subscript(mapped_file *h, PyObject *key);
int mf_ass_subscript(mapped_file *h, PyObject *key, PyObject *value);
int mf_bool(mapped_file *h);

#endif
