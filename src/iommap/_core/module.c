/* The iommap._core module: its state, its types and functions, and
 * initialisation. */
#include "iommap.h"

#include <errno.h>

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
     "nocache=False, create=False, truncate=False, size=None, offset=0, length=None)\n--\n\n"
     "Map the file at `path`, or a window of it, and return a MappedFile.\n\n"
     "path is a str, bytes or os.PathLike; or a file descriptor (an int) or an\n"
     "object with fileno(), which the handle duplicates (m.path is then None;\n"
     "create and truncate need a path; a file object's flush() is called\n"
     "first, so its buffered writes are mapped too). mode is 'read', 'write' or 'read_write'.\n"
     "private=True maps copy-on-write (the file is never modified through the\n"
     "handle); lock=True mlocks the pages; populate=True prefaults them;\n"
     "create=True creates a missing file (0o644 before umask); truncate=True\n"
     "empties it first; size=N extends a shorter file to N bytes, reserving disk\n"
     "space. offset= and length= map only [offset, offset + length) of the file\n"
     "(length None or 0: to its end); every position is then relative to the\n"
     "window, and any offset is accepted.\n\n"
     "A regular file or a block device is mapped; anything else (FIFO, socket,\n"
     "character device, /proc file) raises an iommap.Error naming its type,\n"
     "without ever blocking. A failed open leaves the file as it was."},
    {"rearm_guard", iommap_rearm_guard, METH_NOARGS,
     "rearm_guard()\n--\n\n"
     "Put iommap's SIGBUS handler back in front of the process's handlers.\n\n"
     "iommap does this itself at import, at every open() and at every call that\n"
     "releases the GIL (copies of 64 KiB or more, truncate, sync, ...). Call it\n"
     "after installing a SIGBUS handler of your own (or\n"
     "enabling or disabling faulthandler) once your last open() is done, so that\n"
     "small reads and writes are guarded again. The handler that was in front is\n"
     "kept and still receives every SIGBUS that is not a fault of an iommap copy."},
    {"file_cache_stat", (PyCFunction)(void (*)(void))iommap_file_cache_stat, METH_FASTCALL,
     iommap_file_cache_stat_doc},
    {"walker", iommap_walker_new, METH_VARARGS,
     "walker($module, action, offset, length, follow, one_fs, ignore, include,\n"
     "max_size, count_links, writeback, mincore, cap_fowner, py_match, result_type,\n"
     "make_error, fallback, match, on_progress, /)\n--\n\n"
     "The directory walk of iommap.pagecache.walk(), in C (private)."},
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
    st->walker_type = (PyTypeObject *)PyType_FromModuleAndSpec(module, &iommap_walker_spec, NULL);
    if (st->walker_type == NULL)
        return -1;
    st->mapped_file_type =
        (PyTypeObject *)PyType_FromModuleAndSpec(module, &iommap_mapped_file_spec, NULL);
    if (st->mapped_file_type == NULL)
        return -1;
    if (PyModule_AddObjectRef(module, "MappedFile", (PyObject *)st->mapped_file_type) != 0 ||
        PyModule_AddObjectRef(module, "Mapping", (PyObject *)st->mapping_type) != 0 ||
        PyModule_AddObjectRef(module, "Walker", (PyObject *)st->walker_type) != 0 ||
        PyModule_AddIntConstant(module, "GIL_RELEASE_BYTES", IOMMAP_GIL_RELEASE_BYTES) != 0 ||
        PyModule_AddIntConstant(module, "PAGE_SIZE", (long)iommap_page_size()) != 0)
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

#define VISIT_FIELD(field) Py_VISIT(st->field);
#define CLEAR_FIELD(field) Py_CLEAR(st->field);

static int module_traverse(PyObject *module, visitproc visit, void *arg)
{
    iommap_state *st = PyModule_GetState(module);
    IOMMAP_STATE_OBJECTS(VISIT_FIELD)
    return 0;
}

static int module_clear(PyObject *module)
{
    iommap_state *st = PyModule_GetState(module);
    IOMMAP_STATE_OBJECTS(CLEAR_FIELD)
    return 0;
}

static void module_free(void *module)
{
    module_clear((PyObject *)module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_mod_multiple_interpreters
    /* Every interpreter gets its own module object, state, types and
     * exception classes; what the core shares across interpreters is
     * process-wide by nature and safe in parallel (see iommap.h). */
    {Py_mod_multiple_interpreters, Py_MOD_PER_INTERPRETER_GIL_SUPPORTED},
#endif
    /* No Py_mod_gil: a free-threaded CPython re-enables the GIL on import,
     * since the suite has never run on a free-threaded build. */
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
