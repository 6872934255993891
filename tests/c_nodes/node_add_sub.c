/* OVMS's add_sub test node: output_numbers = input_numbers + add_value - sub_value.
 * It needs exactly the two params add_value and sub_value; otherwise execute fails (returns 1). */
#include "node_util.h"

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }
int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs, int* outputsCount,
            const struct CustomNodeParam* params, int paramsCount, void* manager) {
    const char* add = param_value(params, paramsCount, "add_value");
    const char* sub = param_value(params, paramsCount, "sub_value");
    if (paramsCount != 2 || add == NULL || sub == NULL) return 1;
    if (inputsCount != 1 || strcmp(inputs[0].name, "input_numbers") != 0) return 2;
    if (inputs[0].precision != FP32) return 3;
    float delta = (float)(atof(add) - atof(sub));
    *outputsCount = 1;
    *outputs = (struct CustomNodeTensor*)malloc(sizeof(struct CustomNodeTensor));
    float* out = set_fp32_output(*outputs, "output_numbers", (int)inputs[0].dimsCount, inputs[0].dims);
    const float* in = (const float*)inputs[0].data;
    for (uint64_t i = 0; i < inputs[0].dataBytes / sizeof(float); i++) out[i] = in[i] + delta;
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "input_numbers", FP32, 2, dims);
    return 0;
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    static const uint64_t dims[] = {1, 0};
    *infoCount = 1;
    *info = (struct CustomNodeTensorInfo*)malloc(sizeof(struct CustomNodeTensorInfo));
    set_info(*info, "output_numbers", FP32, 2, dims);
    return 0;
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
