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

/* A window that starts inside a page is mapped from that page's start (mmap
 * wants a page-aligned file offset) and handed out from the window's first
 * byte: `addr` is never page-aligned then, and the bytes before it in its
 * first page are mapped but never reachable through the handle.  Since the
 * lead-in is less than a page, the region's real start is `addr` rounded
 * down, which is how iommap_unmap_region finds it again. */
static size_t lead_in(uint64_t offset)
{
    return (size_t)(offset & (uint64_t)(iommap_page_size() - 1));
}

int iommap_map_region(int fd, size_t size, const iommap_map_options *opts, char **addr,
                      const char **failed_call)
{
    *addr = NULL;
    if (size == 0)
        return 0;

    size_t skip = lead_in(opts->offset);
    if (size > SIZE_MAX - skip) {
        errno = ENOMEM;
        *failed_call = "mmap()";
        return -1;
    }
    int prot = PROT_READ | (iommap_mapping_writable(opts) ? PROT_WRITE : 0);
    int flags = (opts->private_ ? MAP_PRIVATE : MAP_SHARED) |
                iommap_platform_map_flags(opts->populate, opts->nocache);
    void *p = mmap(NULL, skip + size, prot, flags, fd, (off_t)(opts->offset - skip));
    if (p == MAP_FAILED) {
        *failed_call = "mmap()";
        return -1;
    }
    if (opts->lock && mlock(p, skip + size) != 0) {
        int saved = errno;
        munmap(p, skip + size);
        errno = saved;
        *failed_call = "mlock()";
        return -1;
    }
    iommap_platform_after_map(p, skip + size, opts->populate);
    *addr = (char *)p + skip;
    return 0;
}

void iommap_unmap_region(char *addr, size_t size)
{
    if (addr == NULL)
        return;
    size_t skip = (size_t)((uintptr_t)addr & (uintptr_t)(iommap_page_size() - 1));
    munmap(addr - skip, skip + size);
}

uint64_t iommap_window_size(const iommap_map_options *opts, uint64_t file_size, int *whole)
{
    *whole = 0;
    if (opts->offset > file_size)
        return 0;
    uint64_t rest = file_size - opts->offset;
    if (opts->length == 0) {
        *whole = 1;
        return rest;
    }
    *whole = opts->length <= rest;
    return *whole ? opts->length : rest;
}

iommap_mapping *iommap_mapping_wrap(PyTypeObject *type, char *addr, size_t size, int writable)
{
    iommap_mapping *m = PyObject_New(iommap_mapping, type);
    if (m == NULL) {
        iommap_unmap_region(addr, size);
        return NULL;
    }
    m->addr = addr;
    m->size = size;
    m->writable = writable;
    m->retired = 0;
    m->shared = 0;
    m->file_offset = 0;
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

void iommap_mapping_retire(iommap_mapping *m, int fd, const iommap_map_options *opts)
{
    struct stat st;
    if (m->addr == NULL || fstat(fd, &st) != 0)
        return; /* nothing mapped; or the file cannot be told: left as before */
    retired_lock_take();
    if (!m->retired) {
        m->retired = 1;
        m->shared = !opts->private_;
        m->file_offset = opts->offset;
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

/* The pages of `m` (whose first byte is the file's byte `foff`) that start
 * at or past new_size: *start gets the first one's address, *start_off its
 * file offset; returns their length, 0 if there are none.  A mapping's
 * address and file offset agree modulo the page size, so page boundaries in
 * the file are page boundaries in memory; the region mapped begins at the
 * page holding foff, which may lie before m->addr. */
static size_t tail_of(const iommap_mapping *m, uint64_t foff, size_t new_size, char **start,
                      uint64_t *start_off)
{
    uint64_t page = iommap_page_size();
    if (m == NULL || m->addr == NULL || m->size == 0)
        return 0;
    uint64_t end_off = foff + m->size;
    if (new_size >= end_off)
        return 0;
    uint64_t from = ((uint64_t)new_size + page - 1) / page * page;
    uint64_t first = foff / page * page;
    if (from < first)
        from = first;
    uint64_t to = (end_off + page - 1) / page * page;
    if (from >= to)
        return 0;
    *start = m->addr - (ptrdiff_t)(foff - first) + (ptrdiff_t)(from - first);
    *start_off = from;
    return (size_t)(to - from);
}

/* Maps the tail of the region past new_size anew: with fd -1, zero pages
 * (on failure, the limit on mappings say, the view faults as before);
 * otherwise the file's pages again, as they were mapped (a private
 * mapping's own changes to those pages are not brought back). */
static void map_tail(iommap_mapping *m, uint64_t foff, size_t new_size, int fd, int shared)
{
    char *start;
    uint64_t start_off;
    size_t len = tail_of(m, foff, new_size, &start, &start_off);
    if (len == 0)
        return;
    int prot = PROT_READ | (m->writable ? PROT_WRITE : 0);
    int kind = fd < 0 ? MAP_PRIVATE | MAP_ANONYMOUS : shared ? MAP_SHARED : MAP_PRIVATE;
    (void)mmap(start, len, prot, kind | MAP_FIXED, fd, fd < 0 ? 0 : (off_t)start_off);
}

static void zero_tail(iommap_mapping *m, uint64_t foff, size_t new_size)
{
    map_tail(m, foff, new_size, -1, 0);
}

/* Undoes zero_tail. */
static void file_tail(iommap_mapping *m, uint64_t foff, int fd, size_t new_size, int shared)
{
    map_tail(m, foff, new_size, fd, shared);
}

/* Cuts (or, with `restore`, uncuts) every retired mapping of fd's file and
 * `current`. */
static void for_file(int fd, size_t new_size, iommap_mapping *current,
                     const iommap_map_options *opts, int restore)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    retired_lock_take();
    for (iommap_mapping *m = retired_head; m != NULL; m = m->next_retired) {
        if (m == current || m->dev != st.st_dev || m->ino != st.st_ino)
            continue;
        if (restore)
            file_tail(m, m->file_offset, fd, new_size, m->shared);
        else
            zero_tail(m, m->file_offset, new_size);
    }
    if (current != NULL) {
        if (restore)
            file_tail(current, opts->offset, fd, new_size, !opts->private_);
        else
            zero_tail(current, opts->offset, new_size);
    }
    pthread_mutex_unlock(&retired_lock);
}

void iommap_mappings_cut(int fd, size_t new_size, iommap_mapping *current,
                         const iommap_map_options *opts)
{
    for_file(fd, new_size, current, opts, 0);
}

void iommap_mappings_restore(int fd, size_t new_size, iommap_mapping *current,
                             const iommap_map_options *opts)
{
    for_file(fd, new_size, current, opts, 1);
}
typedef struct {
    char *addr;
    size_t size;
} region;

static int run_munmap(void *arg)
{
    region *r = arg;
    iommap_unmap_region(r->addr, r->size); /* a window's lead-in page too */
    return 0;
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
