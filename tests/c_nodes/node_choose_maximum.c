/* OVMS's choose_maximum test node, the gather node: input_tensors [N,1,M] -> maximum_tensor [1,M],
 * the row whose minimum / average / maximum (param selection_criteria) is largest. */
#include <float.h>

#include "node_util.h"

static int criteria(const struct CustomNodeParam* params, int count) {
    const char* value = param_value(params, count, "selection_criteria");
    if (count != 1 || value == NULL) return -1;
    if (strcmp(value, "MAXIMUM_MINIMUM") == 0) return 0;
    if (strcmp(value, "MAXIMUM_AVERAGE") == 0) return 1;
    if (strcmp(value, "MAXIMUM_MAXIMUM") == 0) return 2;
    return -1;
}

static float score(const float* row, uint64_t m, int method) {
    float min = FLT_MAX, max = -FLT_MAX, sum = 0;
    for (uint64_t i = 0; i < m; i++) {
        if (row[i] < min) min = row[i];
        if (row[i] > max) max = row[i];
        sum += row[i];
    }
    return method == 0 ? min : method == 1 ? sum / m : max;
}

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    int method = criteria(params, paramsCount);
    if (method < 0) return 1;
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "input_tensors");
    if (inputsCount != 1 || in == NULL || in->dimsCount != 3 || in->dims[1] != 1 || in->dims[0] == 0 || in->dims[2] == 0)
        return 2;
    uint64_t n = in->dims[0], m = in->dims[2], best = 0;
    const float* data = (const float*)in->data;
    for (uint64_t i = 1; i < n; i++)
        if (score(data + i * m, m, method) > score(data + best * m, m, method)) best = i;
    uint64_t dims[] = {1, m};
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)malloc(sizeof(struct CustomNodeTensor));
    float* out = set_fp32_output(*outputs, "maximum_tensor", 2, dims);
    memcpy(out, data + best * m, m * sizeof(float));
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {4, 1, 10};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "input_tensors", FP32, 3, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 10};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "maximum_tensor", FP32, 2, dims);
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
