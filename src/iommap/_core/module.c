/* The iommap._core module: its state, iommap.open(), and initialisation. */
#include "iommap.h"

#include <errno.h>
#include <fcntl.h>
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

static PyObject *iommap_open(PyObject *module, PyObject *args, PyObject *kwargs)
{
    static char *keywords[] = {"path",    "mode",   "private",  "lock", "populate",
                               "nocache", "create", "truncate", "size", NULL};
    iommap_state *st = PyModule_GetState(module);
    PyObject *path, *mode_obj = NULL, *size_obj = NULL;
    int private_ = 0, lock = 0, populate = 0, nocache = 0, create = 0, truncate = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O|O$ppppppO:open", keywords, &path, &mode_obj,
                                     &private_, &lock, &populate, &nocache, &create, &truncate,
                                     &size_obj))
        return NULL;

    iommap_map_options opts = {IOMMAP_READ_WRITE, private_, populate, nocache, lock};
    size_t size;
    int size_given;
    if (parse_mode(st, mode_obj, &opts.mode) != 0 ||
        parse_size(st, size_obj, &size, &size_given) != 0)
        return NULL;
    if (opts.mode == IOMMAP_READ && (create || truncate || size_given))
        return iommap_err_bad_value(st, "open: mode \"read\" cannot create, truncate or size "
                                        "a file");
    PyObject *encoded = encode_path(st, path);
    if (encoded == NULL)
        return NULL;

    /* A private mapping never writes the file, so it needs write access only
     * to set the file up (truncate, size). */
    int needs_write = opts.mode != IOMMAP_READ && (!private_ || truncate || size_given);
    int flags = (needs_write ? O_RDWR : O_RDONLY) | O_CLOEXEC | (create ? O_CREAT : 0) |
                (truncate ? O_TRUNC : 0);
    const char *call = NULL;
    int fd, err = 0;
    char *addr = NULL;
    struct stat info;
    Py_BEGIN_ALLOW_THREADS
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
        size_t length = (size_t)info.st_size;
        if (size_given && length < size)
            length = size;
        if (iommap_map_region(fd, length, &opts, &addr, &call) == 0) {
            size = length;
            call = NULL;
        }
    }
    err = errno;
    if (call != NULL && fd >= 0)
        close(fd);
    Py_END_ALLOW_THREADS
    Py_DECREF(encoded);
    if (call != NULL)
        return iommap_err_os(st, "open", call, err, path);

    /* Put the SIGBUS handler back in front if another was installed since. */
    if (iommap_guard_install() != 0) {
        err = errno;
        if (addr != NULL)
            munmap(addr, size);
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

static PyObject *iommap_rearm_guard(PyObject *module, PyObject *unused)
{
    (void)unused;
    if (iommap_guard_install() != 0)
        return iommap_err_os(PyModule_GetState(module), "rearm_guard", "sigaction()", errno, NULL);
    Py_RETURN_NONE;
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
    {"rearm_guard", iommap_rearm_guard, METH_NOARGS,
     "rearm_guard()\n--\n\n"
     "Put iommap's SIGBUS handler back in front of the process's handlers.\n\n"
     "iommap does this itself at import, at every open() and before every copy of\n"
     "64 KiB or more. Call it after installing a SIGBUS handler of your own (or\n"
     "enabling or disabling faulthandler) once your last open() is done, so that\n"
     "small reads and writes are guarded again. The handler that was in front is\n"
     "kept and still receives every SIGBUS that is not a fault of an iommap copy."},
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
