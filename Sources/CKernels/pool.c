// A persistent pool of worker threads for the engine's parallel loops.
//
// A training step runs a few hundred parallel loops of tens of microseconds each. Waking a
// sleeping thread for each (as a dispatch queue does) costs a system call on both sides and a
// wake-up latency that the loop's caller spends alone, so the workers here spin for a while
// after each loop (as OpenMP runtimes do) and only then sleep on a futex. Chunks are handed out
// from one atomic counter, so a core busy with another process slows a loop instead of
// stalling it.
#define _GNU_SOURCE  // sched_getaffinity, CPU_COUNT
#include "CKernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>
#define PC_PAUSE() _mm_pause()
#else
#define PC_PAUSE() ((void)0)
#endif

enum { MAX_WORKERS = 255 };
// Workers spin this long after a loop before they sleep: longer than the serial work between
// two loops of a training step, so a step wakes no one through the kernel. They do not spin
// where there are more of them (and the caller) than processors.
static const long SPIN_NANOSECONDS = 1000000;

// `state` packs the current loop's generation (high 32 bits), whether it is closed to
// latecomers (bit 31), how many workers may join it (bits 16-30) and how many are inside it
// (bits 0-15).
#define PC_CLOSED (1ull << 31)
#define PC_LIMIT_SHIFT 16
#define PC_ACTIVE_MASK 0xFFFFull

static struct {
    pthread_mutex_t busy;          // held by the thread running a loop on the pool
    _Atomic int workers;           // started so far (spinning workers read it)
    int start_failed;              // pthread_create failed once: start no more
    _Alignas(64) _Atomic unsigned generation;   // bumped once per loop; workers wait for it to change
    _Atomic int sleepers;          // workers waiting on the futex
    _Alignas(64) _Atomic unsigned long long state;
    // The current loop, written before its state is published and kept until no worker is
    // inside it.
    pc_pool_task task;
    void *context;
    long chunks;
    _Alignas(64) _Atomic long next;             // next chunk to hand out
} pool = { .busy = PTHREAD_MUTEX_INITIALIZER };

static _Thread_local int in_pool_loop;

static long now_nanoseconds(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

// Processors this process may run on (its affinity mask): workers spin only while the pool fits.
static int processors(void) {
    static _Atomic int count = 0;
    int known = atomic_load_explicit(&count, memory_order_relaxed);
    if (known == 0) {
#if defined(__linux__)
        cpu_set_t set;
        known = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
        if (known <= 0) {
            const long online = sysconf(_SC_NPROCESSORS_ONLN);
            known = online > 0 ? (int)online : 1;
        }
#else
        known = 1;
#endif
        atomic_store_explicit(&count, known, memory_order_relaxed);
    }
    return known;
}

// Spinning, a waiting thread yields its processor now and then, so a thread that has work (ours
// or another process's) is not kept off it.
static inline void spin_once(unsigned i) {
    PC_PAUSE();
    if (i % 64 == 0) sched_yield();
}

static void wait_for_change(unsigned seen) {
    const long start = now_nanoseconds();
    const int spin = atomic_load_explicit(&pool.workers, memory_order_relaxed) + 1 <= processors();
    for (unsigned i = 1; spin; i++) {
        if (atomic_load_explicit(&pool.generation, memory_order_acquire) != seen) return;
        spin_once(i);
        if (i % 256 == 0 && now_nanoseconds() - start > SPIN_NANOSECONDS) break;
    }
    atomic_fetch_add(&pool.sleepers, 1);
    while (atomic_load_explicit(&pool.generation, memory_order_acquire) == seen) {
#if defined(__linux__)
        syscall(SYS_futex, (unsigned *)&pool.generation, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
#else
        sched_yield();
#endif
    }
    atomic_fetch_sub(&pool.sleepers, 1);
}

static void run_chunks(void) {
    const pc_pool_task task = pool.task;
    void *context = pool.context;
    const long chunks = pool.chunks;
    for (;;) {
        const long chunk = atomic_fetch_add_explicit(&pool.next, 1, memory_order_relaxed);
        if (chunk >= chunks) break;
        task(context, chunk);
    }
}

// Workers join a loop only while it is open and has room (threads - 1 of them at most): the
// caller closes it once it has run out of chunks itself, so it never waits for a worker that is
// still waking up, only for those inside.
static void *worker_main(void *arg) {
    (void)arg;
    unsigned seen = 0;
    in_pool_loop = 1;  // a loop started inside a task runs on its own thread
    for (;;) {
        wait_for_change(seen);
        seen = atomic_load_explicit(&pool.generation, memory_order_acquire);
        unsigned long long state = atomic_load_explicit(&pool.state, memory_order_acquire);
        int joined = 0;
        while ((unsigned)(state >> 32) == seen && !(state & PC_CLOSED) &&
               (state & PC_ACTIVE_MASK) < ((state >> PC_LIMIT_SHIFT) & 0x7FFF)) {
            if (atomic_compare_exchange_weak_explicit(&pool.state, &state, state + 1, memory_order_acq_rel,
                                                      memory_order_acquire)) { joined = 1; break; }
        }
        if (!joined) continue;
        run_chunks();
        atomic_fetch_sub_explicit(&pool.state, 1, memory_order_release);
    }
    return NULL;
}

// Where a thread cannot be started (a process limit, say), the loops run with those there are
// and no later loop tries again.
static void start_workers(int wanted) {
    while (!pool.start_failed && atomic_load_explicit(&pool.workers, memory_order_relaxed) < wanted) {
        pthread_t thread;
        pthread_attr_t attributes;
        pthread_attr_init(&attributes);
        pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
        const int failed = pthread_create(&thread, &attributes, worker_main, NULL);
        pthread_attr_destroy(&attributes);
        if (failed) { pool.start_failed = 1; break; }
        atomic_fetch_add_explicit(&pool.workers, 1, memory_order_relaxed);
    }
}

void pc_pool_run(int threads, long chunks, pc_pool_task task, void *context) {
    if (chunks <= 0) return;
    int helpers = threads - 1;
    if (helpers > MAX_WORKERS) helpers = MAX_WORKERS;
    if (helpers > chunks - 1) helpers = (int)(chunks - 1);
    // Serially where there is nothing to share, inside another loop's task, or while another
    // thread has the pool.
    if (helpers <= 0 || in_pool_loop || pthread_mutex_trylock(&pool.busy) != 0) {
        for (long c = 0; c < chunks; c++) task(context, c);
        return;
    }
    start_workers(helpers);
    pool.task = task;
    pool.context = context;
    pool.chunks = chunks;
    atomic_store_explicit(&pool.next, 0, memory_order_relaxed);
    const unsigned generation = atomic_load_explicit(&pool.generation, memory_order_relaxed) + 1;
    atomic_store_explicit(&pool.state,
                          (unsigned long long)generation << 32 | (unsigned long long)helpers << PC_LIMIT_SHIFT,
                          memory_order_release);
    // Sequentially consistent, so the sleepers count below is read after the new generation is
    // visible: a worker that counted itself in before then gets the wake, one that counts itself
    // in after sees the new generation and does not wait.
    atomic_store_explicit(&pool.generation, generation, memory_order_seq_cst);
#if defined(__linux__)
    if (atomic_load(&pool.sleepers) > 0)
        syscall(SYS_futex, (unsigned *)&pool.generation, FUTEX_WAKE_PRIVATE, helpers, NULL, NULL, 0);
#endif
    in_pool_loop = 1;
    run_chunks();
    in_pool_loop = 0;
    // Close the loop, then wait for the workers inside it to finish their chunks.
    unsigned long long state = atomic_fetch_or_explicit(&pool.state, PC_CLOSED, memory_order_acq_rel) | PC_CLOSED;
    for (unsigned i = 1; state & PC_ACTIVE_MASK; i++) {
        spin_once(i);
        state = atomic_load_explicit(&pool.state, memory_order_acquire);
    }
    pthread_mutex_unlock(&pool.busy);
}
