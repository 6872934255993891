/*
 * rayvino's crash guard (guard.h): calls into a custom node library that return to the caller when
 * the library crashes, so a pipeline answers 500 for that request instead of dying with it.
 *
 * How: each guarded call records a frame (a sigjmp_buf) in a thread-local pointer, then calls the
 * library. One process-wide handler for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT jumps back to
 * that frame when the signal belongs to the thread that is inside the guarded call: a fault of its
 * own instruction (si_code > 0) or a signal this process sent (raise, abort, assert: si_pid is
 * ours). Every other such signal goes where it went before the guard: the handler puts back the
 * action it replaced (Python's faulthandler, Ray's, or SIG_DFL) and returns, so a fault re-fires
 * into it and a sent signal, raised again, is delivered to it. Crashes outside guarded calls thus
 * end the process exactly as they did; that action then stays in place, the guard's being gone for
 * that signal, which matters little in a process about to die.
 *
 * Why this is sound enough: a jump out of a crashed library skips the rest of its code, so its
 * state, and anything it shares with the process (the heap, a lock it held), may be corrupt. The
 * caller is told the call crashed, the guard counts the crash (rv_guard_crashes) and rayvino never
 * trusts the process again: no later call reaches that library, and the health check asks for the
 * process to be replaced. The process only lives long enough to answer. The Python state is not
 * touched: cffi released the GIL around the call and takes it back when the guard returns.
 * Where it is not: a crash inside malloc (a heap the library corrupted) or with another lock held
 * can leave that lock taken, and the thread may then hang instead of answering; the crash counter
 * still makes the health check fail, so the process is replaced all the same.
 *
 * SIGABRT is caught as well, when this thread raised it (abort(), a failed assert): glibc's abort()
 * holds no lock while it raises the first SIGABRT, so jumping out of it is as safe as out of a
 * segfault, and a node's failed assert answers 500 like its segfault.
 *
 * The alternate signal stack: the handler cannot run on a stack that is full (a stack overflow),
 * so it runs on one of the guard's own. Each thread that makes a guarded call gets one, freed when
 * the thread exits, and each guarded call sets it for its own length, then puts back the thread's
 * previous one. A thread's own setting cannot be trusted: other code sets alternate stacks and
 * may free them from another thread (OpenVINO's CPU plugin maps one on the thread that creates
 * it and unmaps it wherever it is destroyed, without putting the old one back there). A signal
 * whose handler is to run on an unmapped alternate stack cannot be delivered, and the kernel ends
 * the process without a word: no handler at all runs.
 */
#define _GNU_SOURCE
#include "guard.h"

#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

enum { ALT_STACK_BYTES = 256 * 1024 }; /* room for a previous handler that prints a stack trace */

static const int CAUGHT[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
#define CAUGHT_COUNT (sizeof CAUGHT / sizeof CAUGHT[0])

/* One guarded call in progress on a thread; `outer` is the one it runs inside, if any. */
struct frame {
    sigjmp_buf resume;
    volatile sig_atomic_t signal;
    struct frame* outer;
    stack_t previous_stack; /* the thread's alternate stack before this call */
    int stack_swapped;      /* whether this call set the guard's and must put previous_stack back */
};

/* initial-exec: the handler reads these, and a dlopen'ed library's thread-locals in the default
 * model may be allocated with malloc on first access, which a signal handler must not do. */
static __thread struct frame* current __attribute__((tls_model("initial-exec")));
static __thread void* own_stack __attribute__((tls_model("initial-exec"))); /* this thread's, or NULL */

static struct sigaction previous[CAUGHT_COUNT]; /* what each signal did before the guard */
static atomic_long crashes;
static pthread_once_t installed = PTHREAD_ONCE_INIT;
static pthread_key_t alt_stack_key;

/* --- the handler --------------------------------------------------------------------------- */

/* A fault of the interrupted instruction itself, or a signal this process sent itself. */
static int synchronous(const siginfo_t* info) { return info->si_code > 0 || info->si_pid == getpid(); }

/* Hand the signal to the action the guard replaced, as if the guard had never been there. */
static void pass_on(int signo, const siginfo_t* info) {
    for (size_t i = 0; i < CAUGHT_COUNT; i++)
        if (CAUGHT[i] == signo) sigaction(signo, &previous[i], NULL);
    /* A fault re-fires when the handler returns; a sent signal would not come again by itself. It
     * stays pending while this handler runs (no SA_NODEFER) and reaches that action on return. */
    if (info->si_code <= 0) raise(signo);
}

static void on_crash(int signo, siginfo_t* info, void* context) {
    struct frame* frame = current;
    if (frame == NULL || !synchronous(info)) {
        pass_on(signo, info);
        return;
    }
    current = frame->outer;
    frame->signal = signo;
    atomic_fetch_add(&crashes, 1); /* lock-free, so safe in a handler */
    siglongjmp(frame->resume, 1);  /* restores the signal mask saved by sigsetjmp */
}

/* --- per process and per thread ------------------------------------------------------------ */

static void free_alt_stack(void* memory) {
    stack_t now;
    if (sigaltstack(NULL, &now) == 0 && now.ss_sp == memory) {
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
    }
    free(memory);
}

static void install(void) {
    pthread_key_create(&alt_stack_key, free_alt_stack);
    struct sigaction action = {.sa_sigaction = on_crash, .sa_flags = SA_SIGINFO | SA_ONSTACK};
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < CAUGHT_COUNT; i++) {
        /* Read first, then replace: the handler never sees an unfilled `previous`. */
        sigaction(CAUGHT[i], NULL, &previous[i]);
        sigaction(CAUGHT[i], &action, NULL);
    }
}

/* This thread's alternate signal stack, made at its first guarded call; NULL if out of memory. */
static void* thread_stack(void) {
    if (own_stack == NULL && (own_stack = malloc(ALT_STACK_BYTES)) != NULL)
        pthread_setspecific(alt_stack_key, own_stack);
    return own_stack;
}

/* Set the guard's alternate stack for one call, keeping the thread's previous one in `frame`. */
static void swap_stack_in(struct frame* frame) {
    void* memory = thread_stack();
    stack_t mine = {.ss_sp = memory, .ss_size = ALT_STACK_BYTES};
    frame->stack_swapped = memory != NULL && sigaltstack(&mine, &frame->previous_stack) == 0;
}

static void swap_stack_out(const struct frame* frame) {
    if (frame->stack_swapped) sigaltstack(&frame->previous_stack, NULL);
}

/* --- guarded calls ------------------------------------------------------------------------- */

/* `call(args)` under the guard. sigsetjmp is here, so this frame outlives every jump to it. */
static int guarded(int (*call)(void*), void* args, int* signal_out) {
    pthread_once(&installed, install);
    struct frame frame = {.signal = 0, .outer = current};
    swap_stack_in(&frame);
    if (sigsetjmp(frame.resume, 1) != 0) { /* back from the handler, off its stack */
        swap_stack_out(&frame);
        *signal_out = frame.signal;
        return RV_GUARD_CRASHED;
    }
    current = &frame;
    int status = call(args);
    current = frame.outer;
    swap_stack_out(&frame);
    *signal_out = 0;
    return status;
}

struct initialize_args {
    rv_initialize_fn fn;
    void** manager;
    const struct CustomNodeParam* params;
    int paramsCount;
};
static int call_initialize(void* p) {
    struct initialize_args* a = p;
    return a->fn(a->manager, a->params, a->paramsCount);
}
int rv_guard_initialize(rv_initialize_fn fn, int* signal_out, void** manager, const struct CustomNodeParam* params,
                        int paramsCount) {
    struct initialize_args args = {fn, manager, params, paramsCount};
    return guarded(call_initialize, &args, signal_out);
}

struct deinitialize_args {
    rv_deinitialize_fn fn;
    void* manager;
};
static int call_deinitialize(void* p) {
    struct deinitialize_args* a = p;
    return a->fn(a->manager);
}
int rv_guard_deinitialize(rv_deinitialize_fn fn, int* signal_out, void* manager) {
    struct deinitialize_args args = {fn, manager};
    return guarded(call_deinitialize, &args, signal_out);
}

struct execute_args {
    rv_execute_fn fn;
    const struct CustomNodeTensor* inputs;
    int inputsCount;
    struct CustomNodeTensor** outputs;
    int* outputsCount;
    const struct CustomNodeParam* params;
    int paramsCount;
    void* manager;
};
static int call_execute(void* p) {
    struct execute_args* a = p;
    return a->fn(a->inputs, a->inputsCount, a->outputs, a->outputsCount, a->params, a->paramsCount, a->manager);
}
int rv_guard_execute(rv_execute_fn fn, int* signal_out, const struct CustomNodeTensor* inputs, int inputsCount,
                     struct CustomNodeTensor** outputs, int* outputsCount, const struct CustomNodeParam* params,
                     int paramsCount, void* manager) {
    struct execute_args args = {fn, inputs, inputsCount, outputs, outputsCount, params, paramsCount, manager};
    return guarded(call_execute, &args, signal_out);
}

struct info_args {
    rv_info_fn fn;
    struct CustomNodeTensorInfo** info;
    int* infoCount;
    const struct CustomNodeParam* params;
    int paramsCount;
    void* manager;
};
static int call_info(void* p) {
    struct info_args* a = p;
    return a->fn(a->info, a->infoCount, a->params, a->paramsCount, a->manager);
}
int rv_guard_getInputsInfo(rv_info_fn fn, int* signal_out, struct CustomNodeTensorInfo** info, int* infoCount,
                           const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct info_args args = {fn, info, infoCount, params, paramsCount, manager};
    return guarded(call_info, &args, signal_out);
}
int rv_guard_getOutputsInfo(rv_info_fn fn, int* signal_out, struct CustomNodeTensorInfo** info, int* infoCount,
                            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    struct info_args args = {fn, info, infoCount, params, paramsCount, manager};
    return guarded(call_info, &args, signal_out);
}

struct release_args {
    rv_release_fn fn;
    void* ptr;
    void* manager;
};
static int call_release(void* p) {
    struct release_args* a = p;
    return a->fn(a->ptr, a->manager);
}
int rv_guard_release(rv_release_fn fn, int* signal_out, void* ptr, void* manager) {
    struct release_args args = {fn, ptr, manager};
    return guarded(call_release, &args, signal_out);
}

long rv_guard_crashes(void) { return atomic_load(&crashes); }
