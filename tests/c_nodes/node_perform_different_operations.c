/* OVMS's perform_different_operations test node, a fixed demultiplexer: input_numbers [1,10] and
 * op_factors [1,4] -> different_ops_results [4,1,10] (add, sub, multiply, divide by each factor)
 * and different_ops_factors [4,1,4] (the factors, repeated). */
#include "node_util.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    const struct CustomNodeTensor* numbers = find_input(inputs, inputsCount, "input_numbers");
    const struct CustomNodeTensor* factors = find_input(inputs, inputsCount, "op_factors");
    if (inputsCount != 2 || numbers == NULL || factors == NULL) return 1;
    if (numbers->dimsCount != 2 || numbers->dims[0] != 1 || numbers->dims[1] == 0) return 2;
    if (factors->dimsCount != 2 || factors->dims[0] != 1 || factors->dims[1] != 4) return 3;
    uint64_t m = numbers->dims[1];
    const float* x = (const float*)numbers->data;
    const float* f = (const float*)factors->data;
    uint64_t results_dims[] = {4, 1, m}, factors_dims[] = {4, 1, 4};
    *outputsCount = 2;
    *outputs = (struct CustomNodeTensor*)malloc(2 * sizeof(struct CustomNodeTensor));
    float* results = set_fp32_output(&(*outputs)[0], "different_ops_results", 3, results_dims);
    float* repeated = set_fp32_output(&(*outputs)[1], "different_ops_factors", 3, factors_dims);
    for (uint64_t i = 0; i < m; i++) {
        results[0 * m + i] = x[i] + f[0];
        results[1 * m + i] = x[i] - f[1];
        results[2 * m + i] = x[i] * f[2];
        results[3 * m + i] = x[i] / f[3];
    }
    for (int op = 0; op < 4; op++) memcpy(repeated + op * 4, f, 4 * sizeof(float));
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t numbers[] = {1, 10}, factors[] = {1, 4};
    *infoCount = 2;
    *info = (struct CustomNodeTensorInfo*)malloc(2 * sizeof(struct CustomNodeTensorInfo));
    set_info(&(*info)[0], "input_numbers", FP32, 2, numbers);
    set_info(&(*info)[1], "op_factors", FP32, 2, factors);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t results[] = {4, 1, 10}, factors[] = {4, 1, 4};
    *infoCount = 2;
    *info = (struct CustomNodeTensorInfo*)malloc(2 * sizeof(struct CustomNodeTensorInfo));
    set_info(&(*info)[0], "different_ops_results", FP32, 3, results);
    set_info(&(*info)[1], "different_ops_factors", FP32, 3, factors);
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
