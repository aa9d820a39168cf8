/* The SIGBUS guard.
 *
 * Touching a mapped page whose file was shrunk underneath raises SIGBUS; by
 * default that kills the process.  Every copy to or from mapped memory runs
 * inside iommap_guarded_copy(), which registers a per-thread scope.  The
 * process-wide handler jumps back to that scope when the fault lies in the
 * guarded region, and passes every other SIGBUS on, exactly as the kernel
 * would have delivered it without iommap.
 *
 * Cost on the normal path: one sigsetjmp without a mask save and two
 * thread-local stores; no system call.  That works because the handler is
 * installed with SA_NODEFER (SIGBUS is not blocked while it runs, so jumping
 * out leaves the mask as it was) and it restores the interrupted mask itself
 * before jumping, in case a handler in front of it blocked signals.
 *
 * The chain.  Other code installs SIGBUS handlers too (faulthandler,
 * signal.signal, JVMs, WebAssembly runtimes, user-space pagers), before
 * iommap, after it, and in any order.  Most of them remember the handler they
 * replaced and call it, or restore it, for faults that are not theirs.  So
 * iommap installs not one handler but one of GUARD_SLOTS identical entry
 * points, a fresh one each time it has to get back in front, and each entry
 * point remembers the handler it displaced (its link).  Whoever saved entry
 * point k and later calls or restores it reaches exactly the handler that was
 * in front when k was installed: the chain is the one the process would have
 * without iommap, with iommap's check in front of each link.  No per-thread
 * marker is needed to break loops: a handler that re-raises through its own
 * saved predecessor walks the chain backwards in time and reaches SIG_DFL.
 *
 * Passing on: the displaced handler is called as the kernel would call it,
 * with its sa_mask (and SIGBUS, unless it has SA_NODEFER) blocked, SA_RESETHAND
 * honoured, SIG_IGN ignoring a kill(2) but not a fault (the kernel kills for an
 * ignored fault), and SIG_DFL killing the process by SIGBUS.  While it runs,
 * the thread's guard scope is suspended: its faults and re-raises are not
 * iommap's.  A handler that returns gets the scope back; one that leaves with
 * siglongjmp, or never returns, leaves nothing behind: the only per-thread
 * state is the scope pointer, which is already clear.
 *
 * Getting back in front: iommap_guard_install() runs at import, at every
 * open(), at every call that releases the GIL (one sigaction(2) read beside
 * a copy of 64 KiB or more, or a truncate, sync, advise or remap: see
 * iommap_finish_released), and from iommap.rearm_guard().  Small copies make
 * no system call.  What chaining cannot see is a change made
 * after the last of these points:
 *   - a handler installed then that does not chain to its predecessor
 *     (signal.signal, a runtime that ignores other faults) is in front and
 *     iommap's is out of the chain: a guarded fault goes to it alone;
 *   - a handler removed then by restoring SIG_DFL (signal.signal(SIGBUS,
 *     SIG_DFL), or faulthandler.disable() when faulthandler was enabled
 *     before import) takes iommap's handler out too: a guarded fault kills;
 *   - a handler installed then that chains by re-raising (faulthandler) sees
 *     a guarded fault first: it prints its report, uninstalls itself and
 *     re-raises; iommap recognises the re-raised signal (SI_TKILL from this
 *     process, on a thread inside a guarded copy) and recovers, but the
 *     report is printed and faulthandler stays uninstalled.
 * A pthread_kill of SIGBUS from another thread that lands on a thread inside
 * a guarded copy carries the same marks as such a re-raise; is_guarded()
 * tells them apart by the interrupted instruction where the platform can
 * (x86-64 and arm64 Linux) and takes it for a guarded fault elsewhere.
 * docs/truncation.md says this to users.
 *
 * Process-wide state and parallel interpreters: the entry points' links and
 * the installation are shared by every interpreter (PEP 684 sub-interpreters
 * run truly in parallel); see install_lock, the links' publication and
 * copy_init_once below.
 */
#include "iommap.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    sigjmp_buf env;
    const char *lo; /* the guarded region, [lo, hi) */
    const char *hi;
} guard_scope;

/* initial-exec TLS: in a dlopen'ed library the default model may allocate
 * the variable on its first touch, and that touch may be in the handler. */
#define GUARD_TLS __thread __attribute__((tls_model("initial-exec")))

/* Keeps the compiler from moving the copy's loads and stores outside the
 * window in which the scope is registered. */
#define COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")

/* The guarded copy this thread is in, or NULL.  The guard's only per-thread
 * state. */
static GUARD_TLS guard_scope *volatile current_scope;

/* ---- the chain ----------------------------------------------------------- */

/* Entry points: each displacement of another handler uses the next one.  A
 * process that has iommap put itself back in front more often than this (a
 * handler installed and iommap re-armed, 63 times over) reuses the last entry
 * point: its link then follows the latest displacement, and a handler that
 * restores an older copy of that entry point chains to the latest link. */
#define GUARD_SLOTS 64

typedef struct guard_link {
    struct sigaction action;  /* the handler displaced, as sigaction(2) gave it */
    struct guard_link *older; /* links this one replaced (kept reachable) */
} guard_link;

/* Written once per slot before the slot's entry point is installed (release),
 * read by the handler (acquire): an entry point is only ever reached after
 * its link is visible.  A link is never changed once published; the last
 * slot gets a new link instead, and the old one is never freed because a
 * handler on another thread may still be reading it. */
static _Atomic(guard_link *) slot_link[GUARD_SLOTS];
static guard_link slot_storage[GUARD_SLOTS];

/* Serialises installation: threads of every interpreter, and interpreters
 * with their own GIL, may re-arm at once (open(), a large copy without the
 * GIL, rearm_guard()).  Without it two of them could both see a foreign
 * handler, both take a slot, and the second would record the first's entry
 * point as the handler it displaced: a loop.  Never taken in the handler. */
static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned slots_used; /* guarded by install_lock */

static void on_sigbus(unsigned slot, int sig, siginfo_t *info, void *context);

/* Entry point on_sigbus_<i><j> serves slot i * 8 + j. */
#define ENTRY(i, j)                                                                                \
    static void on_sigbus_##i##j(int sig, siginfo_t *info, void *context)                          \
    {                                                                                              \
        on_sigbus((i) * 8 + (j), sig, info, context);                                              \
    }
#define ENTRY8(i)                                                                                  \
    ENTRY(i, 0) ENTRY(i, 1) ENTRY(i, 2) ENTRY(i, 3) ENTRY(i, 4) ENTRY(i, 5) ENTRY(i, 6) ENTRY(i, 7)
ENTRY8(0)
ENTRY8(1)
ENTRY8(2)
ENTRY8(3)
ENTRY8(4)
ENTRY8(5)
ENTRY8(6)
ENTRY8(7)

#define NAMES8(i)                                                                                  \
    on_sigbus_##i##0, on_sigbus_##i##1, on_sigbus_##i##2, on_sigbus_##i##3, on_sigbus_##i##4,      \
        on_sigbus_##i##5, on_sigbus_##i##6, on_sigbus_##i##7
static void (*const entry_points[GUARD_SLOTS])(int, siginfo_t *, void *) = {
    NAMES8(0), NAMES8(1), NAMES8(2), NAMES8(3), NAMES8(4), NAMES8(5), NAMES8(6), NAMES8(7),
};

/* The slot whose entry point `action` is, or -1 if it is not iommap's. */
static int slot_of(const struct sigaction *action)
{
    if ((action->sa_flags & SA_SIGINFO) == 0)
        return -1;
    for (int i = 0; i < GUARD_SLOTS; i++)
        if (action->sa_sigaction == entry_points[i])
            return i;
    return -1;
}

static void unblock_sigbus(void)
{
    sigset_t bus;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
}

/* What SIG_DFL does with SIGBUS: terminate the process by the signal, with
 * the exit status and core dump the kernel would give. */
static void default_action(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);
    unblock_sigbus();
    raise(SIGBUS);
}

/* Delivers the signal to the handler slot `slot` displaced, the way the
 * kernel would have delivered it had that handler been in front. */
static void pass_on(unsigned slot, int sig, siginfo_t *info, void *context, guard_scope *scope)
{
    guard_link *link = atomic_load_explicit(&slot_link[slot], memory_order_acquire);
    struct sigaction prev = link->action;
    int is_fault = info != NULL && info->si_code > 0;
    int is_siginfo = (prev.sa_flags & SA_SIGINFO) != 0;

    if (!is_siginfo && (prev.sa_handler == SIG_DFL || (prev.sa_handler == SIG_IGN && is_fault))) {
        /* The kernel cannot ignore a fault: the default kills for it. */
        default_action();
        return;
    }
    if (!is_siginfo && prev.sa_handler == SIG_IGN)
        return;

    sigset_t mask = prev.sa_mask, saved;
    if ((prev.sa_flags & SA_NODEFER) == 0)
        sigaddset(&mask, SIGBUS);
    pthread_sigmask(SIG_BLOCK, &mask, &saved);
    if (prev.sa_flags & SA_RESETHAND) {
        /* A one-shot handler: the kernel resets the disposition as it
         * delivers.  iommap's entry point goes too, until the next re-arm. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGBUS, &dfl, NULL);
    }
    current_scope = NULL;
    if (is_siginfo)
        prev.sa_sigaction(sig, info, context);
    else
        prev.sa_handler(sig);
    /* Returned: the fault was cured (or will repeat, as it would without
     * iommap).  A re-raise left pending by the mask is delivered here, while
     * the scope is still suspended, so it cannot pass for a guarded fault. */
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    current_scope = scope;
}

/* Whether this SIGBUS is a fault of the copy in `scope`. */
static int is_guarded(const guard_scope *scope, const siginfo_t *info, const void *context)
{
    if (info->si_code > 0) {
        /* Raised by the kernel for a fault: ours if the address is in the
         * region this thread is copying. */
        const char *addr = (const char *)info->si_addr;
        return addr >= scope->lo && addr < scope->hi;
    }
    /* A handler in front of ours caught the fault and re-raised it on this
     * thread (faulthandler does): the thread is inside a guarded copy, and
     * nothing in a copy raises signals, so that is where the fault was.
     * pthread_kill from another thread of the process looks the same
     * (SI_TKILL, our pid) but interrupts the copy itself, not a system call
     * of a handler; where the machine can tell the two apart, it is not
     * taken for a fault. */
#ifdef SI_TKILL
    return info->si_code == SI_TKILL && info->si_pid == getpid() &&
           iommap_platform_interrupted_after_syscall(context) != 0;
#else
    (void)context;
    return 0;
#endif
}

static void on_sigbus(unsigned slot, int sig, siginfo_t *info, void *context)
{
    int saved_errno = errno;
    guard_scope *scope = current_scope;
    if (scope != NULL && info != NULL && is_guarded(scope, info, context)) {
        /* Back to the mask the copy ran with: a handler in front of ours may
         * have blocked SIGBUS and more while it ran. */
        if (context != NULL) {
            sigset_t mask;
            iommap_platform_interrupted_mask(context, &mask);
            pthread_sigmask(SIG_SETMASK, &mask, NULL);
        }
        unblock_sigbus();
        current_scope = NULL;
        siglongjmp(scope->env, 1);
    }
    pass_on(slot, sig, info, context, scope);
    errno = saved_errno;
}

/* Puts a new entry point in front, linked to `current`, the handler in front
 * now.  Called with install_lock held. */
static int install_locked(const struct sigaction *current)
{
    guard_link *link;
    unsigned slot;
    if (slots_used < GUARD_SLOTS) {
        slot = slots_used++;
        link = &slot_storage[slot];
    } else {
        slot = GUARD_SLOTS - 1;
        link = malloc(sizeof(*link));
        if (link == NULL) {
            errno = ENOMEM;
            return -1;
        }
        link->older = atomic_load_explicit(&slot_link[slot], memory_order_relaxed);
    }
    link->action = *current;
    atomic_store_explicit(&slot_link[slot], link, memory_order_release);

    struct sigaction ours;
    memset(&ours, 0, sizeof(ours));
    ours.sa_sigaction = entry_points[slot];
    ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    return sigaction(SIGBUS, &ours, NULL);
}

/* ---- the copy ------------------------------------------------------------ *
 * Copies between 64 KiB and 4 MiB on x86-64 use `rep movsb` (platform.h) where the CPU
 * advertises fast strings (ERMS).  glibc's memmove stops using it above the
 * L2 size on AMD and switches to a vector loop; measured here (AMD Zen 5 VM,
 * page cache in 2 MiB folios, copies out of the mapping into a reused
 * buffer, both interleaved in one process) the string copy moved about 1.2x
 * the bytes from 1 to 8 MiB and fell behind from 16 MiB on (0.9x at 64 MiB),
 * hence a cap well inside the range where it won.  Below 64 KiB memmove already uses it (or
 * something better for small sizes).  `rep movsb` copies forward only, so overlapping buffers (a
 * view of the same mapping) keep memmove. */
#define REP_MOVSB_MIN_BYTES IOMMAP_GIL_RELEASE_BYTES
#define REP_MOVSB_MAX_BYTES (4u * 1024 * 1024)

/* Written once under copy_init_once, before the first copy of any
 * interpreter: pthread_once makes the write visible to every thread that
 * passed through it, however many interpreters import at once. */
static int use_rep_movsb;

static void detect_rep_movsb(void)
{
    use_rep_movsb = iommap_platform_fast_rep_movsb();
}

static pthread_once_t copy_init_once = PTHREAD_ONCE_INIT;

static inline void copy_bytes(void *dst, const void *src, size_t n)
{
    /* Forward copy is safe unless dst starts inside [src, src + n). */
    if (IOMMAP_HAVE_REP_MOVSB && n >= REP_MOVSB_MIN_BYTES && n <= REP_MOVSB_MAX_BYTES &&
        use_rep_movsb && (uintptr_t)dst - (uintptr_t)src >= (uintptr_t)n) {
        iommap_platform_rep_movsb(dst, src, n);
        return;
    }
    /* memmove: a buffer may itself be a view of the same mapping. */
    memmove(dst, src, n);
}

/* ---- installing ---------------------------------------------------------- */

/* Puts iommap's handler in front unless one of its entry points is already
 * there.  Costs one sigaction(2) read when it is; takes install_lock and
 * reads again before changing anything when it is not. */
int iommap_guard_install(void)
{
    pthread_once(&copy_init_once, detect_rep_movsb);
    struct sigaction current;
    memset(&current, 0, sizeof(current)); /* glibc fills only the kernel's part of sa_mask */
    if (sigaction(SIGBUS, NULL, &current) != 0)
        return -1;
    if (slot_of(&current) >= 0)
        return 0;

    pthread_mutex_lock(&install_lock);
    int rc;
    memset(&current, 0, sizeof(current));
    if ((rc = sigaction(SIGBUS, NULL, &current)) == 0 && slot_of(&current) < 0)
        rc = install_locked(&current);
    int saved_errno = errno;
    pthread_mutex_unlock(&install_lock);
    errno = saved_errno;
    return rc;
}

/* ---- guarded copies ------------------------------------------------------ */

/* noinline keeps the sigsetjmp frame alive for exactly the copy; the
 * volatile scope pointer is what the handler reads.  (A copy large enough to
 * release the GIL re-arms first, in iommap_finish_released.) */
__attribute__((noinline)) int iommap_guarded_copy(void *dst, const void *src, size_t n,
                                                  const void *region, size_t region_size)
{
    guard_scope scope;
    scope.lo = (const char *)region;
    scope.hi = (const char *)region + region_size;
    if (sigsetjmp(scope.env, 0) != 0)
        return -1; /* the handler cleared current_scope */
    current_scope = &scope;
    COMPILER_BARRIER();
    copy_bytes(dst, src, n);
    COMPILER_BARRIER();
    current_scope = NULL;
    return 0;
}

__attribute__((noinline)) int iommap_guarded_batch(const iommap_batch *batch)
{
    size_t n = batch->length;
    guard_scope scope;
    scope.lo = (const char *)batch->region;
    scope.hi = (const char *)batch->region + batch->region_size;
    if (sigsetjmp(scope.env, 0) != 0)
        return -1;
    current_scope = &scope;
    COMPILER_BARRIER();
    if (batch->to_mapping) {
        const char *src = batch->buffer;
        for (size_t i = 0; i < batch->count; i++, src += n)
            copy_bytes(batch->region + batch->offsets[i], src, n);
    } else {
        char *dst = batch->buffer;
        for (size_t i = 0; i < batch->count; i++, dst += n)
            copy_bytes(dst, batch->region + batch->offsets[i], n);
    }
    COMPILER_BARRIER();
    current_scope = NULL;
    return 0;
}
