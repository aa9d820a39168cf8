/* Reads: MappedFile.pread and .readinto, a guarded copy out of the mapping
 * under the shared lock. */
#include "handle.h"

/* Copies [offset, offset + n) of the current mapping into dst. */
static iommap_status copy_out(iommap_handle *h, uint64_t offset, size_t n, char *dst)
{
    iommap_status s;
    iommap_mapping *m = iommap_enter(h, IOMMAP_SHARED, offset, n, &s);
    if (m == NULL)
        return s;
    iommap_copy_work w = {m, (size_t)offset, dst, n, 0};
    if (iommap_finish_released(h, n, iommap_run_copy, &w) != 0)
        s.what = IOMMAP_FAIL_SIGBUS;
    return s;
}

const char iommap_mf_pread_doc[] =
    "pread($self, offset, length, /)\n--\n\n"
    "Return a copy of `length` bytes of the file at `offset`, as bytes.\n\n"
    "The range must lie inside the mapping (offset + length <= len(self)), else\n"
    "OutOfBoundsError, an IndexError; pread(len(self), 0) is b''. If the file\n"
    "shrank under the range: SigbusError, an OSError, and the handle stays usable.\n"
    "A 'write' handle refuses with PermissionError (reason 'eacces'). Copies of\n"
    "64 KiB and more release the GIL.";

PyObject *iommap_mf_pread(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t offset, length;
    if (iommap_offset_arg(h, "pread", args, nargs, &offset) ||
        iommap_to_u64(h, "pread", "length", args[1], &length) ||
        iommap_check_usable(h, "pread", IOMMAP_READ))
        return NULL;
    /* Refuse early what cannot fit, so a huge length is out_of_bounds rather
     * than MemoryError; the locked check is the one that counts. */
    size_t hint = atomic_load_explicit(&h->size_hint, memory_order_relaxed);
    if (!iommap_in_bounds(offset, length, hint))
        return iommap_err_out_of_bounds_given(IOMMAP_STATE(h), "pread", args[0], args[1], offset,
                                              length, hint);

    PyObject *result = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)length);
    if (result == NULL)
        return NULL;
    iommap_status s = copy_out(h, offset, (size_t)length, PyBytes_AS_STRING(result));
    if (s.what != IOMMAP_DONE) {
        Py_DECREF(result);
        return iommap_raise_status_given(h, "pread", &s, args[0], args[1], offset, length);
    }
    return result;
}

const char iommap_mf_readinto_doc[] =
    "readinto($self, offset, buffer, /)\n--\n\n"
    "Fill `buffer` with the file's bytes from `offset`; return how many bytes were\n"
    "copied: memoryview(buffer).nbytes.\n\n"
    "`buffer` is any writable C-contiguous buffer (bytearray, memoryview,\n"
    "array.array, a numpy array); nothing is allocated. Errors as for pread().";

PyObject *iommap_mf_readinto(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t offset;
    if (iommap_offset_arg(h, "readinto", args, nargs, &offset))
        return NULL;
    Py_buffer buf;
    int got = iommap_get_destination(args[1], &buf);
    if (got < 0)
        return NULL; /* the exporter's own exception */
    if (got > 0) {
        return iommap_err_bad_type(IOMMAP_STATE(h),
                                   "readinto: buffer must be a writable C-contiguous "
                                   "buffer of plain data, not %.100s",
                                   Py_TYPE(args[1])->tp_name);
    }
    PyObject *result = NULL;
    if (iommap_check_usable(h, "readinto", IOMMAP_READ) == 0) {
        iommap_status s = copy_out(h, offset, (size_t)buf.len, buf.buf);
        if (s.what == IOMMAP_DONE)
            result = PyLong_FromSsize_t(buf.len);
        else
            iommap_raise_status_given(h, "readinto", &s, args[0], NULL, offset, (uint64_t)buf.len);
    }
    PyBuffer_Release(&buf);
    return result;
}
