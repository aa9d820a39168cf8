/* Inputs that run the caller's code or whose size is not their length
 * (inputs.c): buffers from any exporter, pwrite's nested lists, offsets.
 *
 * Two rules hold for all of them.  An exception raised by the caller's code
 * (an exporter, __index__, __iter__, __len__) comes out unchanged: only what
 * iommap decides is badarg.  And the work done is bounded by the input's
 * own size: a shared sublist is measured once, and a count that could never
 * fit in memory is refused before anything is expanded. */
#ifndef IOMMAP_INPUTS_H
#define IOMMAP_INPUTS_H

#include "iommap.h"

/* Gets a C-contiguous buffer from `obj`: for reading (`writable` 0), or for
 * writing into (a writable buffer of plain data: no Python object pointers).
 * Returns 0 with `view` filled; 1 when `obj` is not such a buffer (no
 * exception set: the caller raises its badarg); -1 with the exporter's own
 * exception set. */
int iommap_get_buffer(PyObject *obj, Py_buffer *view, int writable);

/* True when `count` items of `each` bytes could never be held in memory
 * (more than the machine's physical memory, or past PY_SSIZE_T_MAX). */
int iommap_too_many(uint64_t count, size_t each);

/* pwrite's data, a nested list or tuple, measured without expanding it:
 * `bytes` (saturating at UINT64_MAX) and `pieces`, each shared sublist
 * measured once.  Raises badarg (wrong type, nesting too deep or a cycle)
 * or passes on the caller's exception, and returns -1. */
typedef struct {
    uint64_t bytes;
    uint64_t pieces;
} iommap_iolist_size;

int iommap_iolist_measure(iommap_state *st, const char *op, PyObject *data,
                          iommap_iolist_size *size);

/* gather's and scatter's offsets as a new PyMem array of `*count` values:
 * a one-dimensional buffer of 8-byte integers (format q, Q, l or L, native
 * byte order), read without a Python int per element, or any sequence or
 * iterable of ints.  Raises and returns -1 otherwise. */
int iommap_read_offsets(iommap_state *st, const char *op, PyObject *obj, uint64_t **values,
                        size_t *count);

#endif
