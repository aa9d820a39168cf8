/* The file behind a handle (files.c): opening without blocking, what can be
 * mapped and at what size, growing with undo, durability.  None of these
 * needs the GIL.  Each returns 0 (or a descriptor), or -1 with errno set. */
#ifndef IOMMAP_FILES_H
#define IOMMAP_FILES_H

#include "iommap.h"

#include <sys/stat.h>

typedef enum { IOMMAP_FILE_REGULAR = 0, IOMMAP_FILE_BLOCK_DEVICE = 1 } iommap_file_kind;

/* Opens `path` with `flags` (O_RDONLY or O_RDWR, maybe O_CREAT) without ever
 * blocking: O_NONBLOCK, which iommap_clear_nonblock() clears once the file
 * is known to be mappable.  A FIFO, socket, character device or directory
 * seen before opening is refused without opening it.  *created says whether
 * this call made the file.  On failure, *what may name the file type. */
int iommap_open_file(const char *path, int flags, int *created, const char **what);
int iommap_clear_nonblock(int fd);

/* The one decision of what can be mapped, from the file's fstat: 0 for a
 * regular file (but a pseudo-file of /proc, /sys...) or a block device;
 * else -1 with errno ENODEV (ENXIO for a socket, EISDIR for a directory)
 * and *what naming the type.  open() and the page-cache counts ask it. */
int iommap_file_mappable(int fd, const struct stat *st, const char **what);

/* What `fd` is and how many bytes of it map: a regular file's st_size, a
 * block device's size.  Anything else fails with ENODEV (EISDIR for a
 * directory, ENXIO for a socket) and *what naming its type ("a FIFO", "a
 * /proc pseudo-file"). */
int iommap_file_size(int fd, iommap_file_kind *kind, size_t *size, const char **what);

/* Grows a regular file from old_size to size, reserving the space; on
 * failure the file is cut back to old_size, which frees whatever the failed
 * reservation took, and its content is as it was. */
int iommap_grow_file(int fd, size_t old_size, size_t size);

/* open(truncate=True, size=N), in two steps so that only the second, which
 * needs no new space, can destroy anything: reserve every block of [0, N)
 * (undone on failure as iommap_grow_file does), then empty the file and
 * reserve [0, N) again from the blocks just freed. */
int iommap_reserve_whole(int fd, size_t old_size, size_t size);
int iommap_refill_with_zeros(int fd, size_t size);

/* Removes the file a failed open() created, if `path` still names it. */
void iommap_remove_created(const char *path, int fd);

/* fsync of a directory, so that an entry made in it survives a power cut. */
int iommap_sync_directory(const char *dir);
/* The directory part of `path` ("." for none), PyMem_RawMalloc'ed. */
char *iommap_parent_directory(const char *path);

/* What open() does to a descriptor once it has one: decide what it is
 * (iommap_file_size), empty and size it as asked, and map it (the window
 * the options name, which must lie inside the file); a failure
 * leaves the file's size, content and reserved space as they were (see
 * iommap_reserve_whole for the one window where it cannot). */
typedef struct {
    int truncate;   /* empty the file first */
    int size_given; /* extend it to at least `size` */
    size_t size;
    int nocache;
    const iommap_map_options *opts;
} iommap_setup;

typedef struct {
    iommap_file_kind kind;
    char *addr;               /* the mapping (NULL for 0 bytes) */
    size_t length;            /* its size */
    int size_changed;         /* this call changed the file's size */
    const char *call;         /* on failure: the system call that failed */
    const char *refused_kind; /* or: the file type that cannot be mapped */
    int beyond;               /* or: the window passes the end of the file */
    size_t file_size;         /* the file's size, for that message */
} iommap_setup_result;

int iommap_setup_file(int fd, const iommap_setup *in, iommap_setup_result *out);

#endif
