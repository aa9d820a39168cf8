/* The iommap._core module: its state, iommap.open(), and initialisation. */
#include "iommap.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

iommap_state *iommap_state_of_type(PyTypeObject *type)
{
    return (iommap_state *)PyType_GetModuleState(type);
}

const char *iommap_mode_name(iommap_mode mode)
{
    switch (mode) {
    case IOMMAP_READ:
        return "read";
    case IOMMAP_WRITE:
        return "write";
    case IOMMAP_READ_WRITE:
        break;
    }
    return "read_write";
}

static int parse_mode(iommap_state *st, PyObject *obj, iommap_mode *mode)
{
    if (obj == NULL) {
        *mode = IOMMAP_READ_WRITE;
        return 0;
    }
    if (!PyUnicode_Check(obj)) {
        iommap_err_bad_type(st, "open: mode must be a str, not %.100s", Py_TYPE(obj)->tp_name);
        return -1;
    }
    static const iommap_mode modes[] = {IOMMAP_READ, IOMMAP_WRITE, IOMMAP_READ_WRITE};
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        if (PyUnicode_CompareWithASCIIString(obj, iommap_mode_name(modes[i])) == 0) {
            *mode = modes[i];
            return 0;
        }
    }
    iommap_err_bad_value(st, "open: mode must be \"read\", \"write\" or \"read_write\", not %R",
                         obj);
    return -1;
}

int iommap_arg_to_u64(iommap_state *st, const char *op, const char *name, PyObject *obj,
                      uint64_t *out)
{
    PyObject *index;
    if (PyLong_CheckExact(obj)) {
        index = Py_NewRef(obj);
    } else if (PyIndex_Check(obj) && !PyFloat_Check(obj)) {
        index = PyNumber_Index(obj);
        if (index == NULL)
            return -1;
    } else {
        iommap_err_bad_type(st, "%s: %s must be an int, not %.100s", op, name,
                            Py_TYPE(obj)->tp_name);
        return -1;
    }
    int overflow;
    long long v = PyLong_AsLongLongAndOverflow(index, &overflow);
    Py_DECREF(index);
    if (overflow == 0 && v == -1 && PyErr_Occurred())
        return -1;
    if (overflow < 0 || (overflow == 0 && v < 0)) {
        iommap_err_bad_value(st, "%s: %s must not be negative", op, name);
        return -1;
    }
    *out = overflow > 0 ? UINT64_MAX : (uint64_t)v;
    return 0;
}

/* size=None, or a non-negative int; *size is 0 and *given 0 for None. */
static int parse_size(iommap_state *st, PyObject *obj, size_t *size, int *given)
{
    uint64_t value;
    *size = 0;
    *given = 0;
    if (obj == NULL || obj == Py_None)
        return 0;
    if (iommap_arg_to_u64(st, "open", "size", obj, &value) != 0)
        return -1;
    /* Larger than a file can be: the reservation fails with EFBIG. */
    *size = value > SIZE_MAX ? SIZE_MAX : (size_t)value;
    *given = 1;
    return 0;
}

/* The path as bytes for open(2); any error is badarg of the matching kind. */
static PyObject *encode_path(iommap_state *st, PyObject *path)
{
    PyObject *encoded = NULL;
    if (PyUnicode_FSConverter(path, &encoded))
        return encoded;
    int wrong_type = PyErr_ExceptionMatches(PyExc_TypeError);
    PyErr_Clear();
    if (wrong_type)
        return iommap_err_bad_type(st,
                                   "open: path must be str, bytes or os.PathLike, not "
                                   "%.100s",
                                   Py_TYPE(path)->tp_name);
    return iommap_err_bad_value(st, "open: path %R cannot be used as a file name", path);
}

/* ---- what open() maps: a path, or a descriptor the caller holds ---------- */

/* Looks `name` up on obj's type: 1 found (*out a new reference to the bound
 * attribute), 0 absent, -1 with an exception the lookup raised. */
static int optional_attr(PyObject *obj, const char *name, PyObject **out)
{
    *out = NULL;
    PyObject *found = PyObject_GetAttrString(obj, name);
    if (found != NULL) {
        *out = found;
        return 1;
    }
    if (!PyErr_ExceptionMatches(PyExc_AttributeError))
        return -1;
    PyErr_Clear();
    return 0;
}

/* The descriptor named by `source` when it is not a path: an int, or an
 * object with fileno() (whose own exceptions pass through unchanged).
 * Returns the descriptor (>= 0), -2 when `source` is a path, or -1 with an
 * exception set. */
static int descriptor_of(iommap_state *st, PyObject *source)
{
    if (PyUnicode_Check(source) || PyBytes_Check(source))
        return -2;
    PyObject *attr;
    int found = optional_attr((PyObject *)Py_TYPE(source), "__fspath__", &attr);
    Py_XDECREF(attr);
    if (found != 0)
        return found < 0 ? -1 : -2;

    PyObject *number;
    if (PyBool_Check(source)) {
        iommap_err_bad_type(st, "open: a file descriptor must be an int, not bool");
        return -1;
    }
    if (PyLong_Check(source)) {
        number = Py_NewRef(source);
    } else {
        PyObject *fileno;
        found = optional_attr(source, "fileno", &fileno);
        if (found < 0)
            return -1;
        if (found == 0) {
            iommap_err_bad_type(st,
                                "open: path must be str, bytes, os.PathLike, a file "
                                "descriptor or an object with fileno(), not %.100s",
                                Py_TYPE(source)->tp_name);
            return -1;
        }
        number = PyObject_CallNoArgs(fileno);
        Py_DECREF(fileno);
        if (number == NULL)
            return -1;
        if (!PyLong_Check(number) || PyBool_Check(number)) {
            iommap_err_bad_type(st, "open: fileno() returned %.100s, not an int",
                                Py_TYPE(number)->tp_name);
            Py_DECREF(number);
            return -1;
        }
    }
    int overflow;
    long value = PyLong_AsLongAndOverflow(number, &overflow);
    Py_DECREF(number);
    if (value == -1 && PyErr_Occurred())
        return -1;
    if (overflow != 0 || value < 0 || value > INT_MAX) {
        iommap_err_bad_value(st, "open: %ld%s is not a file descriptor", value,
                             overflow != 0 ? " (or more)" : "");
        return -1;
    }
    return (int)value;
}

/* The handle's own copy of the caller's descriptor `fd`, close-on-exec, once
 * its access mode allows what the handle will do with it: mmap always needs
 * it readable, and a shared writable mapping (or a size= to set) needs it
 * writable too.  The two descriptors share the open file (offset, status
 * flags) but closing either leaves the other open.  Returns it, or -1 with
 * an exception set. */
static int dup_descriptor(iommap_state *st, int fd, int needs_write, iommap_mode mode)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return iommap_err_os(st, "open", "fcntl(F_GETFL)", errno, NULL), -1;
    int access = flags & O_ACCMODE;
    const char *has = access == O_RDONLY   ? "read-only (O_RDONLY)"
                      : access == O_WRONLY ? "write-only (O_WRONLY)"
                                           : NULL;
    if (access == O_WRONLY || (needs_write && access != O_RDWR)) {
        char why[200];
        snprintf(why, sizeof(why), "descriptor %d is open %s; mode \"%s\" needs it open %s", fd,
                 has != NULL ? has : "without read access", iommap_mode_name(mode),
                 needs_write ? "for reading and writing (O_RDWR)"
                             : "for reading (O_RDONLY or O_RDWR)");
        iommap_err_refused(st, "open", why);
        return -1;
    }
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return iommap_err_os(st, "open", "fcntl(F_DUPFD_CLOEXEC)", errno, NULL), -1;
    return copy;
}

/* The window [offset, offset + length) of a file of `file_size` bytes, as
 * the size to map (length 0: to the end); -1 if it passes the end. */
static int window_size(const iommap_map_options *opts, size_t file_size, size_t *size)
{
    if (opts->offset > file_size)
        return -1;
    size_t rest = file_size - (size_t)opts->offset;
    if (opts->length == 0) {
        *size = rest;
        return 0;
    }
    if (opts->length > rest)
        return -1;
    *size = (size_t)opts->length;
    return 0;
}

static PyObject *iommap_open(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path",     "mode", "private", "lock",   "populate", "nocache",
                               "create",   "truncate", "size", "offset", "length",  NULL};
    iommap_state *st = PyModule_GetState(module);
    PyObject *path, *mode_obj = NULL, *size_obj = NULL, *offset_obj = NULL, *length_obj = NULL;
    int private_ = 0, lock = 0, populate = 0, nocache = 0, create = 0, truncate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$ppppppOOO:open", keywords, &path,
                                     &mode_obj, &private_, &lock, &populate, &nocache, &create,
                                     &truncate, &size_obj, &offset_obj, &length_obj))
        return NULL;

    iommap_map_options opts = {IOMMAP_READ_WRITE, private_, populate, nocache, lock, 0, 0};
    size_t size;
    int size_given;
    if (parse_mode(st, mode_obj, &opts.mode) != 0 ||
        parse_size(st, size_obj, &size, &size_given) != 0 ||
        (offset_obj != NULL && iommap_arg_to_u64(st, "open", "offset", offset_obj,
                                                 &opts.offset) != 0) ||
        (length_obj != NULL && length_obj != Py_None &&
         iommap_arg_to_u64(st, "open", "length", length_obj, &opts.length) != 0))
        return NULL;
    if (opts.mode == IOMMAP_READ && (create || truncate || size_given))
        return iommap_err_bad_value(st, "open: mode \"read\" cannot create, truncate or size "
                                        "a file");
    int given_fd = descriptor_of(st, path);
    if (given_fd == -1)
        return NULL;
    if (given_fd >= 0 && (create || truncate))
        return iommap_err_bad_value(st, "open: create and truncate need a path, not a "
                                        "descriptor");

    /* A private mapping never writes the file, so it needs write access only
     * to set the file up (truncate, size). */
    int needs_write = opts.mode != IOMMAP_READ && (!private_ || truncate || size_given);
    PyObject *encoded = NULL;
    PyObject *filename = NULL; /* for OS errors: the path, when there is one */
    int fd = -1;
    if (given_fd >= 0) {
        fd = dup_descriptor(st, given_fd, needs_write, opts.mode);
        if (fd < 0)
            return NULL;
        path = Py_None; /* m.path: the handle was not opened by name */
    } else {
        encoded = encode_path(st, path);
        if (encoded == NULL)
            return NULL;
        filename = path;
    }
    int flags = (needs_write ? O_RDWR : O_RDONLY) | O_CLOEXEC | (create ? O_CREAT : 0) |
                (truncate ? O_TRUNC : 0);
    const char *call = NULL;
    int err = 0, beyond = 0;
    char *addr = NULL;
    size_t file_size = 0;
    struct stat info;
    Py_BEGIN_ALLOW_THREADS
    if (fd < 0)
        fd = open(PyBytes_AS_STRING(encoded), flags, 0644);
    if (fd < 0) {
        call = "open()";
    } else if (fstat(fd, &info) != 0) {
        call = "fstat()";
    } else if (S_ISDIR(info.st_mode)) {
        call = "open()";
        errno = EISDIR;
    } else if (size_given && (size_t)info.st_size < size &&
               iommap_platform_reserve(fd, (size_t)info.st_size, size) != 0) {
        call = "fallocate()";
    } else if (nocache && iommap_platform_set_nocache(fd) != 0) {
        call = "fcntl(F_NOCACHE)";
    } else {
        file_size = (size_t)info.st_size;
        if (size_given && file_size < size)
            file_size = size;
        size_t length;
        if (window_size(&opts, file_size, &length) != 0) {
            beyond = 1;
        } else if (iommap_map_region(fd, length, &opts, &addr, &call) == 0) {
            size = length;
            call = NULL;
        }
    }
    err = errno;
    if ((call != NULL || beyond) && fd >= 0)
        close(fd);
    Py_END_ALLOW_THREADS
    Py_XDECREF(encoded);
    if (beyond) {
        char msg[200];
        snprintf(msg, sizeof(msg),
                 "open: the window at offset %llu, length %llu passes the end of the file "
                 "(%zu bytes)",
                 (unsigned long long)opts.offset, (unsigned long long)opts.length, file_size);
        PyErr_SetString(st->out_of_bounds_error, msg);
        return NULL;
    }
    if (call != NULL)
        return iommap_err_os(st, "open", call, err, filename);

    /* Put the SIGBUS handler back in front if another was installed since. */
    if (iommap_guard_install() != 0) {
        err = errno;
        iommap_unmap_region(addr, size);
        close(fd);
        return iommap_err_os(st, "open", "sigaction()", err, NULL);
    }
    iommap_mapping *mapping =
        iommap_mapping_wrap(st->mapping_type, addr, size, iommap_mapping_writable(&opts));
    if (mapping == NULL) {
        close(fd);
        return NULL;
    }
    PyObject *handle = iommap_handle_new(st, fd, mapping, &opts, path);
    Py_DECREF(mapping);
    if (handle == NULL)
        close(fd);
    return handle;
}

static PyMethodDef module_functions[] = {
    {"open", (PyCFunction)(void (*)(void))iommap_open, METH_VARARGS | METH_KEYWORDS,
     "open(path, mode='read_write', *, private=False, lock=False, populate=False, "
     "nocache=False, create=False, truncate=False, size=None)\n--\n\n"
     "Map the whole file at `path` and return a MappedFile.\n\n"
     "mode is 'read', 'write' or 'read_write'. private=True maps copy-on-write (the file\n"
     "is never modified through the handle); lock=True mlocks the pages; populate=True\n"
     "prefaults them; create=True creates a missing file (0o644 before umask);\n"
     "truncate=True empties it first; size=N extends a shorter file to N bytes,\n"
     "reserving disk space."},
    {NULL, NULL, 0, NULL},
};

static int fetch_error(PyObject *errors, const char *name, PyObject **slot)
{
    *slot = PyObject_GetAttrString(errors, name);
    return *slot == NULL ? -1 : 0;
}

static int module_exec(PyObject *module)
{
    iommap_state *st = PyModule_GetState(module);
    PyObject *errors = PyImport_ImportModule("iommap._errors");
    if (errors == NULL)
        return -1;
    int rc = fetch_error(errors, "BadArgumentTypeError", &st->bad_type_error) ||
             fetch_error(errors, "BadArgumentValueError", &st->bad_value_error) ||
             fetch_error(errors, "ClosedError", &st->closed_error) ||
             fetch_error(errors, "OutOfBoundsError", &st->out_of_bounds_error) ||
             fetch_error(errors, "SigbusError", &st->sigbus_error) ||
             fetch_error(errors, "os_error", &st->os_error_factory);
    Py_DECREF(errors);
    if (rc != 0)
        return -1;

    st->mapping_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &iommap_mapping_spec, NULL);
    if (st->mapping_type == NULL)
        return -1;
    st->mapped_file_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &iommap_mapped_file_spec, NULL);
    if (st->mapped_file_type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "MappedFile", (PyObject *)st->mapped_file_type) != 0 ||
        PyModule_AddObjectRef(module, "Mapping", (PyObject *)st->mapping_type) != 0 ||
        PyModule_AddIntConstant(module, "GIL_RELEASE_BYTES", IOMMAP_GIL_RELEASE_BYTES) != 0)
        return -1;

    if (iommap_guard_install() != 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    rc = iommap_fork_handler_install();
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    iommap_state *st = PyModule_GetState(module);
    Py_VISIT(st->mapped_file_type);
    Py_VISIT(st->mapping_type);
    Py_VISIT(st->bad_type_error);
    Py_VISIT(st->bad_value_error);
    Py_VISIT(st->closed_error);
    Py_VISIT(st->out_of_bounds_error);
    Py_VISIT(st->sigbus_error);
    Py_VISIT(st->os_error_factory);
    return 0;
}

static int module_clear(PyObject *module)
{
    iommap_state *st = PyModule_GetState(module);
    Py_CLEAR(st->mapped_file_type);
    Py_CLEAR(st->mapping_type);
    Py_CLEAR(st->bad_type_error);
    Py_CLEAR(st->bad_value_error);
    Py_CLEAR(st->closed_error);
    Py_CLEAR(st->out_of_bounds_error);
    Py_CLEAR(st->sigbus_error);
    Py_CLEAR(st->os_error_factory);
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_gil
    /* Every handle field is guarded by the handle's own lock or atomic. */
    {Py_mod_gil, Py_MOD_GIL_NOT_USED},
#endif
    {0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "iommap._core",
    .m_doc = "iommap's C core; use the iommap package.",
    .m_size = sizeof(iommap_state),
    .m_methods = module_functions,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC PyInit__core(void)
{
    return PyModuleDef_Init(&module_def);
}
