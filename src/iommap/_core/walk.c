/* The directory walk behind iommap.pagecache.walk() and the page-cache
 * commands: every file under the paths given, counted (and warmed or
 * evicted) in C.
 *
 * One Walker object per walk.  Python hands it one path at a time (start())
 * and iterates over it for that path's results.  The walk itself runs with
 * the GIL released, a batch at a time: directories are read whole
 * (getdents64 on Linux, readdir elsewhere), sorted by name, and visited
 * depth first from an explicit stack, so a tree of any depth walks without
 * recursion.  Every open is relative to its directory's descriptor (openat,
 * fstatat): no path is resolved twice, and paths longer than PATH_MAX are
 * walked as well.  At most WALK_OPEN_DIRS directory descriptors stay open;
 * a deeper directory's ancestors are closed and opened again on the way
 * back up, checked to be the same directories.
 *
 * Per file: openat, fstat, cachestat(2) (or mincore(2) on a mapping where the
 * kernel has no cachestat), close; evict adds posix_fadvise(DONTNEED), warm
 * a populate read.  The filters decide before a file is opened where they
 * can: ignored and not included names, symlinks not followed, directories on
 * another file system, each inode once.  What the walk cannot decide in C
 * (a device or a FIFO named at the top, a name matched by a pattern with
 * brackets) goes back to Python, which decides as it always has.
 */
#include "iommap.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#if defined(__linux__)
#include <sys/syscall.h>
#endif

/* Directory descriptors held open at once, however deep the tree. */
#define WALK_OPEN_DIRS 128
/* Results made per batch, and entries looked at, before the GIL is taken
 * back (to hand the results over and see Ctrl-C). */
#define WALK_BATCH       256
#define WALK_BATCH_STEPS 4096
/* mincore(2) and the populate read work on this much of a file at a time. */
#define WALK_MINCORE_CHUNK (256u << 20)
#define WALK_WARM_CHUNK    (8u << 20)
#define WALK_PREAD_MAX     (1u << 20)

enum { ACTION_RESIDENCY = 0, ACTION_WARM = 1, ACTION_EVICT = 2 };
/* What a record is. */
enum {
    REC_FILE = 0,     /* a file counted */
    REC_ERROR = 1,    /* err: an errno; WALK_SIGBUS: the file shrank */
    REC_FALLBACK = 2, /* Python decides (not a regular file, ...) */
};
#define WALK_SIGBUS (-1)
/* The totals, in pagecache.Totals' order (seconds aside). */
enum {
    T_FILES,
    T_DIRS,
    T_ERRORS,
    T_SKIPPED,
    T_SIZE,
    T_PAGES,
    T_RESIDENT,
    T_RESIDENT_BYTES,
    T_UNKNOWN,
    T_COUNT
};

typedef struct {
    int kind;
    int err;
    int top;       /* the path is the one given to start() */
    size_t path;   /* offset in the walker's arena */
    size_t length; /* of the path */
    uint64_t size, start, end;
    int known;    /* residency told */
    int has_stat; /* cachestat's extra counts */
    int has_before;
    int before_known;
    uint64_t resident, before;
    uint64_t extra[4]; /* dirty, writeback, evicted, recently evicted */
} walk_record;

typedef struct {
    uint32_t name; /* offset in the level's pool */
    uint16_t length;
    unsigned char type; /* DT_* */
} walk_entry;

typedef struct {
    int fd; /* -1 once closed to stay within WALK_OPEN_DIRS */
    dev_t dev;
    ino_t ino;
    char *pool;
    size_t pool_len, pool_cap;
    walk_entry *entries;
    size_t count, cap, next;
    size_t path_len; /* this directory's path in the walker's path buffer */
    int pseudo;      /* on a pseudo-file system (/proc, /sys...) */
} walk_level;

/* A set of (device, inode) pairs, open addressing. */
typedef struct {
    uint64_t *keys; /* pairs: dev, ino + 1 (0 marks a free slot) */
    size_t cap, used;
} walk_set;

/* A pattern: code points, for Python's fnmatch.fnmatchcase semantics. */
typedef struct {
    Py_UCS4 *chars;
    Py_ssize_t len;
} walk_pattern;

typedef struct {
    PyObject_HEAD
    /* options */
    int action, follow, one_fs, count_links, writeback, mincore, cap_fowner;
    int py_match; /* patterns Python must match (brackets, another encoding) */
    uint64_t offset, length, max_size;
    int to_end, has_max;
    walk_pattern *ignore, *include;
    Py_ssize_t n_ignore, n_include;
    PyObject *result_type, *make_error, *fallback, *match, *on_progress;
    /* the walk */
    walk_set files, dirs;
    uint64_t totals[T_COUNT];
    walk_level *levels;
    size_t depth, levels_cap, levels_used, open_dirs;
    char *path; /* the current directory's path (NUL-terminated) */
    size_t path_cap;
    PyObject *given;   /* the path given to start(), as given */
    PyObject *encoded; /* the same as bytes */
    int given_bytes;   /* results' paths are bytes */
    int top_pending;
    dev_t device; /* the top path's file system */
    /* records of this batch */
    walk_record *records;
    size_t n_records, next_record;
    char *arena;
    size_t arena_len, arena_cap;
    unsigned char *vec; /* mincore's vector */
    char *buffer;       /* warm's pread */
    int failed;         /* out of memory in the released section */
    PyThreadState *ts;  /* while released */
    PyObject *pending;  /* an exception to raise once the batch is out */
    PyObject *current;
} walker;

/* Keeps the exception being raised (for after the batch's results). */
static PyObject *take_exception(void)
{
#if PY_VERSION_HEX >= 0x030C0000
    return PyErr_GetRaisedException();
#else
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL && value != NULL)
        PyException_SetTraceback(value, tb);
    Py_XDECREF(type);
    Py_XDECREF(tb);
    return value;
#endif
}

static void raise_exception(PyObject *exc)
{
#if PY_VERSION_HEX >= 0x030C0000
    PyErr_SetRaisedException(exc);
#else
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc, PyException_GetTraceback(exc));
#endif
}

/* ---- small containers --------------------------------------------------- */

static int grow(void **buf, size_t *cap, size_t want, size_t item)
{
    if (want <= *cap)
        return 0;
    size_t n = *cap ? *cap : 16;
    while (n < want)
        n *= 2;
    void *p = realloc(*buf, n * item);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static size_t set_slot(const walk_set *s, uint64_t dev, uint64_t ino)
{
    uint64_t h = (dev * 0x9E3779B97F4A7C15ull) ^ (ino * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    size_t mask = s->cap - 1, i = (size_t)h & mask;
    while (s->keys[2 * i + 1] != 0 && (s->keys[2 * i] != dev || s->keys[2 * i + 1] != ino + 1))
        i = (i + 1) & mask;
    return i;
}

/* 1 if (dev, ino) was in the set, 0 if it was added, -1 out of memory. */
static int set_add(walk_set *s, uint64_t dev, uint64_t ino)
{
    if (2 * (s->used + 1) > s->cap) {
        walk_set bigger = {NULL, s->cap ? 2 * s->cap : 1024, 0};
        bigger.keys = calloc(2 * bigger.cap, sizeof(uint64_t));
        if (bigger.keys == NULL)
            return -1;
        for (size_t i = 0; i < s->cap; i++)
            if (s->keys[2 * i + 1] != 0) {
                size_t j = set_slot(&bigger, s->keys[2 * i], s->keys[2 * i + 1] - 1);
                bigger.keys[2 * j] = s->keys[2 * i];
                bigger.keys[2 * j + 1] = s->keys[2 * i + 1];
            }
        bigger.used = s->used;
        free(s->keys);
        *s = bigger;
    }
    size_t i = set_slot(s, dev, ino);
    if (s->keys[2 * i + 1] != 0)
        return 1;
    s->keys[2 * i] = dev;
    s->keys[2 * i + 1] = ino + 1;
    s->used++;
    return 0;
}

/* ---- names: Python's code points and its fnmatchcase ------------------- */

/* `name` decoded as os.fsdecode does on a UTF-8 file system: each byte of
 * an invalid sequence becomes U+DC80..U+DCFF (surrogateescape).  Returns
 * the number of code points written to out (room for len). */
static size_t decode_name(const unsigned char *s, size_t len, Py_UCS4 *out)
{
    size_t i = 0, n = 0;
    while (i < len) {
        unsigned c = s[i];
        size_t need = 0;
        Py_UCS4 cp = 0, min = 0;
        if (c < 0x80) {
            out[n++] = c;
            i++;
            continue;
        }
        if (c >= 0xC2 && c <= 0xDF)
            need = 1, cp = c & 0x1F, min = 0x80;
        else if (c >= 0xE0 && c <= 0xEF)
            need = 2, cp = c & 0x0F, min = 0x800;
        else if (c >= 0xF0 && c <= 0xF4)
            need = 3, cp = c & 0x07, min = 0x10000;
        size_t k = 0;
        if (need) {
            for (k = 1; k <= need && i + k < len && (s[i + k] & 0xC0) == 0x80; k++)
                cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (need && k == need + 1 && cp >= min && cp <= 0x10FFFF &&
            !(cp >= 0xD800 && cp <= 0xDFFF)) {
            out[n++] = cp;
            i += need + 1;
        } else {
            out[n++] = 0xDC00 + c;
            i++;
        }
    }
    return n;
}

/* fnmatchcase for patterns of literals, '*' and '?' (brackets go to
 * Python): '*' matches any run of code points, '?' any one. */
static int wild_match(const Py_UCS4 *p, size_t pn, const Py_UCS4 *s, size_t sn)
{
    size_t pi = 0, si = 0, star = (size_t)-1, mark = 0;
    while (si < sn) {
        if (pi < pn && (p[pi] == '?' || p[pi] == s[si])) {
            pi++;
            si++;
        } else if (pi < pn && p[pi] == '*') {
            star = pi++;
            mark = si;
        } else if (star != (size_t)-1) {
            pi = star + 1;
            si = ++mark;
        } else {
            return 0;
        }
    }
    while (pi < pn && p[pi] == '*')
        pi++;
    return pi == pn;
}

/* Whether `name` matches one of the patterns: 1, 0, or -1 with a Python
 * exception (the walker's Python matcher failed; needs w->ts). */
static int matches_any(walker *w, const walk_pattern *pats, Py_ssize_t n, int which,
                       const char *name, size_t len)
{
    if (w->py_match) {
        PyEval_RestoreThread(w->ts);
        int rc = -1;
        PyObject *arg = PyBytes_FromStringAndSize(name, (Py_ssize_t)len);
        if (arg != NULL) {
            PyObject *r = PyObject_CallFunction(w->match, "iO", which, arg);
            Py_DECREF(arg);
            if (r != NULL) {
                rc = PyObject_IsTrue(r);
                Py_DECREF(r);
            }
        }
        w->ts = PyEval_SaveThread();
        return rc;
    }
    Py_UCS4 buf[NAME_MAX + 1];
    Py_UCS4 *cps = len <= NAME_MAX ? buf : malloc(len * sizeof(Py_UCS4));
    if (cps == NULL)
        return 0;
    size_t cn = decode_name((const unsigned char *)name, len, cps);
    int hit = 0;
    for (Py_ssize_t i = 0; i < n && !hit; i++)
        hit = wild_match(pats[i].chars, (size_t)pats[i].len, cps, cn);
    if (cps != buf)
        free(cps);
    return hit;
}

/* ---- records ------------------------------------------------------------ */

/* A new record for the path `dir` + "/" + `name` (name NULL: dir alone;
 * top: the path given), or NULL out of memory. */
static walk_record *new_record(walker *w, int kind, const char *name, size_t name_len, int top)
{
    /* records has WALK_BATCH + 1 slots: a batch stops at WALK_BATCH, and
     * no step makes more than one. */
    walk_record *r = &w->records[w->n_records];
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->top = top;
    r->path = w->arena_len;
    if (!top) {
        size_t dir_len = w->depth ? w->levels[w->depth - 1].path_len : 0;
        int sep = name != NULL && dir_len > 0 && w->path[dir_len - 1] != '/';
        size_t len = dir_len + (size_t)sep + (name ? name_len : 0);
        if (grow((void **)&w->arena, &w->arena_cap, w->arena_len + len, 1) < 0) {
            w->failed = 1;
            return NULL;
        }
        r->path = w->arena_len;
        r->length = len;
        memcpy(w->arena + w->arena_len, w->path, dir_len);
        if (sep)
            w->arena[w->arena_len + dir_len] = '/';
        if (name)
            memcpy(w->arena + w->arena_len + dir_len + sep, name, name_len);
        w->arena_len += len;
    }
    w->n_records++;
    return r;
}

static void record_error(walker *w, const char *name, size_t name_len, int top, int err)
{
    walk_record *r = new_record(w, REC_ERROR, name, name_len, top);
    if (r != NULL)
        r->err = err;
    w->totals[T_ERRORS]++;
}

/* ---- counting a file ---------------------------------------------------- */

typedef struct {
    int known, has_stat;
    uint64_t resident, extra[4];
} walk_count;

/* Whether mincore(2) tells the truth about the file (see
 * pagecache._mincore_visible): Linux shows the page cache only to the owner,
 * to who may write the file, and to CAP_FOWNER. */
static int mincore_visible(walker *w, int dirfd, const char *name, const struct stat *sb)
{
#if defined(__linux__)
    if (sb->st_uid == geteuid() || w->cap_fowner)
        return 1;
    return faccessat(dirfd, name, W_OK, AT_EACCESS) == 0;
#else
    (void)w, (void)dirfd, (void)name, (void)sb;
    return 1;
#endif
}

static int progress(walker *w, const walk_record *where, uint64_t done, uint64_t total, int call);

/* Counts [start, end) of the open file: 0, an errno, or -2 interrupted. */
static int count_file(walker *w, int fd, int dirfd, const char *name, const struct stat *sb,
                      uint64_t start, uint64_t end, walk_count *c, const walk_record *where)
{
    memset(c, 0, sizeof *c);
    c->known = 1;
    if (!w->mincore) {
        uint64_t counts[5] = {0, 0, 0, 0, 0};
        int rc = 0;
        if (end > start && iommap_platform_cachestat(fd, start, end - start, counts) != 0)
            rc = errno;
        if (rc == 0) {
            c->has_stat = 1;
            c->resident = counts[0];
            memcpy(c->extra, counts + 1, sizeof c->extra);
            return 0;
        }
        if (rc == EPERM) {
            c->known = 0;
            return 0;
        }
        if (rc != ENOSYS)
            return rc;
        w->mincore = 1; /* from now on, for this walk */
    }
    if (!mincore_visible(w, dirfd, name, sb)) {
        c->known = 0;
        return 0;
    }
    size_t page = iommap_page_size();
    if (w->vec == NULL && (w->vec = malloc(WALK_MINCORE_CHUNK / page)) == NULL)
        return ENOMEM;
    for (uint64_t pos = start; pos < end;) {
        size_t n = end - pos < WALK_MINCORE_CHUNK ? (size_t)(end - pos) : WALK_MINCORE_CHUNK;
        void *addr = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, (off_t)pos);
        if (addr == MAP_FAILED)
            return errno;
        int rc = iommap_platform_mincore(addr, n, w->vec) == 0 ? 0 : errno;
        munmap(addr, n);
        if (rc != 0)
            return rc;
        for (size_t i = 0; i < (n + page - 1) / page; i++)
            c->resident += w->vec[i] & 1;
        pos += n;
        /* mincore on a sparse range looks up every page: Ctrl-C is seen
         * between two chunks. */
        if (pos < end && progress(w, where, 0, 0, 0) != 0)
            return -2;
    }
    return 0;
}

/* The path of a record, as a str or bytes as the path given was. */
static PyObject *record_path(walker *w, const walk_record *r)
{
    if (r->top)
        return Py_NewRef(w->given);
    if (w->given_bytes)
        return PyBytes_FromStringAndSize(w->arena + r->path, (Py_ssize_t)r->length);
    return PyUnicode_DecodeFSDefaultAndSize(w->arena + r->path, (Py_ssize_t)r->length);
}

/* Calls on_progress(path, done, total), if given, and sees Ctrl-C, with the
 * GIL taken back for it: 0, or -1 with the exception kept in w->pending and
 * the file named in w->current. */
static int progress(walker *w, const walk_record *where, uint64_t done, uint64_t total, int call)
{
    PyEval_RestoreThread(w->ts);
    int rc = 0;
    if (call && w->on_progress != NULL) {
        PyObject *path = record_path(w, where);
        PyObject *r = path == NULL ? NULL
                                   : PyObject_CallFunction(w->on_progress, "OKK", path,
                                                           (unsigned long long)done,
                                                           (unsigned long long)total);
        Py_XDECREF(path);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    if (rc == 0 && PyErr_CheckSignals() != 0)
        rc = -1;
    if (rc != 0) {
        w->pending = take_exception();
        Py_XSETREF(w->current, record_path(w, where));
        if (w->current == NULL)
            PyErr_Clear();
    }
    w->ts = PyEval_SaveThread();
    return rc;
}

/* Reads [start, end) of the open file into the page cache, a chunk at a
 * time: 0, an errno, WALK_SIGBUS (the file shrank), or -2 interrupted.
 *
 * Ranges up to WALK_PREAD_MAX are read with pread into a buffer: measured on
 * 3,000 cold files of 8-12 KiB, 0.3-0.5 s, where the populate read
 * (MADV_POPULATE_READ on a mapping) took 9 s, reading each page on its own,
 * and touching a page of a mapping (what vmtouch -t does) 0.5-0.7 s.  Larger
 * ranges take the populate read, which reads ahead in large steps without
 * copying (a cold 1 GiB file: 0.65-0.8 s, where pread took 0.85-6 s and
 * touching each page 1.9-3.6 s), and which reports a file cut short as
 * EFAULT where touching its pages would raise SIGBUS; pread where the
 * kernel lacks it. */
static int warm_file(walker *w, int fd, uint64_t start, uint64_t end, const walk_record *where)
{
#ifdef POSIX_FADV_SEQUENTIAL
    (void)posix_fadvise(fd, (off_t)start, (off_t)(end - start), POSIX_FADV_SEQUENTIAL);
#endif
    int rc = 0;
    int populate = end - start > WALK_PREAD_MAX;
    for (uint64_t pos = start; pos < end && rc == 0;) {
        size_t n = end - pos < WALK_WARM_CHUNK ? (size_t)(end - pos) : WALK_WARM_CHUNK;
#ifdef MADV_POPULATE_READ
        if (populate) {
            void *addr = mmap(NULL, n, PROT_READ, MAP_SHARED, fd, (off_t)pos);
            if (addr == MAP_FAILED) {
                rc = errno;
                break;
            }
            if (madvise(addr, n, MADV_POPULATE_READ) != 0) {
                if (errno == EFAULT)
                    rc = WALK_SIGBUS;
                else if (errno == EINVAL)
                    populate = 0; /* not in this kernel: pread */
                else
                    rc = errno;
            }
            munmap(addr, n);
        }
#else
        populate = 0;
#endif
        if (!populate && rc == 0) {
            if (w->buffer == NULL && (w->buffer = malloc(WALK_PREAD_MAX)) == NULL) {
                rc = ENOMEM;
                break;
            }
            for (size_t got = 0; got < n;) {
                size_t want = n - got < WALK_PREAD_MAX ? n - got : WALK_PREAD_MAX;
                ssize_t k = pread(fd, w->buffer, want, (off_t)(pos + got));
                if (k < 0 && errno == EINTR)
                    continue;
                if (k < 0) {
                    rc = errno;
                    break;
                }
                if (k == 0) {
                    rc = WALK_SIGBUS; /* the file shrank */
                    break;
                }
                got += (size_t)k;
            }
        }
        pos += n;
        /* Ctrl-C is seen between two chunks of a large file. */
        int more = pos < end || pos - start > WALK_WARM_CHUNK;
        if (rc == 0 && (w->on_progress != NULL || more) &&
            progress(w, where, pos - start, end - start, 1) != 0)
            rc = -2;
    }
#ifdef POSIX_FADV_NORMAL
    (void)posix_fadvise(fd, (off_t)start, (off_t)(end - start), POSIX_FADV_NORMAL);
#endif
    return rc;
}

/* Turns the file's record into an error record. */
static void fail_record(walker *w, walk_record *r, int err)
{
    r->kind = REC_ERROR;
    r->err = err;
    w->totals[T_ERRORS]++;
}

/* Takes back the record of a file left out. */
static void drop_record(walker *w, walk_record *r)
{
    w->arena_len = r->path;
    w->n_records--;
}

/* A regular file (as far as the directory said): `name` in `dirfd`, or the
 * path given (top); `base` is its name, for the include patterns. */
static void visit_file(walker *w, int dirfd, const char *name, size_t name_len, int follow, int top,
                       const char *base, size_t base_len)
{
    if (w->n_include) {
        int hit = matches_any(w, w->include, w->n_include, 1, base, base_len);
        if (hit < 0) {
            PyEval_RestoreThread(w->ts);
            w->pending = take_exception();
            w->ts = PyEval_SaveThread();
            return;
        }
        if (!hit) {
            w->totals[T_SKIPPED]++;
            return;
        }
    }
    walk_record *r = new_record(w, REC_FILE, name, name_len, top);
    if (r == NULL)
        return;
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | (follow ? 0 : O_NOFOLLOW));
    if (fd < 0) {
        fail_record(w, r, errno);
        return;
    }
    struct stat sb;
    int err = fstat(fd, &sb) != 0 ? errno : S_ISDIR(sb.st_mode) ? EISDIR : 0;
    if (err != 0) {
        fail_record(w, r, err);
        close(fd);
        return;
    }
    /* Not a regular file (swapped since the directory was read), or a
     * pseudo-file (/proc, /sys: its size is made up): Python decides, as
     * iommap.open does, what can be mapped; left out in a tree, an error
     * when named. */
    int pseudo = top ? iommap_platform_pseudo_file(fd) != NULL
                     : w->depth > 0 && w->levels[w->depth - 1].pseudo;
    if (!S_ISREG(sb.st_mode) || pseudo) {
        close(fd);
        r->kind = REC_FALLBACK;
        return;
    }
    uint64_t size = (uint64_t)sb.st_size;
    int seen = 0;
    if (w->has_max && size > w->max_size)
        seen = 1;
    else if (!w->count_links)
        seen = set_add(&w->files, (uint64_t)sb.st_dev, (uint64_t)sb.st_ino);
    if (seen != 0) {
        if (seen < 0)
            w->failed = 1;
        else
            w->totals[T_SKIPPED]++;
        close(fd);
        drop_record(w, r);
        return;
    }
    uint64_t page = (uint64_t)iommap_page_size(), start, end;
    iommap_counted_range(size, w->offset, w->to_end ? UINT64_MAX : w->length, page, &start, &end);

    walk_count c, before = {0, 0, 0, {0, 0, 0, 0}};
    err = count_file(w, fd, dirfd, name, &sb, start, end, &c, r);
    if (err == 0 && w->action != ACTION_RESIDENCY) {
        before = c;
        if (w->action == ACTION_EVICT) {
            if (w->writeback && iommap_platform_sync_file(fd) != 0)
                err = errno;
#ifdef POSIX_FADV_DONTNEED
            if (err == 0 && end > start)
                err = posix_fadvise(fd, (off_t)start, (off_t)(end - start), POSIX_FADV_DONTNEED);
#endif
        } else if (end > start) {
            err = warm_file(w, fd, start, end, r);
        }
        if (err == 0)
            err = count_file(w, fd, dirfd, name, &sb, start, end, &c, r);
    }
    close(fd);
    if (err == -2) {
        drop_record(w, r); /* interrupted: w->pending says why */
        return;
    }
    if (err != 0) {
        fail_record(w, r, err);
        return;
    }
    uint64_t total = (end - start + page - 1) / page;
    r->size = size;
    r->start = start;
    r->end = end;
    r->known = c.known;
    r->has_stat = c.has_stat;
    r->resident = c.resident < total ? c.resident : total;
    memcpy(r->extra, c.extra, sizeof r->extra);
    if (w->action != ACTION_RESIDENCY) {
        r->has_before = 1;
        r->before_known = before.known;
        r->before = before.resident;
    }
    w->totals[T_FILES]++;
    w->totals[T_SIZE] += end - start;
    w->totals[T_PAGES] += total;
    if (c.known) {
        w->totals[T_RESIDENT] += r->resident;
        w->totals[T_RESIDENT_BYTES] += r->resident * page;
    } else {
        w->totals[T_UNKNOWN]++;
    }
}

/* ---- directories -------------------------------------------------------- */

static const char *sort_pool;
static int sort_code_points;

static int compare_entries(const void *a, const void *b)
{
    const walk_entry *x = a, *y = b;
    const unsigned char *p = (const unsigned char *)sort_pool + x->name;
    const unsigned char *q = (const unsigned char *)sort_pool + y->name;
    size_t n = x->length < y->length ? x->length : y->length;
    size_t i = 0;
    while (i < n && p[i] == q[i])
        i++;
    if (i == n)
        return x->length < y->length ? -1 : x->length > y->length;
    if (sort_code_points && (p[i] >= 0x80 || q[i] >= 0x80)) {
        /* Python sorts str names by code point; surrogate-escaped bytes
         * sort differently from their bytes. */
        Py_UCS4 u[NAME_MAX + 1], v[NAME_MAX + 1];
        size_t un = decode_name(p, x->length, u), vn = decode_name(q, y->length, v);
        for (size_t k = 0; k < un && k < vn; k++)
            if (u[k] != v[k])
                return u[k] < v[k] ? -1 : 1;
        return un < vn ? -1 : un > vn;
    }
    return p[i] < q[i] ? -1 : 1;
}

/* qsort's comparison sees the pool through these (qsort_r differs from one
 * system to the next); the lock keeps two walks' sorts apart. */
static pthread_mutex_t sort_lock = PTHREAD_MUTEX_INITIALIZER;

/* Reads the directory open at `fd` into `lv` (entries sorted by name):
 * 0 or an errno. */
static int read_directory(walker *w, int fd, walk_level *lv)
{
    lv->pool_len = 0;
    lv->count = 0;
    lv->next = 0;
#if defined(__linux__) && defined(SYS_getdents64)
    char buf[32768];
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n < 0)
            return errno;
        if (n == 0)
            break;
        for (long off = 0; off < n;) {
            struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + off);
            off += d->reclen;
            const char *name = d->name;
            unsigned char type = d->type;
#else
    int dup_fd = dup(fd);
    if (dup_fd < 0)
        return errno;
    DIR *dir = fdopendir(dup_fd);
    if (dir == NULL) {
        int err = errno;
        close(dup_fd);
        return err;
    }
    for (;;) {
        errno = 0;
        struct dirent *d = readdir(dir);
        if (d == NULL) {
            int err = errno;
            closedir(dir);
            if (err != 0)
                return err;
            break;
        }
        {
            const char *name = d->d_name;
            unsigned char type = d->d_type;
#endif
            size_t len = strlen(name);
            if (name[0] == '.' && (len == 1 || (len == 2 && name[1] == '.')))
                continue;
            if (grow((void **)&lv->entries, &lv->cap, lv->count + 1, sizeof(walk_entry)) < 0 ||
                grow((void **)&lv->pool, &lv->pool_cap, lv->pool_len + len + 1, 1) < 0) {
                w->failed = 1;
                return ENOMEM;
            }
            memcpy(lv->pool + lv->pool_len, name, len + 1);
            lv->entries[lv->count].name = (uint32_t)lv->pool_len;
            lv->entries[lv->count].length = (uint16_t)len;
            lv->entries[lv->count].type = type;
            lv->count++;
            lv->pool_len += len + 1;
        }
    }
    if (lv->count < 2)
        return 0; /* nothing to sort (and an empty directory has no array) */
    pthread_mutex_lock(&sort_lock);
    sort_pool = lv->pool;
    sort_code_points = !w->given_bytes;
    qsort(lv->entries, lv->count, sizeof(walk_entry), compare_entries);
    pthread_mutex_unlock(&sort_lock);
    return 0;
}

/* The directory's own descriptor, opened again if it was closed to keep
 * within WALK_OPEN_DIRS: from the nearest open ancestor down, each step
 * checked to reach the same directory.  -1 with errno set if it moved. */
static int level_fd(walker *w, size_t index)
{
    walk_level *lv = &w->levels[index];
    if (lv->fd >= 0)
        return lv->fd;
    size_t a = index;
    while (a > 0 && w->levels[a].fd < 0)
        a--;
    int fd = w->levels[a].fd;
    for (size_t k = a + 1; k <= index; k++) {
        walk_level *parent = &w->levels[k - 1];
        const char *name = parent->pool + parent->entries[parent->next - 1].name;
        int next = openat(fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
        if (fd != w->levels[a].fd)
            close(fd);
        if (next < 0)
            return -1;
        struct stat sb;
        if (fstat(next, &sb) != 0 || sb.st_dev != w->levels[k].dev ||
            sb.st_ino != w->levels[k].ino) {
            close(next);
            errno = ENOENT;
            return -1;
        }
        fd = next;
    }
    lv->fd = fd;
    w->open_dirs++;
    return fd;
}

/* Enters the directory open at `fd` (path: the current path buffer plus
 * `name`), st its stat; closes fd on every path. */
static void enter_directory(walker *w, int fd, const char *name, size_t name_len,
                            const struct stat *sb, int open_err, int top)
{
    if (set_add(&w->dirs, (uint64_t)sb->st_dev, (uint64_t)sb->st_ino) != 0) {
        if (fd >= 0)
            close(fd); /* a loop through followed symlinks, or a tree given twice */
        return;
    }
    w->totals[T_DIRS]++;
    if (fd < 0) {
        record_error(w, name, name_len, top, open_err);
        return;
    }
    if (grow((void **)&w->levels, &w->levels_cap, w->depth + 1, sizeof(walk_level)) < 0) {
        close(fd);
        w->failed = 1;
        return;
    }
    walk_level *lv = &w->levels[w->depth];
    if (w->depth == w->levels_used) {
        memset(lv, 0, sizeof *lv); /* a new level; a reused one keeps its buffers */
        w->levels_used++;
    }
    size_t dir_len = w->depth ? w->levels[w->depth - 1].path_len : 0;
    size_t len = top ? name_len : dir_len + (dir_len && w->path[dir_len - 1] != '/') + name_len;
    if (grow((void **)&w->path, &w->path_cap, len + 1, 1) < 0) {
        close(fd);
        w->failed = 1;
        return;
    }
    if (top) {
        memcpy(w->path, name, name_len);
    } else {
        size_t at = dir_len;
        if (dir_len && w->path[dir_len - 1] != '/')
            w->path[at++] = '/';
        memcpy(w->path + at, name, name_len);
    }
    w->path[len] = '\0';
    int err = read_directory(w, fd, lv);
    if (err != 0) {
        close(fd);
        w->path[dir_len] = '\0';
        if (!w->failed) {
            /* the path of the directory itself */
            record_error(w, name, name_len, top, err);
        }
        return;
    }
    lv->fd = fd;
    lv->pseudo = iommap_platform_pseudo_file(fd) != NULL; /* once a directory */
    lv->dev = sb->st_dev;
    lv->ino = sb->st_ino;
    lv->path_len = len;
    w->depth++;
    w->open_dirs++;
    if (w->open_dirs > WALK_OPEN_DIRS) {
        /* The shallowest open one but the top: opened again on the way up. */
        for (size_t k = 1; k < w->depth - 1; k++)
            if (w->levels[k].fd >= 0) {
                close(w->levels[k].fd);
                w->levels[k].fd = -1;
                w->open_dirs--;
                break;
            }
    }
}

static void leave_directory(walker *w)
{
    walk_level *lv = &w->levels[--w->depth];
    walk_level *parent = w->depth ? &w->levels[w->depth - 1] : NULL;
    if (parent != NULL && parent->fd < 0 && parent->next < parent->count && lv->fd >= 0) {
        /* Back to a directory closed on the way down: its ".." is it, unless
         * a followed symlink led here (level_fd then finds it by name). */
        int fd = openat(lv->fd, "..", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
        struct stat sb;
        if (fd >= 0 && fstat(fd, &sb) == 0 && sb.st_dev == parent->dev &&
            sb.st_ino == parent->ino) {
            parent->fd = fd;
            w->open_dirs++;
        } else if (fd >= 0) {
            close(fd);
        }
    }
    if (lv->fd >= 0) {
        close(lv->fd);
        lv->fd = -1;
        w->open_dirs--;
    }
}

/* One entry of the directory on top of the stack. */
static void visit_entry(walker *w)
{
    walk_level *lv = &w->levels[w->depth - 1];
    walk_entry *e = &lv->entries[lv->next++];
    const char *name = lv->pool + e->name;
    size_t len = e->length;
    if (w->n_ignore) {
        int hit = matches_any(w, w->ignore, w->n_ignore, 0, name, len);
        if (hit != 0) {
            if (hit < 0) {
                PyEval_RestoreThread(w->ts);
                w->pending = take_exception();
                w->ts = PyEval_SaveThread();
            } else {
                w->totals[T_SKIPPED]++;
            }
            return;
        }
    }
    int dirfd = level_fd(w, w->depth - 1);
    if (dirfd < 0) {
        record_error(w, name, len, 0, errno);
        return;
    }
    unsigned char type = e->type;
    struct stat sb;
    int have_stat = 0;
    if (type == DT_LNK && !w->follow) {
        w->totals[T_SKIPPED]++;
        return;
    }
    if (type == DT_LNK || type == DT_UNKNOWN) {
        if (fstatat(dirfd, name, &sb, w->follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
            if (errno == ENOENT)
                w->totals[T_SKIPPED]++; /* a dangling symlink: neither file nor directory */
            else
                record_error(w, name, len, 0, errno);
            return;
        }
        have_stat = 1;
        type = S_ISREG(sb.st_mode) ? DT_REG : S_ISDIR(sb.st_mode) ? DT_DIR : DT_UNKNOWN;
    }
    if (type == DT_REG) {
        visit_file(w, dirfd, name, len, w->follow, 0, name, len);
        return;
    }
    if (type != DT_DIR) {
        w->totals[T_SKIPPED]++; /* symlinks not followed, FIFOs, sockets, devices */
        return;
    }
    int nofollow = w->follow ? 0 : O_NOFOLLOW;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK | nofollow);
    int open_err = fd < 0 ? errno : 0;
    if (fd >= 0
            ? fstat(fd, &sb) != 0
            : !have_stat && fstatat(dirfd, name, &sb, w->follow ? 0 : AT_SYMLINK_NOFOLLOW) != 0) {
        record_error(w, name, len, 0, errno);
        if (fd >= 0)
            close(fd);
        return;
    }
    if (w->one_fs && sb.st_dev != w->device) {
        w->totals[T_SKIPPED]++;
        if (fd >= 0)
            close(fd);
        return;
    }
    enter_directory(w, fd, name, len, &sb, open_err, 0);
}

/* The path given to start(). */
static void visit_top(walker *w)
{
    const char *path = PyBytes_AS_STRING(w->encoded);
    size_t len = (size_t)PyBytes_GET_SIZE(w->encoded);
    const char *base = path + len;
    while (base > path && base[-1] != '/')
        base--;
    size_t base_len = (size_t)(path + len - base);
    if (w->n_ignore && base_len) {
        int hit = matches_any(w, w->ignore, w->n_ignore, 0, base, base_len);
        if (hit < 0) {
            PyEval_RestoreThread(w->ts);
            w->pending = take_exception();
            w->ts = PyEval_SaveThread();
            return;
        }
        if (hit) {
            w->totals[T_SKIPPED]++;
            return;
        }
    }
    struct stat sb;
    if (stat(path, &sb) != 0) { /* a symlink named here is followed */
        record_error(w, NULL, 0, 1, errno);
        return;
    }
    if (S_ISDIR(sb.st_mode)) {
        int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NONBLOCK);
        w->device = sb.st_dev;
        enter_directory(w, fd, path, len, &sb, fd < 0 ? errno : 0, 1);
    } else if (S_ISREG(sb.st_mode)) {
        visit_file(w, AT_FDCWD, path, len, 1, 1, base, base_len);
    } else {
        new_record(w, REC_FALLBACK, NULL, 0, 1);
    }
}

/* Runs the walk until a batch of records is made or the path is done. */
static void run_batch(walker *w)
{
    if (w->top_pending) {
        w->top_pending = 0;
        visit_top(w);
    }
    size_t steps = 0;
    while (w->n_records < WALK_BATCH && steps++ < WALK_BATCH_STEPS && !w->failed &&
           w->pending == NULL && w->depth > 0) {
        walk_level *lv = &w->levels[w->depth - 1];
        if (lv->next == lv->count)
            leave_directory(w);
        else
            visit_entry(w);
    }
}

/* ---- the Python side -------------------------------------------------- */

static PyObject *count_or_none(int known, uint64_t n)
{
    return known ? PyLong_FromUnsignedLongLong(n) : Py_NewRef(Py_None);
}

/* A FileResidency made as tuple.__new__(FileResidency, fields) makes it:
 * no Python call per file. */
static PyObject *file_result(walker *w, const walk_record *r, PyObject *path)
{
    uint64_t page = (uint64_t)iommap_page_size();
    uint64_t length = r->end - r->start, total = (length + page - 1) / page;
    PyObject *fields = PyTuple_New(13);
    if (fields == NULL)
        return NULL;
    PyTuple_SET_ITEM(fields, 0, Py_NewRef(path));
    PyTuple_SET_ITEM(fields, 1, PyLong_FromUnsignedLongLong(r->size));
    PyTuple_SET_ITEM(fields, 2, PyLong_FromUnsignedLongLong(r->start));
    PyTuple_SET_ITEM(fields, 3, PyLong_FromUnsignedLongLong(length));
    PyTuple_SET_ITEM(fields, 4, PyLong_FromUnsignedLongLong(total));
    PyTuple_SET_ITEM(fields, 5, PyBool_FromLong(r->known));
    PyTuple_SET_ITEM(fields, 6, count_or_none(r->known, r->resident));
    PyTuple_SET_ITEM(fields, 7, count_or_none(r->known, r->resident * page));
    for (int i = 0; i < 4; i++)
        PyTuple_SET_ITEM(fields, 8 + i, count_or_none(r->known && r->has_stat, r->extra[i]));
    PyTuple_SET_ITEM(fields, 12, count_or_none(r->has_before && r->before_known, r->before));
    for (Py_ssize_t i = 0; i < 13; i++)
        if (PyTuple_GET_ITEM(fields, i) == NULL) {
            Py_DECREF(fields);
            return NULL;
        }
    PyObject *args = PyTuple_Pack(1, fields);
    Py_DECREF(fields);
    if (args == NULL)
        return NULL;
    PyObject *result = PyTuple_Type.tp_new((PyTypeObject *)w->result_type, args, NULL);
    Py_DECREF(args);
    return result;
}

/* The result a record stands for; None when Python leaves the file out. */
static PyObject *convert(walker *w, const walk_record *r)
{
    PyObject *path = record_path(w, r);
    if (path == NULL)
        return NULL;
    PyObject *result;
    if (r->kind == REC_FILE)
        result = file_result(w, r, path);
    else if (r->kind == REC_ERROR)
        result = PyObject_CallFunction(w->make_error, "Oi", path, r->err);
    else
        result = PyObject_CallFunction(w->fallback, "Oi", path, r->top);
    Py_DECREF(path);
    return result;
}

static PyObject *walker_next(walker *w)
{
    for (;;) {
        if (w->next_record < w->n_records) {
            PyObject *result = convert(w, &w->records[w->next_record++]);
            if (result != Py_None)
                return result;
            Py_DECREF(result);
            continue;
        }
        w->n_records = w->next_record = w->arena_len = 0;
        if (w->pending != NULL) {
            PyObject *exc = w->pending;
            w->pending = NULL;
            raise_exception(exc);
            return NULL;
        }
        if (w->failed) {
            w->failed = 0;
            return PyErr_NoMemory();
        }
        if (!w->top_pending && w->depth == 0)
            return NULL; /* this path is done */
        if (PyErr_CheckSignals() != 0)
            return NULL;
        Py_CLEAR(w->current);
        w->ts = PyEval_SaveThread();
        run_batch(w);
        PyEval_RestoreThread(w->ts);
        w->ts = NULL;
    }
}

/* start(path): walk `path` (str or bytes, as given) next. */
static PyObject *walker_start(walker *w, PyObject *given)
{
    if (!PyUnicode_Check(given) && !PyBytes_Check(given)) {
        PyErr_SetString(PyExc_TypeError, "start() takes a str or bytes path");
        return NULL;
    }
    PyObject *encoded = NULL;
    if (!PyUnicode_FSConverter(given, &encoded))
        return NULL;
    while (w->depth > 0)
        leave_directory(w);
    w->n_records = w->next_record = w->arena_len = 0;
    Py_XSETREF(w->given, Py_NewRef(given));
    Py_XSETREF(w->encoded, encoded);
    w->given_bytes = PyBytes_Check(given);
    w->top_pending = 1;
    Py_RETURN_NONE;
}

/* seen(dev, ino): whether the inode was met already (it is from now on). */
static PyObject *walker_seen(walker *w, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "seen() takes 2 arguments");
        return NULL;
    }
    unsigned long long dev = PyLong_AsUnsignedLongLong(args[0]);
    unsigned long long ino = PyLong_AsUnsignedLongLong(args[1]);
    if (PyErr_Occurred())
        return NULL;
    int rc = set_add(&w->files, dev, ino);
    if (rc < 0)
        return PyErr_NoMemory();
    return PyBool_FromLong(rc);
}

/* totals(): the counts so far, as pagecache.Totals' first nine fields. */
static PyObject *walker_totals(walker *w, PyObject *unused)
{
    (void)unused;
    PyObject *t = PyTuple_New(T_COUNT);
    if (t == NULL)
        return NULL;
    for (int i = 0; i < T_COUNT; i++) {
        PyObject *n = PyLong_FromUnsignedLongLong(w->totals[i]);
        if (n == NULL) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, n);
    }
    return t;
}

/* mincore(): whether the walk counts with mincore(2) (no cachestat here). */
static PyObject *walker_mincore(walker *w, PyObject *unused)
{
    (void)unused;
    return PyBool_FromLong(w->mincore);
}

static PyObject *walker_current(walker *w, void *closure)
{
    (void)closure;
    return Py_NewRef(w->current ? w->current : Py_None);
}

static void free_patterns(walk_pattern *p, Py_ssize_t n)
{
    for (Py_ssize_t i = 0; i < n; i++)
        PyMem_Free(p[i].chars);
    PyMem_Free(p);
}

static int walker_traverse(walker *w, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(w));
    Py_VISIT(w->result_type);
    Py_VISIT(w->make_error);
    Py_VISIT(w->fallback);
    Py_VISIT(w->match);
    Py_VISIT(w->on_progress);
    Py_VISIT(w->given);
    Py_VISIT(w->pending);
    Py_VISIT(w->current);
    return 0;
}

static int walker_clear(walker *w)
{
    Py_CLEAR(w->result_type);
    Py_CLEAR(w->make_error);
    Py_CLEAR(w->fallback);
    Py_CLEAR(w->match);
    Py_CLEAR(w->on_progress);
    Py_CLEAR(w->given);
    Py_CLEAR(w->encoded);
    Py_CLEAR(w->pending);
    Py_CLEAR(w->current);
    return 0;
}

static void walker_dealloc(walker *w)
{
    PyTypeObject *type = Py_TYPE(w);
    PyObject_GC_UnTrack(w);
    while (w->depth > 0)
        leave_directory(w);
    for (size_t i = 0; i < w->levels_used; i++) {
        free(w->levels[i].pool);
        free(w->levels[i].entries);
    }
    free(w->levels);
    free(w->path);
    free(w->records);
    free(w->arena);
    free(w->vec);
    free(w->buffer);
    free(w->files.keys);
    free(w->dirs.keys);
    free_patterns(w->ignore, w->n_ignore);
    free_patterns(w->include, w->n_include);
    walker_clear(w);
    type->tp_free((PyObject *)w);
    Py_DECREF(type);
}

static PyMethodDef walker_methods[] = {
    {"start", (PyCFunction)walker_start, METH_O, "start(path): walk this path next."},
    {"seen", (PyCFunction)(void (*)(void))walker_seen, METH_FASTCALL,
     "seen(dev, ino): whether this inode was met already; it is from now on."},
    {"totals", (PyCFunction)walker_totals, METH_NOARGS, "totals(): the counts so far."},
    {"mincore", (PyCFunction)walker_mincore, METH_NOARGS,
     "mincore(): whether the walk counts with mincore(2)."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef walker_getset[] = {
    {"current", (getter)walker_current, NULL, "The file being worked on when interrupted.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot walker_slots[] = {
    {Py_tp_dealloc, walker_dealloc}, {Py_tp_traverse, walker_traverse},
    {Py_tp_clear, walker_clear},     {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, walker_next},   {Py_tp_methods, walker_methods},
    {Py_tp_getset, walker_getset},   {0, NULL},
};

PyType_Spec iommap_walker_spec =
    IOMMAP_TYPE_SPEC("iommap._core.Walker", walker, Py_TPFLAGS_HAVE_GC, walker_slots);

/* The patterns of a list of str, as code points; -1 with an exception. */
static int read_patterns(PyObject *list, walk_pattern **out, Py_ssize_t *n)
{
    PyObject *seq = PySequence_Fast(list, "patterns must be a sequence");
    if (seq == NULL)
        return -1;
    Py_ssize_t count = PySequence_Fast_GET_SIZE(seq);
    *out = PyMem_Calloc((size_t)count + 1, sizeof(walk_pattern));
    *n = 0;
    if (*out == NULL) {
        Py_DECREF(seq);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *p = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyUnicode_Check(p)) {
            PyErr_SetString(PyExc_TypeError, "a pattern must be a str");
            Py_DECREF(seq);
            return -1;
        }
        (*out)[i].chars = PyUnicode_AsUCS4Copy(p);
        if ((*out)[i].chars == NULL) {
            Py_DECREF(seq);
            return -1;
        }
        (*out)[i].len = PyUnicode_GET_LENGTH(p);
        (*n)++;
    }
    Py_DECREF(seq);
    return 0;
}

/* _core.walker(action, offset, length, follow, one_fs, ignore, include,
 *              max_size, count_links, writeback, mincore, cap_fowner,
 *              py_match, result_type, make_error, fallback, match,
 *              on_progress): see iommap.pagecache.Walk, its only user. */
PyObject *iommap_walker_new(PyObject *module, PyObject *args)
{
    iommap_state *st = PyModule_GetState(module);
    int action, follow, one_fs, count_links, writeback, mincore, cap_fowner, py_match;
    unsigned long long offset;
    PyObject *length, *ignore, *include, *max_size, *result_type, *make_error, *fallback, *match,
        *on_progress;
    if (!PyArg_ParseTuple(args, "iKOppOOOpppppOOOOO:walker", &action, &offset, &length, &follow,
                          &one_fs, &ignore, &include, &max_size, &count_links, &writeback, &mincore,
                          &cap_fowner, &py_match, &result_type, &make_error, &fallback, &match,
                          &on_progress))
        return NULL;
    if (action < ACTION_RESIDENCY || action > ACTION_EVICT || !PyType_Check(result_type)) {
        PyErr_SetString(PyExc_ValueError, "walker(): bad action or result type");
        return NULL;
    }
    walker *w = PyObject_GC_New(walker, st->walker_type);
    if (w == NULL)
        return NULL;
    memset((char *)w + sizeof(PyObject), 0, sizeof(walker) - sizeof(PyObject));
    w->action = action;
    w->offset = offset;
    w->follow = follow;
    w->one_fs = one_fs;
    w->count_links = count_links;
    w->writeback = writeback;
    w->mincore = mincore;
    w->cap_fowner = cap_fowner;
    w->py_match = py_match;
    w->result_type = Py_NewRef(result_type);
    w->make_error = Py_NewRef(make_error);
    w->fallback = Py_NewRef(fallback);
    w->match = Py_NewRef(match);
    w->on_progress = on_progress == Py_None ? NULL : Py_NewRef(on_progress);
    PyObject_GC_Track(w);
    w->to_end = length == Py_None;
    if (!w->to_end) {
        w->length = PyLong_AsUnsignedLongLong(length);
        if (PyErr_Occurred())
            goto fail;
    }
    w->has_max = max_size != Py_None;
    if (w->has_max) {
        w->max_size = PyLong_AsUnsignedLongLong(max_size);
        if (PyErr_Occurred())
            goto fail;
    }
    if (read_patterns(ignore, &w->ignore, &w->n_ignore) < 0 ||
        read_patterns(include, &w->include, &w->n_include) < 0)
        goto fail;
    w->records = malloc((WALK_BATCH + 1) * sizeof(walk_record));
    if (w->records == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    return (PyObject *)w;
fail:
    Py_DECREF(w);
    return NULL;
}
