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

#if defined(__linux__)
#ifndef MADV_FREE
#define MADV_FREE 8
#endif
#ifndef MADV_REMOVE
#define MADV_REMOVE 9
#endif
#ifndef MADV_DONTFORK
#define MADV_DONTFORK 10
#endif
#ifndef MADV_DOFORK
#define MADV_DOFORK 11
#endif
#ifndef MADV_HUGEPAGE
#define MADV_HUGEPAGE 14
#endif
#ifndef MADV_NOHUGEPAGE
#define MADV_NOHUGEPAGE 15
#endif
#ifndef MADV_DONTDUMP
#define MADV_DONTDUMP 16
#endif
#ifndef MADV_DODUMP
#define MADV_DODUMP 17
#endif
#ifndef MADV_COLD
#define MADV_COLD 20
#endif
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#endif

/* FreeBSD names the core-dump pair differently. */
#if !defined(MADV_DONTDUMP) && defined(MADV_NOCORE)
#define MADV_DONTDUMP MADV_NOCORE
#define MADV_DODUMP   MADV_CORE
#endif

#define HINT(name, macro, rules)   {name, macro, "madvise(" #macro ")", rules}
#define ABSENT(name, macro, rules) {name, IOMMAP_HINT_ABSENT, "madvise(" #macro ")", rules}

static const iommap_hint hints[] = {
    HINT("normal", MADV_NORMAL, 0),
    HINT("random", MADV_RANDOM, 0),
    HINT("sequential", MADV_SEQUENTIAL, 0),
    HINT("willneed", MADV_WILLNEED, 0),
    HINT("dontneed", MADV_DONTNEED, IOMMAP_HINT_KEEPS_PRIVATE),
#ifdef MADV_HUGEPAGE
    HINT("hugepage", MADV_HUGEPAGE, 0),
    HINT("nohugepage", MADV_NOHUGEPAGE, 0),
#else
    ABSENT("hugepage", MADV_HUGEPAGE, 0),
    ABSENT("nohugepage", MADV_NOHUGEPAGE, 0),
#endif
#ifdef MADV_FREE
    HINT("free", MADV_FREE, IOMMAP_HINT_PRIVATE_ONLY | IOMMAP_HINT_INWARD),
#else
    ABSENT("free", MADV_FREE, IOMMAP_HINT_PRIVATE_ONLY | IOMMAP_HINT_INWARD),
#endif
#ifdef MADV_COLD
    HINT("cold", MADV_COLD, 0),
#else
    ABSENT("cold", MADV_COLD, 0),
#endif
#ifdef MADV_PAGEOUT
    HINT("pageout", MADV_PAGEOUT, 0),
#else
    ABSENT("pageout", MADV_PAGEOUT, 0),
#endif
#ifdef MADV_POPULATE_READ
    HINT("populate_read", MADV_POPULATE_READ, 0),
    HINT("populate_write", MADV_POPULATE_WRITE, IOMMAP_HINT_NEEDS_WRITE),
#else
    ABSENT("populate_read", MADV_POPULATE_READ, 0),
    ABSENT("populate_write", MADV_POPULATE_WRITE, IOMMAP_HINT_NEEDS_WRITE),
#endif
#ifdef MADV_DONTDUMP
    HINT("dontdump", MADV_DONTDUMP, 0),
    HINT("dodump", MADV_DODUMP, 0),
#else
    ABSENT("dontdump", MADV_DONTDUMP, 0),
    ABSENT("dodump", MADV_DODUMP, 0),
#endif
#ifdef MADV_DONTFORK
    HINT("dontfork", MADV_DONTFORK, IOMMAP_HINT_DONTFORK),
    HINT("dofork", MADV_DOFORK, IOMMAP_HINT_DOFORK),
#else
    ABSENT("dontfork", MADV_DONTFORK, IOMMAP_HINT_DONTFORK),
    ABSENT("dofork", MADV_DOFORK, IOMMAP_HINT_DOFORK),
#endif
#ifdef MADV_REMOVE
    HINT("remove", MADV_REMOVE,
         IOMMAP_HINT_NEEDS_WRITE | IOMMAP_HINT_SHARED_ONLY | IOMMAP_HINT_INWARD),
#else
    ABSENT("remove", MADV_REMOVE,
           IOMMAP_HINT_NEEDS_WRITE | IOMMAP_HINT_SHARED_ONLY | IOMMAP_HINT_INWARD),
#endif
};

#define HINT_COUNT (sizeof(hints) / sizeof(hints[0]))

const iommap_hint *iommap_hint_find(PyObject *name)
{
    for (size_t i = 0; i < HINT_COUNT; i++)
        if (PyUnicode_CompareWithASCIIString(name, hints[i].name) == 0)
            return &hints[i];
    return NULL;
}
