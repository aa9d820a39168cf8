/* The Mapping type: one mmap'ed region of a file, reference counted.
 *
 * A handle holds one reference to its current Mapping; every buffer exported
 * from it holds another.  truncate() swaps in a new Mapping and close()
 * drops the handle's reference: the region is unmapped only when the last
 * reference goes, so nothing ever reads unmapped memory and neither call has
 * to refuse because a buffer is exported. */
#include "iommap.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>

/* A valid address for zero-length buffers over an empty mapping. */
static char empty_region[1];

int iommap_mapping_writable(const iommap_map_options *opts)
{
    return IOMMAP_CAN_WRITE(opts->mode);
}

int iommap_map_region(int fd, size_t size, const iommap_map_options *opts, char **addr,
                      const char **failed_call)
{
    *addr = NULL;
    if (size == 0)
        return 0;

    int prot = PROT_READ | (iommap_mapping_writable(opts) ? PROT_WRITE : 0);
    int flags = (opts->private_ ? MAP_PRIVATE : MAP_SHARED) |
                iommap_platform_map_flags(opts->populate, opts->nocache);
    void *p = mmap(NULL, size, prot, flags, fd, 0);
    if (p == MAP_FAILED) {
        *failed_call = "mmap()";
        return -1;
    }
    if (opts->lock && mlock(p, size) != 0) {
        int saved = errno;
        munmap(p, size);
        errno = saved;
        *failed_call = "mlock()";
        return -1;
    }
    iommap_platform_after_map(p, size, opts->populate);
    *addr = p;
    return 0;
}

iommap_mapping *iommap_mapping_wrap(PyTypeObject *type, char *addr, size_t size, int writable)
{
    iommap_mapping *m = PyObject_New(iommap_mapping, type);
    if (m == NULL) {
        if (addr != NULL)
            munmap(addr, size);
        return NULL;
    }
    m->addr = addr;
    m->size = size;
    m->writable = writable;
    m->retired = 0;
    m->shared = 0;
    m->dev = 0;
    m->ino = 0;
    m->prev_retired = m->next_retired = NULL;
    return m;
}

/* ---- own shrink vs old views ---------------------------------------------
 * A view is the mapping's pages themselves, so a view that outlives its
 * handle's truncate() would fault past the new end of the file once the file
 * shrinks.  Mappings no handle uses any more (retired) are listed here; a
 * shrink by any handle of this process replaces their pages past the new end
 * with anonymous zero pages first (MAP_FIXED replaces a range of a mapping
 * in one step, so a reader on another thread sees the file's page or a zero
 * page, never a hole).  Current mappings of other handles are not touched:
 * their handles' reads report the shrink (SigbusError) and see the file
 * again when it grows; zero pages would hide both.
 *
 * The list is process-wide (a file's mappings may belong to handles of any
 * interpreter), so it has a mutex.  It is a leaf lock: nothing that needs
 * the GIL, a handle lock or another mutex runs under it, and it is never
 * taken in a signal handler.  A mapping leaves the list in its dealloc,
 * before its region is unmapped, so a cut never maps over address space
 * that was given back. */

static pthread_mutex_t retired_lock = PTHREAD_MUTEX_INITIALIZER;
static iommap_mapping *retired_head; /* guarded by retired_lock */
static pthread_once_t retired_fork_once = PTHREAD_ONCE_INIT;

/* A fork while another thread holds the lock would leave the child's copy
 * locked forever: hold it across fork(), as glibc does for malloc. */
static void retired_prepare(void)
{
    pthread_mutex_lock(&retired_lock);
}

static void retired_release(void)
{
    pthread_mutex_unlock(&retired_lock);
}

static void retired_fork_install(void)
{
    (void)pthread_atfork(retired_prepare, retired_release, retired_release);
}

static void retired_lock_take(void)
{
    pthread_once(&retired_fork_once, retired_fork_install);
    pthread_mutex_lock(&retired_lock);
}

void iommap_mapping_retire(iommap_mapping *m, int fd, int shared)
{
    struct stat st;
    if (m->addr == NULL || fstat(fd, &st) != 0)
        return; /* nothing mapped; or the file cannot be told: left as before */
    retired_lock_take();
    if (!m->retired) {
        m->retired = 1;
        m->shared = shared;
        m->dev = st.st_dev;
        m->ino = st.st_ino;
        m->prev_retired = NULL;
        m->next_retired = retired_head;
        if (retired_head != NULL)
            retired_head->prev_retired = m;
        retired_head = m;
    }
    pthread_mutex_unlock(&retired_lock);
}

static void unlist(iommap_mapping *m)
{
    retired_lock_take();
    if (m->retired) {
        if (m->prev_retired != NULL)
            m->prev_retired->next_retired = m->next_retired;
        else
            retired_head = m->next_retired;
        if (m->next_retired != NULL)
            m->next_retired->prev_retired = m->prev_retired;
        m->retired = 0;
    }
    pthread_mutex_unlock(&retired_lock);
}

/* The range of `m` past new_size that is no longer the file's: whole pages,
 * from the page boundary at or after new_size.  0 if there is none. */
static size_t tail_of(const iommap_mapping *m, size_t new_size, size_t *start)
{
    size_t page = iommap_page_size();
    if (m == NULL || m->addr == NULL || new_size >= m->size)
        return 0;
    size_t from = (new_size + page - 1) / page * page;
    size_t end = (m->size + page - 1) / page * page;
    *start = from;
    return from < end ? end - from : 0;
}

static void zero_tail(iommap_mapping *m, size_t new_size)
{
    size_t start, len = tail_of(m, new_size, &start);
    if (len == 0)
        return;
    int prot = PROT_READ | (m->writable ? PROT_WRITE : 0);
    /* On failure (the limit on mappings, say) the view faults as before. */
    (void)mmap(m->addr + start, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
}

/* Undoes zero_tail: the file's pages again, as they were mapped.  A private
 * mapping's own changes to those pages are not brought back. */
static void file_tail(iommap_mapping *m, int fd, size_t new_size, int shared)
{
    size_t start, len = tail_of(m, new_size, &start);
    if (len == 0)
        return;
    int prot = PROT_READ | (m->writable ? PROT_WRITE : 0);
    int flags = (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_FIXED;
    (void)mmap(m->addr + start, len, prot, flags, fd, (off_t)start);
}

/* Runs `each` over every retired mapping of fd's file and over `current`. */
static void for_file(int fd, size_t new_size, iommap_mapping *current, int current_shared,
                     int restore)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    retired_lock_take();
    for (iommap_mapping *m = retired_head; m != NULL; m = m->next_retired) {
        if (m == current || m->dev != st.st_dev || m->ino != st.st_ino)
            continue;
        if (restore)
            file_tail(m, fd, new_size, m->shared);
        else
            zero_tail(m, new_size);
    }
    if (current != NULL) {
        if (restore)
            file_tail(current, fd, new_size, current_shared);
        else
            zero_tail(current, new_size);
    }
    pthread_mutex_unlock(&retired_lock);
}

void iommap_mappings_cut(int fd, size_t new_size, iommap_mapping *current, int current_shared)
{
    for_file(fd, new_size, current, current_shared, 0);
}

void iommap_mappings_restore(int fd, size_t new_size, iommap_mapping *current, int current_shared)
{
    for_file(fd, new_size, current, current_shared, 1);
}

typedef struct {
    char *addr;
    size_t size;
} region;

static int run_munmap(void *arg)
{
    region *r = arg;
    return munmap(r->addr, r->size);
}

/* Unmapping costs time in proportion to the pages the region holds (a
 * private mapping whose gigabyte was written frees a gigabyte of copies:
 * hundreds of milliseconds), so a large region is unmapped with the GIL
 * released.  The region is moved out of the object first and the object
 * freed only after: nothing can reach it meanwhile (its count is zero and
 * the collector does not track it), and what other threads run then never
 * sees a half-unmapped Mapping. */
static void mapping_dealloc(iommap_mapping *m)
{
    PyTypeObject *type = Py_TYPE(m);
    unlist(m); /* before the region goes: a cut must not map over it */
    region r = {m->addr, m->size};
    m->addr = NULL;
    m->size = 0;
    if (r.addr != NULL)
        (void)iommap_run_released(r.size, run_munmap, &r);
    PyObject_Free(m);
    Py_DECREF(type);
}

/* The buffer is the whole region; views slice the memoryview made from it,
 * which keeps this object (and so the region) alive. */
static int mapping_getbuffer(iommap_mapping *m, Py_buffer *view, int flags)
{
    char *buf = m->addr != NULL ? m->addr : empty_region;
    return PyBuffer_FillInfo(view, (PyObject *)m, buf, (Py_ssize_t)m->size, !m->writable, flags);
}

static PyType_Slot mapping_slots[] = {
    {Py_tp_dealloc, mapping_dealloc},
    {Py_bf_getbuffer, mapping_getbuffer},
    {Py_tp_doc, "A mapped region of a file, alive while a handle or a view refers to it."},
    {0, NULL},
};

PyType_Spec iommap_mapping_spec =
    IOMMAP_TYPE_SPEC("iommap._core.Mapping", iommap_mapping, 0, mapping_slots);
