/* advise()'s hint table (hints.c). */
#ifndef IOMMAP_HINTS_H
#define IOMMAP_HINTS_H

#include "iommap.h"

/* What iommap checks before passing a hint to madvise(). */
enum {
    /* Only the whole pages inside the range: the hint throws data away, so
     * it must never reach bytes outside what the caller named. */
    IOMMAP_HINT_INWARD = 1,
    /* A "read" handle refuses it (eacces): it writes or discards file data. */
    IOMMAP_HINT_NEEDS_WRITE = 2,
    /* A shared handle refuses it (eacces): it would discard file pages. */
    IOMMAP_HINT_PRIVATE_ONLY = 4,
    /* A private handle refuses it (eacces): it changes the file itself. */
    IOMMAP_HINT_SHARED_ONLY = 8,
    /* On a private mapping it would discard this process's own changes, so
     * a gentler advice replaces it there ("dontneed" becomes "cold"). */
    IOMMAP_HINT_KEEPS_PRIVATE = 16,
    /* A forked child does not inherit the pages (and cannot use the handle). */
    IOMMAP_HINT_DONTFORK = 32,
    /* Undoes IOMMAP_HINT_DONTFORK. */
    IOMMAP_HINT_DOFORK = 64,
};

/* The advice of a hint this platform does not have. */
#define IOMMAP_HINT_ABSENT (-1)

typedef struct {
    const char *name; /* as advise() takes it */
    int advice;       /* MADV_..., or IOMMAP_HINT_ABSENT */
    const char *call; /* "madvise(MADV_...)", for messages */
    unsigned rules;
} iommap_hint;

/* The hint named by the str `name`, or NULL if iommap knows no such hint. */
const iommap_hint *iommap_hint_find(PyObject *name);

/* Every hint's name, for messages. */
#define IOMMAP_HINT_LIST                                                                           \
    "\"normal\", \"random\", \"sequential\", \"willneed\", \"dontneed\", \"hugepage\", "           \
    "\"nohugepage\", \"free\", \"cold\", \"pageout\", \"populate_read\", \"populate_write\", "     \
    "\"dontdump\", \"dodump\", \"dontfork\", \"dofork\", \"remove\""

#endif
