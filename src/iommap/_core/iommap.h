/* iommap's C core: the one header every core file includes.
 *
 * Files, one concern each (each calls only files listed below it):
 *   module.c    the iommap._core module: its state, types and functions
 *   open.c      iommap.open(): arguments, the file set up, the handle made
 *   handle.c    the MappedFile type: close, lifecycle, method table
 *   read.c      pread, readinto
 *   write.c     pwrite
 *   resize.c    truncate, remap, sync
 *   view.c      view, resident, residency
 *   batch.c     gather, scatter
 *   walk.c      the Walker type: a directory walk with each file counted,
 *               warmed or evicted, for pagecache.walk()
 *   pagecache.c file_cache_stat(): a file's page-cache counts by path
 *   descriptor.c  open() given a descriptor or a file object
 *   subscript.c m[i], m[a:b], their assignment, bool(m)
 *   hints.c     advise, and its hints: what each is and needs (hints.h)
 *   lock.c      the handle lock, fork, a system call over a range of pages
 *   handle.h    what the MappedFile files share: layout, locked sections
 *   inputs.c    inputs that run the caller's code or outgrow their length:
 *               buffers, pwrite's nested lists, offsets (inputs.h)
 *   args.c      argument conversion: integers, modes, paths, argument counts
 *   files.c     the file behind a handle: opening without blocking, what can
 *               be mapped, growing with undo, durability (files.h)
 *   mapping.c   the Mapping type: one mmap'ed region, reference counted
 *   guard.c     the SIGBUS guard around raw copies
 *   errors.c    every exception the core raises, a locked section's
 *               status and an unusable handle's included
 *   platform.c  OS-specific calls; platform.h, what each OS has
 */
#ifndef IOMMAP_H
#define IOMMAP_H

#define PY_SSIZE_T_CLEAN
/* OpenBSD hides madvise, MADV_* and mincore once _XOPEN_SOURCE or
 * _POSIX_C_SOURCE is defined, unless _BSD_SOURCE is too.  CPython's
 * configure defines all three there; this holds for a pyconfig.h that
 * lacks the last (the same definition, so no redefinition warning). */
#if defined(__OpenBSD__) && !defined(_BSD_SOURCE)
#define _BSD_SOURCE 1
#endif
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000
#include <longintrepr.h> /* ob_digit, for iommap_small_int(); Python.h has it from 3.11 */
#endif

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "platform.h"

/* Copies of at least this many bytes release the GIL. */
#define IOMMAP_GIL_RELEASE_BYTES (64 * 1024)

/* Work that may block in the kernel (msync, madvise, ftruncate) counts as
 * large whatever its size. */
#define IOMMAP_BLOCKING SIZE_MAX

/* pwrite's nested lists: deeper than this (or a cycle) is badarg. */
#define IOMMAP_MAX_IOLIST_DEPTH 100

/* Runs work(arg), with the GIL released when `bytes` is at least
 * IOMMAP_GIL_RELEASE_BYTES (for less, releasing costs more than it frees).
 * `work` must touch no Python object.  Returns what work returned. */
static inline int iommap_run_released(size_t bytes, int (*work)(void *), void *arg)
{
    if (bytes < IOMMAP_GIL_RELEASE_BYTES)
        return work(arg);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = work(arg);
    Py_END_ALLOW_THREADS
    return rc;
}

/* The spec of one of the core's types: made by the core only, never by
 * calling the class, and immutable, as the standard library's types are. */
#define IOMMAP_TYPE_SPEC(type_name, c_type, extra_flags, slot_array)                               \
    {                                                                                              \
        .name = (type_name),                                                                       \
        .basicsize = sizeof(c_type),                                                               \
        .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_DISALLOW_INSTANTIATION |                          \
                 Py_TPFLAGS_IMMUTABLETYPE | (extra_flags),                                         \
        .slots = (slot_array),                                                                     \
    }

/* ---- module state (module.c) ------------------------------------------ */

/* X(field) for each object the state holds, for traverse and clear. */
#define IOMMAP_STATE_OBJECTS(X)                                                                    \
    X(mapped_file_type)                                                                            \
    X(mapping_type)                                                                                \
    X(walker_type)                                                                                 \
    X(bad_type_error)                                                                              \
    X(bad_value_error)                                                                             \
    X(closed_error)                                                                                \
    X(out_of_bounds_error)                                                                         \
    X(sigbus_error)                                                                                \
    X(os_error_factory)

typedef struct {
    PyTypeObject *mapped_file_type;
    PyTypeObject *mapping_type;
    PyTypeObject *walker_type;
    /* Classes and the errno factory from iommap._errors. */
    PyObject *bad_type_error;
    PyObject *bad_value_error;
    PyObject *closed_error;
    PyObject *out_of_bounds_error;
    PyObject *sigbus_error;
    PyObject *os_error_factory;
} iommap_state;

/* The state of the module that made `type` (MappedFile or Mapping). */
static inline iommap_state *iommap_state_of_type(PyTypeObject *type)
{
    return (iommap_state *)PyType_GetModuleState(type);
}

/* ---- access modes and arguments (args.c) ------------------------------ */

typedef enum { IOMMAP_READ = 1, IOMMAP_WRITE = 2, IOMMAP_READ_WRITE = 3 } iommap_mode;

#define IOMMAP_CAN_READ(mode)  (((mode) & IOMMAP_READ) != 0)
#define IOMMAP_CAN_WRITE(mode) (((mode) & IOMMAP_WRITE) != 0)

const char *iommap_mode_name(iommap_mode mode);
/* open()'s mode argument; NULL (not given) is read_write. */
int iommap_parse_mode(iommap_state *st, PyObject *obj, iommap_mode *mode);
/* open()'s size=None or a non-negative int; *size and *given are 0 for None. */
int iommap_parse_size(iommap_state *st, PyObject *obj, uint64_t *size, int *given);
/* open()'s path as bytes for open(2): a wrong type or a name no file can
 * have is badarg; an exception from the path's own __fspath__ comes out
 * unchanged. */
PyObject *iommap_encode_path(iommap_state *st, PyObject *path);
/* TypeError unless a fast-call method got exactly `want` arguments (inline:
 * every hot call makes this check). */
int iommap_err_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t want);
static inline int iommap_check_nargs(const char *op, Py_ssize_t nargs, Py_ssize_t want)
{
    return nargs == want ? 0 : iommap_err_nargs(op, nargs, want);
}
/* A writable, C-contiguous destination holding no object pointers
 * (inputs.c): iommap_get_buffer(obj, buf, 1) of inputs.h (0; 1 refused; -1
 * the exporter's own exception). */
int iommap_get_destination(PyObject *obj, Py_buffer *buf);

/* The value of an int or any __index__ object (not a float) as a long
 * long, *overflow -1 or 1 when it lies beyond that range (as
 * PyLong_AsLongLongAndOverflow).  Returns 0; 1 when `obj` is no integer (no
 * exception set: the caller raises its badarg); -1 with the exception
 * __index__ raised. */
int iommap_index_value(PyObject *obj, long long *value, int *overflow);

/* A non-negative integer argument (an int or any __index__ object; not a
 * float) as uint64, for `op`'s argument `name`.  Values beyond 64 bits
 * saturate at UINT64_MAX: a range that large is out of bounds, never an
 * OverflowError.  Raises badarg and returns -1 otherwise. */
int iommap_arg_to_u64(iommap_state *st, const char *op, const char *name, PyObject *obj,
                      uint64_t *out);

/* The value of an exact, non-negative int of at most a few digits, read
 * straight from the object: no call, no reference counting.  The hot calls
 * convert two ints each, and the general path (a new reference, a call into
 * PyLong_AsLongLongAndOverflow, its overflow checks) cost as much as the
 * lock.  Returns 0 when iommap_arg_to_u64 has to decide. */
static inline int iommap_small_int(PyObject *obj, uint64_t *out)
{
    if (!PyLong_CheckExact(obj))
        return 0;
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

/* ---- descriptors (descriptor.c) -------------------------------------- */

/* The descriptor open()'s first argument names when it is not a path: an
 * int, or an object with fileno() (whose exceptions pass through).  Returns
 * it (>= 0), IOMMAP_NOT_A_DESCRIPTOR for a path, or -1 with an exception. */
#define IOMMAP_NOT_A_DESCRIPTOR (-2)
int iommap_descriptor_of(iommap_state *st, PyObject *source);

/* The handle's own duplicate of the caller's descriptor `fd`, close-on-exec,
 * once its access mode allows `mode` (and writing, if `needs_write`).
 * Returns it, or -1 with the exception set (eacces naming what is missing). */
int iommap_dup_descriptor(iommap_state *st, int fd, iommap_mode mode, int needs_write);

/* ---- errors (errors.c) ------------------------------------------------ *
 * Each sets the Python exception and returns NULL, for `return err(...)`. */

/* Raises `cls` with a PyUnicode_FromFormat message. */
PyObject *iommap_err_format(PyObject *cls, const char *fmt, ...);
#define iommap_err_bad_type(st, ...)  iommap_err_format((st)->bad_type_error, __VA_ARGS__)
#define iommap_err_bad_value(st, ...) iommap_err_format((st)->bad_value_error, __VA_ARGS__)
PyObject *iommap_err_closed(iommap_state *st, const char *op);
PyObject *iommap_err_out_of_bounds(iommap_state *st, const char *op, uint64_t offset,
                                   uint64_t length, size_t size);
/* The same, naming offset and length as the caller gave them where their
 * objects are known (either may be NULL): an int past 64 bits was saturated
 * on conversion, and the message shows the int itself. */
PyObject *iommap_err_out_of_bounds_given(iommap_state *st, const char *op, PyObject *offset_obj,
                                         PyObject *length_obj, uint64_t offset, uint64_t length,
                                         size_t size);
/* open()'s window [offset, +length) does not fit the file of `file_size`
 * bytes; the numbers named as the caller gave them. */
PyObject *iommap_err_window_beyond(iommap_state *st, PyObject *offset_obj, PyObject *length_obj,
                                   uint64_t offset, uint64_t length, uint64_t file_size);
/* The same, for record `index` of a gather or scatter. */
PyObject *iommap_err_out_of_bounds_at(iommap_state *st, const char *op, size_t index,
                                      PyObject *offset_obj, PyObject *length_obj, uint64_t offset,
                                      uint64_t length, size_t size);
PyObject *iommap_err_sigbus(iommap_state *st, const char *op);
/* EACCES for a call the handle's mode or kind refuses, `why` saying which. */
PyObject *iommap_err_refused(iommap_state *st, const char *op, const char *why);
/* errno `code` from system call `call` during `op`; `filename` may be NULL. */
PyObject *iommap_err_os(iommap_state *st, const char *op, const char *call, int code,
                        PyObject *filename);
/* errno `code` that iommap decides itself, with `why` as the message. */
PyObject *iommap_err_errno(iommap_state *st, int code, const char *op, const char *why);
/* A file of type `kind` ("a FIFO") that cannot be mapped: errno `code`. */
PyObject *iommap_err_file_type(iommap_state *st, const char *op, const char *kind, int code,
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
    int shared;           /* MAP_SHARED, for putting the file's pages back */
    uint64_t file_offset; /* of addr[0] in the file (a window's offset) */
    dev_t dev;            /* the file */
    ino_t ino;
    struct iommap_mapping *prev_retired, *next_retired;
} iommap_mapping;

extern PyType_Spec iommap_mapping_spec;

/* How a handle maps its file; fixed at open, reused by truncate's remap. */
typedef struct {
    iommap_mode mode;
    int private_; /* MAP_PRIVATE: copy-on-write, never written back */
    int populate;
    int nocache;
    int lock; /* mlock the pages */
    /* The window: the file's bytes [offset, offset + length) are mapped;
     * length 0 means to the end of the file.  Both 0 for a whole file. */
    uint64_t offset;
    uint64_t length;
} iommap_map_options;

/* A handle on a window (offset= or length= given) rather than a whole file. */
#define IOMMAP_IS_WINDOW(opts) ((opts)->offset != 0 || (opts)->length != 0)

/* Maps `size` bytes of `fd` from the window's offset into *addr (size 0 maps
 * nothing: NULL); *addr is not page-aligned when the offset is not.
 * Returns 0, or -1 with errno set and *failed_call naming the system call.
 * Needs no GIL: open, truncate and remap call it with the GIL released. */
int iommap_map_region(int fd, size_t size, const iommap_map_options *opts, char **addr,
                      const char **failed_call);

/* Unmaps a region made by iommap_map_region (NULL: nothing). */
void iommap_unmap_region(char *addr, size_t size);

/* How many bytes a handle maps of a file of `file_size` bytes: the whole
 * file, or as much of its window as the file holds (0 if the file ends
 * before the window starts).  *whole is 1 when the window lies wholly
 * inside the file. */
uint64_t iommap_window_size(const iommap_map_options *opts, uint64_t file_size, int *whole);

/* Wraps a region from iommap_map_region in a new Mapping that owns it (and
 * unmaps it on failure).  Needs the GIL. */
iommap_mapping *iommap_mapping_wrap(PyTypeObject *type, char *addr, size_t size, int writable);

int iommap_mapping_writable(const iommap_map_options *opts);

/* Own shrink vs old views.  A handle that stops mapping through `m` (its
 * truncate() or remap() replaced it, or close() dropped it) retires it:
 * views may keep it alive, and from then on every shrink of the same file by
 * a handle of this process zeroes its tail.  `fd` is the handle's descriptor
 * (for the file's identity), `opts` how it maps.  Needs no GIL. */
void iommap_mapping_retire(iommap_mapping *m, int fd, const iommap_map_options *opts);

/* Before ftruncate() shrinks the file behind `fd` to `new_size`: over every
 * retired mapping of the file, and over `current` (the calling handle's
 * mapping, mapped as `opts` says, which the shrink will retire; may be NULL),
 * places anonymous zero pages over every page that starts at or past
 * new_size.  Views over them then read zeros there and their writes go
 * nowhere, instead of faulting.  The page holding new_size stays the file's:
 * the kernel zero-fills it past the end.  If the shrink then fails,
 * iommap_mappings_restore() with the same arguments puts the file's pages
 * back.  Needs no GIL; call under the handle's exclusive lock. */
void iommap_mappings_cut(int fd, size_t new_size, iommap_mapping *current,
                         const iommap_map_options *opts);
void iommap_mappings_restore(int fd, size_t new_size, iommap_mapping *current,
                             const iommap_map_options *opts);

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

/* ---- the handle (open.c, handle.c, lock.c) -------------------------- */

extern PyType_Spec iommap_mapped_file_spec;

/* iommap.open(path, mode, ...): a new MappedFile of the module's type. */
PyObject *iommap_open(PyObject *module, PyObject *args, PyObject *kwargs);

/* Registers the at-fork handler that lets a forked child re-initialise
 * handle locks another parent thread held at fork (once per process). */
int iommap_fork_handler_install(void);

/* ---- page-cache counts by path (pagecache.c) ------------------------- */

/* _core.file_cache_stat(path, offset, length, follow): see pagecache.c. */
PyObject *iommap_file_cache_stat(PyObject *module, PyObject *const *args, Py_ssize_t nargs);
extern const char iommap_file_cache_stat_doc[];
/* The range a file's page-cache counts cover, [*start, *end) of a file of
 * `size` bytes for the range [offset, offset + length) asked (length
 * UINT64_MAX: to the end); see pagecache.c.  walk.c uses the same rule. */
void iommap_counted_range(uint64_t size, uint64_t offset, uint64_t length, uint64_t page,
                          uint64_t *start, uint64_t *end);

/* ---- the directory walk (walk.c) ------------------------------------- */

extern PyType_Spec iommap_walker_spec;
/* _core.walker(...): a new Walker; see walk.c. */
PyObject *iommap_walker_new(PyObject *module, PyObject *args);

#endif
