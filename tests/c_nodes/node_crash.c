/* Crashes on demand, for the crash guard's tests: never run a crash in the test process itself.
 *
 * Params: "crash_in" names the function that crashes (initialize, getInputsInfo, getOutputsInfo,
 * execute, release or deinitialize; none by default) and "crash_with" how (see crash_now). Without
 * a crash, execute echoes input_numbers to output_numbers. With "ready_fd" and "wait_fd", execute
 * first writes a byte to ready_fd, then waits for one on wait_fd: a test knows a call is inside
 * execute and lets it finish when it chooses.
 *
 * Extra exports: crash_now(kind) crashes at once, outside any node call, and crash_calls() counts
 * the calls into the six functions, so a test can prove a call never reached the library. */
#include <signal.h>
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>

#include "node_util.h"

struct config {
    char crash_in[32], crash_with[32];
    int ready_fd, wait_fd;
};

static long calls;
static volatile int depth_limit = 1 << 30; /* volatile: the recursion below has no visible end */

long crash_calls(void) { return calls; }

static int recurse(int depth) {
    volatile char frame[4096];
    frame[0] = (char)depth;
    if (depth >= depth_limit) return frame[0];
    return recurse(depth + 1) + frame[0]; /* no tail call: each level keeps its frame */
}

static void bus_error(void) {
    FILE* file = tmpfile(); /* empty: the page mapped past its end is not backed */
    volatile char* page = mmap(NULL, 4096, PROT_READ, MAP_SHARED, fileno(file), 0);
    (void)page[0];
}

/* null_write (default), raise_segv, abort, stack_overflow, divide_by_zero, trap (SIGILL), bus. */
void crash_now(const char* kind) {
    volatile int zero = 0, one = 1; /* volatile: gcc turns 1 / x into compares, with no division */
    if (strcmp(kind, "raise_segv") == 0) raise(SIGSEGV);
    if (strcmp(kind, "abort") == 0) abort();
    if (strcmp(kind, "stack_overflow") == 0) recurse(0);
    if (strcmp(kind, "divide_by_zero") == 0) zero = one / zero;
    if (strcmp(kind, "trap") == 0) __builtin_trap();
    if (strcmp(kind, "bus") == 0) bus_error();
    *(volatile int*)(uintptr_t)zero = 1;
}

static void maybe_crash(void* manager, const char* function) {
    calls++;
    struct config* config = manager;
    if (config != NULL && strcmp(config->crash_in, function) == 0) crash_now(config->crash_with);
}

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) {
    struct config* config = calloc(1, sizeof(struct config));
    snprintf(config->crash_in, sizeof config->crash_in, "%s", get_string_param(params, paramsCount, "crash_in", ""));
    snprintf(config->crash_with, sizeof config->crash_with, "%s",
             get_string_param(params, paramsCount, "crash_with", "null_write"));
    config->ready_fd = get_int_param(params, paramsCount, "ready_fd", -1);
    config->wait_fd = get_int_param(params, paramsCount, "wait_fd", -1);
    *manager = config;
    maybe_crash(config, "initialize");
    return 0;
}

int deinitialize(void* manager) {
    maybe_crash(manager, "deinitialize");
    free(manager);
    return 0;
}

static void wait_for_the_test(const struct config* config) {
    char byte = 0;
    if (config->ready_fd >= 0 && write(config->ready_fd, &byte, 1) != 1) return;
    if (config->wait_fd >= 0 && read(config->wait_fd, &byte, 1) != 1) return;
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    maybe_crash(manager, "execute");
    wait_for_the_test(manager);
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "input_numbers");
    if (in == NULL || in->precision != FP32) return 1;
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)malloc(sizeof(struct CustomNodeTensor));
    float* out = set_fp32_output(*outputs, "output_numbers", (int)in->dimsCount, in->dims);
    memcpy(out, in->data, in->dataBytes);
    return 0;
}

static int info(struct CustomNodeTensorInfo** info, int* infoCount, const char* name) {
    static const uint64_t dims[] = {1, 0};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, name, FP32, 2, dims);
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info_out, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    maybe_crash(manager, "getInputsInfo");
    return info(info_out, infoCount, "input_numbers");
}

int getOutputsInfo(struct CustomNodeTensorInfo** info_out, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    maybe_crash(manager, "getOutputsInfo");
    return info(info_out, infoCount, "output_numbers");
}

int release(void* ptr, void* manager) {
    maybe_crash(manager, "release");
    free(ptr);
    return 0;
}
