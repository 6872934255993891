/* OVMS's dynamic_image test node: input_numbers, 4-D with every dim dynamic -> output_numbers = input + 8.
 * Metadata spells dynamic dims both ways the API allows: 0 for inputs, (uint64_t)-1 for outputs. */
#include "node_util.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    if (inputsCount != 1 || strcmp(inputs[0].name, "input_numbers") != 0) return 1;
    if (inputs[0].dimsCount != 4 || inputs[0].precision != FP32) return 2;
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)malloc(sizeof(struct CustomNodeTensor));
    float* out = set_fp32_output(*outputs, "output_numbers", 4, inputs[0].dims);
    const float* in = (const float*)inputs[0].data;
    for (uint64_t i = 0; i < inputs[0].dataBytes / sizeof(float); i++) out[i] = in[i] + 8.0f;
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {0, 0, 0, 0};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "input_numbers", FP32, 4, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {(uint64_t)-1, (uint64_t)-1, (uint64_t)-1, (uint64_t)-1};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "output_numbers", FP32, 4, dims);
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
