/* The SIGBUS guard.
 *
 * Touching a mapped page whose file was shrunk underneath raises SIGBUS; by
 * default that kills the process.  Every copy to or from mapped memory runs
 * inside iommap_guarded_copy(), which registers a per-thread scope.  The
 * process-wide handler jumps back to that scope when the fault lies in the
 * guarded region, and passes every other SIGBUS on to the handler installed
 * before it (Python's faulthandler included) or to the default action.
 *
 * Cost on the normal path: one sigsetjmp without a mask save and two
 * thread-local stores; no system call.  That works because the handler is
 * installed with SA_NODEFER (SIGBUS is not blocked while it runs, so jumping
 * out leaves the mask as it was) and it unblocks SIGBUS itself before
 * jumping, in case a handler in front of it blocked it.
 */
#include "iommap.h"

#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

typedef struct {
    sigjmp_buf env;
    const char *lo; /* the guarded region, [lo, hi) */
    const char *hi;
} guard_scope;

/* initial-exec TLS: in a dlopen'ed library the default model may allocate
 * the variable on its first touch, and that touch may be in the handler. */
#if defined(__GNUC__) || defined(__clang__)
#define GUARD_TLS __thread __attribute__((tls_model("initial-exec")))
#else
#define GUARD_TLS _Thread_local
#endif

/* Keeps the compiler from moving the copy's loads and stores outside the
 * window in which the scope is registered. */
#define COMPILER_BARRIER() __asm__ __volatile__("" ::: "memory")

static GUARD_TLS guard_scope *volatile current_scope;
/* Set while this thread runs a chained handler: a SIGBUS arriving in it
 * (faulthandler re-raises) must not be chained to the same handler again. */
static GUARD_TLS volatile sig_atomic_t chaining;
/* Detects a chained handler that returns without curing the fault, which
 * would otherwise re-fault forever. */
static GUARD_TLS void *volatile last_fault_addr;
static GUARD_TLS volatile int same_fault_count;

static struct sigaction previous_action;

/* ---- the copy ------------------------------------------------------------ *
 * Copies between 64 KiB and 4 MiB on x86-64 use `rep movsb` where the CPU
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

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_REP_MOVSB 1
static int use_rep_movsb; /* set once at import, before any copy */

static void detect_rep_movsb(void)
{
    unsigned int eax, ebx, ecx, edx;
    if (__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx))
        use_rep_movsb = (ebx >> 9) & 1; /* CPUID.(EAX=7,ECX=0):EBX.ERMS[bit 9] */
}
#else
static void detect_rep_movsb(void)
{
}
#endif

static inline void copy_bytes(void *dst, const void *src, size_t n)
{
#ifdef HAVE_REP_MOVSB
    /* Forward copy is safe unless dst starts inside [src, src + n). */
    if (n >= REP_MOVSB_MIN_BYTES && n <= REP_MOVSB_MAX_BYTES && use_rep_movsb &&
        (uintptr_t)dst - (uintptr_t)src >= (uintptr_t)n) {
        __asm__ __volatile__("rep movsb" : "+D"(dst), "+S"(src), "+c"(n) : : "memory");
        return;
    }
#endif
    /* memmove: a buffer may itself be a view of the same mapping. */
    memmove(dst, src, n);
}

static void default_action(void)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGBUS, &dfl, NULL);

    sigset_t bus;
    sigemptyset(&bus);
    sigaddset(&bus, SIGBUS);
    pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
    raise(SIGBUS);
}

static void pass_on(int sig, siginfo_t *info, void *context)
{
    int is_fault = info != NULL && info->si_code > 0;
    if (is_fault) {
        if (info->si_addr == last_fault_addr) {
            if (++same_fault_count > 8) {
                default_action();
                return;
            }
        } else {
            last_fault_addr = info->si_addr;
            same_fault_count = 0;
        }
    }

    struct sigaction prev = previous_action;
    if (chaining || (prev.sa_flags & SA_SIGINFO) == 0) {
        if (chaining || prev.sa_handler == SIG_DFL || (prev.sa_handler == SIG_IGN && is_fault)) {
            /* A kernel-raised SIGBUS cannot be ignored: the default kills. */
            default_action();
            return;
        }
        if (prev.sa_handler == SIG_IGN)
            return;
        chaining = 1;
        prev.sa_handler(sig);
        chaining = 0;
        return;
    }
    chaining = 1;
    prev.sa_sigaction(sig, info, context);
    chaining = 0;
}

static void on_sigbus(int sig, siginfo_t *info, void *context)
{
    guard_scope *scope = current_scope;
    if (scope != NULL && !chaining && info != NULL) {
        int guarded;
        if (info->si_code > 0) {
            /* Raised by the kernel for a fault: ours if the address is in
             * the region this thread is copying. */
            const char *addr = (const char *)info->si_addr;
            guarded = addr >= scope->lo && addr < scope->hi;
        } else {
            /* A handler in front of ours caught the fault and re-raised it
             * on this thread (faulthandler does): the thread is inside a
             * guarded copy, so that is where the fault was. */
#ifdef SI_TKILL
            guarded = info->si_code == SI_TKILL && info->si_pid == getpid();
#else
            guarded = 0;
#endif
        }
        if (guarded) {
            sigset_t bus;
            sigemptyset(&bus);
            sigaddset(&bus, SIGBUS);
            pthread_sigmask(SIG_UNBLOCK, &bus, NULL);
            current_scope = NULL;
            siglongjmp(scope->env, 1);
        }
    }
    pass_on(sig, info, context);
}

/* Puts the handler in front.  Called at import and at every open(): if
 * something installed another handler since (faulthandler.enable()), ours
 * goes back in front and chains to it. */
int iommap_guard_install(void)
{
    static int detected;
    if (!detected) {
        detect_rep_movsb();
        detected = 1;
    }
    struct sigaction current;
    if (sigaction(SIGBUS, NULL, &current) != 0)
        return -1;
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigbus)
        return 0;

    struct sigaction ours;
    memset(&ours, 0, sizeof(ours));
    ours.sa_sigaction = on_sigbus;
    ours.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    /* Record what to chain to before a SIGBUS can reach the new handler. */
    previous_action = current;
    return sigaction(SIGBUS, &ours, NULL);
}

/* noinline keeps the sigsetjmp frame alive for exactly the copy; the
 * volatile scope pointer is what the handler reads. */
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
    guard_scope scope;
    scope.lo = (const char *)batch->region;
    scope.hi = (const char *)batch->region + batch->region_size;
    if (sigsetjmp(scope.env, 0) != 0)
        return -1;
    current_scope = &scope;
    COMPILER_BARRIER();
    size_t n = batch->length;
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
