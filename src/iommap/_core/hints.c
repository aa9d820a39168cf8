/* The hints advise() knows: each name, its madvise() advice where the
 * platform has one, and what iommap checks before passing it on.
 *
 * A hint the platform's headers lack is still known by name, so asking for
 * it is a clear ENOTSUP naming it, never badarg and never a silent no-op.
 * On Linux the advice numbers are part of the kernel ABI, so a hint newer
 * than the C library's headers is passed by number and the running kernel
 * decides: an older kernel answers EINVAL, which is raised as such. */
#include "hints.h"

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
