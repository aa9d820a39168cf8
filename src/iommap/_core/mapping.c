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

size_t iommap_window_size(const iommap_map_options *opts, size_t file_size, int *whole)
{
    *whole = 0;
    if (opts->offset > file_size)
        return 0;
    size_t rest = file_size - (size_t)opts->offset;
    if (opts->length == 0) {
        *whole = 1;
        return rest;
    }
    *whole = opts->length <= rest;
    return *whole ? (size_t)opts->length : rest;
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
    return m;
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
