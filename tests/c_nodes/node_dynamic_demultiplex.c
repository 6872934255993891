/* OVMS's dynamic_demultiplex test node: input_numbers [1,M] -> dynamic_demultiplex_results [N,1,M],
 * N = int(input_numbers[0]) copies of the input (N may be 0). */
#include "node_util.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    const struct CustomNodeTensor* in = find_input(inputs, inputsCount, "input_numbers");
    if (inputsCount != 1 || in == NULL || in->dimsCount != 2 || in->dims[0] != 1 || in->dims[1] == 0) return 1;
    const float* x = (const float*)in->data;
    if (x[0] < 0) return 2;
    uint64_t n = (uint64_t)x[0], m = in->dims[1];
    uint64_t dims[] = {n, 1, m};
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)malloc(sizeof(struct CustomNodeTensor));
    float* out = set_fp32_output(*outputs, "dynamic_demultiplex_results", 3, dims);
    for (uint64_t i = 0; i < n; i++) memcpy(out + i * m, x, m * sizeof(float));
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 10};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "input_numbers", FP32, 2, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {0, 1, 10};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "dynamic_demultiplex_results", FP32, 3, dims);
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
