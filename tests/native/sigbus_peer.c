/* A library with its own SIGBUS handler, as native runtimes loaded into
 * Python have (a JVM, a WebAssembly runtime, a user-space pager).  The
 * signal-coexistence tests build it with cc and load it with ctypes.
 *
 * It owns one page of a file it shrinks to nothing, so touching the page
 * faults.  Its handler deals with faults on that page in one of three ways
 * and passes every other SIGBUS to the handler it displaced, as such
 * libraries do:
 *   PEER_JUMP    siglongjmp back to peer_touch(), which reports the fault;
 *   PEER_FIX     map an anonymous page of 'Z' over the page and return, so
 *                the access is retried and succeeds;
 *   PEER_RETURN  return without fixing: the access faults again, forever.
 *                After PEER_LOOP_LIMIT entries in a row it writes
 *                "peer: looped N" to stderr and exits with status 7, so a
 *                test sees the loop without waiting for a timeout.
 * The handler runs with SIGBUS and SIGUSR2 blocked.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

enum { PEER_JUMP = 0, PEER_FIX = 1, PEER_RETURN = 2 };
#define PEER_LOOP_LIMIT 1000

static int flavour;
static char *page;
static size_t page_size;
static int page_fd = -1;
static struct sigaction displaced;
static sigjmp_buf jump_back;
static volatile sig_atomic_t jump_armed;
static volatile long entries;    /* handler entries for its own page */
static volatile long loop_count; /* PEER_RETURN: entries since the last touch */
static volatile long foreign;    /* SIGBUS passed on to the displaced handler */

static void pass_to_displaced(int sig, siginfo_t *info, void *context)
{
    foreign++;
    if (displaced.sa_flags & SA_SIGINFO) {
        displaced.sa_sigaction(sig, info, context);
    } else if (displaced.sa_handler == SIG_DFL ||
               (displaced.sa_handler == SIG_IGN && info->si_code > 0)) {
        /* What such libraries do: put the old disposition back and let the
         * signal happen again under it. */
        sigaction(SIGBUS, &displaced, NULL);
        if (info->si_code <= 0)
            raise(sig);
        /* a fault: returning retries the access, which faults again */
    } else if (displaced.sa_handler != SIG_IGN) {
        displaced.sa_handler(sig);
    }
}

static void on_bus(int sig, siginfo_t *info, void *context)
{
    char *addr = info->si_addr;
    if (info->si_code <= 0 || page == NULL || addr < page || addr >= page + page_size) {
        pass_to_displaced(sig, info, context);
        return;
    }
    entries++;
    switch (flavour) {
    case PEER_JUMP:
        if (jump_armed) {
            jump_armed = 0;
            siglongjmp(jump_back, 1);
        }
        break;
    case PEER_FIX: {
        void *fixed = mmap(page, page_size, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
        if (fixed != MAP_FAILED)
            memset(fixed, 'Z', page_size);
        break;
    }
    default:
        if (++loop_count >= PEER_LOOP_LIMIT) {
            char line[64];
            int n = snprintf(line, sizeof(line), "peer: looped %ld\n", loop_count);
            (void)!write(2, line, (size_t)n);
            _exit(7);
        }
    }
}

/* Maps the page (of an emptied file at `path`) and installs the handler,
 * remembering the one it displaces.  0 on success. */
int peer_install(const char *path, int how)
{
    flavour = how;
    page_size = (size_t)sysconf(_SC_PAGESIZE);
    page_fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (page_fd < 0)
        return -1;
    page = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_SHARED, page_fd, 0);
    if (page == MAP_FAILED) {
        page = NULL;
        return -1;
    }
    struct sigaction ours;
    memset(&ours, 0, sizeof(ours));
    ours.sa_sigaction = on_bus;
    ours.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&ours.sa_mask);
    /* Runtimes block other signals while their handler runs; whoever jumps
     * out of it must put the mask back. */
    sigaddset(&ours.sa_mask, SIGUSR2);
    return sigaction(SIGBUS, &ours, &displaced);
}

/* Maps the file page back over the page (PEER_FIX replaces it), so that the
 * next touch faults again, at the same address.  0 on success. */
int peer_reset(void)
{
    loop_count = 0;
    return mmap(page, page_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, page_fd, 0) ==
                   MAP_FAILED
               ? -1
               : 0;
}

/* Touches the page so that it faults once more.  Returns the byte read: 'Z'
 * when the handler fixed the page, -1 when it jumped back here. */
int peer_touch(void)
{
    if (peer_reset() != 0)
        return -2;
    if (sigsetjmp(jump_back, 1) != 0)
        return -1;
    jump_armed = 1;
    int value = *(volatile char *)page;
    jump_armed = 0;
    return value;
}

/* The page, for a copy into it made by someone else. */
void *peer_page(void)
{
    return page;
}

long peer_entries(void)
{
    return entries;
}

long peer_foreign(void)
{
    return foreign;
}

static void *kill_target(void *target)
{
    pthread_kill(*(pthread_t *)target, SIGBUS);
    return NULL;
}

/* pthread_kill(target, SIGBUS) from a new thread, which this one joins: the
 * signal arrives while no other thread runs Python code (so faulthandler's
 * report of all threads is the same each time). */
int peer_kill_from_thread(unsigned long target)
{
    pthread_t killer, victim = (pthread_t)target;
    if (pthread_create(&killer, NULL, kill_target, &victim) != 0)
        return -1;
    return pthread_join(killer, NULL);
}

static struct {
    pthread_t target;
    unsigned usec;
} delayed;

static void *kill_later(void *unused)
{
    (void)unused;
    usleep(delayed.usec);
    pthread_kill(delayed.target, SIGBUS);
    return NULL;
}

/* pthread_kill(target, SIGBUS) from a new, detached thread after `usec`
 * microseconds: lands in whatever the target runs then.  One at a time. */
int peer_kill_later(unsigned long target, unsigned usec)
{
    pthread_t killer;
    delayed.target = (pthread_t)target;
    delayed.usec = usec;
    if (pthread_create(&killer, NULL, kill_later, NULL) != 0)
        return -1;
    return pthread_detach(killer);
}
