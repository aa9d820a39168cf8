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
    return m;
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
