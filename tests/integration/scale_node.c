/* A custom node written by a user against nodes/custom_node_interface.h, as an OVMS user would:
 * FP32 "numbers" [1,N] -> "scaled" = numbers * factor (param "factor", default 1).
 * Built with: gcc -shared -fPIC -I nodes -o libscale.so scale_node.c */
#include <stdlib.h>
#include <string.h>

#include "custom_node_interface.h"

static float factor_of(const struct CustomNodeParam* params, int count) {
    for (int i = 0; i < count; i++)
        if (strcmp(params[i].key, "factor") == 0) return strtof(params[i].value, NULL);
    return 1.0f;
}

static int tensor_info(struct CustomNodeTensorInfo** info, int* infoCount, const char* name) {
    *info = malloc(sizeof(struct CustomNodeTensorInfo));
    (*info)->name = name;
    (*info)->dimsCount = 2;
    (*info)->dims = malloc(2 * sizeof(uint64_t));
    (*info)->dims[0] = 1;
    (*info)->dims[1] = 0; /* dynamic */
    (*info)->precision = FP32;
    *infoCount = 1;
    return 0;
}

int initialize(void** manager, const struct CustomNodeParam* params, int paramsCount) { return 0; }

int deinitialize(void* manager) { return 0; }

int execute(const struct CustomNodeTensor* inputs, int inputsCount, struct CustomNodeTensor** outputs,
            int* outputsCount, const struct CustomNodeParam* params, int paramsCount, void* manager) {
    if (inputsCount != 1 || inputs[0].precision != FP32) return 1;
    const struct CustomNodeTensor* in = &inputs[0];
    float factor = factor_of(params, paramsCount);
    struct CustomNodeTensor* out = malloc(sizeof(struct CustomNodeTensor));
    out->name = "scaled";
    out->dataBytes = in->dataBytes;
    out->data = malloc(in->dataBytes);
    out->dimsCount = in->dimsCount;
    out->dims = malloc(in->dimsCount * sizeof(uint64_t));
    memcpy(out->dims, in->dims, in->dimsCount * sizeof(uint64_t));
    out->precision = FP32;
    const float* src = (const float*)in->data;
    float* dst = (float*)out->data;
    for (uint64_t i = 0; i < in->dataBytes / sizeof(float); i++) dst[i] = src[i] * factor;
    *outputs = out;
    *outputsCount = 1;
    return 0;
}

int getInputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                  int paramsCount, void* manager) {
    return tensor_info(info, infoCount, "numbers");
}

int getOutputsInfo(struct CustomNodeTensorInfo** info, int* infoCount, const struct CustomNodeParam* params,
                   int paramsCount, void* manager) {
    return tensor_info(info, infoCount, "scaled");
}

int release(void* ptr, void* manager) {
    free(ptr);
    return 0;
}
