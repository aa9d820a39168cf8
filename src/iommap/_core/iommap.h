/* iommap's C core: the one header every core file includes.
 *
 * Files, one concern each:
 *   module.c    module state, argument conversion, iommap.open()
 *   handle.c    the MappedFile type: locking, fork, the Part 1 methods
 *   handle.h    what handle.c, view.c and batch.c share
 *   view.c      view, resident, residency
 *   batch.c     gather, scatter
 *   mapping.c   the Mapping type: one mmap'ed region, reference counted
 *   guard.c     the SIGBUS guard around raw copies
 *   errors.c    every exception the core raises
 *   platform.c  OS-specific calls behind feature tests
 */
#ifndef IOMMAP_H
#define IOMMAP_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#if PY_VERSION_HEX < 0x030A0000 /* Python 3.9 */
#define Py_TPFLAGS_DISALLOW_INSTANTIATION 0
static inline PyObject *iommap_new_ref(PyObject *obj)
{
    Py_INCREF(obj);
    return obj;
}
#define Py_NewRef(obj) iommap_new_ref((PyObject *)(obj))
static inline int PyModule_AddObjectRef(PyObject *module, const char *name, PyObject *value)
{
    Py_INCREF(value);
    if (PyModule_AddObject(module, name, value) == 0)
        return 0;
    Py_DECREF(value);
    return -1;
}
#endif

/* Copies of at least this many bytes release the GIL. */
#define IOMMAP_GIL_RELEASE_BYTES (64 * 1024)

/* pwrite's nested lists: deeper than this (or a cycle) is badarg. */
#define IOMMAP_MAX_IOLIST_DEPTH 100

/* ---- module state (module.c) ------------------------------------------ */

typedef struct {
    PyTypeObject *mapped_file_type;
    PyTypeObject *mapping_type;
    /* Classes and the errno factory from iommap._errors. */
    PyObject *bad_type_error;
    PyObject *bad_value_error;
    PyObject *closed_error;
    PyObject *out_of_bounds_error;
    PyObject *sigbus_error;
    PyObject *os_error_factory;
} iommap_state;

iommap_state *iommap_state_of_type(PyTypeObject *type);

/* ---- access modes ----------------------------------------------------- */

typedef enum { IOMMAP_READ = 1, IOMMAP_WRITE = 2, IOMMAP_READ_WRITE = 3 } iommap_mode;

#define IOMMAP_CAN_READ(mode)  (((mode) & IOMMAP_READ) != 0)
#define IOMMAP_CAN_WRITE(mode) (((mode) & IOMMAP_WRITE) != 0)

const char *iommap_mode_name(iommap_mode mode);

/* A non-negative integer argument (an int or any __index__ object; not a
 * float) as uint64, for `op`'s argument `name`.  Values beyond 64 bits
 * saturate at UINT64_MAX: a range that large is out of bounds, never an
 * OverflowError.  Raises badarg and returns -1 otherwise. */
int iommap_arg_to_u64(iommap_state *st, const char *op, const char *name, PyObject *obj,
                      uint64_t *out);

/* ---- errors (errors.c) ------------------------------------------------ *
 * Each sets the Python exception and returns NULL, for `return err(...)`. */

PyObject *iommap_err_bad_type(iommap_state *st, const char *fmt, ...);
PyObject *iommap_err_bad_value(iommap_state *st, const char *fmt, ...);
PyObject *iommap_err_closed(iommap_state *st, const char *op);
PyObject *iommap_err_out_of_bounds(iommap_state *st, const char *op, uint64_t offset,
                                   uint64_t length, size_t size);
/* The same, for record `index` of a gather or scatter. */
PyObject *iommap_err_out_of_bounds_at(iommap_state *st, const char *op, size_t index,
                                      uint64_t offset, uint64_t length, size_t size);
PyObject *iommap_err_sigbus(iommap_state *st, const char *op);
/* errno `code` from system call `call` during `op`; `filename` may be NULL. */
/* EACCES for a call the handle's mode or kind refuses, `why` saying which. */
PyObject *iommap_err_refused(iommap_state *st, const char *op, const char *why);
PyObject *iommap_err_os(iommap_state *st, const char *op, const char *call, int code,
                        PyObject *filename);

/* ---- the mapping (mapping.c) ------------------------------------------ *
 * One mmap'ed region of a file, immutable once made.  The handle holds one
 * reference; so will every exported buffer (views), which is what lets a
 * view outlive close() and truncate().  Unmapped when the last reference
 * goes. */

typedef struct iommap_mapping {
    PyObject_HEAD
    char *addr; /* NULL when size is 0: an empty file has no region */
    size_t size;
    int writable; /* PROT_WRITE was given */
    /* Set once no handle maps through it (see iommap_mapping_retire); then
     * guarded by mapping.c's registry lock. */
    int retired;
    int shared; /* MAP_SHARED, for putting the file's pages back */
    dev_t dev;  /* the file */
    ino_t ino;
    struct iommap_mapping *prev_retired, *next_retired;
} iommap_mapping;

/* How a handle maps its file; fixed at open, reused by truncate's remap. */
typedef struct {
    iommap_mode mode;
    int private_; /* MAP_PRIVATE: copy-on-write, never written back */
    int populate;
    int nocache;
    int lock; /* mlock the pages */
} iommap_map_options;

/* Maps `size` bytes of `fd` from offset 0 into *addr (size 0 maps nothing:
 * NULL).  Returns 0, or -1 with errno set and *failed_call naming the system
 * call.  Needs no GIL: open and truncate call it with the GIL released. */
int iommap_map_region(int fd, size_t size, const iommap_map_options *opts, char **addr,
                      const char **failed_call);

/* Wraps a region from iommap_map_region in a new Mapping that owns it (and
 * unmaps it on failure).  Needs the GIL. */
iommap_mapping *iommap_mapping_wrap(PyTypeObject *type, char *addr, size_t size, int writable);

int iommap_mapping_writable(const iommap_map_options *opts);

/* Own shrink vs old views.  A handle that stops mapping through `m` (its
 * truncate() replaced it, or close() dropped it) retires it: views may keep
 * it alive, and from then on every shrink of the same file by a handle of
 * this process zeroes its tail.  `fd` is the handle's descriptor (for the
 * file's identity), `shared` whether it maps MAP_SHARED.  Needs no GIL. */
void iommap_mapping_retire(iommap_mapping *m, int fd, int shared);

/* Before ftruncate() shrinks the file behind `fd` to `new_size`: over every
 * retired mapping of the file, and over `current` (the calling handle's
 * mapping, which the shrink will retire; may be NULL), places anonymous zero
 * pages from the first page boundary at or past new_size to the mapping's
 * end.  Views over them then read zeros there and their writes go nowhere,
 * instead of faulting.  The page holding new_size stays the file's: the
 * kernel zero-fills it past the end.  If the shrink then fails,
 * iommap_mappings_restore() with the same arguments puts the file's pages
 * back.  Needs no GIL; call under the handle's exclusive lock. */
void iommap_mappings_cut(int fd, size_t new_size, iommap_mapping *current, int current_shared);
void iommap_mappings_restore(int fd, size_t new_size, iommap_mapping *current, int current_shared);

/* ---- SIGBUS guard (guard.c) ------------------------------------------- *
 * Copies touching mapped memory go through these.  They return 0, or -1 if
 * the pages behind [region, region + region_size) vanished mid-copy; they set
 * no Python exception (they may run without the GIL). */

int iommap_guard_install(void);
int iommap_guarded_copy(void *dst, const void *src, size_t n, const void *region,
                        size_t region_size);

/* gather/scatter: `count` records of `length` bytes between the mapping at
 * region + offsets[i] and the contiguous `buffer`, in order, under one guard
 * scope.  Every range must have been checked against region_size. */
typedef struct {
    char *region;
    size_t region_size;
    const uint64_t *offsets;
    size_t count;
    size_t length;
    char *buffer;
    int to_mapping; /* 1: scatter (buffer -> mapping), 0: gather */
} iommap_batch;

int iommap_guarded_batch(const iommap_batch *batch);

/* ---- platform (platform.c) -------------------------------------------- *
 * Each returns 0, or -1 with errno set. */

size_t iommap_page_size(void);
/* Extra mmap flags for populate/nocache (0 where the platform has none). */
int iommap_platform_map_flags(int populate, int nocache);
/* After mmap: what the flags above could not do (will-need hint, ...). */
void iommap_platform_after_map(void *addr, size_t size, int populate);
/* After open: per-descriptor cache policy (F_NOCACHE on macOS). */
int iommap_platform_set_nocache(int fd);
/* Grows the file to `size` bytes, reserving disk space where possible. */
int iommap_platform_reserve(int fd, size_t old_size, size_t size);
/* From a signal handler's context: 1 if the interrupted thread was returning
 * from a system call, 0 if not, -1 if this machine cannot tell. */
int iommap_platform_interrupted_after_syscall(const void *context);

/* ---- the handle (handle.c) --------------------------------------------- */

extern PyType_Spec iommap_mapped_file_spec;
extern PyType_Spec iommap_mapping_spec;

/* A new MappedFile owning `fd` and `mapping` (a reference is stolen from
 * neither: the caller keeps its own). */
/* Registers the at-fork handler that lets a forked child re-initialise
 * handle locks another parent thread held at fork (once per process). */
int iommap_fork_handler_install(void);

PyObject *iommap_handle_new(iommap_state *st, int fd, iommap_mapping *mapping,
                            const iommap_map_options *opts, PyObject *path);

#endif
