/* MappedFile.advise and the hints it knows: each name, its madvise() advice
 * where the platform has one, and what iommap checks before passing it on.
 *
 * A hint the platform's headers lack is still known by name, so asking for
 * it is a clear ENOTSUP naming it, never badarg and never a silent no-op.
 * On Linux the advice numbers are part of the kernel ABI, so a hint newer
 * than the C library's headers is passed by number and the running kernel
 * decides: an older kernel answers EINVAL, which is raised as such. */
#include "hints.h"
#include "handle.h"

#include <stdio.h>
#include <sys/mman.h>

/* FreeBSD names the core-dump pair differently. */
#if !defined(MADV_DONTDUMP) && defined(MADV_NOCORE)
#define MADV_DONTDUMP MADV_NOCORE
#define MADV_DODUMP   MADV_CORE
#endif

/* The advice of a hint the headers lack: its Linux number, else absent. */
#if defined(__linux__)
#define FALLBACK(number) (number)
#else
#define FALLBACK(number) IOMMAP_HINT_ABSENT
#endif

#ifndef MADV_FREE
#define MADV_FREE FALLBACK(8)
#endif
#ifndef MADV_REMOVE
#define MADV_REMOVE FALLBACK(9)
#endif
#ifndef MADV_DONTFORK
#define MADV_DONTFORK FALLBACK(10)
#endif
#ifndef MADV_DOFORK
#define MADV_DOFORK FALLBACK(11)
#endif
#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE FALLBACK(14)
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE FALLBACK(15)
#endif
#ifndef MADV_DONTDUMP
#define MADV_DONTDUMP FALLBACK(16)
#endif
#ifndef MADV_DODUMP
#define MADV_DODUMP FALLBACK(17)
#endif
#ifndef MADV_COLD
#define MADV_COLD FALLBACK(20)
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT FALLBACK(21)
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ FALLBACK(22)
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE FALLBACK(23)
#endif

#define HINT(name, macro, rules) {name, macro, "madvise(" #macro ")", rules}

static const iommap_hint hints[] = {
    HINT("normal", MADV_NORMAL, 0),
    HINT("random", MADV_RANDOM, 0),
    HINT("sequential", MADV_SEQUENTIAL, 0),
    HINT("willneed", MADV_WILLNEED, 0),
    HINT("dontneed", MADV_DONTNEED, IOMMAP_HINT_KEEPS_PRIVATE),
    HINT("hugepage", MADV_HUGEPAGE, 0),
    HINT("nohugepage", MADV_NOHUGEPAGE, 0),
    HINT("free", MADV_FREE, IOMMAP_HINT_PRIVATE_ONLY | IOMMAP_HINT_INWARD),
    HINT("cold", MADV_COLD, 0),
    HINT("pageout", MADV_PAGEOUT, 0),
    HINT("populate_read", MADV_POPULATE_READ, 0),
    HINT("populate_write", MADV_POPULATE_WRITE, IOMMAP_HINT_NEEDS_WRITE),
    HINT("dontdump", MADV_DONTDUMP, 0),
    HINT("dodump", MADV_DODUMP, 0),
    HINT("dontfork", MADV_DONTFORK, IOMMAP_HINT_DONTFORK),
    HINT("dofork", MADV_DOFORK, IOMMAP_HINT_DOFORK),
    HINT("remove", MADV_REMOVE,
         IOMMAP_HINT_NEEDS_WRITE | IOMMAP_HINT_SHARED_ONLY | IOMMAP_HINT_INWARD),
};

#define HINT_COUNT (sizeof(hints) / sizeof(hints[0]))

const iommap_hint *iommap_hint_find(PyObject *name)
{
    for (size_t i = 0; i < HINT_COUNT; i++)
        if (PyUnicode_CompareWithASCIIString(name, hints[i].name) == 0)
            return &hints[i];
    return NULL;
}

/* ---- MappedFile.advise -------------------------------------------------- */

static const iommap_hint *hint_of(iommap_handle *h, PyObject *name)
{
    if (!PyUnicode_Check(name)) {
        iommap_err_bad_type(IOMMAP_STATE(h), "advise: hint must be a str, not %.100s",
                            Py_TYPE(name)->tp_name);
        return NULL;
    }
    const iommap_hint *hint = iommap_hint_find(name);
    if (hint == NULL)
        iommap_err_bad_value(IOMMAP_STATE(h),
                             "advise: hint must be one of " IOMMAP_HINT_LIST ", not %R", name);
    return hint;
}

/* The advice a known hint gives on this handle, or -1 with the exception
 * that refuses it: the platform lacks it, or the handle's mode or kind
 * forbids it. */
static int advice_for(iommap_handle *h, const iommap_hint *hint, int *advice)
{
    char why[160];
    if (hint->advice == IOMMAP_HINT_ABSENT) {
        snprintf(why, sizeof(why), "hint \"%s\" is not available on this platform (no %s)",
                 hint->name, hint->call);
        iommap_err_errno(IOMMAP_STATE(h), ENOTSUP, "advise", why);
        return -1;
    }
    const char *refusal = NULL;
    if ((hint->rules & IOMMAP_HINT_NEEDS_WRITE) && !IOMMAP_CAN_WRITE(h->opts.mode))
        refusal = "needs a handle that may write";
    else if ((hint->rules & IOMMAP_HINT_PRIVATE_ONLY) && !h->opts.private_)
        refusal = "applies to private mappings only: it would discard the file's pages";
    else if ((hint->rules & IOMMAP_HINT_SHARED_ONLY) && h->opts.private_)
        refusal = "changes the file, which a private mapping never does";
    if (refusal != NULL) {
        snprintf(why, sizeof(why), "hint \"%s\" %s", hint->name, refusal);
        iommap_err_refused(IOMMAP_STATE(h), "advise", why);
        return -1;
    }
    *advice = hint->advice;
    /* On a private mapping MADV_DONTNEED throws this process's own changes
     * away; a hint must never lose data. */
    if ((hint->rules & IOMMAP_HINT_KEEPS_PRIVATE) && h->opts.private_)
        *advice = IOMMAP_MADV_PRIVATE_DONTNEED;
    return 0;
}

const char iommap_mf_advise_doc[] =
    "advise($self, offset, length, hint, /)\n--\n\n"
    "Tell the kernel how the range will be used (madvise).\n\n"
    "hint is 'normal', 'random', 'sequential', 'willneed', 'dontneed', 'hugepage',\n"
    "'nohugepage', 'free', 'cold', 'pageout', 'populate_read', 'populate_write',\n"
    "'dontdump', 'dodump', 'dontfork', 'dofork' or 'remove'; one this platform\n"
    "lacks is an OSError naming it (ENOTSUP, or EINVAL from an older kernel).\n"
    "length 0 means to the end of the file; the range is widened to whole pages,\n"
    "except for 'free' and 'remove', which discard data: they act on the whole\n"
    "pages inside it only. On a private mapping 'dontneed' never discards this\n"
    "process's own changes.";

PyObject *iommap_mf_advise(iommap_handle *h, PyObject *const *args, Py_ssize_t nargs)
{
    iommap_range r;
    const iommap_hint *hint = NULL;
    int advice;
    if (iommap_check_nargs("advise", nargs, 3) ||
        iommap_to_u64(h, "advise", "offset", args[0], &r.offset) ||
        iommap_to_u64(h, "advise", "length", args[1], &r.length) ||
        (hint = hint_of(h, args[2])) == NULL || iommap_check_usable(h, "advise", 0) ||
        advice_for(h, hint, &advice))
        return NULL;
    int inward = (hint->rules & IOMMAP_HINT_INWARD) != 0;
    PyObject *done =
        iommap_call_on_range(h, "advise", r, args[0], args[1], madvise, hint->call, advice, inward);
    /* Set after the hint took: a child forked in between still has the
     * pages.  Cleared by a "dofork" from the start to the end only: one over
     * part of the mapping may leave other pages out of a child. */
    if (done != NULL && (hint->rules & IOMMAP_HINT_DONTFORK))
        atomic_store_explicit(&h->dontfork, 1, memory_order_relaxed);
    if (done != NULL && (hint->rules & IOMMAP_HINT_DOFORK) && r.offset == 0 && r.length == 0)
        atomic_store_explicit(&h->dontfork, 0, memory_order_relaxed);
    return done;
}
