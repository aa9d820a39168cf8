/* What differs between the operating systems, in one place: a capability
 * macro for each flag the core uses (0 where the OS has none), and the
 * calls platform.c makes differently per OS.
 *
 * Linux is built and tested.  The macOS, FreeBSD, NetBSD and OpenBSD paths
 * are compiled and linked against each system's own headers and C library
 * (make cross-check) but untested until a machine runs them.
 *
 *   populate   Linux MAP_POPULATE; elsewhere a will-need hint after mapping
 *   nocache    macOS F_NOCACHE on the descriptor (and MAP_NOCACHE); Linux and
 *              the BSDs have no uncached mapping: accepted, no effect
 *   reserve    Linux fallocate; FreeBSD posix_fallocate; macOS F_PREALLOCATE
 *              then ftruncate; OpenBSD ftruncate
 *   rwlock     glibc's prefers readers unless told otherwise; the others
 *              prefer writers already
 *   dontneed   on a private mapping, Linux MADV_COLD; elsewhere MADV_NORMAL
 *   rep movsb  x86-64: large copies use the CPU's string copy where it says
 *              it is fast (ERMS); elsewhere memmove only
 *   signals    x86-64 and arm64 Linux: a signal handler can tell whether the
 *              thread was returning from a system call; elsewhere it cannot.
 *              A handler's context is a ucontext_t, but on OpenBSD a struct
 *              sigcontext
 *   mincore    everywhere but OpenBSD, which removed it: ENOTSUP there
 *   cachestat  Linux 6.5+ cachestat(2); elsewhere ENOSYS (callers count with
 *              mincore instead)
 *
 * Included by iommap.h.
 */
#ifndef IOMMAP_PLATFORM_H
#define IOMMAP_PLATFORM_H

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>

#ifdef MAP_POPULATE
#define IOMMAP_MAP_POPULATE MAP_POPULATE
#else
#define IOMMAP_MAP_POPULATE 0
#endif

#ifdef MAP_NOCACHE
#define IOMMAP_MAP_NOCACHE MAP_NOCACHE
#else
#define IOMMAP_MAP_NOCACHE 0
#endif

#ifdef F_NOCACHE
#define IOMMAP_F_NOCACHE F_NOCACHE
#else
#define IOMMAP_F_NOCACHE 0
#endif

/* The hint for 'dontneed' on a private mapping: one that never discards
 * the process's own changes (MADV_DONTNEED would). */
#ifdef MADV_COLD
#define IOMMAP_MADV_PRIVATE_DONTNEED MADV_COLD
#else
#define IOMMAP_MADV_PRIVATE_DONTNEED MADV_NORMAL
#endif

/* `rep movsb`: a forward byte copy by the CPU's string instruction, for
 * the guard's large copies (guard.c says when it wins). */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define IOMMAP_HAVE_REP_MOVSB 1
static inline void iommap_platform_rep_movsb(void *dst, const void *src, size_t n)
{
    __asm__ __volatile__("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
}
#else
#define IOMMAP_HAVE_REP_MOVSB 0
static inline void iommap_platform_rep_movsb(void *dst, const void *src, size_t n)
{
    (void)dst;
    (void)src;
    (void)n; /* never called: IOMMAP_HAVE_REP_MOVSB is 0 */
}
#endif

/* The struct-module byte-order prefixes that mean this machine's order
 * (for gather's and scatter's buffers of 64-bit offsets). */
#if PY_LITTLE_ENDIAN
#define IOMMAP_NATIVE_ORDER_PREFIXES "@=<"
#else
#define IOMMAP_NATIVE_ORDER_PREFIXES "@=>!"
#endif

/* Each returns 0, or -1 with errno set, unless it says otherwise. */

size_t iommap_page_size(void);
/* Extra mmap flags for populate/nocache (0 where the platform has none). */
int iommap_platform_map_flags(int populate, int nocache);
/* After mmap: what the flags above could not do (will-need hint, ...). */
void iommap_platform_after_map(void *addr, size_t size, int populate);
/* After open: per-descriptor cache policy (F_NOCACHE on macOS). */
int iommap_platform_set_nocache(int fd);
/* Grows the file to `size` bytes, reserving disk space where possible. */
int iommap_platform_reserve(int fd, size_t old_size, size_t size);
/* mincore(2) over [addr, addr + len): one byte per page in vec, bit 0 set
 * when the page is resident.  ENOTSUP on OpenBSD, whose C library no longer
 * has the call. */
int iommap_platform_mincore(void *addr, size_t len, unsigned char *vec);
/* A read-write lock that prefers writers; returns pthread's error code. */
int iommap_platform_rwlock_init(pthread_rwlock_t *lock);
/* From a signal handler's context: 1 if the interrupted thread was returning
 * from a system call, 0 if not, -1 if this machine cannot tell.
 * Async-signal-safe. */
int iommap_platform_interrupted_after_syscall(const void *context);
/* From a signal handler's context (not NULL): the signal mask of the code
 * the signal interrupted.  Async-signal-safe. */
void iommap_platform_interrupted_mask(const void *context, sigset_t *mask);
/* 1 if the CPU advertises fast `rep movsb` (x86-64 ERMS), else 0.  Reads
 * the CPU each call: callers keep the answer. */
int iommap_platform_fast_rep_movsb(void);
/* cachestat(2) over [off, off + len) of fd (len > 0): counts[] gets the
 * cached, dirty, writeback, evicted and recently evicted pages.  ENOSYS
 * where the kernel or the OS has no such call. */
int iommap_platform_cachestat(int fd, uint64_t off, uint64_t len, uint64_t counts[5]);
/* A block device's size in bytes: Linux BLKGETSIZE64.  Elsewhere ENODEV:
 * macOS and the BSDs cannot map their disk devices as files. */
int iommap_platform_device_size(int fd, uint64_t *size);
/* For a regular file of a pseudo-file system whose sizes are made up (Linux
 * /proc, /sys, debugfs, ...), the kind of file it is ("a /proc
 * pseudo-file"); NULL for a real file (and on the other systems). */
const char *iommap_platform_pseudo_file(int fd);
/* The file's data and size durable: fdatasync (Linux, FreeBSD), else fsync. */
int iommap_platform_sync_file(int fd);

#endif
