/* A test node that counts its calls, tracks every buffer it hands out, and can be told to
 * produce one fault (param "fault"), so tests prove each buffer is released exactly once on
 * every path.
 *
 * Normal run: input_numbers FP32 [1,N] -> output_numbers = input + 1 (FP32 [1,N]) and
 * output_ids = 0..N-1 (I32 [1,N]). Faults: fail_initialize, fail_metadata, null_info,
 * zero_info_count, fail_execute, null_outputs, zero_count, missing_name, unspecified_precision,
 * null_data, wrong_size, null_dims, shared_dims (both outputs share one dims array).
 *
 * Extra exports: counting_reset(), counting_stats(int64_t out[COUNTING_STATS]) and
 * counting_last_input() (the data pointer execute received, to prove inputs are zero-copy).
 * With param "stats_file", deinitialize writes the stats there as "name value" lines, for tests
 * where the library runs in another process (a Ray replica). */
#include <stdio.h>

#include "node_util.h"

#define MAX_LIVE 1024
enum { INITIALIZE, DEINITIALIZE, EXECUTE, INFO, RELEASE, OUTSTANDING, UNKNOWN_RELEASE, BAD_MANAGER, COUNTING_STATS };

static int64_t stats[COUNTING_STATS];
static void* live[MAX_LIVE];
static uintptr_t last_input;
static char stats_file[4096];
static const char* const STAT_NAMES[COUNTING_STATS] = {
    "initialize", "deinitialize", "execute", "info", "release", "outstanding", "unknown_release", "bad_manager"};
static const int MANAGER_MAGIC = 0x4e4f4445;

void counting_reset(void) {
    memset(stats, 0, sizeof(stats));
    memset(live, 0, sizeof(live));
    last_input = 0;
}

void counting_stats(int64_t* out) {
    int64_t outstanding = 0;
    for (int i = 0; i < MAX_LIVE; i++) outstanding += live[i] != NULL;
    stats[OUTSTANDING] = outstanding;
    memcpy(out, stats, sizeof(stats));
}

uintptr_t counting_last_input(void) { return last_input; }

static void* tracked(size_t bytes) {
    void* ptr = malloc(bytes ? bytes : 1);
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i] == NULL) { live[i] = ptr; return ptr; }
    return ptr; /* table full: the test will see a leak */
}

static void check_manager(void* manager) {
    if (manager == NULL || *(int*)manager != MANAGER_MAGIC) stats[BAD_MANAGER]++;
}

static int is_fault(const struct CustomNodeParam* params, int count, const char* fault) {
    const char* value = param_value(params, count, "fault");
    return value != NULL && strcmp(value, fault) == 0;
}

static void write_stats_file(void) {
    if (stats_file[0] == '\0') return;
    int64_t out[COUNTING_STATS];
    counting_stats(out);
    FILE* file = fopen(stats_file, "w");
    if (file == NULL) return;
    for (int i = 0; i < COUNTING_STATS; i++) fprintf(file, "%s %lld\n", STAT_NAMES[i], (long long)out[i]);
    fclose(file);
}

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) {
    stats[INITIALIZE]++;
    const char* path = param_value(params, paramsCount, "stats_file");
    if (path != NULL) snprintf(stats_file, sizeof(stats_file), "%s", path);
    if (is_fault(params, paramsCount, "fail_initialize")) return 1;
    int* state = (int*)malloc(sizeof(int));
    *state = MANAGER_MAGIC;
    *manager = state;
    return 0;
}

int deinitialize(void* manager) {
    stats[DEINITIALIZE]++;
    check_manager(manager);
    free(manager);
    write_stats_file();
    return 0;
}

static void fill_output(struct CustomNodeTensor* out, const char* name, CustomNodeTensorPrecision precision,
                        uint64_t n, uint64_t* dims) {
    out->name = name;
    out->precision = precision;
    out->dimsCount = 2;
    out->dims = dims ? dims : (uint64_t*)tracked(2 * sizeof(uint64_t));
    out->dims[0] = 1;
    out->dims[1] = n;
    out->dataBytes = n * 4;
    out->data = (uint8_t*)tracked(out->dataBytes);
}

static void apply_fault(struct CustomNodeTensor* out, const struct CustomNodeParam* params, int count) {
    if (is_fault(params, count, "missing_name")) out->name = NULL;
    if (is_fault(params, count, "unspecified_precision")) out->precision = UNSPECIFIED;
    if (is_fault(params, count, "wrong_size")) out->dataBytes += 4;
    if (is_fault(params, count, "null_data")) {
        for (int i = 0; i < MAX_LIVE; i++)
            if (live[i] == out->data) live[i] = NULL;
        free(out->data);
        out->data = NULL;
    }
    if (is_fault(params, count, "null_dims")) {
        for (int i = 0; i < MAX_LIVE; i++)
            if (live[i] == out->dims) live[i] = NULL;
        free(out->dims);
        out->dims = NULL;
    }
}

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    stats[EXECUTE]++;
    check_manager(manager);
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "input_numbers");
    if (is_fault(params, paramsCount, "fail_execute") || in == NULL || in->precision != FP32) return 1;
    last_input = (uintptr_t)in->data;
    if (is_fault(params, paramsCount, "null_outputs")) {
        *outputs = NULL;
        *outputsCount = 2;
        return 0;
    }
    *outputs = (struct CustomNodeTensor*)tracked(2 * sizeof(struct CustomNodeTensor));
    if (is_fault(params, paramsCount, "zero_count")) {
        *outputsCount = 0;
        return 0;
    }
    uint64_t n = in->dataBytes / sizeof(float);
    struct CustomNodeTensor* numbers = &(*outputs)[0];
    struct CustomNodeTensor* ids = &(*outputs)[1];
    fill_output(numbers, "output_numbers", FP32, n, NULL);
    fill_output(ids, "output_ids", I32, n, is_fault(params, paramsCount, "shared_dims") ? numbers->dims : NULL);
    for (uint64_t i = 0; i < n; i++) {
        ((float*)numbers->data)[i] = ((const float*)in->data)[i] + 1.0f;
        ((int32_t*)ids->data)[i] = (int32_t)i;
    }
    apply_fault(ids, params, paramsCount);
    *outputsCount = 2;
    return 0;
}

static int info(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount,
                void* manager, const char* first, const char* second) {
    stats[INFO]++;
    check_manager(manager);
    if (is_fault(params, paramsCount, "fail_metadata")) return 1;
    if (is_fault(params, paramsCount, "null_info")) {
        *info = NULL;
        *infoCount = 1;
        return 0;
    }
    *info = (struct CustomNodeTensorInfo*)tracked(2 * sizeof(struct CustomNodeTensorInfo));
    *infoCount = is_fault(params, paramsCount, "zero_info_count") ? 0 : (second ? 2 : 1);
    if (*infoCount == 0) return 0;
    for (int i = 0; i < *infoCount; i++) {
        struct CustomNodeTensorInfo* entry = &(*info)[i];
        entry->name = i == 0 ? first : second;
        entry->precision = i == 0 ? FP32 : I32;
        entry->dimsCount = 2;
        entry->dims = (uint64_t*)tracked(2 * sizeof(uint64_t));
        entry->dims[0] = 1;
        entry->dims[1] = (uint64_t)-1;
    }
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** infos, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    return info(infos, infoCount, params, paramsCount, manager, "input_numbers", NULL);
}

int getOutputsInfo(struct CustomNodeTensorInfo** infos, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    return info(infos, infoCount, params, paramsCount, manager, "output_numbers", "output_ids");
}

int release(void* ptr, void* manager) {
    stats[RELEASE]++;
    check_manager(manager);
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i] == ptr) {
            live[i] = NULL;
            free(ptr);
            return 0;
        }
    }
    stats[UNKNOWN_RELEASE]++; /* a double release or a pointer we never handed out */
    return 1;
}
